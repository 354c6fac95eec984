"""Iterative Delaunay sampling on the face template (Basak et al. 2023, Sec. 3).

Each round triangulates the current points in a 2D space and adds every triangle's centroid,
snapped to a template vertex; only triangles whose UV centroid falls on a face pixel count
(the triangulation's convex hull can span off-face pixels, e.g. the gap under the chin).

Spaces:

* ``uv``: triangulate UV pixel coordinates; the centroid snaps to its (rounded) UV pixel.
* ``frontal``: triangulate the template's frontal projection (x, y); the centroid snaps to the
  template vertex nearest in that projection (and must be within one grid step of it).
* ``geodesic``: triangulate in UV (a chart of the surface), but place the new point at the 3D
  centroid of the triangle's three surface points snapped to the nearest template vertex: an
  area-faithful surface centroid, not distorted by the UV parametrisation.

In symmetric mode the new points of each round are kept on the left half and the midline
(``u <= res/2``) and mirrored, so every round's set is exactly mirror-symmetric.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from scipy.spatial import Delaunay, QhullError, cKDTree

from densemark.core.errors import InputError
from densemark.core.validate import check_ids
from densemark.faces.template import FaceTemplate
from densemark.sampling.symmetry import template_mirror

SPACES = ("uv", "frontal", "geodesic")
_TREES: weakref.WeakKeyDictionary[FaceTemplate, dict[str, tuple[cKDTree, float]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class DelaunayResult:
    """Attributes:
    ids: (K,) int64 ids: the seeds, then each round's new ids (sorted within the round).
    rounds: per round ``{round, points_in, triangles, on_face, added, points_out}``.
    """

    ids: np.ndarray
    rounds: list[dict]

    @property
    def counts(self) -> list[int]:
        """Point counts: after the seeds, then after each round."""
        return (
            [self.rounds[0]["points_in"]] + [r["points_out"] for r in self.rounds]
            if self.rounds
            else [len(self.ids)]
        )


def _tree(template: FaceTemplate, space: str) -> tuple[cKDTree, float]:
    """KD-tree of the template in a space, and the grid step there (median mesh edge length)."""
    cache = _TREES.setdefault(template, {})
    if space not in cache:
        x = template.vertices[:, :2] if space == "frontal" else template.vertices
        e = template.triangles[:, :2]
        step = float(np.median(np.linalg.norm(x[e[:, 0]] - x[e[:, 1]], axis=1)))
        cache[space] = (cKDTree(x), step)
    return cache[space]


def symmetrize(template: FaceTemplate, ids: np.ndarray) -> np.ndarray:
    """Sorted union of ``ids`` and their mirrors (only where the mirror is an exact involution)."""
    tm = template_mirror(template)
    ids = np.asarray(ids, np.int64)
    ok = tm.exact[ids] & (tm.ids[tm.ids[ids]] == ids)
    return np.union1d(ids[ok], tm.ids[ids[ok]])


def centroids(template: FaceTemplate, ids: np.ndarray, space: str) -> tuple[np.ndarray, int]:
    """New template ids at the centroids of the Delaunay triangles of ``ids``.

    Args:
        template: the face template.
        ids: (N,) current template ids (N >= 3, not all collinear in ``space``).
        space: ``uv`` | ``frontal`` | ``geodesic``.

    Returns:
        new: (M,) int64 snapped centroid ids of the on-face triangles (may repeat or hit ``ids``).
        n_tri: number of triangles.
    """
    if space not in SPACES:
        raise InputError(None, "space", f"unknown space {space!r}; expected one of {SPACES}")
    ids = np.asarray(ids, np.int64)
    coords = (
        template.vertices[ids, :2]
        if space == "frontal"
        else template.pixel_uv[ids].astype(np.float64)
    )
    try:
        simp = Delaunay(coords).simplices
    except (QhullError, ValueError) as exc:
        raise InputError(
            None, "seeds", f"cannot triangulate {len(ids)} points in {space} space ({exc})"
        ) from exc
    corner = ids[simp]  # (T, 3)
    uvc = template.pixel_uv[corner].mean(1)
    pix = np.floor(uvc + 0.5).astype(np.int64)
    on_uv = template.id_map[pix[:, 1], pix[:, 0]]
    if space == "uv":
        new = on_uv[on_uv >= 0]
    elif space == "frontal":
        tree, step = _tree(template, "frontal")
        d, nn = tree.query(template.vertices[corner, :2].mean(1))
        new = nn[d <= step]
    else:
        tree, _ = _tree(template, "geodesic")
        _, nn = tree.query(template.vertices[corner].mean(1))
        new = nn[on_uv >= 0]
    return np.asarray(new, np.int64), int(len(simp))


def delaunay_sample(
    template: FaceTemplate,
    seed_ids: np.ndarray,
    rounds: int = 3,
    space: str = "uv",
    *,
    symmetric: bool = False,
) -> DelaunayResult:
    """Seeds plus ``rounds`` rounds of Delaunay centroids (see module docstring).

    Args:
        template: the face template.
        seed_ids: (S,) template ids of the seeds (repeats dropped, order kept).
        rounds: number of centroid rounds.
        space: triangulation space.
        symmetric: mirror-symmetrise the seeds and every round.

    Returns:
        The ids and per-round statistics.
    """
    seed_ids = check_ids(
        seed_ids, None, "seeds", template.n_vertices, unique=False, allow_empty=True
    )
    _, first = np.unique(seed_ids, return_index=True)
    cur = seed_ids[np.sort(first)]
    if symmetric:
        sym = symmetrize(template, cur)
        cur = np.concatenate([cur[np.isin(cur, sym)], np.setdiff1d(sym, cur)])
    left = 2 * template.pixel_uv[:, 0] <= template.res
    stats = []
    for r in range(1, rounds + 1):
        new, n_tri = centroids(template, cur, space)
        n_on = len(new)
        new = np.setdiff1d(new, cur)
        if symmetric:
            new = new[left[new]]
            new = np.setdiff1d(symmetrize(template, new), cur)
        stats.append(
            {
                "round": r,
                "points_in": len(cur),
                "triangles": n_tri,
                "on_face": n_on,
                "added": len(new),
                "points_out": len(cur) + len(new),
            }
        )
        cur = np.concatenate([cur, new])
    return DelaunayResult(ids=cur, rounds=stats)

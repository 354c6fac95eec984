"""Centroidal Voronoi (Lloyd) relaxation of a landmark set over the face template.

Every template vertex (one UV pixel) is a sample of the face. Each iteration assigns every
sample of the domain to its nearest landmark (ties to the lowest landmark index) and moves each
free landmark to the weighted centroid of its cell. Fixed landmarks (the 68 keypoints, the
seeds) stay and shape their neighbours' cells. At the end each free landmark snaps to a
template vertex, nearest first, without duplicates.

Spaces (coordinates of the cells, weight of each sample):

* ``uv``: UV pixel coordinates, every pixel weighs the same: an even layout over the UV map;
* ``uv-area``: UV coordinates, each pixel weighted by its share of the 3D surface area;
* ``frontal``: the template's frontal projection (x, y), each vertex weighted by its share of
  the projected area: an even layout as seen from the front (the sides of the face, steep in
  that view, get fewer landmarks).

Domains: ``face`` is every template vertex; ``jaw`` only the vertices on or above the jaw line
in UV (the jaw keypoints 0-16, v interpolated linearly in u, constant beyond the contour's
ends): the face proper, without the neck margin below the jaw contour.

Start (``init``): ``set`` relaxes the given landmarks; ``spread`` first re-places the free ones
by farthest-point sampling over the allowed vertices (:func:`spread`). Lloyd iterations on
pixel samples stall on gradual density differences (a cell one pixel larger than its
neighbour no longer moves them), so from the Delaunay rounds, dense in the lower face, the
layout stays graded; from an even start it becomes even (cells of about equal area).

Rim margin: free landmarks stay on vertices whose rim distance
(:func:`densemark.sampling.regions.rim_distance`, UV px) exceeds ``rim_margin``; a centroid
nearest to a vertex outside that region moves to the nearest vertex inside it.

Symmetric mode: the set must be mirror-closed. The free landmarks left of the midline
(UV ``u < c - 1/2``, ``c = (res - 1) / 2``) and on it are relaxed, the right ones are their
mirror images at every iteration (a left landmark's new position averages its own cell
centroid with the mirrored centroid of its partner's cell; a midline landmark's is projected
onto the mirror line). Left landmarks snap to exactly mirrored vertices left of the midline,
midline ones to the midline columns, the right ones are their template mirrors: the result is
exactly mirror-symmetric. The mirror is ``u -> res - 1 - u`` in UV and the reflection in the
template's fitted symmetry plane (projected) in the frontal view.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from densemark.core.errors import InputError
from densemark.faces.template import FaceTemplate
from densemark.sampling.regions import rim_distance
from densemark.sampling.symmetry import template_mirror

SPACES = ("uv", "uv-area", "frontal")
DOMAINS = ("face", "jaw")
_WEIGHTS: weakref.WeakKeyDictionary[FaceTemplate, dict[str, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class RelaxResult:
    """Attributes:
    ids: (K,) int64 relaxed template ids, same order; fixed landmarks unchanged.
    iterations: Lloyd iterations run.
    last_move: largest landmark move in the last iteration (grid steps of the space).
    moved: landmarks whose template vertex changed.
    mean_shift: mean UV distance between the old and new pixels of the free landmarks.
    """

    ids: np.ndarray
    iterations: int
    last_move: float
    moved: int
    mean_shift: float

    def report(self) -> dict:
        return {
            "iterations": self.iterations,
            "last_move": round(self.last_move, 6),
            "moved": self.moved,
            "mean_shift_uv_px": round(self.mean_shift, 6),
        }


def coordinates(template: FaceTemplate, space: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Samples of a relaxation space.

    Returns:
        xy: (V, 2) float64 vertex coordinates; weights: (V,) float64 (see module docstring);
        step: the grid step in that space (median mesh edge length; 1 in UV).
    """
    if space not in SPACES:
        raise InputError(None, "relax.space", f"unknown space {space!r}; expected one of {SPACES}")
    uv = template.pixel_uv.astype(np.float64)
    if space == "uv":
        return uv, np.ones(template.n_vertices), 1.0
    cache = _WEIGHTS.setdefault(template, {})
    v, t = template.vertices, template.triangles
    if space not in cache:
        if space == "uv-area":
            area = 0.5 * np.linalg.norm(
                np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]), axis=1
            )
        else:
            e1, e2 = v[t[:, 1], :2] - v[t[:, 0], :2], v[t[:, 2], :2] - v[t[:, 0], :2]
            area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
        w = np.bincount(t.ravel(), np.repeat(area / 3.0, 3), template.n_vertices)
        w[w == 0] = np.median(w[w > 0])  # a vertex in no triangle
        cache[space] = w
    if space == "uv-area":
        return uv, cache[space], 1.0
    xy = v[:, :2].astype(np.float64)
    step = float(np.median(np.linalg.norm(xy[t[:, 0]] - xy[t[:, 1]], axis=1)))
    return xy, cache[space], step


def domain_mask(template: FaceTemplate, domain: str) -> np.ndarray:
    """(V,) bool: the template vertices of a relaxation domain (``face`` | ``jaw``, module docstring)."""
    if domain == "face":
        return np.ones(template.n_vertices, bool)
    if domain != "jaw":
        raise InputError(
            None, "relax.domain", f"unknown domain {domain!r}; expected one of {DOMAINS}"
        )
    j = template.pixel_uv[template.kpt_ids[:17]].astype(np.float64)
    o = np.argsort(j[:, 0], kind="stable")
    line = np.interp(template.pixel_uv[:, 0], j[o, 0], j[o, 1])
    return template.pixel_uv[:, 1] <= line


def nearest_generator(points: np.ndarray, gens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest of (G, 2) ``gens`` for each of (P, 2) ``points``.

    Exact ties (up to 4-way) go to the lowest generator index, so the result does not depend
    on the KD-tree's internal order.

    Returns:
        owner: (P,) int64 generator index; dist: (P,) float64 distance to it.
    """
    k = min(4, len(gens))
    d, i = cKDTree(gens).query(points, k=k)
    d, i = d.reshape(len(points), k), i.reshape(len(points), k)
    tie = d <= d[:, :1] * (1 + 1e-12) + 1e-12
    return np.where(tie, i, len(gens)).min(1).astype(np.int64), d[:, 0]


def lloyd_step(
    points: np.ndarray, weights: np.ndarray, gens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One Lloyd step.

    Args:
        points: (P, 2) float64 domain samples.
        weights: (P,) float64 their weights.
        gens: (G, 2) float64 generators.

    Returns:
        centroids: (G, 2) weighted centroid of each generator's cell (the generator itself when
            its cell is empty); mass: (G,) total weight of each cell.
    """
    g = len(gens)
    owner, _ = nearest_generator(points, gens)
    mass = np.bincount(owner, weights, g)
    s = np.stack([np.bincount(owner, weights * points[:, j], g) for j in range(2)], 1)
    cent = np.asarray(gens, np.float64).copy()
    nz = mass > 0
    cent[nz] = s[nz] / mass[nz, None]
    return cent, mass


class _Region:
    """Vertices a class of landmarks may take (all, left of the midline, midline)."""

    def __init__(self, xy: np.ndarray, all_tree: cKDTree, mask: np.ndarray, what: str):
        self.mask = mask
        self.ids = np.flatnonzero(mask)
        if len(self.ids) == 0:
            raise InputError(
                None, "relax.rim_margin", f"no template vertex {what} is farther from the rim"
            )
        self.xy = xy[self.ids]
        self.tree = cKDTree(self.xy)
        self.all_tree = all_tree

    def project(self, x: np.ndarray) -> np.ndarray:
        """(N, 2): points whose nearest template vertex is outside the region move to the nearest
        vertex inside it."""
        if len(x) == 0:
            return x
        _, nn = self.all_tree.query(x)
        out = x.copy()
        far = ~self.mask[nn]
        if far.any():
            _, j = self.tree.query(x[far])
            out[far] = self.xy[j]
        return out

    def snap(self, x: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """(N,) distinct template ids of the region, not in ``taken``, nearest first.

        (point, vertex) pairs are taken greedily by increasing distance (ties: lower point
        index, then lower vertex id); a point whose k nearest vertices are all used looks
        farther (k doubles).
        """
        free = ~np.isin(self.ids, taken)
        ids, xy = self.ids[free], self.xy[free]
        n = len(x)
        if n > len(ids):
            raise InputError(
                None,
                "relax.rim_margin",
                f"{n} landmarks to place, only {len(ids)} allowed vertices",
            )
        if n == 0:
            return np.zeros(0, np.int64)
        tree = cKDTree(xy)
        out = np.full(n, -1, np.int64)
        used = np.zeros(len(ids), bool)
        k = min(8, len(ids))
        while True:
            todo = np.flatnonzero(out < 0)
            d, j = tree.query(x[todo], k=k)
            d, j = d.reshape(len(todo), k), j.reshape(len(todo), k)
            rows = np.repeat(todo, k)
            order = np.lexsort((ids[j.ravel()], rows, d.ravel()))
            for p, c in zip(rows[order].tolist(), j.ravel()[order].tolist(), strict=True):
                if out[p] < 0 and not used[c]:
                    out[p] = c
                    used[c] = True
            if (out >= 0).all():
                return ids[out]
            k = min(2 * k, len(ids))


def spread(
    xy: np.ndarray, fixed_xy: np.ndarray, pools: list[np.ndarray], counts: list[int], mirror=None
) -> list[np.ndarray]:
    """Farthest-point placement of ``counts[i]`` points from each candidate pool, in one pass.

    Each step takes, among the pools with points still to place, the candidate farthest (2D)
    from the fixed points and the points placed so far (and their mirror images when ``mirror``
    is given); ties go to the first candidate of the first pool.

    Args:
        xy: (V, 2) coordinates of every template vertex.
        fixed_xy: (F, 2) coordinates of the fixed landmarks.
        pools: candidate vertex ids per pool (disjoint).
        counts: points to place per pool.
        mirror: optional (N, 2) -> (N, 2) mirror map of the coordinates.

    Returns:
        The placed vertex ids of each pool, in placement order.
    """
    cand = np.concatenate(pools)
    pool = np.repeat(np.arange(len(pools)), [len(p) for p in pools])
    left = np.array(counts)
    if (left > np.array([len(p) for p in pools])).any():
        raise InputError(
            None, "relax.rim_margin", "too few allowed vertices to place the landmarks"
        )
    c = xy[cand]
    d = np.full(len(cand), np.inf)
    if len(fixed_xy):
        src = fixed_xy if mirror is None else np.concatenate([fixed_xy, mirror(fixed_xy)])
        d = cKDTree(src).query(c)[0]
    out: list[list[int]] = [[] for _ in pools]
    alive = np.ones(len(cand), bool)
    while left.sum() > 0:
        k = int(np.argmax(np.where(alive & (left[pool] > 0), d, -1.0)))
        out[pool[k]].append(int(cand[k]))
        left[pool[k]] -= 1
        alive[k] = False
        p = c[k : k + 1]
        for q in (p, mirror(p)) if mirror is not None else (p,):
            d = np.minimum(d, np.linalg.norm(c - q, axis=1))
    return [np.asarray(o, np.int64) for o in out]


def relax_set(
    template: FaceTemplate,
    ids: np.ndarray,
    fixed: np.ndarray,
    *,
    iterations: int,
    space: str = "uv",
    domain: str = "face",
    rim_margin: float = 2.0,
    tol: float = 0.01,
    init: str = "set",
    symmetric: bool = False,
) -> RelaxResult:
    """Relax the free landmarks of a set toward a centroidal Voronoi layout (module docstring).

    Args:
        template: the face template.
        ids: (K,) unique template ids.
        fixed: (K,) bool, landmarks that stay (not bound by the rim margin or the domain).
        iterations: most Lloyd iterations (stops earlier once no landmark moves ``tol``).
        space: ``uv`` | ``uv-area`` | ``frontal``.
        domain: ``face`` | ``jaw``: the vertices the layout covers.
        rim_margin: free landmarks keep a rim distance > ``rim_margin`` UV px.
        tol: convergence threshold in grid steps of the space (UV px for ``uv``).
        init: ``set``: start from the given landmarks; ``spread``: first re-place the free
            landmarks by farthest-point sampling over the allowed vertices (:func:`spread`), so
            the layout starts even instead of dense where the Delaunay rounds put points
            (Lloyd iterations on pixels stall on such gradual density differences).
        symmetric: relax one half + midline and mirror (the set must be mirror-closed).

    Returns:
        The relaxed ids (same order) and iteration statistics.

    Raises:
        InputError: a set that is not mirror-closed in symmetric mode, or too few allowed vertices.
    """
    if init not in ("set", "spread"):
        raise InputError(None, "relax.init", f"unknown init {init!r}; expected set or spread")
    ids = np.asarray(ids, np.int64)
    fixed = np.asarray(fixed, bool)
    if fixed.shape != ids.shape:
        raise InputError(None, "fixed", f"expected {ids.shape} flags, got {fixed.shape}")
    xy, w, step = coordinates(template, space)
    inside = domain_mask(template, domain)
    allowed = inside & (rim_distance(template) > rim_margin)
    dom, w = xy[inside], w[inside]
    all_tree = cKDTree(xy)
    fx = xy[ids[fixed]]
    free = np.flatnonzero(~fixed)
    thresh = tol * step
    n_it, move = 0, 0.0

    if not symmetric:
        region = _Region(xy, all_tree, allowed, "in the domain")
        x = xy[ids[free]]
        if init == "spread":
            x = xy[spread(xy, fx, [region.ids], [len(free)])[0]]
        for it in range(1, iterations + 1):
            cent, _ = lloyd_step(dom, w, np.concatenate([fx, x]))
            new = region.project(cent[len(fx) :])
            n_it, move = it, float(np.abs(new - x).max()) if len(x) else 0.0
            x = new
            if move < thresh:
                break
        out = ids.copy()
        out[free] = region.snap(x, ids[fixed])
    else:
        tm = template_mirror(template)
        c = (template.res - 1) / 2
        u = template.pixel_uv[:, 0]
        left = np.flatnonzero(~fixed & (u[ids] < c - 0.5))
        mid = np.flatnonzero(~fixed & (np.abs(u[ids] - c) <= 0.5))
        pos = np.full(template.n_vertices, -1, np.int64)
        pos[ids] = np.arange(len(ids))
        right = pos[tm.ids[ids[left]]]
        ok = (right >= 0) & (tm.ids[tm.ids[ids[left]]] == ids[left])
        if not ok.all() or 2 * len(left) + len(mid) != len(free) or fixed[right].any():
            raise InputError(
                None,
                "ids",
                "symmetric relaxation needs a mirror-closed set (free landmarks in exact mirror pairs)",
            )
        paired = tm.exact & (tm.ids[tm.ids] == np.arange(template.n_vertices)) & allowed[tm.ids]
        r_left = _Region(xy, all_tree, allowed & paired & (u < c - 0.5), "left of the midline")
        r_mid = _Region(xy, all_tree, allowed & tm.midline, "on the midline") if len(mid) else None
        mirror = _mirror_fn(template, space)
        xl, xm = xy[ids[left]], xy[ids[mid]]
        if init == "spread":
            pools = [r_left.ids, r_mid.ids if r_mid is not None else np.zeros(0, np.int64)]
            pl, pm = spread(xy, fx, pools, [len(left), len(mid)], mirror)
            xl, xm = xy[pl], xy[pm]
        xm = 0.5 * (xm + mirror(xm))
        nl, nm = len(xl), len(xm)
        for it in range(1, iterations + 1):
            cent, _ = lloyd_step(dom, w, np.concatenate([fx, xl, xm, mirror(xl)]))
            cl, cm, cr = np.split(cent[len(fx) :], [nl, nl + nm])
            new_l = r_left.project(0.5 * (cl + mirror(cr)))
            new_m = r_mid.project(0.5 * (cm + mirror(cm))) if nm else cm
            new_m = 0.5 * (new_m + mirror(new_m))
            moves = [np.abs(a - b).max() for a, b in ((new_l, xl), (new_m, xm)) if len(a)]
            n_it, move = it, float(max(moves, default=0.0))
            xl, xm = new_l, new_m
            if move < thresh:
                break
        taken = np.union1d(ids[fixed], tm.ids[ids[fixed]])
        sl = r_left.snap(xl, taken)
        out = ids.copy()
        out[left], out[right] = sl, tm.ids[sl]
        if nm:
            out[mid] = r_mid.snap(xm, taken)
    duv = (template.pixel_uv[out[free]] - template.pixel_uv[ids[free]]).astype(np.float64)
    shift = np.linalg.norm(duv, axis=1)
    return RelaxResult(
        ids=out,
        iterations=int(n_it),
        last_move=float(move / step),
        moved=int((out != ids).sum()),
        mean_shift=float(shift.mean()) if len(shift) else 0.0,
    )


def _mirror_fn(template: FaceTemplate, space: str):
    """The left/right mirror of (N, 2) points in a space's coordinates."""
    if space in ("uv", "uv-area"):
        r = template.res - 1
        return lambda p: np.stack([r - p[:, 0], p[:, 1]], 1)
    tm = template_mirror(template)
    n2 = tm.normal[:2] / np.linalg.norm(tm.normal[:2])
    off = tm.offset / np.linalg.norm(tm.normal[:2])
    return lambda p: p - 2.0 * (p @ n2 - off)[:, None] * n2[None]

"""Farthest-point sampling over the template surface (deterministic).

Distances are geodesic along the template mesh's edge graph (Dijkstra, edge weight = 3D edge
length) or straight 3D (euclidean). Used both to fill a set up to a target count (candidates:
all template vertices) and to thin it down (start from the forced points, candidates: the set).
In symmetric mode the units are mirror pairs: a pair is added together (a midline vertex alone),
so the result stays exactly mirror-symmetric.
"""

from __future__ import annotations

import weakref
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from densemark.core.errors import InputError
from densemark.faces.template import FaceTemplate
from densemark.sampling.symmetry import template_mirror

Metric = Literal["geodesic", "euclidean"]
_GRAPHS: weakref.WeakKeyDictionary[FaceTemplate, sp.csr_matrix] = weakref.WeakKeyDictionary()


def edge_graph(template: FaceTemplate) -> sp.csr_matrix:
    """(V, V) symmetric sparse graph of the template's mesh edges, weight = 3D length (cached).

    Vertices outside the largest connected component (PRNet's template has one face pixel in no
    triangle) are linked to their 3D-nearest vertex of it, so every distance is finite.
    """
    g = _GRAPHS.get(template)
    if g is None:
        t = template.triangles
        e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
        e = np.unique(np.sort(e, 1), axis=0)
        w = np.linalg.norm(template.vertices[e[:, 0]] - template.vertices[e[:, 1]], axis=1)
        w = np.maximum(w, 1e-12)  # csgraph treats explicit zeros as missing edges
        n = template.n_vertices
        _, lab = connected_components(
            sp.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)), directed=False
        )
        main = lab == np.bincount(lab).argmax()
        if (
            not main.all()
        ):  # e.g. a face pixel in no triangle: link it to its 3D-nearest main vertex
            off = np.flatnonzero(~main)
            on = np.flatnonzero(main)
            d, nn = cKDTree(template.vertices[on]).query(template.vertices[off])
            e = np.concatenate([e, np.stack([off, on[nn]], 1)])
            w = np.concatenate([w, np.maximum(d, 1e-12)])
        g = sp.coo_matrix(
            (np.r_[w, w], (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n)
        ).tocsr()
        _GRAPHS[template] = g
    return g


def distance_to(
    template: FaceTemplate, sources: np.ndarray, metric: Metric = "geodesic", limit: float = np.inf
) -> np.ndarray:
    """(V,) distance of every template vertex to the nearest of ``sources`` (inf beyond ``limit``
    or where unreachable)."""
    sources = np.asarray(sources, np.int64)
    n = template.n_vertices
    if len(sources) == 0:
        return np.full(n, np.inf)
    if metric == "geodesic":
        return dijkstra(
            edge_graph(template), directed=False, indices=sources, min_only=True, limit=limit
        )
    if metric == "euclidean":
        d, _ = cKDTree(template.vertices[sources]).query(template.vertices)
        return np.where(d <= limit, d, np.inf)
    raise InputError(None, "metric", f"unknown metric {metric!r}")


def farthest_point_sampling(
    template: FaceTemplate,
    chosen: np.ndarray,
    candidates: np.ndarray,
    target: int,
    *,
    metric: Metric = "geodesic",
    symmetric: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Add candidates to ``chosen`` farthest-first until it has exactly ``target`` ids.

    Args:
        template: the face template.
        chosen: (C,) ids already in the set (kept, first in the output).
        candidates: (N,) ids that may be added (ids in ``chosen`` are ignored).
        target: size of the result.
        metric: ``geodesic`` (mesh edges) or ``euclidean`` (3D).
        symmetric: add mirror pairs together (candidates and chosen should be mirror-closed).
        seed: exact distance ties go to the candidate with the smallest seeded random priority.

    Returns:
        (target,) int64: ``chosen`` followed by the added ids in the order they were picked.

    Raises:
        InputError: the target cannot be reached (too few candidates, or parity in symmetric mode).
    """
    chosen = np.asarray(chosen, np.int64)
    cand = np.setdiff1d(np.asarray(candidates, np.int64), chosen)
    need = target - len(chosen)
    if need < 0:
        raise InputError(None, "target_count", f"{target} is below the {len(chosen)} forced points")
    mirror = template_mirror(template).ids if symmetric else np.arange(template.n_vertices)
    if symmetric:
        cand = cand[mirror[mirror[cand]] == cand]  # pairs only where the mirror is an involution
        cand = np.unique(np.where(cand <= mirror[cand], cand, mirror[cand]))  # one id per unit
        mid = mirror[cand] == cand
        cap = 2 * int((~mid).sum()) + int(mid.sum())
    else:
        mid = np.ones(len(cand), bool)
        cap = len(cand)
    if need > cap:
        raise InputError(
            None, "target_count", f"{target} needs {need} more points, only {cap} candidates"
        )
    prio = np.random.default_rng(seed).permutation(template.n_vertices)
    out = [chosen]
    if need == 0:
        return chosen.copy()
    dist = (
        distance_to(template, chosen, metric)
        if len(chosen)
        else np.full(template.n_vertices, np.inf)
    )
    alive = np.ones(len(cand), bool)
    while need > 0:
        ok = alive & (mid if (symmetric and need == 1) else True)
        if not ok.any():
            raise InputError(
                None, "target_count", "symmetric mode: no midline candidate left for an odd count"
            )
        d = np.where(ok, dist[cand], -1.0)
        best = d.max()
        ties = np.flatnonzero(d == best)
        k = ties[np.argmin(prio[cand[ties]])]
        v = int(cand[k])
        unit = np.unique([v, int(mirror[v])])
        alive[k] = False
        out.append(unit)
        need -= len(unit)
        if need > 0:
            lim = float(d[alive].max()) if alive.any() and np.isfinite(d[alive].max()) else np.inf
            dist = np.minimum(dist, distance_to(template, unit, metric, limit=lim))
    return np.concatenate(out)

"""The dense landmark sampler: seeds -> Delaunay rounds -> forced keypoints -> FPS fill/thin
-> optional Lloyd relaxation (:mod:`densemark.sampling.relax`) -> set.

Landmark order: the seeds, each round's new ids (sorted within the round), the forced keypoints
not yet present, then the fill points in farthest-first order (thinning keeps this order). The
relaxation keeps the seeds and the forced keypoints in place and moves the other landmarks
within their positions in this order (from ``relax.init: spread`` their positions are refilled
in the spread's farthest-first order, left half then midline, the right half mirroring the left).
"""

from __future__ import annotations

import numpy as np

from densemark.core.errors import InputError
from densemark.core.validate import check_ids
from densemark.faces.template import FaceTemplate
from densemark.sampling.delaunay import delaunay_sample, symmetrize
from densemark.sampling.fps import farthest_point_sampling
from densemark.sampling.landmark_set import LandmarkSet, make_set
from densemark.sampling.params import SampleParams
from densemark.sampling.relax import relax_set


def rim_ids(template: FaceTemplate) -> np.ndarray:
    """(R,) sorted ids of the template's boundary vertices (on mesh edges used by one triangle)."""
    t = template.triangles
    e = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), 1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return np.unique(uniq[counts == 1])


def seed_ids(template: FaceTemplate, params: SampleParams) -> np.ndarray:
    """(S,) the seed template ids: keypoint seeds, explicit ids, then rim seeds (FPS, 3D)."""
    kp = check_ids(params.seeds, None, "sample.seeds", 68, unique=False)
    extra = check_ids(
        params.seed_ids,
        None,
        "sample.seed_ids",
        template.n_vertices,
        unique=False,
        allow_empty=True,
    )
    s = np.concatenate([template.kpt_ids[kp], extra])
    _, first = np.unique(s, return_index=True)
    s = s[np.sort(first)]
    if params.boundary_seeds:
        rim = rim_ids(template)
        s = farthest_point_sampling(
            template, s, rim, len(s) + params.boundary_seeds, metric="euclidean", seed=params.seed
        )
    return s


def sample_set(template: FaceTemplate, params: SampleParams) -> tuple[LandmarkSet, dict]:
    """Run the sampler.

    Returns:
        The landmark set (its provenance records the parameters and per-round counts) and a
        report dict (counts per stage).

    Raises:
        InputError: bad seeds, or a target count that cannot be met (above the template's
            vertex count, below the forced points, ...).
    """
    if params.target_count is not None and params.target_count > template.n_vertices:
        raise InputError(
            None,
            "sample.target_count",
            f"{params.target_count} exceeds the {template.n_vertices} vertices of the template in use",
        )
    seeds = seed_ids(template, params)
    dl = delaunay_sample(template, seeds, params.rounds, params.space, symmetric=params.symmetric)
    ids = dl.ids
    kpt = template.kpt_ids
    forced = np.asarray(kpt if params.include_kpt68 else [], np.int64)
    if params.symmetric and forced.size:
        forced = symmetrize(template, forced)
        missing = np.setdiff1d(kpt, forced)
        if missing.size:
            raise InputError(
                None, "sample.symmetric", f"keypoint ids {missing.tolist()} have no exact mirror"
            )
    ids = np.concatenate([ids, forced[~np.isin(forced, ids)]]) if forced.size else ids
    n_before = len(ids)
    metric = "geodesic" if params.fill == "fps-geodesic" else "euclidean"
    if params.target_count is not None and params.target_count != len(ids):
        t = params.target_count
        if t > len(ids):
            ids = farthest_point_sampling(
                template,
                ids,
                np.arange(template.n_vertices),
                t,
                metric=metric,
                symmetric=params.symmetric,
                seed=params.seed,
            )
        else:
            keep = np.union1d(forced, symmetrize(template, seeds) if params.symmetric else seeds)
            keep = keep[np.isin(keep, ids)]
            if len(keep) > t:
                keep = forced  # seeds may be dropped, keypoints may not
            kept = farthest_point_sampling(
                template, keep, ids, t, metric=metric, symmetric=params.symmetric, seed=params.seed
            )
            ids = ids[np.isin(ids, kept)]
    relax = None
    if params.relax.iterations > 0:
        fixed = np.isin(
            ids, np.union1d(forced, symmetrize(template, seeds) if params.symmetric else seeds)
        )
        r = params.relax
        rr = relax_set(
            template,
            ids,
            fixed,
            iterations=r.iterations,
            space=r.space,
            domain=r.domain,
            rim_margin=r.rim_margin,
            tol=r.tol,
            init=r.init,
            symmetric=params.symmetric,
        )
        ids, relax = rr.ids, {"fixed": int(fixed.sum()), **rr.report()}
    kpt68 = None
    if np.isin(kpt, ids).all():
        pos = {int(v): i for i, v in enumerate(ids.tolist())}
        kpt68 = np.array([pos[int(v)] for v in kpt], np.int64)
    report = {
        "seeds": len(seeds),
        "rounds": dl.rounds,
        "counts": dl.counts,
        "after_delaunay": len(dl.ids),
        "after_kpt68": n_before,
        "final": len(ids),
        "filled": max(0, len(ids) - n_before),
        "thinned": max(0, n_before - len(ids)),
        "relax": relax,
    }
    sampler = {
        "method": "delaunay",
        "params": params.model_dump(mode="json"),
        "seed_ids": seeds.tolist(),
        **report,
    }
    ls = make_set(template, ids, name=params.name, kpt68=kpt68, sampler=sampler, raw_ids=dl.ids)
    if params.symmetric and not ls.mirror_exact:
        raise InputError(
            None, "sample.symmetric", "internal error: symmetric sampling gave an inexact mirror"
        )
    return ls, report

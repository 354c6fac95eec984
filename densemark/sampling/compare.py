"""Compare two landmark sets on the template: coverage, spacing, symmetry, overlap, matching,
rim points and face regions; plot.

Distances are in template units, geodesic along the template mesh edges (Dijkstra), which
overestimates true surface geodesics by a few percent (grid paths) but the same for both sets,
except the *UV* figures, in UV pixels (the sampler's default space):

* matching: the share of one set's points that have a point of the other set within a radius,
  the radius being either set's median UV nearest-neighbour spacing (e.g. "98 % of the paper's
  points have one of ours within the paper set's median spacing");
* rim points: landmarks within ``RIM_PX`` (2) UV px of the face-mask boundary;
* regions: brows, eyes, nose, mouth, jaw by nearest keypoint group, forehead and cheeks for
  landmarks far from every keypoint (:mod:`densemark.sampling.regions`).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from densemark.faces.template import FaceTemplate
from densemark.sampling.fps import edge_graph
from densemark.sampling.landmark_set import LandmarkSet
from densemark.sampling.regions import REGION_RADIUS, REGIONS, RIM_PX, region_counts, rim_points
from densemark.sampling.symmetry import template_mirror


def _stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    return {
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "p95": float(np.percentile(x, 95)),
        "max": float(x.max()),
    }


def voronoi(template: FaceTemplate, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Geodesic distance of every vertex to the nearest of ``ids`` and which one (position in ids).

    Returns:
        dist: (V,) float64; owner: (V,) int64 positions into ``ids``.
    """
    ids = np.asarray(ids, np.int64)
    dist, _, src = dijkstra(
        edge_graph(template), directed=False, indices=ids, min_only=True, return_predecessors=True
    )
    pos = np.full(template.n_vertices, -1, np.int64)
    pos[ids] = np.arange(len(ids))
    return dist, pos[src]


def geodesic_nn(template: FaceTemplate, ids: np.ndarray) -> np.ndarray:
    """(K,) geodesic distance from each landmark to its nearest other landmark.

    Exact on the edge graph: the shortest path between a landmark and its nearest neighbour
    crosses an edge between their Voronoi cells, so the minimum of ``d[a] + w + d[b]`` over
    cell-crossing edges (a, b) is that distance.
    """
    dist, owner = voronoi(template, ids)
    g = edge_graph(template).tocoo()
    a, b, w = g.row, g.col, g.data
    cross = owner[a] != owner[b]
    tot = dist[a[cross]] + w[cross] + dist[b[cross]]
    out = np.full(len(ids), np.inf)
    np.minimum.at(out, owner[a[cross]], tot)
    return out


def uv_nn(template: FaceTemplate, ids: np.ndarray) -> np.ndarray:
    """(K,) UV distance (px) from each landmark to its nearest other landmark."""
    p = template.pixel_uv[np.asarray(ids, np.int64)].astype(np.float64)
    return cKDTree(p).query(p, k=2)[0][:, 1]


def matching(template: FaceTemplate, a: np.ndarray, b: np.ndarray) -> dict:
    """How well two sets (template ids) match in UV.

    Returns:
        ``spacing_a`` / ``spacing_b``: median UV nearest-neighbour spacing of each set (px);
        ``a_near_b`` / ``b_near_a``: for one set's points, the distance to the other set's nearest
        point: ``within_spacing_a`` and ``within_spacing_b`` (shares within either radius),
        ``median`` and ``max`` (px).
    """
    pa = template.pixel_uv[np.asarray(a, np.int64)].astype(np.float64)
    pb = template.pixel_uv[np.asarray(b, np.int64)].astype(np.float64)
    sa, sb = float(np.median(uv_nn(template, a))), float(np.median(uv_nn(template, b)))
    eps = 1e-9  # spacings are distances between pixels: a tie counts as within

    def near(d: np.ndarray) -> dict:
        return {
            "within_spacing_a": float((d <= sa + eps).mean()),
            "within_spacing_b": float((d <= sb + eps).mean()),
            "median": float(np.median(d)),
            "max": float(d.max()),
        }

    return {
        "spacing_a": sa,
        "spacing_b": sb,
        "a_near_b": near(cKDTree(pb).query(pa)[0]),
        "b_near_a": near(cKDTree(pa).query(pb)[0]),
    }


def set_stats(template: FaceTemplate, s: LandmarkSet) -> dict:
    """Coverage (every template vertex to its nearest landmark), spacing and symmetry of one set."""
    dist, _ = voronoi(template, s.ids)
    nn3 = cKDTree(template.vertices[s.ids]).query(template.vertices[s.ids], k=2)[0][:, 1]
    r = s.mirror_residual
    selfp = s.mirror_perm == np.arange(len(s))
    unpaired = selfp & ~template_mirror(template).midline[s.ids]
    return {
        "name": s.name,
        "count": len(s),
        "sha256": s.sha256(),
        "has_kpt68": s.kpt68 is not None,
        "coverage": _stats(dist),
        "spacing_geodesic_nn": _stats(geodesic_nn(template, s.ids)),
        "spacing_3d_nn": _stats(nn3),
        "spacing_uv_nn": _stats(uv_nn(template, s.ids)),
        "rim_points": int(rim_points(template, s.ids).sum()),
        "regions": region_counts(template, s.ids),
        "symmetry": {
            "exact": bool(s.mirror_exact),
            "exact_fraction": float((r == 0).mean()),
            "self_paired": int(selfp.sum()),
            "unpaired": int(unpaired.sum()),  # self-paired off the midline: no partner in the set
            "residual": _stats(r),
            "residual_paired": _stats(r[~unpaired]) if (~unpaired).any() else None,
        },
    }


def compare_sets(template: FaceTemplate, a: LandmarkSet, b: LandmarkSet) -> dict:
    """Report dict: each set's stats, cross distances (a's points to b's nearest and back),
    overlap, UV matching (:func:`matching`)."""
    da, _ = voronoi(template, a.ids)
    db, _ = voronoi(template, b.ids)
    step = float(np.median(edge_graph(template).data))
    a_to_b, b_to_a = db[a.ids], da[b.ids]
    return {
        "template": {
            "sha256": template.sha256(),
            "n_vertices": template.n_vertices,
            "grid_step": step,
        },
        "definitions": {
            "rim_px": RIM_PX,
            "region_radius": REGION_RADIUS,
            "regions": "nearest keypoint group (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67) "
            "within region_radius x the UV outer-eye-corner distance; farther: forehead above the brow line, "
            "else cheeks",
        },
        "a": set_stats(template, a),
        "b": set_stats(template, b),
        "a_to_b": _stats(a_to_b),
        "b_to_a": _stats(b_to_a),
        "overlap": {
            "same_ids": int(np.isin(a.ids, b.ids).sum()),
            "a_within_2_steps_of_b": int((a_to_b <= 2 * step).sum()),
            "b_within_2_steps_of_a": int((b_to_a <= 2 * step).sum()),
        },
        "matching": matching(template, a.ids, b.ids),
    }


def report_markdown(rep: dict) -> str:
    """The comparison report as a Markdown document."""
    a, b, m = rep["a"], rep["b"], rep["matching"]
    rim_px = rep["definitions"]["rim_px"]

    def row(label: str, x: dict, y: dict) -> str:
        f = "{mean:.2f} / {median:.2f} / {p95:.2f} / {max:.2f}"
        return f"| {label} | {f.format(**x)} | {f.format(**y)} |"

    lines = [
        f"# Landmark sets: `{a['name']}` (A) vs `{b['name']}` (B)",
        "",
        f"Template: {rep['template']['n_vertices']} vertices, sha256 `{rep['template']['sha256'][:16]}`, "
        f"grid step {rep['template']['grid_step']:.3f} units. Distances in template units, "
        "geodesic along mesh edges unless marked 3D; stats are mean / median / 95% / max.",
        "",
        "| | A | B |",
        "|---|---|---|",
        f"| points | {a['count']} | {b['count']} |",
        f"| 68 keypoints | {a['has_kpt68']} | {b['has_kpt68']} |",
        row("coverage: vertex to nearest landmark", a["coverage"], b["coverage"]),
        row(
            "spacing: geodesic nearest neighbour",
            a["spacing_geodesic_nn"],
            b["spacing_geodesic_nn"],
        ),
        row("spacing: 3D nearest neighbour", a["spacing_3d_nn"], b["spacing_3d_nn"]),
        row("spacing: UV nearest neighbour (px)", a["spacing_uv_nn"], b["spacing_uv_nn"]),
        f"| rim points (within {rim_px:g} UV px of the face-mask boundary) | {a['rim_points']} | {b['rim_points']} |",
        *[f"| region: {r} | {a['regions'][r]} | {b['regions'][r]} |" for r in REGIONS],
        f"| mirror exact | {a['symmetry']['exact']} | {b['symmetry']['exact']} |",
        f"| exact mirror pairs (fraction) | {a['symmetry']['exact_fraction']:.3f} | {b['symmetry']['exact_fraction']:.3f} |",
        f"| self-paired points | {a['symmetry']['self_paired']} | {b['symmetry']['self_paired']} |",
        f"| unpaired (self-paired off the midline) | {a['symmetry']['unpaired']} | {b['symmetry']['unpaired']} |",
        row("mirror residual (3D)", a["symmetry"]["residual"], b["symmetry"]["residual"]),
        row(
            "mirror residual, paired points",
            a["symmetry"]["residual_paired"],
            b["symmetry"]["residual_paired"],
        ),
        "",
        "Cross distances (geodesic): "
        + "A to nearest B {mean:.2f} / {median:.2f} / {p95:.2f} / {max:.2f}".format(**rep["a_to_b"])
        + "; B to nearest A {mean:.2f} / {median:.2f} / {p95:.2f} / {max:.2f}.".format(
            **rep["b_to_a"]
        ),
        "",
        f"Overlap: {rep['overlap']['same_ids']} identical ids; {rep['overlap']['a_within_2_steps_of_b']} of A "
        f"within 2 grid steps of B; {rep['overlap']['b_within_2_steps_of_a']} of B within 2 steps of A.",
        "",
        "Matching (UV px): share of one set's points with a point of the other within a set's median "
        "UV nearest-neighbour spacing.",
        "",
        f"| points | within A's spacing ({m['spacing_a']:.2f} px) | within B's spacing ({m['spacing_b']:.2f} px) "
        "| median | max |",
        "|---|---|---|---|---|",
        *[
            f"| {lab} | {x['within_spacing_a']:.1%} | {x['within_spacing_b']:.1%} | {x['median']:.2f} | {x['max']:.2f} |"
            for lab, x in (
                ("A's points near B", m["a_near_b"]),
                ("B's points near A", m["b_near_a"]),
            )
        ],
        "",
        f"Regions: {rep['definitions']['regions']} (region_radius {rep['definitions']['region_radius']:g}).",
        "",
    ]
    return "\n".join(lines)


def plot_sets(template: FaceTemplate, sets: list[LandmarkSet], path, title: str = "") -> None:
    """PNG: the sets on the template, UV view (v down) and frontal view (x, y) side by side.

    Marked: the face-mask boundary (dark dots), the 68 keypoints (open circles), rim points
    (black squares); with two sets, each set's points without a point of the other within
    its own median UV spacing (large open circles). Below: each set's figures (count, rim
    points, matching share, regions).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from densemark.core.atomic import atomic_path
    from densemark.sampling.regions import rim_distance

    uv, xy = template.pixel_uv, template.vertices[:, :2]
    styles = [
        dict(c="tab:blue", marker="o", s=9),
        dict(c="tab:red", marker="x", s=12),
        dict(c="tab:green", marker="+", s=14),
    ]
    edge = rim_distance(template) <= 1.0
    rim = [rim_points(template, s.ids) for s in sets]
    far: list[np.ndarray | None] = [None] * len(sets)
    share: list[float | None] = [None] * len(sets)
    if len(sets) == 2:
        m = matching(template, sets[0].ids, sets[1].ids)
        for i, (key, sp) in enumerate((("a_near_b", m["spacing_a"]), ("b_near_a", m["spacing_b"]))):
            own, other = uv[sets[i].ids].astype(np.float64), uv[sets[1 - i].ids].astype(np.float64)
            far[i] = cKDTree(other).query(own)[0] > sp + 1e-9
            share[i] = m[key]["within_spacing_a" if i == 0 else "within_spacing_b"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 7.4))
    for ax, base, flip, lab in (
        (axes[0], uv, True, "UV (u, v)"),
        (axes[1], xy, False, "frontal (x, y)"),
    ):
        ax.scatter(base[::7, 0], base[::7, 1], s=0.3, c="0.85", rasterized=True)
        ax.scatter(base[edge, 0], base[edge, 1], s=0.4, c="0.45", rasterized=True)
        for i, (s, st) in enumerate(zip(sets, styles, strict=False)):
            p = base[s.ids]
            ax.scatter(p[:, 0], p[:, 1], label=f"{s.name} ({len(s)})", linewidths=0.8, **st)
            if s.kpt68 is not None:
                k = base[s.kpt68_ids]
                ax.scatter(
                    k[:, 0], k[:, 1], s=30, facecolors="none", edgecolors=st["c"], linewidths=0.6
                )
            if rim[i].any():
                ax.scatter(
                    p[rim[i], 0],
                    p[rim[i], 1],
                    s=40,
                    marker="s",
                    facecolors="none",
                    edgecolors="k",
                    linewidths=0.7,
                )
            if far[i] is not None and far[i].any():
                ax.scatter(
                    p[far[i], 0],
                    p[far[i], 1],
                    s=110,
                    facecolors="none",
                    edgecolors=st["c"],
                    linewidths=0.9,
                )
        ax.set_aspect("equal")
        if flip:
            ax.invert_yaxis()
        ax.set_title(lab)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(loc="lower left", fontsize=8)
    lines = []
    for i, s in enumerate(sets):
        rc = region_counts(template, s.ids)
        near = (
            ""
            if share[i] is None
            else f"; {share[i]:.1%} have a point of the other set within their median UV spacing"
        )
        lines.append(
            f"{s.name}: {len(s)} points, {int(rim[i].sum())} rim points (squares, within {RIM_PX:g} UV px of the mask "
            f"boundary){near}\n    " + ", ".join(f"{r} {rc[r]}" for r in REGIONS)
        )
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=8, family="monospace", va="bottom")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * len(sets), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)

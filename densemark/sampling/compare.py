"""Compare two landmark sets on the template: coverage, spacing, symmetry, overlap; plot.

Distances are in template units, geodesic along the template mesh edges (Dijkstra), which
overestimates true surface geodesics by a few percent (grid paths) but the same for both sets.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from densemark.faces.template import FaceTemplate
from densemark.sampling.fps import edge_graph
from densemark.sampling.landmark_set import LandmarkSet
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
    dist, _, src = dijkstra(edge_graph(template), directed=False, indices=ids, min_only=True, return_predecessors=True)
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
    """Report dict: each set's stats, cross distances (a's points to b's nearest and back), overlap."""
    da, _ = voronoi(template, a.ids)
    db, _ = voronoi(template, b.ids)
    step = float(np.median(edge_graph(template).data))
    a_to_b, b_to_a = db[a.ids], da[b.ids]
    return {
        "template": {"sha256": template.sha256(), "n_vertices": template.n_vertices, "grid_step": step},
        "a": set_stats(template, a),
        "b": set_stats(template, b),
        "a_to_b": _stats(a_to_b),
        "b_to_a": _stats(b_to_a),
        "overlap": {
            "same_ids": int(np.isin(a.ids, b.ids).sum()),
            "a_within_2_steps_of_b": int((a_to_b <= 2 * step).sum()),
            "b_within_2_steps_of_a": int((b_to_a <= 2 * step).sum()),
        },
    }


def report_markdown(rep: dict) -> str:
    """The comparison report as a Markdown document."""
    a, b = rep["a"], rep["b"]

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
        row("spacing: geodesic nearest neighbour", a["spacing_geodesic_nn"], b["spacing_geodesic_nn"]),
        row("spacing: 3D nearest neighbour", a["spacing_3d_nn"], b["spacing_3d_nn"]),
        f"| mirror exact | {a['symmetry']['exact']} | {b['symmetry']['exact']} |",
        f"| exact mirror pairs (fraction) | {a['symmetry']['exact_fraction']:.3f} | {b['symmetry']['exact_fraction']:.3f} |",
        f"| self-paired points | {a['symmetry']['self_paired']} | {b['symmetry']['self_paired']} |",
        f"| unpaired (self-paired off the midline) | {a['symmetry']['unpaired']} | {b['symmetry']['unpaired']} |",
        row("mirror residual (3D)", a["symmetry"]["residual"], b["symmetry"]["residual"]),
        row("mirror residual, paired points", a["symmetry"]["residual_paired"], b["symmetry"]["residual_paired"]),
        "",
        "Cross distances (geodesic): " + "A to nearest B {mean:.2f} / {median:.2f} / {p95:.2f} / {max:.2f}".format(**rep["a_to_b"])
        + "; B to nearest A {mean:.2f} / {median:.2f} / {p95:.2f} / {max:.2f}.".format(**rep["b_to_a"]),
        "",
        f"Overlap: {rep['overlap']['same_ids']} identical ids; {rep['overlap']['a_within_2_steps_of_b']} of A "
        f"within 2 grid steps of B; {rep['overlap']['b_within_2_steps_of_a']} of B within 2 steps of A.",
        "",
    ]
    return "\n".join(lines)


def plot_sets(template: FaceTemplate, sets: list[LandmarkSet], path, title: str = "") -> None:
    """PNG: the sets on the template, UV view (v down) and frontal view (x, y) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from densemark.core.atomic import atomic_path

    uv, xy = template.pixel_uv, template.vertices[:, :2]
    styles = [dict(c="tab:blue", marker="o", s=9), dict(c="tab:red", marker="x", s=12), dict(c="tab:green", marker="+", s=14)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.2))
    for ax, base, flip, lab in ((axes[0], uv, True, "UV (u, v)"), (axes[1], xy, False, "frontal (x, y)")):
        ax.scatter(base[::7, 0], base[::7, 1], s=0.3, c="0.85", rasterized=True)
        for s, st in zip(sets, styles, strict=False):
            p = base[s.ids]
            ax.scatter(p[:, 0], p[:, 1], label=f"{s.name} ({len(s)})", linewidths=0.8, **st)
            if s.kpt68 is not None:
                k = base[s.kpt68_ids]
                ax.scatter(k[:, 0], k[:, 1], s=30, facecolors="none", edgecolors=st["c"], linewidths=0.6)
        ax.set_aspect("equal")
        if flip:
            ax.invert_yaxis()
        ax.set_title(lab)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)

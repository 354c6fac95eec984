"""The card's figures (PNG, byte-stable: no timestamps or software versions in the metadata)."""

from __future__ import annotations

import os

import numpy as np

SPLIT_COLORS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike, dpi: int) -> None:
    from densemark.core.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(
            tmp,
            format="png",
            dpi=dpi,
            bbox_inches="tight",
            pad_inches=0.15,
            metadata={"Software": None},
        )
    _plt().close(fig)


def yaw_edges(bin_deg: float) -> np.ndarray:
    """Bin edges over [-90, 90] degrees, ``bin_deg`` wide (the last bin may be narrower)."""
    e = np.arange(-90.0, 90.0, bin_deg)
    return np.append(e, 90.0)


def pose_figure(
    pose: np.ndarray, split: np.ndarray, bin_deg: float, path: str | os.PathLike, dpi: int = 100
) -> dict:
    """Pose histograms: rows per yaw bin stacked by split, and pitch and roll.

    Args:
        pose: (N, 3) float pitch, yaw, roll in degrees.
        split: (N,) split names.

    Returns:
        ``{"yaw_edges": [...], "yaw_counts": {split: [...]}}`` (yaw beyond +-90 falls in the end bins).
    """
    plt = _plt()
    edges = yaw_edges(bin_deg)
    yaw = np.clip(pose[:, 1], -90, 90)
    splits = [s for s in SPLIT_COLORS if s in set(split)] + sorted(set(split) - set(SPLIT_COLORS))
    counts = {s: np.histogram(yaw[split == s], edges)[0] for s in splits}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [2, 1, 1]})
    left = edges[:-1]
    bottom = np.zeros(len(left))
    for s in splits:
        axes[0].bar(left, counts[s], width=np.diff(edges), bottom=bottom, align="edge", color=SPLIT_COLORS.get(s, "0.5"),
                    edgecolor="white", label=f"{s} ({int(counts[s].sum())})")  # fmt: skip
        bottom += counts[s]
    axes[0].set_xticks(edges[:: max(1, len(edges) // 7)])
    axes[0].set_xlabel("yaw (degrees)")
    axes[0].set_ylabel("rows")
    axes[0].yaxis.get_major_locator().set_params(integer=True)
    axes[0].set_title("rows per yaw bin, by split")
    axes[0].legend(fontsize=8)
    for ax, i, name in ((axes[1], 0, "pitch"), (axes[2], 2, "roll")):
        ax.hist(pose[:, i], bins=24, range=(-45, 45), color="0.45")
        ax.set_xlabel(f"{name} (degrees)")
        ax.set_title(name)
        ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    _save(fig, path, dpi)
    return {"yaw_edges": edges.tolist(), "yaw_counts": {s: c.tolist() for s, c in counts.items()}}


def layout_figure(vertices: np.ndarray, uv: np.ndarray, ids: np.ndarray, kpt_ids: np.ndarray | None, title: str,
                  path: str | os.PathLike, dpi: int = 100) -> None:  # fmt: skip
    """The landmark set on the template: frontal view (x, y) and UV view (v down).

    Args:
        vertices: (V, 3) template vertices; uv: (V, 2) their UV pixels.
        ids: (K,) landmark vertex ids; kpt_ids: (68,) keypoint vertex ids or None.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
    z = vertices[ids, 2]
    for ax, base, flip, lab in (
        (axes[0], vertices[:, :2], False, "frontal (x, y)"),
        (axes[1], uv, True, "UV (u, v)"),
    ):
        step = max(1, len(base) // 15000)
        ax.scatter(base[::step, 0], base[::step, 1], s=0.4, c="0.86", rasterized=True)
        sc = ax.scatter(base[ids, 0], base[ids, 1], s=7, c=z, cmap="viridis", linewidths=0)
        if kpt_ids is not None:
            k = base[kpt_ids]
            ax.scatter(k[:, 0], k[:, 1], s=34, facecolors="none", edgecolors="tab:red", linewidths=0.8,
                       label="68 keypoints")  # fmt: skip
        ax.set_aspect("equal")
        if flip:
            ax.invert_yaxis()
        ax.set_title(lab)
        ax.set_xticks([])
        ax.set_yticks([])
    if kpt_ids is not None:
        axes[0].legend(loc="lower left", fontsize=8)
    fig.colorbar(sc, ax=axes, shrink=0.6, label="template depth z (landmarks)")
    fig.suptitle(title)
    _save(fig, path, dpi)


def samples_figure(samples: list[dict], cols: int, path: str | os.PathLike, dpi: int = 100) -> None:
    """A grid of crops with their landmarks (dots) and 68 keypoints (red).

    Args:
        samples: dicts with ``image`` (H, W, 3) uint8 RGB, ``landmarks`` (K, 3), ``kpt68``
            (68, 3) or None, and ``label`` (caption).
    """
    plt = _plt()
    rows = (len(samples) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.25 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, s in zip(axes.ravel(), samples, strict=False):
        h, w = s["image"].shape[:2]
        ax.imshow(s["image"], interpolation="nearest")
        lm = s["landmarks"]
        ax.scatter(lm[:, 0], lm[:, 1], s=3, c="#00E5FF", linewidths=0)
        if s.get("kpt68") is not None:
            ax.scatter(s["kpt68"][:, 0], s["kpt68"][:, 1], s=6, c="#FF3030", linewidths=0)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_title(s["label"], fontsize=7.5)
    fig.tight_layout()
    _save(fig, path, dpi)

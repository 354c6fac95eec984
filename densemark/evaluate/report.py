"""Evaluation outputs: the DVC metrics (a handful of numbers), the full report, a Markdown
results table beside published rows, and cumulative error distribution (CED) curves.

All numbers written here are NMEs in percent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from densemark.core.atomic import atomic_path, write_text
from densemark.evaluate import protocol as pr
from densemark.evaluate.score import AFLW2000Score, DenseScore

# AFLW2000-3D, 68 points, 2D NME (%) by yaw bin: [0, 30], (30, 60], (60, 90], mean of bins.
PUBLISHED: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("3DDFA-V2 (Guo et al. 2020)", (2.63, 3.42, 4.48, 3.51)),
    ("PRNet (Feng et al. 2018)", (2.75, 3.51, 4.61, 3.62)),
    ("Basak et al. 2023 (the paper)", (2.86, 3.68, 4.76, 3.77)),
)


def _pct(x: float | None) -> float | None:
    return None if x is None else round(100.0 * x, 4)


def metrics(aflw: AFLW2000Score | None, dense: DenseScore | None) -> dict[str, object]:
    """The numbers users compare (percent; None where undefined, e.g. an empty yaw bin)."""
    out: dict[str, object] = {}
    if aflw is not None:
        s = aflw.summaries()
        m68 = s["nme68"]
        a: dict[str, object] = {f"nme68_{k}": _pct(m68["bins"][k]["mean"]) for k in pr.BIN_KEYS}
        a["nme68_mean"] = _pct(m68["mean"])
        a["nme68_image_mean"] = _pct(m68["image_mean"])
        if "nme21" in s:
            a["nme21_mean"] = _pct(s["nme21"]["mean"])
            a["nme21_image_mean"] = _pct(s["nme21"]["image_mean"])
        a["n_images"] = m68["n"]
        out["aflw2000"] = a
    if dense is not None:
        s = dense.summaries()
        out["dense"] = {"nme2d": _pct(s["nme2d"]["image_mean"]), "nme3d": _pct(s["nme3d"]["image_mean"]),
                        "n_rows": s["nme2d"]["n"]}  # fmt: skip
    return out


def _pct_tree(d: object) -> object:
    """Summaries with every ``mean``/``std``/``image_mean`` in percent."""
    if isinstance(d, dict):
        return {
            k: (_pct(v) if k in ("mean", "std", "image_mean") else _pct_tree(v))
            for k, v in d.items()
        }
    return d


def full_report(
    aflw: AFLW2000Score | None, dense: DenseScore | None, info: dict[str, object]
) -> dict[str, object]:
    """Everything: conventions, inputs (``info``), summaries per metric and bin, per-image rows."""
    rep: dict[str, object] = {
        "units": "NME in percent of sqrt(w * h) of the ground-truth 68-point box",
        "protocol": {
            "bins": list(pr.BIN_LABELS),
            "bin_rule": "|yaw| <= 30, 30 < |yaw| <= 60, |yaw| > 60 (3DDFA benchmark_aflw2000.py)",
            "mean": "mean of the three bin means (image_mean: mean over images)",
            "aflw21": "68 -> 21 by 3DDFA's ind_68to21 (benchmark_aflw.py); unseen (-1) points skipped",
            "nme3d": "x, y, z after subtracting each image's mean z from prediction and ground truth",
        },
        **info,
    }
    if aflw is not None:
        rep["aflw2000"] = {
            "summary": _pct_tree(aflw.summaries()),
            "images": [
                {k: (_pct(v) if k.startswith("nme") else v) for k, v in r.items()}
                for r in aflw.per_image()
            ],
            "unscored_predictions": list(aflw.unscored),
        }
    if dense is not None:
        rep["dense"] = {
            "summary": _pct_tree(dense.summaries()),
            "rows": [{"id": i, "yaw": float(y), "nme2d": _pct(float(a)), "nme3d": _pct(float(b))}
                     for i, y, a, b in zip(dense.ids.tolist(), dense.yaw, dense.nme2d, dense.nme3d, strict=True)],
        }  # fmt: skip
    return rep


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def markdown_table(aflw: AFLW2000Score | None, dense: DenseScore | None, method: str) -> str:
    """Results table (AFLW2000-3D, 68 points, 2D NME %) beside the published rows, plus notes."""
    lines = ["## AFLW2000-3D, 68 points, 2D NME (%)", "",
             "| method | [0, 30] | (30, 60] | (60, 90] | mean |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, row in PUBLISHED:
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    if aflw is not None:
        s = _pct_tree(aflw.summaries())
        m = s["nme68"]
        cells = [m["bins"][k]["mean"] for k in pr.BIN_KEYS] + [m["mean"]]
        lines.append(f"| **{method}** | " + " | ".join(_fmt(v) for v in cells) + " |")
        counts = ", ".join(f"{m['bins'][k]['label']}: {m['bins'][k]['n']}" for k in pr.BIN_KEYS)
        lines += ["", f"Published rows: all 2,000 images. This run: {m['n']} images ({counts}).", "",
                  "| metric | [0, 30] | (30, 60] | (60, 90] | mean of bins | mean over images |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for key, label in (
            ("nme68", "68 points, 2D"),
            ("nme21", "AFLW 21 points, 2D"),
            ("nme3d", "68 points, 3D"),
        ):
            if key in s:
                v = s[key]
                cells = [v["bins"][k]["mean"] for k in pr.BIN_KEYS] + [v["mean"], v["image_mean"]]
                lines.append(f"| {label} | " + " | ".join(_fmt(c) for c in cells) + " |")
    if dense is not None:
        s = _pct_tree(dense.summaries())
        lines += ["", "## Dense NME on the held-out split (%)", "",
                  "| rows | 2D | 3D |", "|---:|---:|---:|",
                  f"| {s['nme2d']['n']} | {_fmt(s['nme2d']['image_mean'])} | {_fmt(s['nme3d']['image_mean'])} |"]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_ced(
    path: str | os.PathLike, curves: dict[str, np.ndarray], x_max_pct: float = 10.0
) -> Path:
    """Write CED curves (fraction of images with NME <= x) as a PNG with stable bytes.

    Args:
        curves: label -> (N,) per-image NMEs (fractions); empty/NaN-only curves are skipped.
        x_max_pct: x range in percent.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.linspace(0.0, x_max_pct, 401)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    try:
        for label, vals in curves.items():
            v = np.asarray(vals, np.float64)
            n = int(np.isfinite(v).sum())
            if n:
                ax.plot(t, 100 * pr.ced(100 * v, t), label=f"{label} (n={n})")
        ax.set_xlim(0, x_max_pct)
        ax.set_ylim(0, 100)
        ax.set_xlabel("NME (%)")
        ax.set_ylabel("images (%)")
        ax.set_title("Cumulative error distribution")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(loc="lower right", fontsize=8)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return Path(path)


def write_markdown(path: str | os.PathLike, text: str) -> Path:
    return write_text(path, text)

"""Scores: predictions against AFLW2000-3D's ground truth, and dense predictions against the
held-out shards' labels, by the protocol of :mod:`densemark.evaluate.protocol`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densemark.core.errors import InputError
from densemark.evaluate import protocol as pr
from densemark.evaluate.groundtruth import AFLW2000Truth
from densemark.evaluate.predictions import Predictions


@dataclass(frozen=True, eq=False)
class AFLW2000Score:
    """Per-image NMEs (fractions) of N images and their protocol summaries.

    Attributes:
        names: (N,) str; yaw: (N,) degrees; bins: (N,) int yaw bin.
        nme68: (N,) 2D NME over the 68 points.
        nme21: (N,) 2D NME over AFLW's visible 21 points (NaN: none visible), or None.
        nme3d: (N,) 3D NME over the 68 points, or None (no depth in prediction or ground truth).
        unscored: prediction names without ground truth (ignored).
    """

    names: np.ndarray
    yaw: np.ndarray
    bins: np.ndarray
    nme68: np.ndarray
    nme21: np.ndarray | None
    nme3d: np.ndarray | None
    unscored: tuple[str, ...] = ()

    def summaries(self) -> dict[str, dict]:
        """``{"nme68": summary, "nme21": ..., "nme3d": ...}`` (:func:`protocol.summarise`)."""
        out = {"nme68": pr.summarise(self.nme68, self.yaw)}
        if self.nme21 is not None:
            out["nme21"] = pr.summarise(self.nme21, self.yaw)
        if self.nme3d is not None:
            out["nme3d"] = pr.summarise(self.nme3d, self.yaw)
        return out

    def per_image(self) -> list[dict[str, object]]:
        rows = []
        for i, n in enumerate(self.names.tolist()):
            r = {
                "name": n,
                "yaw": float(self.yaw[i]),
                "bin": pr.BIN_LABELS[int(self.bins[i])],
                "nme68": float(self.nme68[i]),
            }
            for k in ("nme21", "nme3d"):
                a = getattr(self, k)
                if a is not None:
                    r[k] = float(a[i]) if np.isfinite(a[i]) else None
            rows.append(r)
        return rows


def score_aflw2000(pred: Predictions, truth: AFLW2000Truth) -> AFLW2000Score:
    """Score predictions of every ground-truth image (3DDFA's AFLW2000-3D protocol).

    Prediction pixels are moved into the ground truth's origin (0- or 1-based) first.

    Raises:
        InputError: naming the predictions file and ``names`` when images lack a prediction.
    """
    have = set(pred.names.tolist())
    missing = [n for n in truth.names.tolist() if n not in have]
    if missing:
        raise InputError(pred.path, "names", f"no prediction for {len(missing)} of {len(truth)} ground-truth images "
                         f"(e.g. {', '.join(missing[:5])})")  # fmt: skip
    known = set(truth.names.tolist())
    unscored = tuple(n for n in pred.names.tolist() if n not in known)
    row = {n: i for i, n in enumerate(pred.names.tolist())}
    pts = pred.shifted_to(truth.one_based)[[row[n] for n in truth.names.tolist()]]
    gt = truth.pts68
    norm = pr.box_size(gt)
    nme68 = pr.nme(pts[..., :2], gt[..., :2], norm)
    nme21 = None
    if truth.pts21 is not None:
        nme21 = pr.nme(
            pr.pts68_to_aflw21(pts[..., :2]), truth.pts21, norm, pr.aflw21_visible(truth.pts21)
        )
    nme3d = pr.nme_3d(pts, gt, norm) if pts.shape[-1] == 3 and truth.has_depth else None
    return AFLW2000Score(
        truth.names, truth.yaw, pr.yaw_bin(truth.yaw), nme68, nme21, nme3d, unscored
    )


@dataclass(frozen=True, eq=False)
class DenseScore:
    """Per-row dense NMEs (fractions) over all K points.

    Attributes:
        ids: (N,) str row ids; yaw: (N,) degrees.
        nme2d, nme3d: (N,) NME over the K points in 2D and in 3D (mean z aligned).
    """

    ids: np.ndarray
    yaw: np.ndarray
    nme2d: np.ndarray
    nme3d: np.ndarray

    def summaries(self) -> dict[str, dict]:
        return {
            "nme2d": pr.summarise(self.nme2d, self.yaw),
            "nme3d": pr.summarise(self.nme3d, self.yaw),
        }


def score_dense(
    ids, pred: np.ndarray, gt: np.ndarray, kpt68: np.ndarray, yaw: np.ndarray
) -> DenseScore:
    """Dense NME of (N, K, 3) predictions against (N, K, 3) labels, each row normalised by
    ``sqrt(w * h)`` of its ground-truth 68-point box ``kpt68: (N, 68, >=2)``."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(
            f"dense predictions {pred.shape} and labels {gt.shape} must both be (N, K, 3)"
        )
    norm = pr.box_size(kpt68)
    return DenseScore(np.asarray(ids, str), np.asarray(yaw, np.float64), pr.nme(pred[..., :2], gt[..., :2], norm),
                      pr.nme_3d(pred, gt, norm))  # fmt: skip

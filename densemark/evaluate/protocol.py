"""The AFLW2000-3D protocol of 3DDFA's benchmark, as array functions.

Conventions (3DDFA, ``benchmark_aflw2000.py`` / ``benchmark_aflw.py`` of cleardusk/3DDFA):

* NME of one image = mean over points of the 2D point-to-point distance, divided by
  ``sqrt(w * h)`` of the ground-truth 68-point box (``w``, ``h`` = x and y extent of the
  ground-truth 68 points, the same box for the 21-point and dense scores).
* Yaw bins by ``|yaw|`` in degrees (3DDFA reads yaw from ``AFLW2000-3D.pose.npy``, which
  equals ``degrees(Pose_Para[1])`` of each ``.mat``): ``[0, 30]``, ``(30, 60]``, ``(60, inf)``
  (the last bin is called ``(60, 90]``; 3DDFA puts every ``|yaw| > 60`` there).
* The reported mean is the mean of the three bin means (what papers report); the mean over
  images is given beside it.
* AFLW's 21 points from 68: 3DDFA's ``ind_68to21`` rule (:data:`AFLW21_FROM_68`), each of the
  21 points is one 68-scheme point or the mean of several (eye centres: the six eye points;
  mouth centre: the eight inner-lip points); ground-truth points with a coordinate equal to
  -1 are unseen and not scored (AFLW2000-3D stores ``(-1, h + 2)`` there).
* 3D NME: x, y, z distances after subtracting each image's mean z (over the scored points)
  from prediction and ground truth alike, normalised by the same 2D box.

All NMEs here are fractions; reports print them in percent.
"""

from __future__ import annotations

import numpy as np

BIN_EDGES = (30.0, 60.0)
BIN_LABELS = ("[0, 30]", "(30, 60]", "(60, 90]")
BIN_KEYS = ("0_30", "30_60", "60_90")

# 0-based 68-scheme points behind each of AFLW's 21 points (AFLW order: brows r/l outer..inner,
# eyes, ears, nose wings and tip, mouth corners and centre, chin), after 3DDFA's benchmark_aflw.py.
AFLW21_FROM_68: tuple[tuple[int, ...], ...] = (
    (17,), (19,), (21,), (22,), (24,), (26,),
    (36,), (36, 37, 38, 39, 40, 41), (39,), (42,), (42, 43, 44, 45, 46, 47), (45,),
    (2,), (31,), (30,), (35,), (14,),
    (48,), (60, 61, 62, 63, 64, 65, 66, 67), (54,), (8,),
)  # fmt: skip


def aflw21_matrix() -> np.ndarray:
    """(21, 68) float64 averaging matrix ``M``: 21 points = ``M @ pts68``."""
    m = np.zeros((21, 68))
    for i, ids in enumerate(AFLW21_FROM_68):
        m[i, list(ids)] = 1.0 / len(ids)
    return m


def pts68_to_aflw21(pts68: np.ndarray) -> np.ndarray:
    """AFLW's 21 points from 68-scheme points: (N, 68, D) -> (N, 21, D)."""
    return np.einsum("kj,njd->nkd", aflw21_matrix(), np.asarray(pts68, np.float64))


def box_size(gt68: np.ndarray) -> np.ndarray:
    """(N,) ``sqrt(w * h)`` of the ground-truth 68-point boxes; ``gt68: (N, 68, >=2)``."""
    g = np.asarray(gt68, np.float64)[..., :2]
    ext = g.max(axis=1) - g.min(axis=1)
    return np.sqrt(ext[:, 0] * ext[:, 1])


def nme(
    pred: np.ndarray, gt: np.ndarray, norm: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """(N,) per-image NME: mean point distance / ``norm``.

    Args:
        pred, gt: (N, P, D) points (D = 2 for 2D, 3 for 3D), same frame.
        norm: (N,) normaliser (:func:`box_size`).
        mask: (N, P) bool, points to score; an image with none scores NaN.
    """
    d = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)
    if mask is None:
        mean = d.mean(axis=1)
    else:
        m = np.asarray(mask, bool)
        cnt = m.sum(axis=1)
        mean = np.where(cnt > 0, (d * m).sum(axis=1) / np.maximum(cnt, 1), np.nan)
    return mean / np.asarray(norm, np.float64)


def align_z(pts: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(N, P, 3) points with each image's mean z (over ``mask``ed points) subtracted."""
    p = np.array(pts, np.float64)
    if mask is None:
        p[..., 2] -= p[..., 2].mean(axis=1, keepdims=True)
    else:
        m = np.asarray(mask, bool)
        p[..., 2] -= ((p[..., 2] * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1))[:, None]
    return p


def nme_3d(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """(N,) 3D NME of (N, P, 3) points after aligning each image's mean z."""
    return nme(align_z(pred), align_z(gt), norm)


def aflw21_visible(gt21: np.ndarray) -> np.ndarray:
    """(N, 21) bool: AFLW points annotated (3DDFA: neither coordinate equals -1)."""
    g = np.asarray(gt21)
    return (g[..., 0] != -1) & (g[..., 1] != -1)


def yaw_bin(yaw_deg: np.ndarray) -> np.ndarray:
    """(N,) int bin of each yaw: 0 for ``|yaw| <= 30``, 1 for ``30 < |yaw| <= 60``, 2 above."""
    a = np.abs(np.asarray(yaw_deg, np.float64))
    return np.where(a <= BIN_EDGES[0], 0, np.where(a <= BIN_EDGES[1], 1, 2))


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _std(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.std()) if x.size else None


def summarise(per_image: np.ndarray, yaw_deg: np.ndarray) -> dict[str, object]:
    """Bin means, their mean and the mean over images of per-image NMEs (fractions).

    NaN entries (no scorable point) are left out. A bin without images has mean None, and then
    the mean of bin means is None as well (undefined), never a mean over fewer bins.

    Returns:
        ``{"bins": {key: {"label", "n", "mean", "std"}}, "mean": bin-mean average,
        "image_mean": mean over images, "n": images scored}``.
    """
    x = np.asarray(per_image, np.float64)
    b = yaw_bin(yaw_deg)
    bins = {}
    for k, (key, label) in enumerate(zip(BIN_KEYS, BIN_LABELS, strict=True)):
        sel = x[(b == k) & np.isfinite(x)]
        bins[key] = {"label": label, "n": int(sel.size), "mean": _mean(sel), "std": _std(sel)}
    means = [v["mean"] for v in bins.values()]
    return {
        "bins": bins,
        "mean": None if any(m is None for m in means) else float(np.mean(means)),
        "image_mean": _mean(x),
        "n": int(np.isfinite(x).sum()),
    }


def ced(per_image: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Cumulative error distribution: (T,) fraction of finite ``per_image`` values ``<= t``."""
    x = np.sort(np.asarray(per_image, np.float64)[np.isfinite(per_image)])
    if x.size == 0:
        return np.zeros(len(thresholds))
    return np.searchsorted(x, np.asarray(thresholds, np.float64), side="right") / x.size

"""Where landmarks sit on the face template: distance to the rim, and face regions.

Both are measured in UV pixels (the sampler's default space).

* **Rim distance** of a template vertex: Euclidean UV distance from its pixel to the nearest
  pixel off the face mask (the map border counts as off-face), so a boundary pixel has 1.
  A *rim point* is a landmark with rim distance ``<= RIM_PX`` (2): within 2 UV pixels of the
  face-mask boundary, where landmarks are least reliable (occluded, outside the face at large yaw).
* **Region** of a landmark, from the 68 keypoints (groups of the 300-W scheme: jaw 0-16,
  brows 17-26, nose 27-35, eyes 36-47, mouth 48-67): a landmark within
  ``REGION_RADIUS`` x the outer-eye-corner distance (keypoints 36, 45) of its UV-nearest
  keypoint takes that keypoint's group; a landmark farther from every keypoint is *forehead*
  when it lies above the brow line (the brow keypoints' v, interpolated linearly in u, held
  constant beyond the outer brow ends), else *cheeks* (the open areas between eyes, nose,
  mouth and jaw, temples included).
"""

from __future__ import annotations

import weakref

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from densemark.faces.template import FaceTemplate

RIM_PX = 2.0
REGION_RADIUS = 0.15
KPT_GROUPS: dict[str, range] = {
    "jaw": range(0, 17),
    "brows": range(17, 27),
    "nose": range(27, 36),
    "eyes": range(36, 48),
    "mouth": range(48, 68),
}
REGIONS = ("brows", "eyes", "nose", "mouth", "jaw", "forehead", "cheeks")
_RIM: weakref.WeakKeyDictionary[FaceTemplate, np.ndarray] = weakref.WeakKeyDictionary()


def rim_distance(template: FaceTemplate) -> np.ndarray:
    """(V,) float64 UV distance of each template vertex's pixel to the nearest off-face pixel (cached)."""
    d = _RIM.get(template)
    if d is None:
        mask = np.pad(template.id_map >= 0, 1)  # the map border counts as off-face
        edt = ndimage.distance_transform_edt(mask)[1:-1, 1:-1]
        u, v = template.pixel_uv.T
        d = edt[v, u].astype(np.float64)
        _RIM[template] = d
    return d


def rim_points(template: FaceTemplate, ids: np.ndarray, px: float = RIM_PX) -> np.ndarray:
    """(K,) bool: landmarks (template ids) within ``px`` UV pixels of the face-mask boundary."""
    return rim_distance(template)[np.asarray(ids, np.int64)] <= px


def regions(template: FaceTemplate, ids: np.ndarray, radius: float = REGION_RADIUS) -> np.ndarray:
    """(K,) region names (see module docstring) of landmarks given as template ids.

    Args:
        template: the face template (its 68 keypoints define the groups).
        ids: (K,) template vertex ids.
        radius: group radius as a fraction of the UV outer-eye-corner distance.

    Returns:
        (K,) ``<U8`` array of names from ``REGIONS``.
    """
    uv = template.pixel_uv[np.asarray(ids, np.int64)].astype(np.float64)
    kuv = template.pixel_uv[template.kpt_ids].astype(np.float64)
    group = np.empty(68, "<U8")
    for name, r in KPT_GROUPS.items():
        group[list(r)] = name
    d, k = cKDTree(kuv).query(uv)
    out = group[k]
    r = radius * float(np.linalg.norm(kuv[36] - kuv[45]))
    far = d > r
    bu, bv = kuv[17:27, 0], kuv[17:27, 1]
    o = np.argsort(bu, kind="stable")
    brow_v = np.interp(uv[:, 0], bu[o], bv[o])
    out[far] = np.where(uv[far, 1] < brow_v[far], "forehead", "cheeks")
    return out


def region_counts(template: FaceTemplate, ids: np.ndarray) -> dict[str, int]:
    """Landmarks per region, in ``REGIONS`` order."""
    names = regions(template, ids)
    return {r: int((names == r).sum()) for r in REGIONS}

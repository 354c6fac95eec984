"""The face crop of PRNet's 300W-LP preparation, with its transform kept as data.

The crop square is centred on the 68 keypoints' box and is 1.5x its mean side
(``(w + h) / 2``). Optional jitter (PRNet: centre +-10 % of that side, size x [0.9, 1.1]) is
drawn from a generator the caller seeds from params and the sample id. The similarity maps
the square onto ``[0, res - 1]^2``; z is scaled by the same factor and shifted so its
minimum over the mesh is 0 (PRNet's position-map convention).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from densemark.core.errors import InputError


@dataclass(frozen=True)
class CropTransform:
    """Image -> crop space: ``[x', y'] = scale * [x, y] + [tx, ty]``, ``z' = scale * z + tz``.

    Attributes are plain floats so the transform serialises as data.
    """

    scale: float
    tx: float
    ty: float
    tz: float
    size: int  # output side in pixels (the crop is size x size)

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) float64 homogeneous 2D matrix, image pixels -> crop pixels."""
        return np.array([[self.scale, 0.0, self.tx], [0.0, self.scale, self.ty], [0.0, 0.0, 1.0]])

    @property
    def affine(self) -> np.ndarray:
        """(2, 3) float64 matrix for ``cv2.warpAffine``."""
        return self.matrix[:2]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 3) image-space points (x, y, z) to crop space."""
        p = np.asarray(points, np.float64)
        out = np.empty_like(p)
        out[..., 0] = self.scale * p[..., 0] + self.tx
        out[..., 1] = self.scale * p[..., 1] + self.ty
        out[..., 2] = self.scale * p[..., 2] + self.tz
        return out

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 3) crop-space points back to image space."""
        p = np.asarray(points, np.float64)
        out = np.empty_like(p)
        out[..., 0] = (p[..., 0] - self.tx) / self.scale
        out[..., 1] = (p[..., 1] - self.ty) / self.scale
        out[..., 2] = (p[..., 2] - self.tz) / self.scale
        return out

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def as_vector(self) -> np.ndarray:
        """(5,) float64 [scale, tx, ty, tz, size]."""
        return np.array([self.scale, self.tx, self.ty, self.tz, self.size], np.float64)


def crop_square(
    kpt_xy: np.ndarray,
    scale: float = 1.5,
    jitter: float = 0.0,
    size_jitter: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, float]:
    """Centre (2,) and side of the crop square around keypoints (68, 2) in image pixels.

    Follows PRNet: the box of the integer-truncated keypoints, ``old = (w + h) / 2``,
    side ``int(old * scale)``; with ``rng`` the centre moves by ``U(-jitter, jitter) * old`` per
    axis and the side is multiplied by ``U(1 - size_jitter, 1 + size_jitter)``.
    """
    k = np.asarray(kpt_xy, np.float64)
    if k.ndim != 2 or k.shape[1] < 2 or not np.isfinite(k).all():
        raise InputError(None, "keypoints", f"expected finite (K, 2), got {k.shape}")
    k = np.trunc(k[:, :2])
    left, top = k.min(0)
    right, bottom = k.max(0)
    center = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
    old = (right - left + bottom - top) / 2.0
    side = float(int(old * scale))
    if rng is not None and (jitter > 0 or size_jitter > 0):
        center = center + (rng.random(2) * 2 - 1) * jitter * old
        side = side * (1.0 + (rng.random() * 2 - 1) * size_jitter)
    if side <= 0:
        raise InputError(None, "keypoints", "degenerate keypoint box (zero size)")
    return center, side


def crop_transform(
    center: np.ndarray, side: float, res: int = 256, z_min: float = 0.0
) -> CropTransform:
    """The similarity that maps the square (centre, side) onto ``[0, res-1]^2``.

    ``z_min`` is the minimum scaled z over the mesh, so crop-space z starts at 0.
    """
    sc = (res - 1) / side
    x0, y0 = center[0] - side / 2.0, center[1] - side / 2.0
    return CropTransform(
        scale=float(sc), tx=float(-sc * x0), ty=float(-sc * y0), tz=float(-z_min), size=int(res)
    )


def crop_image(image: np.ndarray, tf: CropTransform) -> np.ndarray:
    """Warp an image (H, W[, C]) uint8 into the (size, size[, C]) crop (bilinear, black border)."""
    import cv2

    return cv2.warpAffine(
        image,
        tf.affine,
        (tf.size, tf.size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )

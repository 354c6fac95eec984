"""Per-sample augmentation that moves the 3D labels exactly.

Geometry: one similarity about the crop centre maps the dataset crop (``res x res``, labels in
its pixels) to the model input (``size x size``): rotation ``theta``, scale ``s`` and shift
``t``, composed with the resize ``r = (size - 1) / (res - 1)`` (pixel centres: ``[0, res - 1]``
maps onto ``[0, size - 1]``, the crop convention of :mod:`densemark.faces.crop`)::

    [x', y'] = r s R(theta) ([x, y] - c_in) + c_out + t * size
    z'       = r s z

The image is warped by the same ``cv2.warpAffine`` matrix. z scales with the similarity's
scale factor only: an in-plane rotation is a rotation of the 3D scene about the viewing axis,
which leaves depth unchanged (dividing z by ``s cos(theta)`` would inflate depth 1.41x at 45
degrees). Colour (per-channel gain, brightness, contrast), Gaussian blur and a random occluding
rectangle change only the image. The colour change is one per-channel affine map
(:func:`colour_affine`); training applies it to the whole batch on the model's device rather than
per sample in the loader workers (the loader's costliest step after the warp).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from densemark.core import detmath
from densemark.train.params import AugmentParams


@dataclass(frozen=True)
class AugmentDraw:
    """One sample's random choices (identity by default)."""

    angle_deg: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)  # fractions of the output side
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    brightness: float = 0.0  # added, in units of 255
    contrast: float = 1.0
    blur_sigma: float = 0.0  # 0: no blur
    occlusion: tuple[float, float, float, float] | None = (
        None  # x0, y0, w, h as fractions of the side
    )
    occlusion_rgb: tuple[int, int, int] = (0, 0, 0)


def draw_augment(rng: np.random.Generator, p: AugmentParams) -> AugmentDraw:
    """Draw one sample's augmentation from ``rng`` (the same rng state gives the same draw)."""
    if not p.enabled:
        return AugmentDraw()
    u = rng.uniform(-1.0, 1.0, size=9)
    occ = None
    rgb = (0, 0, 0)
    blur_on, occ_on, blur_u = rng.random(3)
    if occ_on < p.occlusion_prob:
        w, h = rng.uniform(0.1, 1.0, 2) * p.occlusion_size
        x0, y0 = rng.uniform(0.0, 1.0, 2) * (1.0 - np.array([w, h]))
        occ = (float(x0), float(y0), float(w), float(h))
        rgb = tuple(int(v) for v in rng.integers(0, 256, 3))
    return AugmentDraw(
        angle_deg=float(u[0] * p.rotation_deg),
        scale=float(1.0 + u[1] * p.scale),
        shift=(float(u[2] * p.shift), float(u[3] * p.shift)),
        gains=(
            float(1 + u[4] * p.channel_gain),
            float(1 + u[5] * p.channel_gain),
            float(1 + u[6] * p.channel_gain),
        ),
        brightness=float(u[7] * p.brightness),
        contrast=float(1.0 + u[8] * p.contrast),
        blur_sigma=float(blur_u * p.blur_sigma) if blur_on < p.blur_prob else 0.0,
        occlusion=occ,
        occlusion_rgb=rgb,  # type: ignore[arg-type]
    )


def similarity(d: AugmentDraw, res: int, size: int) -> tuple[np.ndarray, float]:
    """(2, 3) float64 affine, dataset-crop pixels -> input pixels, and its scale factor ``r s``."""
    r = (size - 1) / (res - 1)
    k = r * d.scale
    s, c = (float(v) for v in detmath.sincos(np.deg2rad(d.angle_deg)))
    rot = k * np.array([[c, -s], [s, c]])
    c_in = (res - 1) / 2.0
    t = (
        np.full(2, (size - 1) / 2.0)
        + np.asarray(d.shift) * size
        - (rot[:, 0] * c_in + rot[:, 1] * c_in)
    )
    return np.concatenate([rot, t[:, None]], axis=1), float(k)


def transform_points(points: np.ndarray, affine: np.ndarray, k: float) -> np.ndarray:
    """Move (K, 3) labels: x, y by the (2, 3) ``affine``, z times ``k``. Returns (K, 3) float32."""
    p = np.asarray(points, np.float64)
    out = np.empty_like(p)
    for i in range(2):  # elementwise, no BLAS
        out[:, i] = p[:, 0] * affine[i, 0] + p[:, 1] * affine[i, 1] + affine[i, 2]
    out[:, 2] = p[:, 2] * k
    return out.astype(np.float32)


def colour_affine(d: AugmentDraw) -> np.ndarray:
    """(3, 2) float32 per RGB channel ``[scale, offset]`` of the colour change on [0, 1] values:
    ``x' = clip(scale x + offset, 0, 1)``, i.e. gain, then contrast about 128/255, then brightness
    (the map :func:`apply_augment` applies to uint8 values, without its rounding)."""
    g = np.asarray(d.gains, np.float64)
    return np.stack(
        [g * d.contrast, np.full(3, (128.0 * (1.0 - d.contrast)) / 255.0 + d.brightness)], 1
    ).astype(np.float32)


def apply_augment(
    image: np.ndarray, points: np.ndarray, d: AugmentDraw, size: int, colour: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one sample.

    image: (res, res, 3) uint8 RGB crop; points: (K, 3) float32 labels in its pixels.
    ``colour=False`` leaves the colour change out (the caller applies :func:`colour_affine` to the
    batch on its device, see ``densemark.train.data.to_input``).
    Returns ((size, size, 3) uint8, (K, 3) float32 labels in input pixels).
    """
    res = image.shape[0]
    a, k = similarity(d, res, size)
    out = cv2.warpAffine(
        image,
        a,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    if colour and (d.gains != (1.0, 1.0, 1.0) or d.brightness != 0.0 or d.contrast != 1.0):
        v = np.arange(256, dtype=np.float32)[:, None] * np.asarray(d.gains, np.float32)[None]
        lut = np.clip((v - 128.0) * d.contrast + 128.0 + d.brightness * 255.0, 0, 255)
        out = cv2.LUT(out, lut.round().astype(np.uint8).reshape(256, 1, 3))
    if d.blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), d.blur_sigma)
    if d.occlusion is not None:
        x0, y0, w, h = (int(round(v * size)) for v in d.occlusion)
        out[y0 : y0 + max(h, 1), x0 : x0 + max(w, 1)] = d.occlusion_rgb
    return out, transform_points(points, a, k)

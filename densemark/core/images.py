"""Image files: read any image as RGB, encode and write JPEG (deterministic, atomic)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from densemark.core.atomic import atomic_path
from densemark.core.errors import InputError


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; errors name the file."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "image", "file not found")
    if p.stat().st_size == 0:
        raise InputError(p, "image", "file is empty")
    try:
        img = cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None:
        raise InputError(p, "image", "cannot decode (empty, truncated or not an image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode (H, W, 3) uint8 RGB as JPEG bytes (the same input gives the same bytes)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(None, "image", f"JPEG encoding failed for an image of shape {rgb.shape}")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode image bytes to (H, W, 3) uint8 RGB."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(None, "image", "cannot decode image bytes")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_jpeg(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> Path:
    """Atomically write (H, W, 3) uint8 RGB as a JPEG file."""
    data = encode_jpeg(rgb, quality)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)

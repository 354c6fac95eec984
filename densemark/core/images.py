"""Image files: read any image as RGB, encode and write JPEG (deterministic, atomic); read a
JPEG's or PNG's pixel size from its header without decoding it (:func:`header_size`)."""

from __future__ import annotations

import os
import struct
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

    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
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


_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (they carry the size): C0-CF but DHT (C4), JPG (C8), DAC (CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_NO_LENGTH = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RST0-7: markers without a segment


def header_size(data: bytes | memoryview, path: str | os.PathLike | None = None) -> tuple[int, int]:
    """``(width, height)`` a JPEG or PNG claims in its header, read without decoding.

    Reads the PNG ``IHDR`` chunk, or walks a JPEG's marker segments to its first start-of-frame
    (SOF) segment; nothing is allocated for pixels, so a decompression bomb (a small file whose
    header claims a huge image) costs nothing here.

    Args:
        data: the file's bytes (only the header part is read).
        path: named in errors.

    Raises:
        InputError: empty, not a JPEG or PNG, or a header cut short / without a size.
    """
    b = memoryview(data)
    if len(b) == 0:
        raise InputError(path, "image", "file is empty")
    if bytes(b[:8]) == _PNG:
        if len(b) < 24 or bytes(b[12:16]) != b"IHDR":
            raise InputError(path, "image", "PNG header cut short (no IHDR chunk)")
        w, h = struct.unpack(">II", b[16:24])
        return _checked(w, h, path)
    if bytes(b[:2]) != b"\xff\xd8":
        raise InputError(path, "image", "not a JPEG or PNG (unknown file signature)")
    i, n = 2, len(b)
    while i < n:
        if b[i] != 0xFF:
            raise InputError(path, "image", f"JPEG header damaged (no marker at byte {i})")
        while i < n and b[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = b[i]
        i += 1
        if marker in _NO_LENGTH:
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        if i + 2 > n:
            break
        (length,) = struct.unpack(">H", b[i : i + 2])
        if length < 2:
            raise InputError(
                path, "image", f"JPEG header damaged (segment length {length} at byte {i})"
            )
        if marker in _SOF:
            if i + 7 > n:
                break
            h, w = struct.unpack(">HH", b[i + 3 : i + 7])
            return _checked(w, h, path)
        i += length
    raise InputError(path, "image", "JPEG header cut short (no frame header with the image size)")


def _checked(w: int, h: int, path: str | os.PathLike | None) -> tuple[int, int]:
    if w <= 0 or h <= 0:
        raise InputError(path, "image", f"header gives no image size ({w}x{h})")
    return int(w), int(h)


def probe_image(path: str | os.PathLike, max_header: int = 1 << 20) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header (:func:`header_size`), reading at
    most ``max_header`` bytes of it."""
    with open(path, "rb") as f:
        return header_size(f.read(max_header), path)


def check_pixels(
    size: tuple[int, int],
    max_pixels: int,
    path: str | os.PathLike | None,
    key: str = "max_image_pixels",
) -> None:
    """Refuse an image whose header claims more than ``max_pixels`` pixels (before decoding it).

    Raises:
        InputError: naming the file, the claimed size and the limit's params key.
    """
    w, h = size
    if w * h > max_pixels:
        raise InputError(
            path,
            "image",
            f"header claims {w}x{h} = {w * h / 1e6:.1f} MP, over {key} = {max_pixels / 1e6:.1f} MP (not decoded)",
        )

"""``densemark predict`` on photo files: safe reading, face boxes, outputs and overlays.

Torch-free: works with the ONNX predictor (:mod:`densemark.train.infer`) as with the PyTorch
one. Each input is handled on its own: one that fails yields an error naming the file and the
others are still written. Output names never collide (two inputs with the same stem in
different folders get ``<folder>_<stem>``). A file whose header claims more than
``max_pixels`` pixels is refused before any decoding (decompression bomb).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from densemark.core.atomic import atomic_path, save_npy, write_json
from densemark.core.errors import InputError
from densemark.core.images import read_image
from densemark.train.detect import box_for, detect_faces

MAX_PIXELS = 100_000_000  # 100 megapixels: far above any photo, far below what exhausts memory
KPT_COLOUR = (255, 40, 40)  # RGB: the 68 keypoints
DENSE_COLOUR = (40, 255, 80)  # the dense landmarks
BOX_COLOUR = (255, 200, 0)  # the face box used for the crop


def image_header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, GIF, BMP or WebP header without decoding; None when
    the format is not one of these or the header cannot be parsed."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
            return struct.unpack(">II", head[16:24])
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", head[6:10])
        if head[:2] == b"BM" and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            kind = head[12:16]
            if kind == b"VP8X":
                return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(
                    head[27:30], "little"
                )
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", head[26:30])
                return w & 0x3FFF, h & 0x3FFF
            if kind == b"VP8L":
                b = int.from_bytes(head[21:25], "little")
                return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
            return None
        if head[:2] == b"\xff\xd8":
            f.seek(2)
            return _jpeg_size(f)
    return None


def _jpeg_size(f: Any) -> tuple[int, int] | None:
    """Walk JPEG markers to the first start-of-frame (SOF0..SOF15 but DHT, JPG, DAC)."""
    while True:
        b = f.read(1)
        while b and b != b"\xff":
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        m = b[0]
        if m in (0xD8, 0x01) or 0xD0 <= m <= 0xD7:
            continue
        seg = f.read(2)
        if len(seg) < 2:
            return None
        n = struct.unpack(">H", seg)[0]
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return w, h
        f.seek(n - 2, 1)


def read_photo(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB; refuses a header claiming more than ``max_pixels`` before decoding."""
    p = Path(path)
    if p.is_file():
        try:
            size = image_header_size(p)
        except OSError as exc:
            raise InputError(p, "image", f"cannot read ({exc})") from None
        if size is not None and size[0] * size[1] > max_pixels:
            raise InputError(p, "image", f"header claims {size[0]} x {size[1]} = {size[0] * size[1]:,} pixels, over the "
                                         f"limit of {max_pixels:,} (a decompression bomb?); not decoded")  # fmt: skip
    return read_image(p)


def output_stems(images: list[str | os.PathLike]) -> list[str]:
    """A distinct output stem per input: the file stem, or ``<folder>_<stem>`` (then ``_2``,
    ``_3``...) where stems repeat."""
    paths = [Path(p) for p in images]
    stems = [p.stem for p in paths]
    counts = {s: stems.count(s) for s in stems}
    names = [
        s if counts[s] == 1 else f"{p.parent.name or 'root'}_{s}"
        for p, s in zip(paths, stems, strict=True)
    ]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0) + 1
        seen[n] = k
        out.append(n if k == 1 else f"{n}_{k}")
    while len(set(out)) < len(out):  # a suffixed name met an existing one: number every clash
        out = [n if out.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(out)]
    return out


def draw_overlay(
    image: np.ndarray, points: np.ndarray, boxes: np.ndarray, kpt68: np.ndarray | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 RGB copy with the boxes, (F, K, 3) points and a legend drawn.

    Point radius scales with the image (about 1/250 of its longer side, at least 1 px); the 68
    keypoints (positions ``kpt68`` among the K) are drawn larger, in red with a dark rim.
    """
    out = np.ascontiguousarray(image.copy())
    side = max(out.shape[:2])
    r = max(1, int(round(side / 250)))
    thick = max(1, r // 2)
    for bx, pts in zip(boxes, points, strict=True):
        cv2.rectangle(
            out, (int(bx[0]), int(bx[1])), (int(bx[2]), int(bx[3])), BOX_COLOUR, thick, cv2.LINE_AA
        )
        mask = np.ones(len(pts), bool)
        if kpt68 is not None and len(kpt68):
            mask[np.asarray(kpt68, np.int64)] = False
        for x, y in np.round(pts[mask, :2]).astype(int):
            cv2.circle(out, (int(x), int(y)), r, DENSE_COLOUR, -1, cv2.LINE_AA)
        if kpt68 is not None and len(kpt68):
            for x, y in np.round(pts[np.asarray(kpt68, np.int64), :2]).astype(int):
                cv2.circle(out, (int(x), int(y)), 2 * r + 1, (0, 0, 0), -1, cv2.LINE_AA)
                cv2.circle(out, (int(x), int(y)), 2 * r, KPT_COLOUR, -1, cv2.LINE_AA)
    k = points.shape[1] if points.ndim == 3 else 0
    items = [(DENSE_COLOUR, f"dense landmarks ({k - (len(kpt68) if kpt68 is not None else 0)})")]
    if kpt68 is not None and len(kpt68):
        items.append((KPT_COLOUR, "68 keypoints"))
    items.append((BOX_COLOUR, "face box"))
    _legend(out, items, side)
    return out


def _legend(img: np.ndarray, items: list[tuple[tuple[int, int, int], str]], side: int) -> None:
    fs = max(0.35, side / 1400)
    th = max(1, int(round(fs * 1.5)))
    (tw, tht), _ = cv2.getTextSize(
        max((t for _, t in items), key=len), cv2.FONT_HERSHEY_SIMPLEX, fs, th
    )
    pad, row = int(tht * 0.6) + 2, int(tht * 1.8) + 2
    w, h = tw + 3 * pad + row, row * len(items) + pad
    roi = img[:h, :w]
    roi[:] = (roi.astype(np.float32) * 0.35).astype(np.uint8)  # darkened panel, top-left
    for i, (col, text) in enumerate(items):
        cy = pad + i * row + row // 2
        cv2.circle(img, (pad + row // 3, cy), max(2, row // 4), col, -1, cv2.LINE_AA)
        cv2.putText(
            img,
            text,
            (2 * pad + row // 2, cy + tht // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            fs,
            (255, 255, 255),
            th,
            cv2.LINE_AA,
        )


def face_boxes(img: np.ndarray, path: Path, boxes: dict[str, np.ndarray] | None, box: np.ndarray | None,
               detector: str, all_faces: bool) -> tuple[np.ndarray, str]:  # fmt: skip
    """(F, 4) 68-keypoint boxes of one image and where they came from (given box or detector)."""
    if box is not None:
        return np.asarray(box, np.float64).reshape(1, 4), "given"
    if boxes is not None:
        b = box_for(boxes, path)
        if b is None:
            raise InputError(path, "box", "no box for this image in the boxes file")
        return b.reshape(1, 4), "given"
    faces = detect_faces(img, detector)
    if not faces:
        raise InputError(
            path,
            "face",
            f"no face detected (detector {detector!r}); give its box with --box x0,y0,x1,y1",
        )
    if all_faces:
        keep = [f for f in faces if f.score >= 2] or faces[:1]
    else:
        keep = faces[:1]
    return np.stack([f.box for f in keep]), f"detector:{detector}"


def predict_files(
    predictor: Any,
    images: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    all_faces: bool = False,
    *,
    boxes: dict[str, np.ndarray] | None = None,
    box: np.ndarray | None = None,
    detector: str = "auto",
    max_pixels: int = MAX_PIXELS,
) -> tuple[list[dict[str, Any]], list[InputError]]:
    """``densemark predict``: per image ``<name>.json``, ``<name>.npy`` and ``<name>_overlay.png``.

    Args:
        predictor: anything with ``predict(images, boxes, box_kind)`` and ``landmark_set``.
        images: photo files; ``<name>`` is the stem, made distinct (:func:`output_stems`).
        all_faces: every detected face (NPY (F, K, 3)) instead of the best one ((K, 3)).
        boxes: image name -> (4,) 68-keypoint box (a boxes file); ``box``: one box for all.
        detector: :data:`densemark.train.detect.METHODS` when no box is given.

    Returns:
        (done records, errors): each failing input gives one error naming its file.
    """
    out = Path(out_dir)
    kpt = np.asarray(predictor.landmark_set.get("kpt68", ()), np.int64).reshape(-1)
    done, errors = [], []
    for path, stem in zip(images, output_stems(images), strict=True):
        p = Path(path)
        try:
            img = read_photo(p, max_pixels)
            b, origin = face_boxes(img, p, boxes, box, detector, all_faces)
            pts = predictor.predict([img] * len(b), b, "landmarks")
            save_npy(out / f"{stem}.npy", pts if all_faces else pts[0])
            rec = {
                "image": str(p),
                "landmark_set": predictor.landmark_set.get("name"),
                "landmark_set_sha256": predictor.landmark_set.get("sha256"),
                "units": "image pixels (x right, y down; z in image-pixel scale, crop offset)",
                "box_kind": "68-keypoint box (estimated from the detector's box, or as given)",
                "box_source": origin,
                "faces": [
                    {"box": bx.tolist(), "landmarks": q.tolist()}
                    for bx, q in zip(b, pts, strict=True)
                ],
            }
            write_json(out / f"{stem}.json", rec)
            ok, png = cv2.imencode(
                ".png",
                cv2.cvtColor(
                    draw_overlay(img, pts, b, kpt if kpt.size == 68 else None), cv2.COLOR_RGB2BGR
                ),
            )
            with atomic_path(out / f"{stem}_overlay.png") as tmp:
                tmp.write_bytes(png.tobytes())
        except InputError as exc:
            errors.append(exc if exc.path else InputError(p, exc.field, exc.message))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad input never stops the others
            errors.append(InputError(p, None, f"failed ({type(exc).__name__}: {exc})"))
            continue
        done.append(
            {
                "image": str(p),
                "faces": len(b),
                "json": str(out / f"{stem}.json"),
                "box_source": origin,
            }
        )
    return done, errors

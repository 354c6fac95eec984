"""Face boxes for prediction on photos: a mirror-symmetric multi-view detector and user boxes.

Torch-free (OpenCV, numpy and optionally dlib), so the ONNX prediction path can use it.

Detector (``method="auto"``): OpenCV's bundled Haar cascades (frontal ``default`` and
``alt2``, and ``profileface``) and, when the ``dlib`` module is importable (the pinned
``dlib-bin`` wheel), dlib's HOG face detector (frontal and left/right half-profile filters). Each
runs on the image **and on its mirror** (boxes mirrored back), so a face and its mirror image are
found alike, and the profile cascade (trained on faces turned one way) covers both ways. Every
raw box is turned into an estimated box of the 68 keypoints by a rule of its detector and view
(:data:`VIEW_RULES`: centre shift and side as fractions of the detector box's width, medians
over the real 300W-LP / AFLW2000-3D reference samples). Estimates that overlap (IoU >=
:data:`CLUSTER_IOU`) are merged (element-wise median of the members from the most precise
detector present); a face's score is the number of distinct (detector, view, mirror) sources
that found it. Faces are ranked by score, then by size.

``method="haar-frontal"`` is the former detector (frontal default cascade, no mirror).

Keypoint boxes are what :func:`densemark.train.predict.box_to_crop` expects: the crop is the
training crop, a square of 1.5 x the box's mean side centred on the box.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import cv2
import numpy as np

from densemark.core.errors import InputError

METHODS = ("auto", "haar", "haar-frontal", "dlib")
CLUSTER_IOU = 0.35
HAAR_NEIGHBOURS, HAAR_NEIGHBOURS_RELAXED = 5, 3
DLIB_THRESHOLD_RELAXED = -0.3
TILT_DEGREES = (25, -25)  # third pass, when nothing is found upright: the image turned in its plane
DETECT_MAX_SIDE = 800  # larger photos are searched downscaled to this longer side
# (detector, view) -> (dx, dy, side): keypoint-box centre minus detector-box centre, and the
# keypoint box's mean side, in units of the detector box's width. A mirrored run uses -dx.
VIEW_RULES: dict[tuple[str, str], tuple[float, float, float]] = {
    ("haar", "frontal"): (0.0, 0.15, 0.78),
    ("haar", "frontal_alt2"): (0.0, 0.15, 0.83),
    ("haar", "profile"): (-0.06, 0.16, 0.70),
    ("dlib", "frontal"): (0.0, 0.12, 0.96),
    ("dlib", "left"): (0.175, 0.135, 0.92),
    ("dlib", "right"): (-0.175, 0.135, 0.92),
}
# which detector's boxes place the face best (mean centre error over the real reference samples:
# dlib HOG 0.05 of the face side, Haar frontal 0.11, alt2 0.17; profile only where nothing else fires)
_PRECISION = {("dlib", "frontal"): 0, ("dlib", "left"): 0, ("dlib", "right"): 0, ("haar", "frontal"): 1,
              ("haar", "frontal_alt2"): 2, ("haar", "profile"): 3}  # fmt: skip
_HAAR_FILES = {"frontal": "haarcascade_frontalface_default.xml", "frontal_alt2": "haarcascade_frontalface_alt2.xml",
               "profile": "haarcascade_profileface.xml"}  # fmt: skip
_DLIB_VIEWS = ("frontal", "left", "right", "frontal", "frontal")  # dlib's 5 HOG filters


@dataclass(frozen=True)
class RawBox:
    """One detector's box: ``box`` [x0, y0, x1, y1] image pixels, its source and mirror flag."""

    box: tuple[float, float, float, float]
    detector: str
    view: str
    mirrored: bool

    def keypoint_box(self) -> np.ndarray:
        """(4,) the estimated 68-keypoint box (square) by :data:`VIEW_RULES`."""
        dx, dy, side = VIEW_RULES[(self.detector, self.view)]
        x0, y0, x1, y1 = self.box
        w = x1 - x0
        cx = (x0 + x1) / 2 + (-dx if self.mirrored else dx) * w
        cy = (y0 + y1) / 2 + dy * w
        h = side * w / 2
        return np.array([cx - h, cy - h, cx + h, cy + h])


@dataclass(frozen=True)
class Face:
    """A detected face: ``box`` (4,) estimated 68-keypoint box, ``score`` votes, ``sources``."""

    box: np.ndarray
    score: int
    sources: tuple[str, ...]


def dlib_available() -> bool:
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return True


@cache
def _cascade(view: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / _HAAR_FILES[view]
    casc = cv2.CascadeClassifier(str(path))
    if casc.empty():
        raise InputError(path, None, "cannot load OpenCV's bundled Haar cascade")
    return casc


@lru_cache(maxsize=1)
def _dlib_detector():
    import dlib

    return dlib.get_frontal_face_detector()


def mirror_boxes(b: np.ndarray, width: int) -> np.ndarray:
    return np.column_stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]])


def haar_boxes(
    gray: np.ndarray, view: str, min_size: int = 30, min_neighbors: int = HAAR_NEIGHBOURS
) -> np.ndarray:
    """(F, 4) float64 [x0, y0, x1, y1] boxes of one bundled Haar cascade on a (H, W) uint8 image."""
    det = _cascade(view).detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=min_neighbors, minSize=(min_size, min_size)
    )
    det = np.asarray(det, np.float64).reshape(-1, 4)
    return np.column_stack([det[:, :2], det[:, :2] + det[:, 2:]])


def dlib_boxes(
    rgb: np.ndarray, upsample: int = 1, threshold: float = 0.0
) -> list[tuple[np.ndarray, str]]:
    """dlib HOG faces of a (H, W, 3) uint8 RGB image: [(box (4,), view)] (``threshold``: dlib's
    detection-score adjustment; below 0 finds more)."""
    rects, _, idx = _dlib_detector().run(np.ascontiguousarray(rgb), upsample, threshold)
    return [
        (np.array([r.left(), r.top(), r.right() + 1.0, r.bottom() + 1.0]), _DLIB_VIEWS[int(i)])
        for r, i in zip(rects, idx, strict=True)
    ]


def raw_detections(
    image: np.ndarray,
    method: str = "auto",
    min_size: int = 30,
    max_side: int = DETECT_MAX_SIDE,
    relaxed: bool = False,
) -> list[RawBox]:
    """Every detector's boxes on (H, W, 3) uint8 RGB ``image`` (and its mirror, except
    ``haar-frontal``), in image pixels. A larger image is searched at ``max_side`` pixels
    (longer side; ``min_size`` applies there). ``relaxed``: fewer Haar neighbours and a lower
    dlib threshold (the second pass of :func:`detect_faces`)."""
    img = np.asarray(image)
    side = max(img.shape[:2]) if img.ndim >= 2 else 0
    if side > max_side and img.ndim == 3:
        f = max_side / side
        small = cv2.resize(
            img,
            (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))),
            interpolation=cv2.INTER_AREA,
        )
        sx, sy = img.shape[1] / small.shape[1], img.shape[0] / small.shape[0]
        return [RawBox((r.box[0] * sx, r.box[1] * sy, r.box[2] * sx, r.box[3] * sy), r.detector, r.view, r.mirrored)
                for r in raw_detections(small, method, min_size, max_side, relaxed)]  # fmt: skip
    if method not in METHODS:
        raise InputError(
            None, "detector", f"unknown detector {method!r}; known: {', '.join(METHODS)}"
        )
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(
            None, "image", f"expected (H, W, 3) uint8 RGB, got {img.dtype} {img.shape}"
        )
    w = img.shape[1]
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    nb = HAAR_NEIGHBOURS_RELAXED if relaxed else HAAR_NEIGHBOURS
    if method == "haar-frontal":
        return [
            RawBox(tuple(b), "haar", "frontal", False)
            for b in haar_boxes(gray, "frontal", min_size, nb)
        ]
    out: list[RawBox] = []
    flips = (False, True)
    if method in ("auto", "haar"):
        for mirrored in flips:
            g = np.ascontiguousarray(gray[:, ::-1]) if mirrored else gray
            for view in ("frontal", "frontal_alt2", "profile"):
                b = haar_boxes(g, view, min_size, nb)
                if mirrored:
                    b = mirror_boxes(b, w)
                out += [RawBox(tuple(x), "haar", view, mirrored) for x in b]
    if method == "dlib" or (method == "auto" and dlib_available()):
        if not dlib_available():
            raise InputError(
                None, "detector", "the dlib detector needs the dlib module (pip install dlib-bin)"
            )
        for mirrored in flips:
            im = np.ascontiguousarray(img[:, ::-1]) if mirrored else img
            for b, view in dlib_boxes(im, threshold=DLIB_THRESHOLD_RELAXED if relaxed else 0.0):
                bb = mirror_boxes(b[None], w)[0] if mirrored else b
                if (bb[2] - bb[0]) >= min_size:
                    out.append(RawBox(tuple(bb), "dlib", view, mirrored))
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, 4) and (M, 4) boxes [x0, y0, x1, y1]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def merge_detections(raw: list[RawBox], iou: float = CLUSTER_IOU) -> list[Face]:
    """Cluster the raw boxes' keypoint-box estimates; faces by score (distinct sources), then size."""
    if not raw:
        return []
    kb = np.stack([r.keypoint_box() for r in raw])
    order = np.argsort(-(kb[:, 2] - kb[:, 0]), kind="stable")
    label = np.full(len(raw), -1)
    reps: list[int] = []
    for i in order:  # greedy: join the first cluster whose founder overlaps enough
        if reps:
            ov = box_iou(kb[i], kb[reps])[0]
            j = int(ov.argmax())
            if ov[j] >= iou:
                label[i] = j
                continue
        label[i] = len(reps)
        reps.append(int(i))
    faces = []
    for c in range(len(reps)):
        members = np.flatnonzero(label == c)
        srcs = sorted(
            {
                f"{raw[m].detector}:{raw[m].view}{':mirror' if raw[m].mirrored else ''}"
                for m in members
            }
        )
        rank = np.array([_PRECISION.get((raw[m].detector, raw[m].view), 9) for m in members])
        best = members[rank == rank.min()]  # the box from the most precise detector present
        faces.append(Face(np.median(kb[best], axis=0), len(srcs), tuple(srcs)))
    faces.sort(key=lambda f: (-f.score, -(f.box[2] - f.box[0])))
    return faces


def detect_faces(image: np.ndarray, method: str = "auto", min_size: int = 30) -> list[Face]:
    """Faces on (H, W, 3) uint8 RGB ``image``, best first (see the module docstring). When none
    is found, a second, relaxed pass runs (Haar with 3 neighbours, dlib threshold -0.3), then a
    third on the image turned by +-25 degrees (tilted heads)."""
    faces = merge_detections(raw_detections(image, method, min_size))
    if not faces and method != "haar-frontal":
        faces = merge_detections(raw_detections(image, method, min_size, relaxed=True))
    if not faces and method != "haar-frontal":
        faces = _rotated_pass(np.asarray(image), method, min_size)
    return faces


def _rotated_pass(image: np.ndarray, method: str, min_size: int) -> list[Face]:
    """Faces of a tilted head: detect on the image rotated by each of :data:`TILT_DEGREES`
    about its centre, and map each face's box centre back (side kept)."""
    h, w = image.shape[:2]
    found: list[Face] = []
    for deg in TILT_DEGREES:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
        rot = cv2.warpAffine(
            image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        inv = cv2.invertAffineTransform(m)
        for f in merge_detections(raw_detections(rot, method, min_size)):
            c = inv @ np.r_[(f.box[:2] + f.box[2:]) / 2, 1.0]
            half = (f.box[2] - f.box[0]) / 2
            found.append(
                Face(
                    np.r_[c - half, c + half],
                    f.score,
                    tuple(f"{x}:tilt{deg:+d}" for x in f.sources),
                )
            )
    found.sort(key=lambda f: (-f.score, -(f.box[2] - f.box[0])))
    return found


# --------------------------------------------------------------------------- user boxes


def parse_box(text: str, source: str | os.PathLike | None = None, field: str = "box") -> np.ndarray:
    """``"x0,y0,x1,y1"`` (image pixels) -> (4,) float64; errors name ``source``/``field``."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    try:
        vals = np.array([float(p) for p in parts], np.float64)
    except ValueError:
        raise InputError(
            source, field, f"expected 'x0,y0,x1,y1' (four numbers), got {text!r}"
        ) from None
    return check_box(vals, source, field)


def check_box(
    values: Iterable[float], source: str | os.PathLike | None = None, field: str = "box"
) -> np.ndarray:
    """(4,) float64 box [x0, y0, x1, y1], finite with x1 > x0 and y1 > y0."""
    b = np.asarray(list(values), np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
        raise InputError(
            source, field, f"expected a box x0,y0,x1,y1 with x1 > x0 and y1 > y0, got {b.tolist()}"
        )
    return b


def read_boxes_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Boxes of many images: image name -> (4,) [x0, y0, x1, y1] face box in image pixels.

    JSON: ``{"photo.jpg": [x0, y0, x1, y1], ...}``; CSV: a header ``image,x0,y0,x1,y1`` then a
    row per image. Names are matched to inputs by full path, file name, or stem.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, None, "boxes file not found")
    text = p.read_text("utf-8")
    out: dict[str, np.ndarray] = {}
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(p, None, f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(p, None, "expected an object mapping image name -> [x0, y0, x1, y1]")
        for k, v in data.items():
            if not isinstance(v, list | tuple):
                raise InputError(p, str(k), f"expected [x0, y0, x1, y1], got {v!r}")
            try:
                out[str(k)] = check_box([float(x) for x in v], p, str(k))
            except (TypeError, ValueError):
                raise InputError(p, str(k), f"expected four numbers, got {v!r}") from None
    else:
        rows = list(csv.reader(text.splitlines()))
        if not rows or [c.strip().lower() for c in rows[0]] != ["image", "x0", "y0", "x1", "y1"]:
            raise InputError(
                p, "header", "expected a CSV header 'image,x0,y0,x1,y1' (or a .json file)"
            )
        for n, row in enumerate(rows[1:], start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 5:
                raise InputError(p, f"line {n}", f"expected 5 columns, got {len(row)}")
            out[row[0].strip()] = parse_box(",".join(row[1:]), p, f"line {n}")
    return out


def box_for(boxes: dict[str, np.ndarray], image: str | os.PathLike) -> np.ndarray | None:
    """The box of ``image`` in a boxes mapping (by full path, file name or stem), or None."""
    p = Path(image)
    for key in (str(image), p.as_posix(), p.name, p.stem):
        if key in boxes:
            return boxes[key]
    return None

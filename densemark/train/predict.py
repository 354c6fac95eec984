"""Prediction on photos: face box -> training crop -> model -> landmarks in image pixels.

Box-to-crop rule:

- ``box_kind="landmarks"``: the tight box ``[x0, y0, x1, y1]`` of the 68 keypoints. The crop is
  the training crop (PRNet, :func:`densemark.faces.crop.crop_square`): a square of
  ``int(1.5 * (w + h) / 2)`` pixels centred on the box, mapped onto ``[0, S - 1]^2``.
- ``box_kind="detector"``: a box of OpenCV's bundled frontal-face Haar cascade. It is first
  turned into an estimated keypoint box: centre moved down by ``0.15 * w``, side ``0.78 * w``
  (the medians over the real 300W-LP / AFLW2000-3D reference samples where the cascade fires:
  the cascade box sits higher than the keypoints, which reach the chin), then treated as above.

Output: (K, 3) per face in image pixels (x right, y down, from the top-left pixel centre);
z is the crop's z divided by the crop scale, so it is in image-pixel scale, with the crop's
offset (z = 0 at the face's deepest point in the training data) and not absolute depth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from densemark.core.atomic import atomic_path, save_npy, write_json
from densemark.core.errors import InputError
from densemark.core.images import read_image
from densemark.faces.crop import CropTransform, crop_image, crop_transform
from densemark.train.export import load_model

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
HAAR_CENTRE_DY = 0.15  # keypoint-box centre below the cascade box centre, x box width
HAAR_SIDE = 0.78  # keypoint-box mean side, x cascade box width


def detector_to_landmark_boxes(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) cascade boxes [x0, y0, x1, y1] -> (N, 4) estimated 68-keypoint boxes."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2 + HAAR_CENTRE_DY * w
    half = HAAR_SIDE * w / 2
    return np.column_stack([cx - half, cy - half, cx + half, cy + half])


def box_to_crop(box: np.ndarray, size: int, crop_scale: float = 1.5) -> CropTransform:
    """The training crop of a 68-keypoint box [x0, y0, x1, y1] (image pixels), onto size x size."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not np.isfinite([x0, y0, x1, y1]).all() or x1 <= x0 or y1 <= y0:
        raise InputError(None, "boxes", f"bad box {[x0, y0, x1, y1]}")
    centre = np.array([x1 - (x1 - x0) / 2.0, y1 - (y1 - y0) / 2.0])
    side = float(int((x1 - x0 + y1 - y0) / 2.0 * crop_scale))
    return crop_transform(centre, max(side, 1.0), size)


@dataclass
class Predictor:
    """A trained regressor with its crop rule; see :func:`load_predictor`."""

    model: torch.nn.Module
    config: dict[str, Any]
    landmark_set: dict[str, Any]
    device: torch.device
    crop_scale: float = 1.5
    batch_size: int = 64  # crops per forward pass

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    @torch.no_grad()
    def predict(self, images: list[np.ndarray], boxes: np.ndarray, box_kind: str = "landmarks") -> np.ndarray:
        """Landmarks of one face per (image, box).

        images: N x (H, W, 3) uint8 RGB; boxes: (N, 4) float [x0, y0, x1, y1] image pixels;
        box_kind: "landmarks" (tight 68-keypoint box) or "detector" (Haar cascade box).
        Returns (N, K, 3) float32 in image pixels.
        """
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(b) != len(images):
            raise InputError(None, "boxes", f"{len(images)} images but {len(b)} boxes")
        if box_kind == "detector":
            b = detector_to_landmark_boxes(b)
        elif box_kind != "landmarks":
            raise InputError(None, "box_kind", f"expected 'landmarks' or 'detector', got {box_kind!r}")
        if not len(b):
            return np.zeros((0, int(self.config["n_points"]), 3), np.float32)
        s = self.input_size
        tfs = [box_to_crop(bx, s, self.crop_scale) for bx in b]
        pred = np.empty((len(b), int(self.config["n_points"]), 3), np.float32)
        for i in range(0, len(b), self.batch_size):
            crops = np.stack([crop_image(np.asarray(images[j]), tfs[j]) for j in range(i, min(i + self.batch_size, len(b)))])
            x = torch.from_numpy(crops).permute(0, 3, 1, 2).to(self.device).float().div_(255.0)
            pred[i : i + len(crops)] = self.model(x).float().cpu().numpy().reshape(len(crops), -1, 3) * s
        out = np.empty_like(pred)
        for i, tf in enumerate(tfs):
            out[i] = tf.invert(pred[i])
            out[i, :, 2] = pred[i, :, 2] / tf.scale  # z: scale only (the crop's z offset is not known)
        return out.astype(np.float32)


def load_predictor(checkpoint: str | os.PathLike, device: str = "cpu") -> Predictor:
    """A :class:`Predictor` from a ``model.pt`` / ``checkpoint.pt`` (``weights_only=True``)."""
    model, ck = load_model(checkpoint, device)
    return Predictor(model, dict(ck["config"]), dict(ck["landmark_set"]), torch.device(device))


def detect_faces(image: np.ndarray, min_size: int = 30) -> np.ndarray:
    """Frontal faces by OpenCV's bundled Haar cascade: (F, 4) float64 [x0, y0, x1, y1], largest first."""
    path = Path(cv2.data.haarcascades) / HAAR_CASCADE
    casc = cv2.CascadeClassifier(str(path))
    if casc.empty():
        raise InputError(path, None, "cannot load OpenCV's bundled Haar cascade")
    gray = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)
    det = casc.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
    det = np.asarray(det, np.float64).reshape(-1, 4)
    boxes = np.column_stack([det[:, :2], det[:, :2] + det[:, 2:]])
    return boxes[np.argsort(-(det[:, 2] * det[:, 3]), kind="stable")]


def draw_overlay(image: np.ndarray, points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB copy with the boxes and (F, K, 3) points drawn."""
    out = np.ascontiguousarray(image.copy())
    r = max(1, int(round(max(image.shape[:2]) / 400)))
    for bx, pts in zip(boxes, points, strict=True):
        cv2.rectangle(out, (int(bx[0]), int(bx[1])), (int(bx[2]), int(bx[3])), (255, 200, 0), r)
        for x, y in pts[:, :2]:
            cv2.circle(out, (int(round(x)), int(round(y))), r, (0, 255, 0), -1)
    return out


def predict_files(
    predictor: Predictor, images: list[str | os.PathLike], out_dir: str | os.PathLike, all_faces: bool = False
) -> tuple[list[dict[str, Any]], list[InputError]]:
    """``densemark predict``: per image ``<stem>.json``, ``<stem>.npy`` and ``<stem>_overlay.png``.

    The NPY holds (K, 3) float32 image-pixel landmarks of the largest face, or (F, K, 3) of
    every face with ``all_faces``. Bad images (unreadable, no face) are returned as errors
    naming the file; the others are still written.
    """
    out = Path(out_dir)
    done, errors = [], []
    for path in images:
        p = Path(path)
        try:
            img = read_image(p)
            boxes = detect_faces(img)
            if not len(boxes):
                raise InputError(p, "face", "no face detected (OpenCV Haar cascade)")
            if not all_faces:
                boxes = boxes[:1]
            pts = predictor.predict([img] * len(boxes), boxes, "detector")
        except InputError as exc:
            errors.append(exc)
            continue
        save_npy(out / f"{p.stem}.npy", pts if all_faces else pts[0])
        rec = {
            "image": str(p),
            "landmark_set": predictor.landmark_set.get("name"),
            "landmark_set_sha256": predictor.landmark_set.get("sha256"),
            "units": "image pixels (x right, y down; z in image-pixel scale, crop offset)",
            "faces": [{"box": bx.tolist(), "landmarks": q.tolist()} for bx, q in zip(boxes, pts, strict=True)],
        }
        write_json(out / f"{p.stem}.json", rec)
        ok, png = cv2.imencode(".png", cv2.cvtColor(draw_overlay(img, pts, boxes), cv2.COLOR_RGB2BGR))
        with atomic_path(out / f"{p.stem}_overlay.png") as tmp:
            tmp.write_bytes(png.tobytes())
        done.append({"image": str(p), "faces": len(boxes), "json": str(out / f"{p.stem}.json")})
    return done, errors


__all__ = ["Predictor", "load_predictor", "predict_files", "detect_faces", "box_to_crop", "detector_to_landmark_boxes"]

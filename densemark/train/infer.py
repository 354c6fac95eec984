"""Torch-free inference: the box-to-crop rule, crop <-> image mapping and the ONNX predictor.

The light deployment path: an exported ``model.onnx`` (see :mod:`densemark.train.export`,
which stores the model's config and landmark set in the file's metadata) runs in ONNX Runtime
with numpy and OpenCV only; this module never imports torch.

Box-to-crop rule (``box_kind="landmarks"``): the tight box ``[x0, y0, x1, y1]`` of the 68
keypoints. The crop is the training crop (PRNet, :func:`densemark.faces.crop.crop_square`): a
square of ``int(1.5 * (w + h) / 2)`` pixels centred on the box, mapped onto ``[0, S - 1]^2``.
``box_kind="detector"``: a box of OpenCV's frontal Haar cascade, first turned into an
estimated keypoint box (:func:`detector_to_landmark_boxes`).

Output: (K, 3) per face in image pixels (x right, y down, from the top-left pixel centre); z
is the crop's z divided by the crop scale (image-pixel scale, the crop's offset).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densemark.core.errors import InputError
from densemark.faces.crop import CropTransform, crop_image, crop_transform

HAAR_CENTRE_DY = 0.15  # keypoint-box centre below the cascade box centre, x box width
HAAR_SIDE = 0.78  # keypoint-box mean side, x cascade box width
META_CONFIG = "densemark.config"  # ONNX metadata keys (JSON values)
META_LANDMARK_SET = "densemark.landmark_set"
ONNX_SUFFIXES = (".onnx",)


def detector_to_landmark_boxes(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) frontal-cascade boxes [x0, y0, x1, y1] -> (N, 4) estimated 68-keypoint boxes."""
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


def landmark_boxes(boxes: np.ndarray, box_kind: str, n_images: int) -> np.ndarray:
    """(N, 4) 68-keypoint boxes from ``boxes`` of ``box_kind`` ("landmarks" or "detector")."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(b) != n_images:
        raise InputError(None, "boxes", f"{n_images} images but {len(b)} boxes")
    if box_kind == "detector":
        return detector_to_landmark_boxes(b)
    if box_kind != "landmarks":
        raise InputError(None, "box_kind", f"expected 'landmarks' or 'detector', got {box_kind!r}")
    return b


def crops_of(images: list[np.ndarray], tfs: list[CropTransform]) -> np.ndarray:
    """(N, 3, S, S) float32 network input in [0, 1] from N (H, W, 3) uint8 RGB images."""
    crops = np.stack([crop_image(np.asarray(im), tf) for im, tf in zip(images, tfs, strict=True)])
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def to_image(pred: np.ndarray, tfs: list[CropTransform]) -> np.ndarray:
    """(N, K, 3) crop-pixel predictions -> (N, K, 3) float32 image pixels (z: scale only)."""
    out = np.empty(pred.shape, np.float32)
    for i, tf in enumerate(tfs):
        out[i] = tf.invert(pred[i])
        out[i, :, 2] = pred[i, :, 2] / tf.scale  # the crop's z offset is not known
    return out


def predict_boxes(
    forward: Callable[[np.ndarray], np.ndarray],
    images: list[np.ndarray],
    boxes: np.ndarray,
    box_kind: str,
    config: dict[str, Any],
    crop_scale: float,
    batch_size: int,
) -> np.ndarray:
    """The crop rule around any network: (N, K, 3) float32 image-pixel landmarks, one face per
    (image, box).

    ``forward`` maps a (n, 3, S, S) float32 batch in [0, 1] to (n, 3 K) outputs in units of the
    crop side S (``config``: ``input_size`` S, ``n_points`` K); batches of ``batch_size``.
    """
    b = landmark_boxes(boxes, box_kind, len(images))
    k = int(config["n_points"])
    if not len(b):
        return np.zeros((0, k, 3), np.float32)
    s = int(config["input_size"])
    tfs = [box_to_crop(bx, s, crop_scale) for bx in b]
    pred = np.empty((len(b), k, 3), np.float32)
    for i in range(0, len(b), batch_size):
        j = min(i + batch_size, len(b))
        pred[i:j] = np.asarray(forward(crops_of(images[i:j], tfs[i:j]))).reshape(j - i, k, 3) * s
    return to_image(pred, tfs)


@dataclass
class OnnxPredictor:
    """An exported model run by ONNX Runtime; the same interface as the PyTorch ``Predictor``."""

    session: Any
    config: dict[str, Any]
    landmark_set: dict[str, Any] = field(default_factory=dict)
    crop_scale: float = 1.5
    batch_size: int = 64
    source: Path | None = None

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    def predict(
        self, images: list[np.ndarray], boxes: np.ndarray, box_kind: str = "landmarks"
    ) -> np.ndarray:
        """(N, K, 3) float32 image-pixel landmarks, one face per (image, box); see the module docstring."""
        name = self.session.get_inputs()[0].name
        return predict_boxes(
            lambda x: self.session.run(None, {name: x})[0],
            images, boxes, box_kind, self.config, self.crop_scale, self.batch_size,
        )  # fmt: skip


def ort_session(model: bytes | str | os.PathLike, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session on ``threads`` intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def load_onnx_predictor(path: str | os.PathLike, threads: int = 1) -> OnnxPredictor:
    """An :class:`OnnxPredictor` from a ``.onnx`` file (``densemark export``; config and landmark
    set from its metadata, else input size and point count from the graph's shapes)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, None, "model file not found")
    try:
        sess = ort_session(p, threads)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own kinds on bad files
        raise InputError(
            p, None, f"not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    meta = sess.get_modelmeta().custom_metadata_map or {}
    try:
        config = json.loads(meta[META_CONFIG]) if META_CONFIG in meta else {}
        lset = json.loads(meta[META_LANDMARK_SET]) if META_LANDMARK_SET in meta else {}
    except ValueError as exc:
        raise InputError(p, "metadata", f"bad densemark metadata ({exc})") from None
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    shape_in, shape_out = list(inp.shape), list(out.shape)
    if len(shape_in) != 4 or len(shape_out) != 2:
        raise InputError(
            p,
            "graph",
            f"expected image (N, 3, S, S) -> landmarks (N, 3K), got {shape_in} -> {shape_out}",
        )
    if "input_size" not in config:
        if not isinstance(shape_in[2], int):
            raise InputError(
                p, "graph", "the input side is not fixed and the file has no densemark metadata"
            )
        config["input_size"] = int(shape_in[2])
    if "n_points" not in config:
        if not isinstance(shape_out[1], int) or shape_out[1] % 3:
            raise InputError(p, "graph", f"output {shape_out} is not (N, 3K)")
        config["n_points"] = shape_out[1] // 3
    return OnnxPredictor(sess, config, lset, source=p)


def model_file_kind(path: str | os.PathLike) -> str:
    """``"torch"`` (a zip archive: ``model.pt`` / ``checkpoint.pt``) or ``"onnx"``.

    Raises:
        InputError: missing file, or neither kind (named with what was expected).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, None, "model file not found")
    with open(p, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "torch"
    if (
        p.suffix.lower() in ONNX_SUFFIXES or head[:1] == b"\x08"
    ):  # ONNX: protobuf, field 1 (ir_version) first
        return "onnx"
    raise InputError(p, None, "not a densemark model: expected a checkpoint (model.pt / checkpoint.pt, "
                              "written by `densemark train`) or an ONNX file (model.onnx, `densemark export`)")  # fmt: skip


def load_any_predictor(path: str | os.PathLike, device: str = "cpu") -> Any:
    """A predictor for a ``.pt`` checkpoint (PyTorch) or an ``.onnx`` file (ONNX Runtime, no torch)."""
    if model_file_kind(path) == "onnx":
        if device != "cpu":
            raise InputError(
                path,
                "device",
                "an ONNX model runs on the CPU here (ONNX Runtime); use --device cpu",
            )
        return load_onnx_predictor(path)
    from densemark.train.predict import load_predictor  # imports torch

    return load_predictor(path, device)

"""Prediction with the PyTorch model: face box -> training crop -> model -> image-pixel landmarks.

The crop rule, the crop <-> image mapping and the ONNX Runtime predictor live in the torch-free
:mod:`densemark.train.infer`; face boxes in :mod:`densemark.train.detect`; the ``predict``
command's file handling in :mod:`densemark.train.photos`. This module adds the PyTorch
:class:`Predictor` and :func:`load_predictor`, which also opens an ``.onnx`` file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from densemark.train.detect import detect_faces
from densemark.train.export import load_model
from densemark.train.infer import (
    box_to_crop,
    detector_to_landmark_boxes,
    load_onnx_predictor,
    model_file_kind,
    predict_boxes,
)
from densemark.train.models import torch_threads
from densemark.train.photos import draw_overlay, predict_files


@dataclass
class Predictor:
    """A trained regressor with its crop rule; see :func:`load_predictor`."""

    model: torch.nn.Module
    config: dict[str, Any]
    landmark_set: dict[str, Any]
    device: torch.device
    crop_scale: float = 1.5
    batch_size: int = 64  # crops per forward pass
    threads: int = 0  # torch intra-op threads while predicting (0: the process's setting)

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    @torch.no_grad()
    def predict(
        self, images: list[np.ndarray], boxes: np.ndarray, box_kind: str = "landmarks"
    ) -> np.ndarray:
        """Landmarks of one face per (image, box).

        images: N x (H, W, 3) uint8 RGB; boxes: (N, 4) float [x0, y0, x1, y1] image pixels;
        box_kind: "landmarks" (tight 68-keypoint box) or "detector" (frontal Haar cascade box).
        Returns (N, K, 3) float32 in image pixels.
        """

        def forward(x: np.ndarray) -> np.ndarray:
            return self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

        with torch_threads(self.threads):
            return predict_boxes(
                forward, images, boxes, box_kind, self.config, self.crop_scale, self.batch_size
            )


def load_predictor(checkpoint: str | os.PathLike, device: str = "cpu", threads: int = 0) -> Any:
    """A :class:`Predictor` from a ``model.pt`` / ``checkpoint.pt`` (``weights_only=True``), or an
    :class:`~densemark.train.infer.OnnxPredictor` from an ``.onnx`` file (one thread). ``threads``:
    torch's intra-op threads while a PyTorch model predicts (0: the process's setting)."""
    if model_file_kind(checkpoint) == "onnx":
        return load_onnx_predictor(checkpoint)
    model, ck = load_model(checkpoint, device)
    return Predictor(
        model, dict(ck["config"]), dict(ck["landmark_set"]), torch.device(device), threads=threads
    )


__all__ = ["Predictor", "load_predictor", "predict_files", "detect_faces", "box_to_crop", "detector_to_landmark_boxes",
           "draw_overlay"]  # fmt: skip

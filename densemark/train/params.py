"""Parameters of training and export (``params.yaml`` section ``train``).

The defaults are the small configuration ``dvc repro`` trains on the embedded data in a few
minutes on 2 CPU cores. The paper's configuration (Basak et al. 2023) is
``backbone: mobilenetv2, width: 1.0, input_size: 256`` with the Wing+MSE loss defaults below
(w1 = 1.5, w2 = 0.5, Wing w = 15, epsilon = 3); epochs, batch size and learning rate of a full
300W-LP run are ours (see README.md, "Training").
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AugmentParams(BaseModel):
    """Per-sample augmentation, drawn from ``rng_for(train.seed, epoch, index)``.

    Geometry is one similarity about the crop centre (rotation, scale, shift) applied to the
    image and to the labels (x, y by the similarity, z by its scale factor). Colour, blur and
    occlusion change only the image. No flips: flipped rows come from the dataset.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="augment the training images")
    rotation_deg: float = Field(
        15.0, ge=0, le=180, allow_inf_nan=False, description="rotation ~ U(-r, r), degrees"
    )
    scale: float = Field(
        0.1, ge=0, lt=1, allow_inf_nan=False, description="scale factor ~ U(1 - s, 1 + s)"
    )
    shift: float = Field(
        0.05, ge=0, le=0.5, allow_inf_nan=False, description="shift per axis, fraction of the side"
    )
    channel_gain: float = Field(
        0.4, ge=0, lt=1, allow_inf_nan=False, description="per-channel gain ~ U(1 - g, 1 + g)"
    )
    brightness: float = Field(
        0.1, ge=0, le=1, allow_inf_nan=False, description="brightness offset ~ U(-b, b) * 255"
    )
    contrast: float = Field(
        0.2, ge=0, lt=1, allow_inf_nan=False, description="contrast about 128 ~ U(1 - c, 1 + c)"
    )
    blur_prob: float = Field(
        0.2, ge=0, le=1, allow_inf_nan=False, description="probability of a Gaussian blur"
    )
    blur_sigma: float = Field(
        1.5, gt=0, le=10, allow_inf_nan=False, description="largest blur sigma, input pixels"
    )
    occlusion_prob: float = Field(
        0.3, ge=0, le=1, allow_inf_nan=False, description="probability of an occluding rectangle"
    )
    occlusion_size: float = Field(
        0.4,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="largest occluder side, fraction of the side",
    )


class TrainParams(BaseModel):
    """Model, optimisation and data loading of ``densemark train``."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = Field(
        "mobilenetv2", pattern=r"^[a-z0-9_]+$", description="backbone name (mobilenetv2, resnet18)"
    )
    width: float = Field(
        0.5, gt=0, le=4, allow_inf_nan=False, description="backbone width multiplier"
    )
    input_size: int = Field(128, ge=32, le=1024, description="network input side, pixels")
    dropout: float = Field(
        0.0, ge=0, lt=1, allow_inf_nan=False, description="dropout before the head"
    )
    column: str = Field(
        "landmarks", description="the dataset's label column (a relabelled set: landmarks__<name>)"
    )
    train_split: str = Field("train", description="split trained on")
    val_split: str = Field("val", description="split scored after every epoch (when present)")
    epochs: int = Field(60, ge=1, description="training epochs")
    batch_size: int = Field(8, ge=1, description="images per step")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adamw", description="optimizer")
    lr: float = Field(2e-3, gt=0, allow_inf_nan=False, description="learning rate")
    weight_decay: float = Field(1e-4, ge=0, allow_inf_nan=False, description="weight decay")
    scheduler: Literal["cosine", "step", "none"] = Field(
        "cosine", description="learning-rate schedule"
    )
    step_epochs: int = Field(10, ge=1, description="scheduler step: x gamma every step_epochs")
    gamma: float = Field(0.1, gt=0, le=1, allow_inf_nan=False, description="scheduler step factor")
    w1: float = Field(1.5, ge=0, allow_inf_nan=False, description="Wing loss weight")
    w2: float = Field(0.5, ge=0, allow_inf_nan=False, description="MSE loss weight")
    wing_w: float = Field(15.0, gt=0, allow_inf_nan=False, description="Wing loss w")
    wing_epsilon: float = Field(3.0, gt=0, allow_inf_nan=False, description="Wing loss epsilon")
    loss_scale: float = Field(
        256.0, gt=0, allow_inf_nan=False, description="errors in pixels of a crop this size"
    )
    workers: int = Field(2, ge=0, le=64, description="data-loading processes")
    threads: int = Field(
        1, ge=0, le=256, description="torch intra-op CPU threads (0: torch's default)"
    )
    seed: int = Field(0, ge=0, description="seed of initialisation, shuffling and augmentation")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "cpu", description="auto (CUDA when present), cpu or cuda"
    )
    amp: bool = Field(True, description="mixed precision (autocast) on CUDA only")
    augment: AugmentParams = Field(AugmentParams(), description="per-sample augmentation")
    onnx_opset: int = Field(17, ge=11, le=21, description="ONNX opset of the export")

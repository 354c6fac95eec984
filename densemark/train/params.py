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

    enabled: bool = True
    rotation_deg: float = Field(15.0, ge=0, le=180, allow_inf_nan=False)  # angle ~ U(-r, r)
    scale: float = Field(0.1, ge=0, lt=1, allow_inf_nan=False)  # factor ~ U(1 - s, 1 + s)
    shift: float = Field(0.05, ge=0, le=0.5, allow_inf_nan=False)  # per axis, fraction of the side
    channel_gain: float = Field(0.4, ge=0, lt=1, allow_inf_nan=False)  # per-channel x U(1 - g, 1 + g) (PRNet: 0.4)
    brightness: float = Field(0.1, ge=0, le=1, allow_inf_nan=False)  # + U(-b, b) * 255
    contrast: float = Field(0.2, ge=0, lt=1, allow_inf_nan=False)  # about 128, x U(1 - c, 1 + c)
    blur_prob: float = Field(0.2, ge=0, le=1, allow_inf_nan=False)
    blur_sigma: float = Field(1.5, gt=0, le=10, allow_inf_nan=False)  # max Gaussian sigma, in input pixels
    occlusion_prob: float = Field(0.3, ge=0, le=1, allow_inf_nan=False)
    occlusion_size: float = Field(0.4, gt=0, le=1, allow_inf_nan=False)  # max rectangle side, fraction of the side


class TrainParams(BaseModel):
    """Model, optimisation and data loading of ``densemark train``."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = Field("mobilenetv2", pattern=r"^[a-z0-9_]+$")
    width: float = Field(0.5, gt=0, le=4, allow_inf_nan=False)
    input_size: int = Field(128, ge=32, le=1024)
    dropout: float = Field(0.0, ge=0, lt=1, allow_inf_nan=False)
    column: str = "landmarks"  # the dataset's label column (a relabelled set: landmarks__<name>)
    train_split: str = "train"
    val_split: str = "val"  # scored after every epoch when the dataset has it
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(8, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(2e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(1e-4, ge=0, allow_inf_nan=False)
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    step_epochs: int = Field(10, ge=1)  # scheduler "step": x gamma every step_epochs
    gamma: float = Field(0.1, gt=0, le=1, allow_inf_nan=False)
    w1: float = Field(1.5, ge=0, allow_inf_nan=False)  # Wing weight
    w2: float = Field(0.5, ge=0, allow_inf_nan=False)  # MSE weight
    wing_w: float = Field(15.0, gt=0, allow_inf_nan=False)
    wing_epsilon: float = Field(3.0, gt=0, allow_inf_nan=False)
    loss_scale: float = Field(256.0, gt=0, allow_inf_nan=False)  # errors in pixels of a crop this size
    workers: int = Field(2, ge=0, le=64)
    threads: int = Field(1, ge=0, le=256)  # torch intra-op CPU threads; 0: torch's default
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "cpu"  # auto: CUDA when present
    amp: bool = True  # mixed precision (bfloat16/float16 autocast) on CUDA only
    augment: AugmentParams = AugmentParams()
    onnx_opset: int = Field(17, ge=11, le=21)

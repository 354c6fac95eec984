"""Parameters of the dataset stages (``params.yaml`` sections ``posmap``, ``build``, ``splits``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class CropParams(BaseModel):
    """The crop around a face (3DDFA convention, :mod:`densemark.faces.crop`): the keys the
    ``posmap`` and ``build`` sections share."""

    model_config = ConfigDict(extra="forbid")

    crop_scale: float = Field(
        1.5, gt=0, allow_inf_nan=False, description="crop side / mean side of the 68-keypoint box"
    )
    jitter: float = Field(
        0.0,
        ge=0,
        le=0.5,
        allow_inf_nan=False,
        description="random centre shift, fraction of the box side",
    )
    size_jitter: float = Field(
        0.0,
        ge=0,
        le=0.5,
        allow_inf_nan=False,
        description="random relative change of the crop side",
    )
    seed: int = Field(0, ge=0, description="seeds the crop jitter (with each sample id)")


class PosmapParams(CropParams):
    """UV position-map rendering (PRNet convention); the map side is ``model.uv_res``."""

    batch: int = Field(
        32, ge=1, description="samples rendered per batch (memory only: never changes the maps)"
    )


class BuildParams(CropParams):
    """The dataset build (section ``build``): crops, labels, flips and shards.

    ``workers`` only sets how many processes share the chunks; it never changes the output.
    """

    res: int = Field(256, ge=16, le=2048, description="crop side in pixels")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of the stored crops")
    flip: bool = Field(
        True, description="add a mirrored copy of every sample (needs an exact mirror permutation)"
    )
    skip_flip_twins: bool = Field(
        True,
        description="with flip: do not mirror a sample whose _Flip twin (300W-LP's refitted mirrored copy) is in the source",
    )
    formats: list[Literal["parquet", "hdf5"]] = Field(
        default_factory=lambda: ["parquet"],
        min_length=1,
        description="shard formats to write (parquet and/or hdf5)",
    )
    chunk_size: int = Field(256, ge=1, description="source samples per chunk (one shard per chunk)")
    row_group_size: int = Field(128, ge=1, description="Parquet rows per row group")
    hdf5_compression: int = Field(
        4, ge=0, le=9, description="gzip level of the HDF5 arrays (0: none)"
    )
    posmaps: bool = Field(
        False, description="also store full position maps (face pixels only, float16)"
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=1,
        description="source images whose header claims more pixels are quarantined, not decoded",
    )
    min_image_side: int = Field(
        32,
        ge=1,
        description="source images with a shorter side are quarantined (too small for a crop)",
    )
    blank_crop_std: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="crops whose pixel std (every channel) is below this are quarantined as blank; 0: off",
    )
    kpt68_tol: float = Field(
        0.03,
        gt=0,
        le=1,
        description="max 2D gap between the set's 68 subset and the keypoints, fraction of res",
    )
    root_subset: str = Field(
        "synthetic",
        min_length=1,
        description="subset name of samples directly in the source folder",
    )
    batch: int = Field(
        64, ge=1, description="samples per geometry batch inside a chunk (memory only)"
    )
    workers: int = Field(
        2, ge=1, le=256, description="processes over chunks (output does not depend on it)"
    )

    @field_validator("formats")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("formats repeated")
        return sorted(v)


class SplitParams(BaseModel):
    """Train/val/test split by source image group (section ``splits``), seeded."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, description="seed of the split draw")
    val: float = Field(
        0.1, ge=0, le=1, allow_inf_nan=False, description="fraction of source image groups in val"
    )
    test: float = Field(
        0.1, ge=0, le=1, allow_inf_nan=False, description="fraction of source image groups in test"
    )

    @model_validator(mode="after")
    def _sum(self) -> SplitParams:
        if self.val + self.test > 1:
            raise ValueError(f"val + test = {self.val + self.test} > 1")
        return self

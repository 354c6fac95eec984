"""Parameters of the dataset stages (``params.yaml`` section ``posmap``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PosmapParams(BaseModel):
    """UV position-map rendering (PRNet convention); the map side is ``model.uv_res``."""

    model_config = ConfigDict(extra="forbid")

    crop_scale: float = Field(1.5, gt=0, allow_inf_nan=False)
    jitter: float = Field(0.0, ge=0, le=0.5, allow_inf_nan=False)  # centre shift, fraction of the box side
    size_jitter: float = Field(0.0, ge=0, le=0.5, allow_inf_nan=False)
    seed: int = Field(0, ge=0)
    batch: int = Field(32, ge=1)

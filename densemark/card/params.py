"""Parameters of the dataset card (``params.yaml`` section ``card``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CardParams(BaseModel):
    """What ``densemark card`` draws and names; every number in the card comes from the build's files."""

    model_config = ConfigDict(extra="forbid")

    pretty_name: str = Field(
        "densemark dense 3D facial landmarks",
        min_length=1,
        max_length=200,
        description="the card's title (its `pretty_name` header)",
    )
    n_samples: int = Field(12, ge=1, le=64, description="samples in the grid (spread over yaw)")
    grid_cols: int = Field(4, ge=1, le=16, description="columns of the sample grid")
    yaw_bin_deg: float = Field(
        15.0, gt=0, le=90, allow_inf_nan=False, description="width of the yaw histogram bins"
    )
    max_quarantine: int = Field(
        50, ge=0, le=10000, description="quarantine entries listed in full (all are counted)"
    )
    dpi: int = Field(100, ge=50, le=300, description="resolution of the card's figures")

"""Parameters of the embedded procedural face model (``params.yaml`` section ``procedural``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ProceduralParams(BaseModel):
    """The procedural morphable face model written by ``densemark model``.

    Every random draw is keyed by ``seed`` (``(seed, 100 + k)``-style keys), so the same
    parameters give byte-identical files.
    """

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, description="seed of the procedural model")
    grid: int = Field(
        161, ge=25, le=255, description="UV grid points per side, odd (the UV map is 256x256)"
    )
    n_shape: int = Field(
        199, ge=1, le=199, description="identity basis columns (300W-LP Shape_Para: 199)"
    )
    n_exp: int = Field(
        29, ge=1, le=29, description="expression basis columns (300W-LP Exp_Para: 29)"
    )

    @model_validator(mode="after")
    def _odd(self) -> ProceduralParams:
        if self.grid % 2 == 0:
            raise ValueError(
                f"grid must be odd so the midline u = 0.5 is a grid column, got {self.grid}"
            )
        return self

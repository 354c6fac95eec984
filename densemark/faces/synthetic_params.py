"""Parameters of the embedded default (``params.yaml`` section ``synthetic``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SyntheticParams(BaseModel):
    """The procedural face model and the synthetic 300W-LP / AFLW2000-3D style sources."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0

"""Parameters of the ``sample`` stage (``params.yaml`` section ``sample``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SampleParams(BaseModel):
    """Dense landmark sampling on the face template."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0

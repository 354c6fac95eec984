"""Parameters of the face model in use (``params.yaml`` section ``model``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelParams(BaseModel):
    """Which face model the pipeline uses, and the side of its UV map.

    ``source: embedded`` generates the procedural model (section ``procedural``) into ``dir``;
    ``source: bfm`` reads a face3d ``BFM.mat`` + ``BFM_UV.mat`` from ``dir``;
    ``source: bfm-mean`` reads 3DDFA's mean arrays + ``tri.mat`` + ``BFM_info.mat`` + ``BFM_UV.mat``.

    ``uv_res`` is the one UV map side: the template is derived (or checked) at it and every
    position map and crop is rendered at it (PRNet: 256).
    """

    model_config = ConfigDict(extra="forbid")

    source: Literal["embedded", "bfm", "bfm-mean"] = Field(
        "embedded",
        description="the face model: embedded (procedural, no licence needed), bfm or bfm-mean",
    )
    dir: Path = Field(Path("data/model"), description="folder of the model files")
    template_dir: Path | None = Field(
        None, description="PRNet template folder; null: derived from the model"
    )
    cache_dir: Path = Field(
        Path("data/cache"), description="cache of per-model computations (UV rasterization)"
    )
    uv_res: int = Field(256, ge=16, le=2048, description="UV map / crop side in pixels")

    def recorded(self) -> dict:
        """The section as written into outputs: :func:`recorded_model_params` of its JSON dump."""
        return recorded_model_params(self.model_dump(mode="json"))


LOCAL_FIELDS = ("dir", "template_dir", "cache_dir")


def recorded_model_params(dump: dict) -> dict:
    """A ``model`` section (JSON dump) without where its files live on this machine.

    Reports and manifests record the model and template by content hash; their folders (and the
    cache folder) are left out so that no written byte depends on the clone's path.
    """
    return {k: v for k, v in dump.items() if k not in LOCAL_FIELDS}

"""Typed pipeline parameters, loaded from ``params.yaml`` (one section per stage).

A bad value fails at load with a message that names the key, e.g.
``params.yaml: posmap.res: Input should be greater than or equal to 16``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from densemark.errors import ConfigError
from densemark.faces.synthetic_params import SyntheticParams
from densemark.sampling.params import SampleParams

REAL_DATA_ENV = "DENSEMARK_REAL_DATA"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelParams(_Section):
    """Which face model the pipeline uses.

    ``source: embedded`` generates the procedural model (``synthetic`` section) into ``dir``;
    ``source: bfm`` reads a face3d ``BFM.mat`` + ``BFM_UV.mat`` from ``dir``;
    ``source: bfm-mean`` reads 3DDFA's mean arrays + ``tri.mat`` + ``BFM_info.mat`` + ``BFM_UV.mat``.
    """

    source: Literal["embedded", "bfm", "bfm-mean"] = "embedded"
    dir: Path = Path("data/model")
    template_dir: Path | None = None  # PRNet template folder; None = derive from the model
    cache_dir: Path = Path("data/cache")


class PosmapParams(_Section):
    """UV position-map rendering (PRNet convention)."""

    res: int = Field(256, ge=16, le=2048)
    crop_scale: float = Field(1.5, gt=0)
    jitter: float = Field(0.0, ge=0, le=0.5)  # centre shift as a fraction of the box side
    size_jitter: float = Field(0.0, ge=0, le=0.5)
    seed: int = 0
    batch: int = Field(32, ge=1)


class Params(_Section):
    """All of ``params.yaml``."""

    model: ModelParams = ModelParams()
    synthetic: SyntheticParams = SyntheticParams()
    posmap: PosmapParams = PosmapParams()
    sample: SampleParams = SampleParams()


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Load and validate ``params.yaml``; a missing file gives the defaults.

    Raises:
        ConfigError: naming the file and the dotted key of every bad value.
    """
    p = Path(path)
    data: object = {}
    if p.exists():
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        lines = [f"{p}: {'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def real_data_dir(default: Path | None = None, base: Path | None = None) -> Path | None:
    """The real reference data folder, or None when it is not there.

    ``$DENSEMARK_REAL_DATA`` names it, else ``default``. A relative path is taken from the
    working directory, or from ``base`` when it does not exist there.
    """
    v = os.environ.get(REAL_DATA_ENV)
    p = Path(v) if v else default
    if p is None:
        return None
    if not p.is_absolute() and not p.exists() and base is not None:
        p = base / p
    return p if p.is_dir() else None

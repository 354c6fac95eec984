"""Typed pipeline parameters, loaded from ``params.yaml``: composes the parts' sections.

A bad value fails at load with a message that names the key, e.g.
``params.yaml: model.uv_res: Input should be greater than or equal to 16``.

Types are strict: an integer key takes an integer only (not ``true``, ``1.0`` or ``"1"``), a
boolean key ``true``/``false`` only, a number key an integer or a float. The YAML values are
checked as JSON values (pydantic's strict JSON mode), so paths, names and choices are still
written as plain strings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from densemark.card.params import CardParams
from densemark.core.errors import ConfigError
from densemark.datasets.params import BuildParams, PosmapParams, SplitParams
from densemark.evaluate.params import EvaluateParams
from densemark.faces.params import ModelParams
from densemark.faces.procedural.params import ProceduralParams
from densemark.flows.params import FlowParams
from densemark.sampling.params import SampleParams
from densemark.sources.params import SyntheticParams
from densemark.train.params import TrainParams

REAL_DATA_ENV = "DENSEMARK_REAL_DATA"


class Params(BaseModel):
    """All of ``params.yaml``: one section per part, each defined next to its code.

    Only the CLI and the flows import this; a stage function receives its own section(s).
    """

    model_config = ConfigDict(extra="forbid")

    model: ModelParams = ModelParams()
    procedural: ProceduralParams = ProceduralParams()
    synthetic: SyntheticParams = SyntheticParams()
    posmap: PosmapParams = PosmapParams()
    sample: SampleParams = SampleParams()
    build: BuildParams = BuildParams()
    splits: SplitParams = SplitParams()
    card: CardParams = CardParams()
    flows: FlowParams = FlowParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()


def load_params(
    path: str | os.PathLike | None = "params.yaml", overrides: dict | None = None
) -> Params:
    """Load and validate a params file; ``path=None``: the defaults (no file).

    ``overrides`` (``{section: {key: value}}``) are merged over the file's sections first.

    Raises:
        ConfigError: the file is missing or unreadable, or names the file and the dotted key
            of every bad value.
    """
    p = Path("<defaults>" if path is None else path)
    data: object = {}
    if path is not None:
        if not p.is_file():
            raise ConfigError(
                f"{p}: params file not found (give an existing --params file, or leave --params out to use params.yaml or the defaults)"
            )
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections, got {type(data).__name__}")
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    try:
        text = json.dumps(data, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{p}: {exc}") from None
    try:
        return Params.model_validate_json(text, strict=True)
    except ValidationError as exc:
        lines = [f"{p}: {'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def _json_default(o: object) -> object:
    """Overrides given from Python (paths) as their JSON strings; anything else (a YAML date) is an error."""
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(
        f"value {o!r} of type {type(o).__name__} is not a params value (quote it to make it a string)"
    )


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

"""Typed overrides of a flow run: every `params.yaml` section as its pydantic model.

A deployment's run form is built from the flow's signature, so with `overrides: Sections`
the Prefect UI shows each section's fields with their descriptions and defaults, and Prefect
validates a run's overrides before the run starts (a bad value fails naming its key, e.g.
`overrides.sample.target_count`). Only the keys a run gives are merged over the params file.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from densemark.card.params import CardParams
from densemark.datasets.params import BuildParams, PosmapParams, SplitParams
from densemark.evaluate.params import EvaluateParams
from densemark.faces.params import ModelParams
from densemark.faces.procedural.params import ProceduralParams
from densemark.flows.params import FlowParams
from densemark.sampling.params import SampleParams
from densemark.sources.params import SyntheticParams
from densemark.train.params import TrainParams


class Sections(BaseModel):
    """Params sections to merge over the params file for this run (leave empty: the file's)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelParams | None = Field(None, description="the face model (`model` section)")
    procedural: ProceduralParams | None = Field(
        None, description="the embedded procedural model (`procedural`)"
    )
    synthetic: SyntheticParams | None = Field(
        None, description="synthetic 300W-LP / AFLW2000-3D sources (`synthetic`)"
    )
    posmap: PosmapParams | None = Field(None, description="position maps (`posmap`)")
    sample: SampleParams | None = Field(None, description="landmark sampling (`sample`)")
    build: BuildParams | None = Field(None, description="the dataset build (`build`)")
    splits: SplitParams | None = Field(None, description="train / val / test splits (`splits`)")
    card: CardParams | None = Field(None, description="the dataset card (`card`)")
    flows: FlowParams | None = Field(None, description="how the flows run their tasks (`flows`)")
    train: TrainParams | None = Field(None, description="the landmark regressor (`train`)")
    evaluate: EvaluateParams | None = Field(None, description="evaluation (`evaluate`)")


def as_dict(overrides: Sections | dict[str, Any] | None) -> dict[str, Any] | None:
    """`{section: {key: value}}` of the keys a run set (a plain dict is validated first, so a
    bad key or value fails here, naming it)."""
    if overrides is None:
        return None
    if isinstance(overrides, dict):
        overrides = Sections.model_validate(overrides)
    return overrides.model_dump(mode="json", exclude_unset=True) or None

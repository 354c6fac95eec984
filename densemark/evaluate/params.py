"""Parameters of the evaluation stage (``params.yaml`` section ``evaluate``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EvaluateParams(BaseModel):
    """How ``densemark evaluate`` reads the ground truth, runs a model and draws its report.

    ``gt_source``: ``arrays`` reads 3DDFA's benchmark arrays (``AFLW2000-3D.pts68.npy`` and
    friends, in ``GT/gt/`` or ``GT/``), ``mat`` each sample's ``.mat`` (``pt3d_68``, 21-point
    ``pt2d``, ``Pose_Para``), ``auto`` the arrays when present, else the ``.mat`` files.
    ``gt_one_based``: whether ground-truth pixels count from 1 (AFLW2000-3D's MATLAB
    annotation); ``auto`` is False for files written by densemark's synthetic generator (it
    projects in the pipeline's 0-based frame) and True otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    gt_source: Literal["auto", "arrays", "mat"] = Field(
        "auto",
        description="AFLW2000-3D labels: 3DDFA's arrays, each .mat, or auto (arrays when present)",
    )
    reannotated: bool = Field(
        False, description="score against the re-annotated 68 points (arrays only; 2D)"
    )
    gt_one_based: bool | Literal["auto"] = Field(
        "auto", description="whether the labels' pixels count from 1 (auto: from the files)"
    )
    device: str = Field(
        "cpu",
        pattern=r"^(cpu|cuda(:\d+)?|auto)$",
        description="where the model runs: cpu, cuda[:i] or auto",
    )
    batch_size: int = Field(16, ge=1, le=4096, description="images per prediction batch")
    threads: int = Field(
        1,
        ge=0,
        le=256,
        description="torch intra-op CPU threads while the model predicts (0: torch's default); "
        "predictions are the same bytes for the same value",
    )
    dense_split: Literal["test", "val"] = Field(
        "test", description="dataset split scored by the dense NME"
    )
    dense_max_samples: int | None = Field(
        None, ge=1, description="score at most this many held-out rows (None: all)"
    )
    ced_max_pct: float = Field(
        10.0, gt=0, le=100, allow_inf_nan=False, description="x range of the CED plot, NME in %"
    )
    method_name: str = Field(
        "densemark", min_length=1, max_length=80, description="row label in the results table"
    )

"""``densemark evaluate``: score a predictions file or a model on AFLW2000-3D and the held-out shards."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from densemark.config import load_params
from densemark.pipeline import STAGES, add_path_options, run_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="NME on AFLW2000-3D (3DDFA protocol) and dense NME on the held-out split",
        description="Score any predictor's file (--predictions) or our model (--checkpoint). The predictions "
        "file is an .npz with names (N,) image stems, points (N, 68, 2|3) image pixels and one_based (bool).",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--predictions", type=Path, default=None, help="predictions .npz of any predictor"
    )
    add_path_options(p, STAGES["evaluate"], into={"checkpoint": src})
    p.add_argument(
        "--boxes-from",
        choices=("gt", "detector"),
        default="gt",
        help="crops from the ground-truth 68-point boxes (the benchmark protocol, default) or from the face "
        "detector, as `densemark predict` gets them (misses counted and reported)",
    )
    p.add_argument(
        "--detector",
        default="auto",
        choices=("auto", "haar", "haar-frontal", "dlib"),
        help="the detector of --boxes-from detector",
    )
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    res = run_from_args(
        STAGES["evaluate"],
        args,
        load_params(args.params),
        predictions=args.predictions,
        boxes_from=args.boxes_from,
        detector=args.detector,
    )
    print(json.dumps(res.metrics, indent=2, sort_keys=True))
    print(
        f"report: {res.outputs['report']}  table: {res.outputs['table']}  curves: {res.outputs['ced']}"
    )
    return 0

"""``densemark evaluate``: score a predictions file or a model on AFLW2000-3D and the held-out shards."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from densemark.config import load_params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="NME on AFLW2000-3D (3DDFA protocol) and dense NME on the held-out split",
        description="Score any predictor's file (--predictions) or our model (--checkpoint). The predictions "
        "file is an .npz with names (N,) image stems, points (N, 68, 2|3) image pixels and one_based (bool).",
    )
    p.add_argument("--gt", type=Path, default=None, help="AFLW2000-3D folder (image*.jpg + .mat, and/or 3DDFA's arrays in gt/)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--predictions", type=Path, default=None, help="predictions .npz of any predictor")
    src.add_argument("--checkpoint", type=Path, default=None, help="our model's checkpoint")
    p.add_argument("--data", type=Path, default=None, help="dataset build folder: dense NME on evaluate.dense_split")
    p.add_argument("--out", type=Path, required=True, help="folder for report.json, results.md, ced.png")
    p.add_argument("--metrics", type=Path, default=None, help="DVC metrics JSON (default: OUT/metrics.json)")
    p.add_argument("--out-predictions", type=Path, default=None,
                   help="where the model's AFLW2000-3D predictions go (default: OUT/predictions_aflw2000.npz)")
    p.add_argument("--boxes-from", choices=("gt", "detector"), default="gt",
                   help="crops from the ground-truth 68-point boxes (the benchmark protocol, default) or from the face "
                        "detector, as `densemark predict` gets them (misses counted and reported)")
    p.add_argument("--detector", default="auto", choices=("auto", "haar", "haar-frontal", "dlib"),
                   help="the detector of --boxes-from detector")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from densemark.evaluate.stages import run_evaluate

    params = load_params(args.params).evaluate
    res = run_evaluate(params, args.out, gt_dir=args.gt, predictions=args.predictions, checkpoint=args.checkpoint,
                       data_dir=args.data, metrics_path=args.metrics, out_predictions=args.out_predictions,
                       boxes_from=args.boxes_from, detector=args.detector)
    print(json.dumps(res.metrics, indent=2, sort_keys=True))
    print(f"report: {res.files['report']}  table: {res.files['table']}  curves: {res.files['ced']}")
    return 0

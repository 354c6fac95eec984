"""CLI front ends of the dataset stages: ``posmap``."""

from __future__ import annotations

import argparse
import sys

from densemark.config import load_params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("posmap", help="render PRNet-style crops + UV position maps for a 300W-LP-format source")
    p.add_argument("--model-dir", default=None)
    p.add_argument("--source", required=True, help="folder of <id>.jpg + <id>.mat samples")
    p.add_argument("--out", required=True)
    p.add_argument("--report", required=True, help="run report JSON (counts, quarantine list)")
    p.add_argument("--metrics", default=None, help="metrics JSON for DVC (sample and quarantine counts)")
    p.set_defaults(func=_posmap)


def _posmap(args: argparse.Namespace) -> int:
    from densemark.datasets.posmap import run_posmap

    params = load_params(args.params)
    res = run_posmap(params.model, params.posmap, args.model_dir or params.model.dir, args.source, args.out, args.report)
    res.write_metrics(args.metrics)
    if res.metrics["samples"] == 0:
        n = res.metrics["quarantined"]
        print(f"densemark: error: no sample of {args.source} could be processed ({n} quarantined; see {args.report})", file=sys.stderr)
        return 1
    return 0

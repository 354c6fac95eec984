"""CLI front ends of the dataset stages: ``posmap``."""

from __future__ import annotations

import argparse

from densemark.config import load_params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("posmap", help="render PRNet-style crops + UV position maps for a 300W-LP-format source")
    p.add_argument("--model-dir", default=None)
    p.add_argument("--source", required=True, help="folder of <id>.jpg + <id>.mat samples")
    p.add_argument("--out", required=True)
    p.add_argument("--report", required=True)
    p.set_defaults(func=_posmap)


def _posmap(args: argparse.Namespace) -> int:
    from densemark.datasets.posmap import run_posmap

    params = load_params(args.params)
    rep = run_posmap(params.model, params.posmap, args.model_dir or params.model.dir, args.source, args.out, args.report)
    return 0 if rep.counts.get("written", 0) + rep.counts.get("skipped_existing", 0) > 0 else 1

"""``densemark synth-300wlp | synth-aflw2000``: the embedded default's sample generators.

The embedded model itself is written by ``densemark model`` (:mod:`densemark.cli.faces`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from densemark.config import load_params


def register(sub: argparse._SubParsersAction) -> None:
    for name, what, default in (
        ("synth-300wlp", "300W-LP style training samples", "n_train"),
        ("synth-aflw2000", "AFLW2000-3D style test samples (+ gt/*.npy)", "n_test"),
    ):
        p = sub.add_parser(name, help=f"write synthetic {what}")
        p.add_argument("--model-dir", type=Path, required=True, help="folder written by `densemark model`")
        p.add_argument("--out", type=Path, required=True, help="output folder")
        p.add_argument("--n", type=int, default=None, help=f"number of samples (default: synthetic.{default})")
        if name == "synth-300wlp":
            p.add_argument("--start", type=int, default=0, help="first sample index")
        p.set_defaults(func=_samples, kind=name, default_n=default)


def _samples(args: argparse.Namespace) -> int:
    from densemark.sources.synthetic import run_synthetic

    params = load_params(args.params).synthetic
    if args.n is not None and args.n < 0:
        raise SystemExit("densemark: error: --n must be >= 0")
    kind = "300wlp" if args.kind == "synth-300wlp" else "aflw2000"
    paths, n = run_synthetic(kind, args.model_dir, params, args.out, args.n, start=getattr(args, "start", 0))
    print(f"{len(paths)} of {n} samples written to {args.out}")
    return 0 if len(paths) == n else 1

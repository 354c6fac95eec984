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
    from densemark.faces.stages import load_configured_model
    from densemark.sources.synthetic import generate_300wlp, generate_aflw2000

    all_params = load_params(args.params)
    params = all_params.synthetic
    n = getattr(params, args.default_n) if args.n is None else args.n
    if n < 0:
        raise SystemExit("densemark: error: --n must be >= 0")
    model = load_configured_model(all_params.model, args.model_dir)
    if args.kind == "synth-300wlp":
        paths = generate_300wlp(model, params, args.out, n, start=args.start)
    else:
        paths = generate_aflw2000(model, params, args.out, n)
    print(f"{len(paths)} of {n} samples written to {args.out}")
    return 0 if len(paths) == n else 1

"""``densemark synth-300wlp | synth-aflw2000``: the embedded default's sample generators.

The embedded model itself is written by ``densemark model`` (:mod:`densemark.cli.faces`).
"""

from __future__ import annotations

import argparse

from densemark.config import load_params
from densemark.pipeline import STAGES, add_path_options, run_from_args


def register(sub: argparse._SubParsersAction) -> None:
    for stage, what, default in (
        (STAGES["synth_300wlp"], "300W-LP style training samples", "n_train"),
        (STAGES["synth_aflw2000"], "AFLW2000-3D style test samples (+ gt/*.npy)", "n_test"),
    ):
        p = sub.add_parser(stage.command, help=f"write synthetic {what}")
        add_path_options(p, stage)
        p.add_argument(
            "--n", type=int, default=None, help=f"number of samples (default: synthetic.{default})"
        )
        if stage.name == "synth_300wlp":
            p.add_argument("--start", type=int, default=0, help="first sample index")
        p.set_defaults(func=_samples, stage=stage.name)


def _samples(args: argparse.Namespace) -> int:
    if args.n is not None and args.n < 0:
        raise SystemExit("densemark: error: --n must be >= 0")
    res = run_from_args(
        STAGES[args.stage],
        args,
        load_params(args.params),
        n=args.n,
        start=getattr(args, "start", 0),
    )
    m = res.metrics
    print(f"{m['written']} of {m['asked']} samples written to {res.outputs['source']}")
    return 0 if m["written"] == m["asked"] else 1

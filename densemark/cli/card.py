"""``densemark card``: the dataset card of a build (Markdown + JSON + figures)."""

from __future__ import annotations

import argparse

from densemark.config import load_params
from densemark.pipeline import STAGES, add_path_options, run_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("card", help="write the dataset card of a build (params: card)")
    add_path_options(p, STAGES["card"])
    p.set_defaults(func=_card)


def _card(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["card"], args, load_params(args.params))
    c = res.report_dict()
    print(
        f"card: {c['dataset']['rows']} rows, {c['quarantine']['count']} quarantined, terms: {c['licence']['overall']}"
    )
    for name, path in res.outputs.items():
        print(f"{name}: {path}")
    return 0

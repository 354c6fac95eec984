"""``densemark card``: the dataset card of a build (Markdown + JSON + figures)."""

from __future__ import annotations

import argparse

from densemark.config import load_params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("card", help="write the dataset card of a build (params: card)")
    p.add_argument("--dataset", required=True, help="build folder (manifest.json, report.json, shards)")
    p.add_argument("--set", dest="set_path", required=True, help="the build's landmark-set file")
    p.add_argument("--template", required=True, help="template folder the set indexes")
    p.add_argument("--out", required=True, help="card folder (README.md, card.json, PNGs)")
    p.set_defaults(func=_card)


def _card(args: argparse.Namespace) -> int:
    from densemark.card.card import run_card

    r = run_card(load_params(args.params).card, dataset_dir=args.dataset, set_path=args.set_path, template_dir=args.template, out_dir=args.out)
    c = r["card"]
    print(f"card: {c['dataset']['rows']} rows, {c['quarantine']['count']} quarantined, terms: {c['licence']['overall']}")
    for name, path in r["outputs"].items():
        print(f"{name}: {path}")
    return 0

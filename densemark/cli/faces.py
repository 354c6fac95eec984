"""CLI front ends of the face stages: ``model``, ``template``."""

from __future__ import annotations

import argparse

from densemark.config import load_params
from densemark.pipeline import STAGES, add_path_options, run_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "model",
        help="write the embedded face model (BFM.mat + BFM_UV.mat), or check the configured one",
    )
    add_path_options(p, STAGES["model"])
    p.set_defaults(func=_model)

    p = sub.add_parser(
        "template", help="derive (or check and copy) the face template in PRNet's file format"
    )
    add_path_options(p, STAGES["template"])
    p.set_defaults(func=_template)


def _model(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["model"], args, load_params(args.params))
    for name, path in res.outputs.items():
        if name != "metrics":
            print(f"{name}: {path}")
    return 0


def _template(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["template"], args, load_params(args.params))
    t = res.value
    print(
        f"template: {t.n_vertices} vertices, {t.triangles.shape[0]} triangles -> {res.outputs['template']}"
    )
    return 0

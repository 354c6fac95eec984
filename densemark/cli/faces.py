"""CLI front ends of the face stages: ``model``, ``template``."""

from __future__ import annotations

import argparse

from densemark.config import load_params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="write the embedded face model (BFM.mat + BFM_UV.mat), or check the configured one")
    p.add_argument("--out", default=None, help="model folder (default: model.dir)")
    p.add_argument("--metrics", default=None, help="metrics JSON for DVC")
    p.set_defaults(func=_model)

    p = sub.add_parser("template", help="derive (or check and copy) the face template in PRNet's file format")
    p.add_argument("--model-dir", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--report", default=None, help="run report JSON")
    p.add_argument("--metrics", default=None, help="metrics JSON for DVC (vertex and triangle counts)")
    p.set_defaults(func=_template)


def _model(args: argparse.Namespace) -> int:
    from densemark.faces.stages import run_model

    params = load_params(args.params)
    res = run_model(params.model, params.procedural, args.out or params.model.dir)
    for name, path in res.outputs.items():
        print(f"{name}: {path}")
    res.write_metrics(args.metrics)
    return 0


def _template(args: argparse.Namespace) -> int:
    from densemark.faces.stages import run_template

    params = load_params(args.params).model
    res = run_template(params, args.model_dir or params.dir, args.out, args.report)
    res.write_metrics(args.metrics)
    t = res.value
    print(f"template: {t.n_vertices} vertices, {t.triangles.shape[0]} triangles -> {args.out}")
    return 0

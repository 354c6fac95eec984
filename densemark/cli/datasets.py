"""CLI front ends of the dataset stages: ``posmap``, ``build``, ``relabel``."""

from __future__ import annotations

import argparse
import sys

from densemark.config import load_params
from densemark.core.atomic import write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("posmap", help="render PRNet-style crops + UV position maps for a 300W-LP-format source")
    p.add_argument("--model-dir", default=None)
    p.add_argument("--source", required=True, help="folder of <id>.jpg + <id>.mat samples")
    p.add_argument("--out", required=True)
    p.add_argument("--report", required=True, help="run report JSON (counts, quarantine list)")
    p.add_argument("--metrics", default=None, help="metrics JSON for DVC (sample and quarantine counts)")
    p.set_defaults(func=_posmap)
    register_build(sub)


def _posmap(args: argparse.Namespace) -> int:
    from densemark.datasets.posmap import run_posmap

    params = load_params(args.params)
    res = run_posmap(params.model, params.posmap, args.model_dir or params.model.dir, args.source, args.out, args.report)
    res.write_metrics(args.metrics)
    if res.metrics["samples"] == 0:
        n = res.metrics["quarantined"]
        print(f"densemark: error: no sample of {args.source} could be processed ({n} quarantined; see {args.report})", file=sys.stderr)
        return 1


def register_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build the dataset: crops + dense landmark labels in Parquet/HDF5 shards")
    p.add_argument("--model-dir", default=None)
    p.add_argument("--template", required=True, help="face template folder the landmark set indexes")
    p.add_argument("--set", required=True, help="landmark set JSON")
    p.add_argument("--source", required=True, help="300W-LP-format source folder")
    p.add_argument("--out", required=True, help="dataset folder (manifest.json, shards, report.json)")
    p.add_argument("--report", default=None, help="also write the run report here")
    p.add_argument("--metrics", default=None, help="metrics JSON for DVC (row, sample and quarantine counts)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: build.workers)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any source file was quarantined (the dataset is still written)")
    p.set_defaults(func=_build)
    r = sub.add_parser("relabel", help="add label columns for another landmark set to a built dataset (sidecar files; no re-rendering, shards untouched)")
    r.add_argument("dataset", help="dataset folder")
    r.add_argument("--set", required=True, help="landmark set JSON")
    r.add_argument("--model-dir", default=None)
    r.add_argument("--template", required=True)
    r.add_argument("--out", default=None, help="write a relabelled copy here (default: in place)")
    r.set_defaults(func=_relabel)


def _build(args: argparse.Namespace) -> int:
    from densemark.datasets.build import build_metrics, run_build
    from densemark.datasets.plan import BuildPaths

    params = load_params(args.params)
    paths = BuildPaths(model_dir=args.model_dir or params.model.dir, template_dir=args.template, set_path=args.set, source_dir=args.source, out_dir=args.out)
    res = run_build(params.model, params.build, params.splits, paths, report_path=args.report, workers=args.workers)
    m = res.manifest
    if args.metrics:
        write_json(args.metrics, build_metrics(m))
    print(f"build: {m['rows']} rows from {m['source_samples']} samples, {m['quarantined']} quarantined; manifest sha256 {res.manifest_sha256}")
    if m["rows"] == 0:
        print(f"densemark: error: no valid row was built from {args.source} (every file quarantined; see {args.out}/report.json)", file=sys.stderr)
        return 1
    if args.strict and m["quarantined"]:
        print(f"densemark: error: --strict: {m['quarantined']} source file(s) quarantined (see {args.out}/report.json)", file=sys.stderr)
        return 1
    return 0


def _relabel(args: argparse.Namespace) -> int:
    from densemark.datasets.relabel import relabel

    params = load_params(args.params)
    m = relabel(params.model, dataset_dir=args.dataset, set_path=args.set, model_dir=args.model_dir or params.model.dir, template_dir=args.template, out_dir=args.out)
    print(f"relabel: {m['rows']} rows, columns {', '.join(c for c in m['columns'] if c.startswith('landmarks'))}")
    return 0

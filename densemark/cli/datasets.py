"""CLI front ends of the dataset stages: ``posmap``, ``build``, ``relabel``."""

from __future__ import annotations

import argparse
import sys

from densemark.config import load_params
from densemark.pipeline import STAGES, add_path_options, run_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "posmap", help="render PRNet-style crops + UV position maps for a 300W-LP-format source"
    )
    add_path_options(p, STAGES["posmap"])
    p.set_defaults(func=_posmap)
    register_build(sub)


def _posmap(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["posmap"], args, load_params(args.params))
    if res.metrics["samples"] == 0:
        n, src, rep = res.metrics["quarantined"], args.source, res.outputs["report"]
        print(
            f"densemark: error: no sample of {src} could be processed ({n} quarantined; see {rep})",
            file=sys.stderr,
        )
        return 1
    return 0


def register_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build", help="build the dataset: crops + dense landmark labels in Parquet/HDF5 shards"
    )
    add_path_options(p, STAGES["build"])
    p.add_argument("--workers", type=int, default=None, help="processes (default: build.workers)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any source file was quarantined (the dataset is still written)",
    )
    p.set_defaults(func=_build)
    r = sub.add_parser(
        "relabel",
        help="add label columns for another landmark set to a built dataset (sidecar files; no re-rendering, shards untouched)",
    )
    add_path_options(r, STAGES["relabel"])
    r.set_defaults(func=_relabel)


def _build(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["build"], args, load_params(args.params), workers=args.workers)
    m = res.metrics
    print(
        f"build: {m['rows']} rows from {m['source_samples']} samples, {m['quarantined']} quarantined -> {args.out}"
    )
    if m["rows"] == 0:
        print(
            f"densemark: error: no valid row was built from {args.source} (every file quarantined; see {args.out}/report.json)",
            file=sys.stderr,
        )
        return 1
    if args.strict and m["quarantined"]:
        print(
            f"densemark: error: --strict: {m['quarantined']} source file(s) quarantined (see {args.out}/report.json)",
            file=sys.stderr,
        )
        return 1
    return 0


def _relabel(args: argparse.Namespace) -> int:
    res = run_from_args(STAGES["relabel"], args, load_params(args.params))
    m = res.value.to_dict()
    print(
        f"relabel: {m['rows']} rows, columns {', '.join(c for c in m['columns'] if c.startswith('landmarks'))}"
    )
    return 0

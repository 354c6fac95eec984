"""Subcommands ``densemark sample`` and ``densemark landmarks compare | import-seed``."""

from __future__ import annotations

import argparse
import json

from densemark.config import load_params
from densemark.core.atomic import write_json
from densemark.sampling import stages


def _sample(args: argparse.Namespace) -> int:
    params = load_params(args.params).sample
    res = stages.run_sample(args.template, params, args.out, report_json=args.report, plot_png=args.plot)
    r = res["report"]
    if args.metrics:
        write_json(args.metrics, stages.sample_metrics(r))
    print(f"{args.out}: {r['final']} landmarks (rounds {r['counts']}, sha256 {r['set_sha256'][:12]})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    res = stages.run_compare(args.a, args.b, args.template, out_md=args.out_md, out_png=args.plot, out_json=args.out_json)
    if args.metrics:
        write_json(args.metrics, stages.compare_metrics(res["report"]))
    print(res["markdown"])
    return 0


def _import_seed(args: argparse.Namespace) -> int:
    res = stages.run_import_seed(args.seed_dir, args.template, args.out, name=args.name)
    print(f"{args.out}: " + json.dumps(res["report"]))
    return 0


def landmark_tools(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``landmarks`` subcommand's own subparsers, created on first use.

    Other parts add their tools here (``landmark_tools(sub).add_parser(...)``) instead of
    registering a second ``landmarks`` command.
    """
    lm = sub.choices.get("landmarks")
    if lm is None:
        lm = sub.add_parser("landmarks", help="landmark-set tools")
        lm.set_defaults(_landmark_tools=lm.add_subparsers(dest="landmarks_command", required=True, metavar="<tool>"))
    return lm.get_default("_landmark_tools")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sample`` and ``landmarks`` to the top-level subparsers."""
    p = sub.add_parser("sample", help="sample a dense landmark set on the face template (params: sample)")
    p.add_argument("--template", required=True, help="template folder (PRNet format)")
    p.add_argument("--out", required=True, help="landmark-set JSON to write")
    p.add_argument("--report", help="report JSON to write")
    p.add_argument("--metrics", help="metrics JSON for DVC (counts, coverage, spacing, symmetry)")
    p.add_argument("--plot", help="PNG of the set on the template")
    p.set_defaults(func=_sample)

    lsub = landmark_tools(sub)
    c = lsub.add_parser("compare", help="compare two landmark sets on the template")
    c.add_argument("a", help="landmark-set JSON A")
    c.add_argument("b", help="landmark-set JSON B")
    c.add_argument("--template", required=True, help="template folder")
    c.add_argument("--out-md", help="Markdown report to write")
    c.add_argument("--out-json", help="JSON report to write")
    c.add_argument("--metrics", help="metrics JSON for DVC (both sets' figures, cross distances)")
    c.add_argument("--plot", help="PNG of both sets (UV and frontal views)")
    c.set_defaults(func=_compare)
    i = lsub.add_parser("import-seed", help="import the paper's published 520-landmark set")
    i.add_argument("--seed-dir", required=True, help="folder with vertices_520_sel_from_blender.txt, vertices_68_fil_520.txt")
    i.add_argument("--template", required=True, help="template folder")
    i.add_argument("--out", required=True, help="landmark-set JSON to write")
    i.add_argument("--name", default="basak2023-520", help="set name (default: basak2023-520)")
    i.set_defaults(func=_import_seed)

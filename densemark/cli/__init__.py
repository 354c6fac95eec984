"""``densemark <stage>``: one subcommand per pipeline stage; what ``dvc.yaml`` and the flows call.

Each module here fronts one part of the package and registers its subcommands through a
``register(subparsers)`` function listed in ``_PARTS``; the handlers are thin: parse, call the stage function, print.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from densemark.core.errors import DensemarkError

_PARTS = (
    "densemark.cli.faces",
    "densemark.cli.sampling",
    "densemark.cli.blender",
    "densemark.cli.sources",
    "densemark.cli.datasets",
    "densemark.cli.train",
    "densemark.cli.card",
    "densemark.cli.flows",
    "densemark.cli.evaluate",
    "densemark.cli.pipeline",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densemark", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for mod in _PARTS:
        try:
            part = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a part that is not installed
                raise
            continue
        part.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except DensemarkError as exc:
        print(f"densemark: error: {exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())

"""``densemark dvc-yaml``: write (or check) ``dvc.yaml`` from the stage registry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dvc-yaml", help="write dvc.yaml from the stage registry (densemark/pipeline/)"
    )
    p.add_argument("--out", default="dvc.yaml", help="file to write (default: dvc.yaml)")
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the file differs from the registry",
    )
    p.set_defaults(func=_dvc_yaml)


def _dvc_yaml(args: argparse.Namespace) -> int:
    from densemark.core.atomic import write_text
    from densemark.pipeline import dvc_yaml

    text, out = dvc_yaml(), Path(args.out)
    if args.check:
        same = out.is_file() and out.read_text(encoding="utf-8") == text
        if not same:
            print(
                f"densemark: {out} differs from the stage registry: run `densemark dvc-yaml`",
                file=sys.stderr,
            )
        return 0 if same else 1
    write_text(out, text)
    print(f"wrote {out}")
    return 0

"""``densemark <stage>``: one subcommand per pipeline stage; what ``dvc.yaml`` and the flows call.

Each module here fronts one part of the package and registers its subcommands through a
``register(subparsers)`` function listed in ``_PARTS``; the handlers are thin: parse, call the stage function, print.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from pathlib import Path

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
    parser.add_argument(
        "--params",
        default=None,
        help="parameters file, which must exist (default: ./params.yaml when present, else the built-in defaults)",
    )
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
    if args.params is None and Path("params.yaml").is_file():
        args.params = "params.yaml"
    try:
        rc = args.func(args)
    except DensemarkError as exc:
        print(f"densemark: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system said no: one line a user can act on, no traceback
        print(f"densemark: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    return int(rc or 0)


_OS_ADVICE = {
    errno.EROFS: "the file system is read-only: choose a writable folder (--out)",
    errno.EACCES: "permission denied: make it writable for this user or choose another folder",
    errno.EPERM: "operation not permitted: make it writable for this user or choose another folder",
    errno.ENOSPC: "no space left on the device: free space and rerun (a rerun resumes where this one stopped)",
    errno.EDQUOT: "disk quota exceeded: free space and rerun (a rerun resumes where this one stopped)",
    errno.ENOENT: "not found: check the path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer workers",
}


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: the path, what went wrong, what to do."""
    where = (
        " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        or "(no path given)"
    )
    what = _OS_ADVICE.get(exc.errno) if exc.errno is not None else None
    if what is None:
        what = f"{exc.strerror or exc}"
    code = f" [{errno.errorcode.get(exc.errno, exc.errno)}]" if exc.errno is not None else ""
    return f"{where}: {what}{code}"


if __name__ == "__main__":
    sys.exit(main())

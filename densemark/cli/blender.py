"""``densemark blender export|import``: the hand-correction round trip through Blender."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``blender export`` and ``blender import`` to the top-level subcommands."""
    p = sub.add_parser(
        "blender",
        help="edit a landmark set by hand in Blender (export a .blend, import the edit)",
        description=(
            "Round trip a landmark set through Blender. Needs a Blender environment: "
            "`bash scripts/setup-blender.sh` (bpy 5.0), or DENSEMARK_BLENDER=/path/to/blender (Blender >= 3.4, "
            "or a python with bpy). A .blend opens only in a Blender at least as new as the one that built it."
        ),
    )
    bsub = p.add_subparsers(dest="blender_command", required=True, metavar="<action>")

    e = bsub.add_parser(
        "export", help="build a .blend holding the template and the set as vertex group 'landmarks'"
    )
    e.add_argument(
        "--set", dest="set_path", required=True, metavar="SET.json", help="landmark set file"
    )
    e.add_argument(
        "--template", required=True, metavar="DIR", help="template folder (PRNet format)"
    )
    e.add_argument("--out", required=True, metavar="FILE.blend", help="the .blend to write")
    e.set_defaults(func=_export)

    i = bsub.add_parser(
        "import", help="turn the edited vertex group into a child set with its edit list"
    )
    i.add_argument("blend", metavar="FILE.blend", help="the edited .blend")
    i.add_argument(
        "--parent", required=True, metavar="SET.json", help="the set the .blend was exported from"
    )
    i.add_argument(
        "--template", required=True, metavar="DIR", help="template folder (PRNet format)"
    )
    i.add_argument("--out", required=True, metavar="NEW.json", help="the child set to write")
    i.add_argument("--note", default="", help="note recorded with the edit")
    i.add_argument("--name", default=None, help="child set name (default: the parent's)")
    i.add_argument(
        "--allow-drop-kpt",
        action="store_true",
        help="accept an edit that removes keypoints (the child then has no kpt68)",
    )
    i.add_argument(
        "--allow-large-edit",
        action="store_true",
        help="accept an edit that adds or removes more points than max(256, the parent's size) (refused as a likely slip)",
    )
    i.set_defaults(func=_import)


def _export(args: argparse.Namespace) -> int:
    from densemark.sampling.blender import run_export

    res = run_export(args.set_path, args.template, args.out)
    for msg in res["messages"]:
        print(f"densemark: {msg}", file=sys.stderr)
    out, ver = res["outputs"]["blend"], res["blender_version"]
    opens = (
        f" (saved by Blender {ver[0]}.{ver[1]}: open it in Blender {ver[0]}.{ver[1]} or newer)"
        if ver
        else ""
    )
    print(f"wrote {out}{opens}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from densemark.sampling.blender import run_import

    res = run_import(
        args.blend,
        args.parent,
        args.template,
        args.out,
        args.note,
        name=args.name,
        allow_drop_kpt=args.allow_drop_kpt,
        allow_large_edit=args.allow_large_edit,
    )
    child, rep = res.value, res.report_dict()
    print(
        f"wrote {args.out}: {len(child)} landmarks (+{len(rep['added'])} / -{len(rep['removed'])}) "
        f"from parent {rep['parent_name']!r}"
    )
    for msg in res.notes:
        print(f"densemark: {msg}", file=sys.stderr if msg.startswith("warning") else sys.stdout)
    return 0

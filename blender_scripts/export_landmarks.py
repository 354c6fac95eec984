"""Write the landmark set edited in a ``.blend`` to JSON (headless).

    blender --background --factory-startup --python export_landmarks.py -- IN.blend OUT.json
    .venv-blender/bin/python export_landmarks.py -- IN.blend OUT.json

Reads the template ids (``dm_vid``) of the vertices in vertex group ``landmarks`` with weight
> 0 and writes ``densemark-blender-export/1`` JSON: ``ids``, ``kpt68_ids``, ``n_vertices``,
``object``, ``group``, ``blend`` and ``source`` (the metadata of the set the file was built
from, for ``densemark blender import`` to check against the parent). Written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys

try:
    import bpy
except ImportError:
    print(
        "export_landmarks: error: this Python has no bpy; run it with a Blender (>= 3.4) or the "
        "bpy module environment (bash scripts/setup-blender.sh)",
        file=sys.stderr,
    )
    sys.exit(2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from densemark_addon import (  # noqa: E402
    GROUP,
    DensemarkBlendError,
    check_blender_version,
    export_set,
    find_object,
    version_problem,
)


def script_args(argv: list[str]) -> list[str]:
    """Arguments after ``--`` (Blender's convention), else everything after the script."""
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="export_landmarks.py", description=__doc__.splitlines()[0])
    p.add_argument("blend", help="the edited .blend")
    p.add_argument("out", help="the JSON file to write")
    p.add_argument("--object", default=None, help="object name (default: FaceTemplate)")
    p.add_argument("--group", default=GROUP, help=f"vertex group (default {GROUP})")
    args = p.parse_args(script_args(argv))
    if not os.path.isfile(args.blend):
        print(f"export_landmarks: error: {args.blend}: file not found", file=sys.stderr)
        sys.exit(2)
    problem = check_blender_version() or version_problem(args.blend)
    if problem:
        print(f"export_landmarks: error: {args.blend}: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.blend), load_ui=False)
    except RuntimeError as exc:  # not a .blend, truncated, or from a newer Blender
        full = os.path.abspath(args.blend)
        text = " ".join(
            str(exc).replace("Error:", "").replace(f'"{full}"', "").replace(f"'{full}'", "").split()
        )
        reason = text.rsplit(": ", 1)[-1]
        print(
            f"export_landmarks: error: {args.blend}: Blender cannot read this file ({reason}; truncated, "
            "damaged or not a .blend?)",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        obj = find_object(args.object)
        if obj.mode == "EDIT":
            obj.update_from_editmode()
        payload = export_set(obj, args.out, args.group)
    except DensemarkBlendError as exc:
        print(f"export_landmarks: error: {args.blend}: {exc}", file=sys.stderr)
        sys.exit(2)
    print(
        f"export_landmarks: wrote {args.out}: {len(payload['ids'])} ids from {obj.name!r}/{args.group!r}"
    )


if __name__ == "__main__":
    main(sys.argv)

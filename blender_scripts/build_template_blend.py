"""Build the landmark-editing ``.blend`` from a densemark exchange bundle.

    blender --background --factory-startup --python build_template_blend.py -- BUNDLE.npz OUT.blend
    .venv-blender/bin/python build_template_blend.py -- BUNDLE.npz OUT.blend

The bundle (``densemark-blender-bundle/1``, written by ``densemark blender export``) is an
``.npz`` without pickles holding ``meta`` (a JSON string), ``vertices`` (V, 3), ``triangles``
(T, 3) 0-based, ``uv`` (V, 2) in [0, 1], ``ids`` (K,) the landmark set's template ids,
``kpt68`` (68,) or (0,) the keypoints' template ids and ``mirror`` (V,) the UV-mirror partner
of each vertex (-1 where none). The scene is reset to empty, so run it on its own.

The result holds the mesh object ``FaceTemplate`` (template coordinates, one vertex per
template vertex, in template order), the vertex groups ``landmarks`` and ``kpt68``, the point
attributes ``dm_vid`` and ``dm_mirror``, a ``UVMap`` and the metadata as the object property
``densemark``; the landmark vertices are pre-selected. Written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import bpy
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from densemark_addon import (  # noqa: E402
    ATTR_ID,
    ATTR_MIRROR,
    GROUP,
    KPT_GROUP,
    META_PROP,
    OBJECT_NAME,
)

BUNDLE_FORMAT = "densemark-blender-bundle/1"


def script_args(argv: list[str]) -> list[str]:
    """Arguments after ``--`` (Blender's convention), else everything after the script."""
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


def fail(msg: str) -> None:
    print(f"build_template_blend: error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_bundle(path: str) -> dict[str, np.ndarray]:
    """Read and check a bundle; errors name the file and the field."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        fail(f"{path}: cannot read bundle ({exc})")
    for key in ("meta", "vertices", "triangles", "ids", "kpt68", "mirror"):
        if key not in data:
            fail(f"{path}: field {key}: missing")
    try:
        meta = json.loads(str(data["meta"]))
    except ValueError as exc:
        fail(f"{path}: field meta: not a JSON string ({exc})")
    if meta.get("format") != BUNDLE_FORMAT:
        fail(f"{path}: field meta.format: expected {BUNDLE_FORMAT!r}, got {meta.get('format')!r}")
    v = data["vertices"]
    n = len(v)
    checks = {
        "vertices": v.ndim == 2 and v.shape[1] == 3 and n > 0,
        "triangles": data["triangles"].ndim == 2 and data["triangles"].shape[1] == 3,
        "mirror": data["mirror"].shape == (n,),
        "uv": "uv" not in data or data["uv"].shape == (n, 2),
    }
    for key, ok in checks.items():
        if not ok:
            fail(f"{path}: field {key}: bad shape {data[key].shape} for {n} vertices")
    for key in ("triangles", "ids", "kpt68"):
        a = data[key]
        if a.size and (a.min() < 0 or a.max() >= n):
            fail(f"{path}: field {key}: ids must lie in [0, {n})")
    m = data["mirror"]
    if m.size and (m.min() < -1 or m.max() >= n):
        fail(f"{path}: field mirror: entries must lie in [-1, {n})")
    data["meta_dict"] = meta
    return data


def build(data: dict, name: str = OBJECT_NAME) -> bpy.types.Object:
    """Create the mesh object from bundle arrays (numpy ``foreach_set``: fast for 10^5 faces)."""
    verts = np.ascontiguousarray(data["vertices"], np.float32)
    tris = np.ascontiguousarray(data["triangles"], np.int32)
    n, t = len(verts), len(tris)
    me = bpy.data.meshes.new(name)
    me.vertices.add(n)
    me.vertices.foreach_set("co", verts.ravel())
    me.loops.add(3 * t)
    me.polygons.add(t)
    me.polygons.foreach_set("loop_start", np.arange(0, 3 * t, 3, dtype=np.int32))
    me.polygons.foreach_set("vertices", tris.ravel())
    me.update(calc_edges=True)
    if me.validate(verbose=False, clean_customdata=False):
        print("build_template_blend: warning: mesh.validate() corrected the triangle list", file=sys.stderr)
    if len(me.vertices) != n:
        fail(f"mesh has {len(me.vertices)} vertices after validation, expected {n}")

    for attr, values in ((ATTR_ID, np.arange(n)), (ATTR_MIRROR, data["mirror"])):
        a = me.attributes.new(name=attr, type="INT", domain="POINT")
        a.data.foreach_set("value", np.ascontiguousarray(values, np.int32))
    if "uv" in data:
        uv_layer = me.uv_layers.new(name="UVMap")
        loop_v = np.empty(len(me.loops), np.int32)
        me.loops.foreach_get("vertex_index", loop_v)
        uv_layer.data.foreach_set("uv", np.ascontiguousarray(data["uv"][loop_v], np.float32).ravel())

    sel = np.zeros(n, bool)
    sel[data["ids"]] = True
    me.vertices.foreach_set("select", sel)

    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)
    for group, ids in ((GROUP, data["ids"]), (KPT_GROUP, data["kpt68"])):
        vg = obj.vertex_groups.new(name=group)
        if len(ids):
            vg.add([int(i) for i in np.unique(ids)], 1.0, "REPLACE")
    obj.vertex_groups.active_index = obj.vertex_groups[GROUP].index
    obj[META_PROP] = json.dumps(data["meta_dict"], sort_keys=True)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    return obj


def save_blend(path: str) -> None:
    """Save the main file to ``path`` atomically (temp file beside it, then rename)."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp.blend")
    try:
        try:
            bpy.ops.wm.save_as_mainfile(filepath=tmp, check_existing=False, copy=True)
            os.replace(tmp, path)
        except (RuntimeError, OSError) as exc:  # name the target, not the temp file
            reason = " ".join(str(exc).replace("Error:", "").replace(tmp, "").split())
            fail(f"{path}: cannot save ({reason})")
    finally:
        for leftover in (tmp, tmp + "1"):
            if os.path.exists(leftover):
                os.unlink(leftover)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="build_template_blend.py", description=__doc__.splitlines()[0])
    p.add_argument("bundle", help="exchange bundle (.npz) written by `densemark blender export`")
    p.add_argument("out", help="the .blend to write")
    p.add_argument("--name", default=OBJECT_NAME, help=f"object name (default {OBJECT_NAME})")
    args = p.parse_args(script_args(argv))
    t0 = time.perf_counter()
    data = load_bundle(args.bundle)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = build(data, args.name)
    save_blend(args.out)
    print(
        f"build_template_blend: wrote {args.out}: {len(obj.data.vertices)} vertices, "
        f"{len(obj.data.polygons)} triangles, {len(data['ids'])} landmarks "
        f"({time.perf_counter() - t0:.2f} s)"
    )


if __name__ == "__main__":
    main(sys.argv)

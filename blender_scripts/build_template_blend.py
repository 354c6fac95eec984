"""Build the landmark-editing ``.blend`` from a densemark exchange bundle.

    blender --background --factory-startup --python build_template_blend.py -- BUNDLE.npz OUT.blend
    .venv-blender/bin/python build_template_blend.py -- BUNDLE.npz OUT.blend

The bundle (``densemark-blender-bundle/1``, written by ``densemark blender export``) is an
``.npz`` without pickles holding ``meta`` (a JSON string), ``vertices`` (V, 3), ``triangles``
(T, 3) 0-based, ``uv`` (V, 2) in [0, 1], ``ids`` (K,) the landmark set's template ids,
``kpt68`` (68,) or (0,) the keypoints' template ids and ``mirror`` (V,) the UV-mirror partner
of each vertex (-1 where none). ``meta["frame"]`` maps template to Blender coordinates (see
:func:`to_blender`). The scene is reset to empty, so run it on its own.

The result holds the mesh object ``FaceTemplate`` (one vertex per template vertex, in
template order, at a face's real size: about 0.2 m), the vertex groups ``landmarks`` and
``kpt68``, the point attributes ``dm_vid`` and ``dm_mirror``, the colour attribute
``dm_colour`` (faces around the landmarks red), a ``UVMap``, the metadata as the object property
``densemark``, the add-on as the text block ``densemark_addon.py``, and every 3D view set to
look at the face from the front (orthographic, sidebar open). Exactly the landmark
vertices are selected (vertex select mode). Written atomically.

Pure Python (no numpy), so that any Blender >= 3.4 can run it, Debian's included.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
import zipfile
from array import array

try:
    import bpy
except ImportError:
    print(
        "build_template_blend: error: this Python has no bpy; run it with a Blender (>= 3.4) or the "
        "bpy module environment (bash scripts/setup-blender.sh)",
        file=sys.stderr,
    )
    sys.exit(2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from densemark_addon import (  # noqa: E402
    ATTR_COLOUR,
    ATTR_ID,
    ATTR_MIRROR,
    GROUP,
    KPT_GROUP,
    META_PROP,
    OBJECT_NAME,
    check_blender_version,
    paint_set,
)

BUNDLE_FORMAT = "densemark-blender-bundle/1"
ADDON_TEXT = "densemark_addon.py"
# .npy dtype -> array typecode (little-endian only; every platform Blender runs on)
NPY_TYPES = {"<f8": "d", "<f4": "f", "<i8": "q", "<i4": "i", "<u1": "B", "|u1": "B", "|b1": "B"}


def script_args(argv: list[str]) -> list[str]:
    """Arguments after ``--`` (Blender's convention), else everything after the script."""
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


def fail(msg: str) -> None:
    print(f"build_template_blend: error: {msg}", file=sys.stderr)
    sys.exit(2)


def warn(msg: str) -> None:
    print(f"build_template_blend: warning: {msg}", file=sys.stderr)


class Arr:
    """A flat ``array.array`` with its shape (what this script needs of a numpy array)."""

    def __init__(self, values, shape: tuple[int, ...]):
        self.values, self.shape = values, shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 1


def read_npy(raw: bytes, where: str):
    """Decode one ``.npy`` member: an :class:`Arr`, or a ``str`` for a 0-d unicode array.

    Raises ValueError naming ``where`` for anything but a C-ordered little-endian number or
    unicode array (what ``np.savez`` writes for the bundle).
    """
    if raw[:6] != b"\x93NUMPY":
        raise ValueError(f"{where}: not a .npy member")
    major = raw[6]
    if major == 1:
        hlen, start = int.from_bytes(raw[8:10], "little"), 10
    else:
        hlen, start = int.from_bytes(raw[8:12], "little"), 12
    header = ast.literal_eval(raw[start : start + hlen].decode("latin-1"))
    descr, shape = header["descr"], tuple(header["shape"])
    body = raw[start + hlen :]
    if header.get("fortran_order"):
        raise ValueError(f"{where}: Fortran-ordered arrays are not supported")
    if descr.startswith("<U"):
        return body.decode("utf-32-le").rstrip("\x00")
    code = NPY_TYPES.get(descr)
    if code is None:
        raise ValueError(f"{where}: dtype {descr!r} not supported")
    values = array(code)
    values.frombytes(body)
    if sys.byteorder != "little":
        values.byteswap()
    count = 1
    for d in shape:
        count *= d
    if len(values) != count:
        raise ValueError(f"{where}: {len(values)} values for shape {shape}")
    return Arr(values, shape)


def load_bundle(path: str) -> dict:
    """Read and check a bundle; errors name the file and the field."""
    data: dict = {}
    try:
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                if member.endswith(".npy"):
                    data[member[:-4]] = read_npy(z.read(member), f"field {member[:-4]}")
    except (OSError, zipfile.BadZipFile, ValueError, SyntaxError, KeyError) as exc:
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
    for key in ("vertices", "triangles", "ids", "kpt68", "mirror") + (
        ("uv",) if "uv" in data else ()
    ):
        if not isinstance(data[key], Arr):
            fail(f"{path}: field {key}: expected a number array")
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
    if len(data["triangles"].values) == 0:
        fail(f"{path}: field triangles: empty (a mesh without faces cannot be edited)")
    for key in ("triangles", "ids", "kpt68"):
        a = data[key].values
        if len(a) and (min(a) < 0 or max(a) >= n):
            fail(f"{path}: field {key}: ids must lie in [0, {n})")
    m = data["mirror"].values
    if len(m) and (min(m) < -1 or max(m) >= n):
        fail(f"{path}: field mirror: entries must lie in [-1, {n})")
    data["meta_dict"] = meta
    return data


def to_blender(vertices: array, frame: dict | None) -> tuple[array, bool]:
    """Template (V*3,) coordinates -> Blender's (float32), and whether the map mirrors.

    ``frame`` (``meta["frame"]``): ``offset`` (3,), ``scale`` and ``axes``. With axes
    ``"x,-z,-y"`` (template: x right, y down, z towards the viewer) a vertex goes to
    ``X = s (x - ox), Y = -s (z - oz), Z = -s (y - oy)``: upright, facing Blender's front view
    (-Y). ``None`` keeps the template coordinates.
    """
    if not frame:
        return array("f", vertices), False
    ox, oy, oz = (float(c) for c in frame["offset"])
    s = float(frame["scale"])
    axes = frame.get("axes", "x,y,z")
    x, y, z = vertices[0::3], vertices[1::3], vertices[2::3]
    out = array("f", bytes(4 * len(vertices)))
    if axes == "x,-z,-y":
        out[0::3] = array("f", [s * (a - ox) for a in x])
        out[1::3] = array("f", [-s * (c - oz) for c in z])
        out[2::3] = array("f", [-s * (b - oy) for b in y])
        return out, True
    if axes == "x,y,z":
        out[0::3] = array("f", [s * (a - ox) for a in x])
        out[1::3] = array("f", [s * (b - oy) for b in y])
        out[2::3] = array("f", [s * (c - oz) for c in z])
        return out, False
    fail(f"field meta.frame.axes: {axes!r} is not one of 'x,-z,-y', 'x,y,z'")
    raise AssertionError


def _set_faces(me, tris: array) -> None:
    """Add the triangles (flat (T*3,) vertex ids) to an empty-faced mesh, on Blender 3.4 to 5."""
    t = len(tris) // 3
    me.loops.add(3 * t)
    me.loops.foreach_set("vertex_index", tris)
    me.polygons.add(t)
    me.polygons.foreach_set("loop_start", array("i", range(0, 3 * t, 3)))
    if bpy.app.version < (4, 0, 0):  # before 4.0 each face also stores its corner count
        me.polygons.foreach_set("loop_total", array("i", [3]) * t)


def build(data: dict, name: str = OBJECT_NAME) -> bpy.types.Object:
    """Create the mesh object from bundle arrays (``foreach_set`` on flat arrays)."""
    meta = data["meta_dict"]
    verts, mirrored = to_blender(data["vertices"].values, meta.get("frame"))
    tris = array("i", data["triangles"].values)
    if mirrored:  # a mirroring map turns the faces inside out: swap two corners back
        tris[1::3], tris[2::3] = tris[2::3], tris[1::3]
    n, t = len(verts) // 3, len(tris) // 3
    me = bpy.data.meshes.new(name)
    me.vertices.add(n)
    me.vertices.foreach_set("co", verts)
    _set_faces(me, tris)
    me.update(calc_edges=True)
    if me.validate(verbose=False, clean_customdata=False):
        warn("mesh.validate() corrected the triangle list")
    if len(me.vertices) != n:
        fail(f"mesh has {len(me.vertices)} vertices after validation, expected {n}")
    if len(me.polygons) != t:
        fail(
            f"mesh has {len(me.polygons)} faces after validation, expected {t} (Blender "
            f"{bpy.app.version_string} did not take the triangle list)"
        )

    for attr, values in (
        (ATTR_ID, array("i", range(n))),
        (ATTR_MIRROR, array("i", data["mirror"].values)),
    ):
        a = me.attributes.new(name=attr, type="INT", domain="POINT")
        a.data.foreach_set("value", values)
    if "uv" in data:
        uv = data["uv"].values
        uv_layer = me.uv_layers.new(name="UVMap")
        loop_v = array("i", bytes(4 * len(me.loops)))
        me.loops.foreach_get("vertex_index", loop_v)
        flat = array("f", bytes(8 * len(loop_v)))
        flat[0::2] = array("f", [uv[2 * i] for i in loop_v])
        flat[1::2] = array("f", [uv[2 * i + 1] for i in loop_v])
        uv_layer.data.foreach_set("uv", flat)

    ids = set(data["ids"].values)
    select_exactly(me, ids)
    colours = me.color_attributes.new(name=ATTR_COLOUR, type="FLOAT_COLOR", domain="CORNER")
    try:
        me.color_attributes.active_color = colours
        me.color_attributes.render_color_index = me.color_attributes.active_color_index
    except (AttributeError, TypeError):  # older naming: the first colour attribute is used anyway
        pass

    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)
    for group, gids in ((GROUP, ids), (KPT_GROUP, set(data["kpt68"].values))):
        vg = obj.vertex_groups.new(name=group)
        if gids:
            vg.add(sorted(int(i) for i in gids), 1.0, "REPLACE")
    obj.vertex_groups.active_index = obj.vertex_groups[GROUP].index
    obj[META_PROP] = json.dumps(meta, sort_keys=True)
    paint_set(obj, ids)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    return obj


def select_exactly(me, ids: set) -> None:
    """Select exactly the vertices ``ids``, plus the edges and faces vertex select mode implies.

    Through bmesh: bpy 5.0 crashes on ``foreach_set("select")`` of edges.
    """
    import bmesh

    bm = bmesh.new()
    bm.from_mesh(me)
    for seq in (bm.faces, bm.edges):
        for e in seq:
            e.select = False
    for i, v in enumerate(bm.verts):
        v.select = i in ids
    bm.select_mode = {"VERT"}
    bm.select_flush_mode()
    bm.to_mesh(me)
    bm.free()
    me.update()


def set_up_scene(obj, addon_path: str) -> None:
    """Frame the face from the front in every 3D view (orthographic, clip range for its size);
    vertex select mode; the add-on as a text block."""
    from mathutils import Quaternion

    scene = bpy.context.scene
    size = max(obj.dimensions) or 1.0
    scene.tool_settings.mesh_select_mode = (True, False, False)
    front = Quaternion(
        (2**-0.5, 2**-0.5, 0.0, 0.0)
    )  # looking along +Y: Blender's Front view (numpad 1)
    for screen in bpy.data.screens:
        for area in screen.areas:
            if area.type != "VIEW_3D":
                continue
            space = area.spaces.active
            space.clip_start = size / 1000
            space.clip_end = size * 100
            space.shading.type = "SOLID"
            space.shading.color_type = "VERTEX"  # "Attribute": the landmark colours
            space.overlay.show_floor = False
            space.overlay.show_axis_x = space.overlay.show_axis_y = False
            space.overlay.vertex_opacity = (
                0.6  # Edit Mode: the red patches show between the vertex dots
            )
            r3d = space.region_3d
            r3d.view_perspective = "ORTHO"
            r3d.view_rotation = front
            r3d.view_location = (0.0, 0.0, 0.0)
            r3d.view_distance = 1.6 * size
            space.show_region_ui = True  # the sidebar, where the Densemark tab is
    with open(addon_path, encoding="utf-8") as f:
        text = bpy.data.texts.new(ADDON_TEXT)
        text.from_string(f.read())
    # not use_module: Blender would stop every opening with its "scripts disabled" dialog;
    # Text editor > Run Script registers the panel instead


def save_blend(path: str) -> None:
    """Save the main file to ``path`` atomically (temp file beside it, then rename)."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp.blend")
    try:
        try:
            bpy.ops.wm.save_as_mainfile(
                filepath=tmp, check_existing=False, copy=True, compress=False
            )
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
    problem = check_blender_version()
    if problem:
        fail(problem)
    t0 = time.perf_counter()
    data = load_bundle(args.bundle)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = build(data, args.name)
    set_up_scene(obj, os.path.join(os.path.dirname(os.path.abspath(__file__)), ADDON_TEXT))
    save_blend(args.out)
    print(
        f"build_template_blend: wrote {args.out}: {len(obj.data.vertices)} vertices, "
        f"{len(obj.data.polygons)} triangles, {len(data['ids'].values)} landmarks, Blender "
        f"{bpy.app.version_string} "
        f"({time.perf_counter() - t0:.2f} s)"
    )


if __name__ == "__main__":
    main(sys.argv)

"""Densemark landmark editing in Blender: an N-panel add-on plus the plain functions behind it.

The ``.blend`` built by ``build_template_blend.py`` holds one mesh object (``FaceTemplate``):
one vertex per template vertex, the vertex groups ``landmarks`` (the set being edited) and
``kpt68`` (the 68 keypoints), the integer point attributes ``dm_vid`` (template vertex id)
and ``dm_mirror`` (template id of the UV-mirror partner, -1 where none), the face-corner
colour attribute ``dm_colour`` (faces touching a set member red, the others skin-coloured) and, as the custom property
``densemark``, the JSON metadata of the set the file was built from.

GUI: the file carries this script as the text block ``densemark_addon.py`` (it registers on
opening when scripts may run: Allow Execution, or Text editor > Run Script); it also installs
as an add-on (Preferences > Add-ons > Install from Disk) or an extension (Blender 4.2+). The
"Densemark" tab of the 3D view's sidebar (N) holds the panel. Headless code (and the tests)
call the functions below, or the same operators through ``bpy.ops.densemark.*`` after
``register()``.

Only bpy, bmesh and the standard library are used (no numpy: Debian's Blender has none), on
Blender 3.4 or newer.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable

# bpy first: with PyPI's bpy module, bmesh can only be imported once bpy is.
import bpy

# isort: split
import bmesh

bl_info = {
    "name": "Densemark landmarks",
    "author": "densemark",
    "version": (0, 2, 0),
    "blender": (3, 4, 0),
    "location": "3D View > Sidebar (N) > Densemark",
    "description": "Load, mirror, assign and export a dense landmark set on the face template",
    "category": "Mesh",
}

OBJECT_NAME = "FaceTemplate"
GROUP = "landmarks"
KPT_GROUP = "kpt68"
ATTR_ID = "dm_vid"
ATTR_MIRROR = "dm_mirror"
ATTR_COLOUR = "dm_colour"
META_PROP = "densemark"
EXPORT_FORMAT = "densemark-blender-export/1"
ASSIGN_MODES = ("REPLACE", "ADD", "REMOVE")
MIN_BLENDER = (3, 4, 0)
SET_COLOUR = (0.85, 0.05, 0.05, 1.0)  # landmarks: red
SKIN_COLOUR = (0.80, 0.66, 0.55, 1.0)  # the rest of the face


class DensemarkBlendError(RuntimeError):
    """The scene does not hold what the densemark tools expect (the message says what)."""


# ----------------------------------------------------------------------------- versions


def check_blender_version() -> str:
    """'' when the running Blender is supported, else a one-line reason."""
    if tuple(bpy.app.version) < MIN_BLENDER:
        need = ".".join(map(str, MIN_BLENDER[:2]))
        return f"Blender {bpy.app.version_string} is too old: the densemark scripts need Blender >= {need}"
    return ""


def blend_file_version(path: str) -> tuple[int, int] | None:
    """(major, minor) of the Blender that saved ``path``, from its header; None if unknown.

    Header ``BLENDER_v304`` (before Blender 5: pointer size, endianness, 3 digits) or
    ``BLENDER17-01v0500`` (Blender 5: header size, format, 4 digits). Compressed files (gzip or
    zstd) give None.
    """
    with open(path, "rb") as f:
        head = f.read(17)
    if not head.startswith(b"BLENDER"):
        return None
    try:
        if head[7:9].isdigit():  # BLENDER17-01v0500
            v = int(head[13:17])
        else:  # BLENDER_v304 / BLENDER-v304
            v = int(head[9:12])
    except ValueError:
        return None
    return v // 100, v % 100


def version_problem(path: str) -> str:
    """'' when this Blender can read ``path``, else why not and what to do (one line)."""
    got = blend_file_version(path)
    run = tuple(bpy.app.version[:2])
    if got is None or got <= run:
        return ""
    return (
        f"saved by Blender {got[0]}.{got[1]}, but this is Blender {bpy.app.version_string}, which cannot "
        f"read newer files: use Blender >= {got[0]}.{got[1]} (or the bpy {got[0]}.{got[1]} module: unset "
        "DENSEMARK_BLENDER to use .venv-blender)"
    )


# ----------------------------------------------------------------------------- lookup


def find_object(name: str | None = None) -> bpy.types.Object:
    """The template object: ``name`` if given, else ``FaceTemplate``, else the one mesh with metadata."""
    if name:
        obj = bpy.data.objects.get(name)
        if obj is None or obj.type != "MESH":
            raise DensemarkBlendError(
                f"no mesh object named {name!r} in {bpy.data.filepath or 'the scene'}"
            )
        return obj
    obj = bpy.data.objects.get(OBJECT_NAME)
    if obj is not None and obj.type == "MESH":
        return obj
    found = [o for o in bpy.data.objects if o.type == "MESH" and META_PROP in o.keys()]
    if len(found) != 1:
        raise DensemarkBlendError(
            f"expected one mesh object named {OBJECT_NAME!r} or carrying the {META_PROP!r} property, "
            f"found {len(found)} in {bpy.data.filepath or 'the scene'}"
        )
    return found[0]


def get_meta(obj: bpy.types.Object) -> dict:
    """The set metadata stored on the object ({} when absent)."""
    raw = obj.get(META_PROP)
    if raw is None:
        return {}
    try:
        return json.loads(str(raw))
    except ValueError as exc:
        raise DensemarkBlendError(
            f"object {obj.name!r}: property {META_PROP!r} is not JSON ({exc})"
        ) from exc


class _BMesh:
    """``with _BMesh(obj) as bm``: the object's mesh as bmesh, in Edit or Object Mode, written back on exit."""

    def __init__(self, obj: bpy.types.Object, write: bool = True):
        self.obj, self.write = obj, write
        self.edit = obj.mode == "EDIT"

    def __enter__(self) -> bmesh.types.BMesh:
        me = self.obj.data
        if self.edit:
            self.bm = bmesh.from_edit_mesh(me)
        else:
            self.bm = bmesh.new()
            self.bm.from_mesh(me)
        self.bm.verts.ensure_lookup_table()
        return self.bm

    def __exit__(self, exc_type, exc, tb) -> None:
        me = self.obj.data
        if self.edit:
            if self.write and exc_type is None:
                bmesh.update_edit_mesh(me, loop_triangles=False, destructive=False)
        else:
            if self.write and exc_type is None:
                self.bm.to_mesh(me)
                me.update()
            self.bm.free()


def _group_index(obj: bpy.types.Object, group: str, create: bool = False) -> int:
    vg = obj.vertex_groups.get(group)
    if vg is None:
        if not create:
            raise DensemarkBlendError(f"object {obj.name!r} has no vertex group {group!r}")
        vg = obj.vertex_groups.new(name=group)
    return vg.index


# ----------------------------------------------------------------------------- logic


def _vids(bm: bmesh.types.BMesh) -> list[int]:
    """Template id of each bmesh vertex, in vertex order (``dm_vid``; the vertex index if absent)."""
    layer = bm.verts.layers.int.get(ATTR_ID)
    if layer is None:
        return list(range(len(bm.verts)))
    return [v[layer] for v in bm.verts]


def group_ids(obj: bpy.types.Object, group: str = GROUP) -> list[int]:
    """Sorted template ids of the vertices in ``group`` with weight > 0."""
    gi = _group_index(obj, group)
    with _BMesh(obj, write=False) as bm:
        deform = bm.verts.layers.deform.active
        if deform is None:
            return []
        vids = _vids(bm)
        return sorted({vids[i] for i, v in enumerate(bm.verts) if v[deform].get(gi, 0.0) > 0.0})


def selected_ids(obj: bpy.types.Object) -> list[int]:
    """Sorted template ids of the selected vertices."""
    with _BMesh(obj, write=False) as bm:
        vids = _vids(bm)
        return sorted({vids[i] for i, v in enumerate(bm.verts) if v.select})


def select_ids(obj: bpy.types.Object, ids: Iterable[int], *, extend: bool = False) -> int:
    """Select the vertices with these template ids (after deselecting all unless ``extend``).

    Edges and faces follow vertex select mode (selected when all their vertices are), so
    nothing else is selected. Returns the number of vertices selected by the call.
    """
    want = {int(i) for i in ids}
    with _BMesh(obj) as bm:
        vids = _vids(bm)
        if not extend:
            for seq in (bm.faces, bm.edges, bm.verts):
                for e in seq:
                    e.select = False
        n = 0
        for i, v in enumerate(bm.verts):
            if vids[i] in want and not v.select:
                v.select = True
                n += 1
        bm.select_mode = {"VERT"}
        bm.select_flush_mode()
    return n


def select_group(obj: bpy.types.Object, group: str = GROUP) -> int:
    """ "Load set": select exactly the vertices of ``group``; returns how many."""
    ids = group_ids(obj, group)
    select_ids(obj, ids)
    return len(ids)


def mirror_selection(obj: bpy.types.Object) -> int:
    """Add the UV-mirror partners (``dm_mirror``) of the selected vertices to the selection.

    Returns the number of vertices newly selected.
    """
    with _BMesh(obj) as bm:
        mlayer = bm.verts.layers.int.get(ATTR_MIRROR)
        if mlayer is None:
            raise DensemarkBlendError(
                f"object {obj.name!r} has no {ATTR_MIRROR!r} attribute (not built by densemark?)"
            )
        vids = _vids(bm)
        partners = {v[mlayer] for v in bm.verts if v.select} - {-1}
        n = 0
        for i, v in enumerate(bm.verts):
            if vids[i] in partners and not v.select:
                v.select = True
                n += 1
        bm.select_flush_mode()
    return n


def assign_selection(
    obj: bpy.types.Object, mode: str = "REPLACE", group: str = GROUP
) -> tuple[int, int]:
    """Write the selection into ``group`` (and repaint the colours when ``group`` is the set).

    ``REPLACE``: the group becomes the selection; ``ADD``: selected vertices join it;
    ``REMOVE``: selected vertices leave it. Returns (vertices added, vertices removed).
    """
    if mode not in ASSIGN_MODES:
        raise DensemarkBlendError(f"assign mode must be one of {ASSIGN_MODES}, got {mode!r}")
    gi = _group_index(obj, group, create=True)
    added = removed = 0
    with _BMesh(obj) as bm:
        deform = bm.verts.layers.deform.verify()
        for v in bm.verts:
            dv = v[deform]
            inside = dv.get(gi, 0.0) > 0.0
            if mode == "REPLACE":
                want = v.select
            elif mode == "ADD":
                want = inside or v.select
            else:
                want = inside and not v.select
            if want and not inside:
                dv[gi] = 1.0
                added += 1
            elif inside and not want:
                del dv[gi]
                removed += 1
    if group == GROUP:
        paint_set(obj, group_ids(obj, group))
    return added, removed


def paint_set(obj: bpy.types.Object, ids: Iterable[int]) -> bool:
    """Paint the faces around the vertices ``ids`` red, the rest skin-coloured (``dm_colour``).

    A face-corner attribute: every face touching a landmark is red, so each landmark shows as
    a small red patch at any zoom, whatever is selected. Returns False (and changes nothing)
    when the mesh has no such attribute.
    """
    want = {int(i) for i in ids}
    me = obj.data
    if obj.mode == "EDIT":
        bm = bmesh.from_edit_mesh(me)
        layer = bm.loops.layers.float_color.get(ATTR_COLOUR)
        if layer is None:
            return False
        vids = _vids(bm)
        for f in bm.faces:
            colour = SET_COLOUR if any(vids[v.index] in want for v in f.verts) else SKIN_COLOUR
            for corner in f.loops:
                corner[layer] = colour
        bmesh.update_edit_mesh(me, loop_triangles=False, destructive=False)
        return True
    attr = me.color_attributes.get(ATTR_COLOUR) if hasattr(me, "color_attributes") else None
    if attr is None or attr.domain != "CORNER":
        return False
    n = len(me.vertices)
    vids = [0] * n
    vid = me.attributes.get(ATTR_ID)
    if vid is not None:
        vid.data.foreach_get("value", vids)
    else:
        vids = list(range(n))
    hit = [vids[i] in want for i in range(n)]
    corner_v = [0] * len(me.loops)
    me.loops.foreach_get("vertex_index", corner_v)
    starts, totals = [0] * len(me.polygons), [0] * len(me.polygons)
    me.polygons.foreach_get("loop_start", starts)
    me.polygons.foreach_get("loop_total", totals)
    red = [False] * len(me.loops)
    for s0, k in zip(starts, totals, strict=True):
        if any(hit[corner_v[j]] for j in range(s0, s0 + k)):
            red[s0 : s0 + k] = [True] * k
    flat = []
    for r in red:
        flat.extend(SET_COLOUR if r else SKIN_COLOUR)
    attr.data.foreach_set("color", flat)
    me.update()
    return True


def export_payload(obj: bpy.types.Object, group: str = GROUP) -> dict:
    """The JSON-able export of ``group`` with the stored metadata (see README, export format)."""
    ids = group_ids(obj, group)
    kpt = group_ids(obj, KPT_GROUP) if obj.vertex_groups.get(KPT_GROUP) else []
    return {
        "format": EXPORT_FORMAT,
        "blend": os.path.basename(bpy.data.filepath) if bpy.data.filepath else "",
        "object": obj.name,
        "group": group,
        "n_vertices": len(obj.data.vertices),
        "ids": [int(i) for i in ids],
        "kpt68_ids": [int(i) for i in kpt],
        "source": get_meta(obj),
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def export_set(obj: bpy.types.Object, path: str, group: str = GROUP) -> dict:
    """Write ``export_payload`` as JSON to ``path`` atomically (mode 0666 less the umask); returns the payload."""
    payload = export_payload(obj, group)
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return payload


# ----------------------------------------------------------------------------- GUI


def _status(context, text: str) -> None:
    """Show ``text`` on the panel (short: the sidebar is narrow) and in the status bar."""
    context.window_manager.densemark_status = text


class _EditOp:
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.edit_object
        return obj is not None and obj.type == "MESH"


class DENSEMARK_OT_edit_set(bpy.types.Operator):
    """Enter Edit Mode on the face (vertex select) with exactly the landmark set selected"""

    bl_idname = "densemark.edit_set"
    bl_label = "Edit set"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.mode in {"OBJECT", "EDIT_MESH"}

    def execute(self, context):
        try:
            obj = find_object()
        except DensemarkBlendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if context.mode != "OBJECT" and context.edit_object is not obj:
            bpy.ops.object.mode_set(mode="OBJECT")
        context.view_layer.objects.active = obj
        obj.select_set(True)
        if obj.mode != "EDIT":
            bpy.ops.object.mode_set(mode="EDIT")
        context.tool_settings.mesh_select_mode = (True, False, False)
        n = select_group(obj)
        _status(context, f"Loaded {n} landmarks")
        return {"FINISHED"}


class DENSEMARK_OT_load_set(_EditOp, bpy.types.Operator):
    """Select exactly the vertices of the landmark set (vertex group "landmarks")"""

    bl_idname = "densemark.load_set"
    bl_label = "Load set"

    def execute(self, context):
        try:
            n = select_group(context.edit_object)
        except DensemarkBlendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _status(context, f"Loaded {n} landmarks")
        return {"FINISHED"}


class DENSEMARK_OT_mirror_selection(_EditOp, bpy.types.Operator):
    """Add the UV-mirror partners of the selected vertices to the selection"""

    bl_idname = "densemark.mirror_selection"
    bl_label = "Mirror selection"

    def execute(self, context):
        try:
            n = mirror_selection(context.edit_object)
        except DensemarkBlendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _status(context, f"Mirror: +{n} selected")
        self.report({"INFO"}, f"mirror: {n} partner vertices added to the selection")
        return {"FINISHED"}


class DENSEMARK_OT_assign_selection(_EditOp, bpy.types.Operator):
    """Write the selection into the landmark set (replace it, add to it or remove from it)"""

    bl_idname = "densemark.assign_selection"
    bl_label = "Assign selection to set"

    mode: bpy.props.EnumProperty(
        name="Mode",
        items=(
            ("REPLACE", "Replace", "The set becomes the selection"),
            ("ADD", "Add", "Add the selected vertices to the set"),
            ("REMOVE", "Remove", "Remove the selected vertices from the set"),
        ),
        default="REPLACE",
    )

    def execute(self, context):
        added, removed = assign_selection(context.edit_object, self.mode)
        n = len(group_ids(context.edit_object))
        _status(context, f"Set: {n} (+{added} / -{removed})")
        self.report({"INFO"}, f"landmark set: {n} vertices (+{added} / -{removed})")
        return {"FINISHED"}


class DENSEMARK_OT_export_set(_EditOp, bpy.types.Operator):
    """Write the landmark set's vertex ids and stored metadata to a JSON file"""

    bl_idname = "densemark.export_set"
    bl_label = "Export set"
    bl_options = {"REGISTER"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    filter_glob: bpy.props.StringProperty(default="*.json", options={"HIDDEN"})

    def invoke(self, context, event):
        if not self.filepath:
            base = os.path.splitext(bpy.data.filepath)[0] if bpy.data.filepath else "landmarks"
            self.filepath = base + ".export.json"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        if not self.filepath:
            self.report({"ERROR"}, "no file path given")
            return {"CANCELLED"}
        try:
            payload = export_set(context.edit_object, bpy.path.abspath(self.filepath))
        except (DensemarkBlendError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _status(context, f"Exported {len(payload['ids'])} ids")
        self.report({"INFO"}, f"wrote {len(payload['ids'])} landmark ids to {self.filepath}")
        return {"FINISHED"}


class VIEW3D_PT_densemark(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Densemark"
    bl_label = "Landmark set"

    def draw(self, context):
        layout = self.layout
        obj = context.edit_object or context.active_object
        meta = get_meta(obj) if obj is not None and META_PROP in obj.keys() else {}
        name = meta.get("set", {}).get("name")
        if name:
            layout.label(text=f"Set: {name}")
        if context.edit_object is None:
            layout.operator(DENSEMARK_OT_edit_set.bl_idname, icon="EDITMODE_HLT")
            layout.label(text="Red: in the set")
            return
        col = layout.column(align=True)
        col.operator(DENSEMARK_OT_load_set.bl_idname, icon="RESTRICT_SELECT_OFF")
        col.operator(DENSEMARK_OT_mirror_selection.bl_idname, icon="MOD_MIRROR")
        col = layout.column(align=True)
        col.operator(DENSEMARK_OT_assign_selection.bl_idname, icon="GROUP_VERTEX").mode = "REPLACE"
        row = col.row(align=True)
        row.operator(DENSEMARK_OT_assign_selection.bl_idname, text="Add").mode = "ADD"
        row.operator(DENSEMARK_OT_assign_selection.bl_idname, text="Remove").mode = "REMOVE"
        layout.operator(DENSEMARK_OT_export_set.bl_idname, icon="EXPORT")
        status = context.window_manager.densemark_status
        if status:
            layout.label(text=status)


_CLASSES = (
    DENSEMARK_OT_edit_set,
    DENSEMARK_OT_load_set,
    DENSEMARK_OT_mirror_selection,
    DENSEMARK_OT_assign_selection,
    DENSEMARK_OT_export_set,
    VIEW3D_PT_densemark,
)


def register() -> None:
    """Register the operators and the panel (safe to call twice)."""
    if hasattr(bpy.types, "VIEW3D_PT_densemark"):
        unregister()
    bpy.types.WindowManager.densemark_status = bpy.props.StringProperty(default="")
    for cls in _CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    """Remove what ``register`` added."""
    for cls in reversed(_CLASSES):
        registered = getattr(bpy.types, cls.__name__, None)
        if registered is not None:
            bpy.utils.unregister_class(registered)
    if hasattr(bpy.types.WindowManager, "densemark_status"):
        del bpy.types.WindowManager.densemark_status


if __name__ == "__main__":
    register()

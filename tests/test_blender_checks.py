"""What makes the Blender round trip safe to use by hand: the file opens ready to edit (bpy),
versions are read and checked, large edits are refused, the scripts' warnings reach the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densemark.cli import main
from densemark.core.errors import InputError
from densemark.faces.template import FaceTemplate
from densemark.sampling import blender as bl
from densemark.sampling.landmark_set import LandmarkSet
from tests.blender_support import (
    SCRIPTS,
    blend_stub,
    blender_prefix,
    fake_export,
    import_args,
    small_world,
)


@pytest.fixture()
def small(tmp_path) -> tuple[Path, Path, FaceTemplate, LandmarkSet]:
    """(template dir, parent set file, template, parent set) for the disc template."""
    return small_world(tmp_path)


# ----------------------------------------------------------------------------- no bpy


@pytest.mark.parametrize(
    ("head", "want"),
    [
        (b"BLENDER-v304REND", (3, 4)),
        (b"BLENDER_v279REND", (2, 79)),
        (b"BLENDER17-01v0500", (5, 0)),
        (b"BLENDER17-01v0412", (4, 12)),
        (b"\x28\xb5\x2f\xfd" + bytes(20), None),  # zstd: the version is inside
        (b"BLENDER-vXYZ", None),
    ],
)
def test_blend_file_version(tmp_path, head, want):
    p = tmp_path / "f.blend"
    p.write_bytes(head + bytes(32))
    assert bl.blend_file_version(p) == want


@pytest.mark.parametrize("extent", [211.6, 178_000.0, 0.2, 3.0e-3])
def test_blender_frame_brings_a_face_to_real_size(extent):
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 1, (500, 3)) * [extent, 0.9 * extent, 0.8 * extent] + [
        5 * extent,
        -3 * extent,
        40.0,
    ]
    f = bl.blender_frame(v)
    s = f["scale"]
    assert np.log2(s) == int(np.log2(s))  # a power of two: scaling is exact
    off = np.asarray(f["offset"])
    np.testing.assert_allclose(off, (v.min(0) + v.max(0)) / 2)
    # the documented map and its inverse
    x, y, z = (v - off).T
    blender = np.stack([s * x, -s * z, -s * y], axis=1)
    size = (blender.max(0) - blender.min(0)).max()
    assert 0.125 < size <= 0.25 and f["axes"] == "x,-z,-y" and f["units"] == "m"
    back = np.stack(
        [blender[:, 0] / s + off[0], off[1] - blender[:, 2] / s, off[2] - blender[:, 1] / s], axis=1
    )
    np.testing.assert_allclose(back, v, rtol=0, atol=1e-9 * extent)


def test_bundle_meta_carries_the_frame(small, tmp_path):
    _, _, t, parent = small
    with np.load(bl.write_bundle(parent, t, tmp_path / "b.npz"), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    assert meta["frame"] == bl.blender_frame(t.vertices)


def test_large_edit_refused_unless_flag(small, tmp_path, monkeypatch, capsys):
    """ "Select all, Add" (every vertex in the set) is a slip: one line naming the flag."""
    tdir, set_path, t, parent = small
    blend = blend_stub(tmp_path / "face.blend")
    cmd = [
        "blender",
        *import_args(blend, set_path, tdir, tmp_path / "c.json"),
    ]
    fake_export(monkeypatch, t, parent, np.arange(t.n_vertices))
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "--allow-large-edit" in err
        and f"adds {t.n_vertices - len(parent)} " in err
    )
    assert not (tmp_path / "c.json").exists()
    with pytest.raises(InputError, match="allow-large-edit"):
        bl.import_blend(blend, set_path, tdir, tmp_path / "c.json")
    assert main([*cmd, "--allow-large-edit"]) == 0
    assert len(json.loads((tmp_path / "c.json").read_text())["ids"]) == t.n_vertices
    # an edit just under the limit passes; removing many is refused as well
    limit = max(bl.LARGE_EDIT_MIN, len(parent))
    outside = np.setdiff1d(np.arange(t.n_vertices), parent.ids)
    fake_export(monkeypatch, t, parent, np.union1d(parent.ids, outside[:limit]))
    assert main(cmd) == 0
    fake_export(monkeypatch, t, parent, np.union1d(parent.ids, outside[: limit + 1]))
    assert main(cmd) == 2 and "--allow-large-edit" in capsys.readouterr().err


def _fake_python(tmp_path: Path, body: str) -> Path:
    """A folder of fake Blender scripts run by this Python (``DENSEMARK_BLENDER=python...``)."""
    d = tmp_path / "scripts"
    d.mkdir()
    for name in bl.SCRIPTS:
        (d / name).write_text(body)
    return d


def test_build_warnings_reach_the_cli(small, tmp_path, monkeypatch, capsys):
    tdir, set_path, _, _ = small
    d = _fake_python(
        tmp_path,
        "import sys\nargs = sys.argv[sys.argv.index('--') + 1:]\n"
        "print('build_template_blend: warning: mesh.validate() corrected the triangle list', file=sys.stderr)\n"
        "open(args[1], 'wb').write(b'BLENDER-v304' + bytes(64))\n",
    )
    monkeypatch.setattr(bl, "scripts_dir", lambda: d)
    monkeypatch.setenv(bl.BLENDER_ENV, sys.executable)
    res = bl.run_export(set_path, tdir, tmp_path / "a.blend")
    assert res["messages"] == [
        "warning: build_template_blend.py: mesh.validate() corrected the triangle list"
    ]
    assert res["blender_version"] == (3, 4)
    assert (
        main(
            [
                "blender",
                "export",
                "--set",
                str(set_path),
                "--template",
                str(tdir),
                "--out",
                str(tmp_path / "b.blend"),
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "densemark: warning: build_template_blend.py: mesh.validate() corrected" in out.err
    assert "open it in Blender 3.4 or newer" in out.out


# ----------------------------------------------------------------------------- bpy

INSPECT = r"""
import json, sys
import bpy, bmesh
argv = sys.argv[sys.argv.index("--") + 1:]
blend, out = argv
bpy.ops.wm.open_mainfile(filepath=blend)
obj = bpy.data.objects["FaceTemplate"]
me = obj.data
rep = {"dims": list(obj.dimensions), "n_faces": len(me.polygons), "texts": [t.name for t in bpy.data.texts]}
rep["selected"] = [v.index for v in me.vertices if v.select]
bm = bmesh.new(); bm.from_mesh(me)
rep["stray"] = sum(1 for e in list(bm.edges) + list(bm.faces) if e.select and not all(v.select for v in e.verts))
rep["n_sel_faces"] = sum(1 for f in bm.faces if f.select)
col = me.color_attributes.get("dm_colour")
rep["colour_domain"] = col.domain
layer = bm.loops.layers.float_color.get("dm_colour")
rep["red_faces"] = sorted(f.index for f in bm.faces if f.loops[0][layer][1] < 0.2)
rep["faces_touching"] = sorted(f.index for f in bm.faces if any(v.select for v in f.verts))
rep["select_mode"] = list(bpy.context.scene.tool_settings.mesh_select_mode)
views = []
for screen in bpy.data.screens:
    for area in screen.areas:
        if area.type == "VIEW_3D":
            s = area.spaces.active
            views.append([s.region_3d.view_perspective, list(s.region_3d.view_rotation), s.clip_start, s.clip_end, s.shading.color_type])
rep["views"] = views
json.dump(rep, open(out, "w"))
"""


@pytest.mark.blender
def test_built_file_opens_ready_to_edit(small, tmp_path):
    """Face at ~0.2 m, front orthographic views that clip nothing, exactly the set selected
    (no stray edge or face), the faces around it painted red, the add-on inside."""
    prefix = blender_prefix()
    tdir, set_path, t, parent = small
    blend = bl.export_blend(set_path, tdir, tmp_path / "face.blend")
    (tmp_path / "inspect_blend.py").write_text(INSPECT)
    r = subprocess.run(
        [*prefix, str(tmp_path / "inspect_blend.py"), "--", str(blend), str(tmp_path / "rep.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert 0.125 < max(rep["dims"]) <= 0.25 and rep["n_faces"] == len(t.triangles)
    assert rep["selected"] == parent.ids.tolist() and rep["stray"] == 0
    assert rep["red_faces"] == rep["faces_touching"] and 0 < len(rep["red_faces"]) < rep["n_faces"]
    assert rep["colour_domain"] == "CORNER" and rep["select_mode"] == [True, False, False]
    assert "densemark_addon.py" in rep["texts"]
    assert rep["views"], "no 3D view saved in the file"
    for persp, rot, start, end, colour in rep["views"]:
        assert persp == "ORTHO" and colour == "VERTEX"
        np.testing.assert_allclose(rot, [2**-0.5, 2**-0.5, 0, 0], atol=1e-6)  # Blender's Front view
        assert start < 0.001 and end > 1.0


@pytest.mark.blender
def test_no_faces_and_newer_file_are_errors(small, tmp_path):
    blender_prefix()
    tdir, set_path, _, _ = small
    flat = tmp_path / "flat.npz"
    meta = json.dumps({"format": bl.BUNDLE_FORMAT})
    np.savez(
        flat, meta=np.array(meta), vertices=np.zeros((3, 3)), triangles=np.zeros((0, 3), np.int64),
        ids=np.array([0]), kpt68=np.zeros(0, np.int64), mirror=np.full(3, -1),
    )  # fmt: skip
    with pytest.raises(bl.BlenderError, match="field triangles: empty"):
        bl.run_script("build_template_blend.py", [str(flat), str(tmp_path / "x.blend")])
    # a file whose header says a newer Blender: one line naming both versions, nothing read
    blend = bl.export_blend(set_path, tdir, tmp_path / "face.blend")
    raw = bytearray(blend.read_bytes())
    ver = bl.blend_file_version(blend)
    assert ver is not None
    newer = tmp_path / "newer.blend"
    if raw[7:9].isdigit():
        raw[13:17] = b"%04d" % ((ver[0] + 1) * 100)
    else:
        raw[9:12] = b"%03d" % ((ver[0] + 1) * 100)
    newer.write_bytes(bytes(raw))
    with pytest.raises(
        bl.BlenderError,
        match=rf"saved by Blender {ver[0] + 1}\.0, but this is Blender .*cannot read newer files",
    ):
        bl.run_script("export_landmarks.py", [str(newer), str(tmp_path / "x.json")])


@pytest.mark.blender
def test_panel_export_has_normal_permissions(small, tmp_path):
    prefix = blender_prefix()
    tdir, set_path, _, parent = small
    blend = bl.export_blend(set_path, tdir, tmp_path / "face.blend")
    code = (
        "import sys; sys.path.insert(0, sys.argv[-3]); import bpy, densemark_addon as dm\n"
        "bpy.ops.wm.open_mainfile(filepath=sys.argv[-2]); dm.export_set(dm.find_object(), sys.argv[-1])\n"
    )
    (tmp_path / "exp.py").write_text(code)
    out = tmp_path / "set.export.json"
    old = os.umask(0o022)
    try:
        r = subprocess.run(
            [*prefix, str(tmp_path / "exp.py"), "--", str(SCRIPTS), str(blend), str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.stat().st_mode & 0o777 == 0o644
    assert json.loads(out.read_text())["ids"] == parent.ids.tolist()

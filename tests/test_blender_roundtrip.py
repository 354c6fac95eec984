"""The Blender round trip: bundle writer and errors (no bpy), and a headless edit session (bpy).

The ``blender``-marked tests run the scripts in ``blender_scripts/`` in the separate Blender
environment (``scripts/setup-blender.sh`` or ``DENSEMARK_BLENDER``) and skip without it.
One subprocess "acts as a person": edit-mode selection with bpy ops and bmesh, the add-on's
operators, vertex-group assign/remove, save while in Edit Mode.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densemark.cli import build_parser, main
from densemark.core.errors import InputError
from densemark.faces.template import FaceTemplate, grid_triangles, load_template, save_template
from densemark.sampling import blender as bl
from densemark.sampling.landmark_set import LandmarkSet, make_set
from densemark.sampling.symmetry import template_mirror
from tests.factories import disc_template

SCRIPTS = Path(bl.__file__).resolve().parents[2] / "blender_scripts"


def small_template() -> FaceTemplate:
    """A 2,480-vertex disc template embedded, centred, in the 256x256 UV map (the on-disk res)."""
    s = disc_template(64)
    off = (256 - 64) // 2
    u, v = s.face_ind % 64 + off, s.face_ind // 64 + off
    fi = v * 256 + u
    return FaceTemplate(
        face_ind=fi, uv_kpt_ind=s.uv_kpt_ind + off, vertices=s.vertices, triangles=grid_triangles(fi, 256), res=256
    )


@pytest.fixture()
def small(tmp_path) -> tuple[Path, Path, FaceTemplate, LandmarkSet]:
    """(template dir, parent set file, template, parent set) for the disc template."""
    tdir = save_template(small_template(), tmp_path / "template")
    t = load_template(tdir)
    ids = np.unique(np.concatenate([t.kpt_ids, np.arange(0, t.n_vertices, 9)]))
    parent = make_set(t, ids, name="disc-demo", kpt68=np.searchsorted(ids, t.kpt_ids))
    return tdir, parent.save(tmp_path / "parent.json"), t, parent


def blender_prefix() -> list[str]:
    try:
        return bl.find_blender()
    except bl.BlenderError as exc:
        pytest.skip(f"no Blender environment: {exc}")


# ----------------------------------------------------------------------------- no bpy


def test_bundle_contents(small, tmp_path):
    _, _, t, parent = small
    path = bl.write_bundle(parent, t, tmp_path / "b.npz")
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert z["vertices"].shape == (t.n_vertices, 3)
        np.testing.assert_array_equal(z["triangles"], t.triangles)
        np.testing.assert_array_equal(z["ids"], parent.ids)
        np.testing.assert_array_equal(z["kpt68"], parent.kpt68_ids)
        m = z["mirror"]
        assert m.shape == (t.n_vertices,) and (m >= 0).all()
        np.testing.assert_array_equal(m[m], np.arange(t.n_vertices))  # the disc is exactly symmetric
        uv = z["uv"]
        assert uv.shape == (t.n_vertices, 2) and (uv > 0).all() and (uv < 1).all()
    assert meta["format"] == bl.BUNDLE_FORMAT
    assert meta["set"] == {"name": "disc-demo", "sha256": parent.sha256(), "n_ids": len(parent), "parent": None}
    assert meta["template"] == {"sha256": t.sha256(), "n_vertices": t.n_vertices, "res": 256}
    assert meta["kpt68_source"] == "set"


def test_export_rejects_set_of_other_template(small, tmp_path):
    tdir, _, t, _ = small
    other = disc_template(64)
    foreign = make_set(other, np.arange(0, other.n_vertices, 11), name="foreign")
    foreign.save(tmp_path / "foreign.json")
    with pytest.raises(InputError, match="template"):
        bl.export_blend(tmp_path / "foreign.json", tdir, tmp_path / "x.blend")
    with pytest.raises(InputError, match=r"\.blend"):
        bl.export_blend(small[1], tdir, tmp_path / "x.json")


def test_find_blender(monkeypatch, tmp_path):
    py = tmp_path / "python3.11"
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    monkeypatch.setenv(bl.BLENDER_ENV, str(py))
    assert bl.find_blender() == [str(py)]
    blender = tmp_path / "blender"
    blender.write_text("#!/bin/sh\n")
    blender.chmod(0o755)
    monkeypatch.setenv(bl.BLENDER_ENV, str(blender))
    cmd = bl.find_blender()
    assert cmd[0] == str(blender) and "--background" in cmd and cmd[-1] == "--python"
    monkeypatch.setenv(bl.BLENDER_ENV, str(tmp_path / "missing"))
    with pytest.raises(bl.BlenderError, match="setup-blender.sh"):
        bl.find_blender()


def test_missing_blender_message(small, tmp_path, monkeypatch, capsys):
    tdir, set_path, _, _ = small
    monkeypatch.setenv(bl.BLENDER_ENV, str(tmp_path / "nope"))
    rc = main(["blender", "export", "--set", str(set_path), "--template", str(tdir), "--out", str(tmp_path / "a.blend")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "DENSEMARK_BLENDER" in err and "setup-blender.sh" in err


def test_read_export_checks(small, tmp_path):
    _, _, t, parent = small
    good = {
        "format": bl.EXPORT_FORMAT,
        "blend": "a.blend",
        "n_vertices": t.n_vertices,
        "ids": [1, 2, 3],
        "source": {"set": {"sha256": parent.sha256()}, "template": {"sha256": t.sha256()}},
    }
    p = tmp_path / "e.json"

    def check(obj, field):
        p.write_text(json.dumps(obj))
        with pytest.raises(InputError, match=field.replace(".", r"\.")):
            bl.read_export(p, parent, t)

    p.write_text(json.dumps(good))
    np.testing.assert_array_equal(bl.read_export(p, parent, t), [1, 2, 3])
    check({**good, "format": "x"}, "format")
    check({**good, "source": {**good["source"], "set": {"sha256": "0" * 64}}}, "source.set.sha256")
    check({**good, "source": {**good["source"], "template": {"sha256": "0" * 64}}}, "source.template.sha256")
    check({**good, "n_vertices": 5}, "n_vertices")
    check({**good, "ids": []}, "ids")
    check({**good, "ids": [t.n_vertices]}, "ids")


def test_cli_registered():
    args = build_parser().parse_args(["blender", "import", "a.blend", "--parent", "p.json", "--template", "t", "--out", "c.json", "--note", "n"])
    assert args.blend == "a.blend" and args.note == "n" and callable(args.func)


# ----------------------------------------------------------------------------- bpy

PERSON = r'''
"""Act as a person editing the landmark set in Edit Mode; args after --: scripts blend out plan.json."""
import json, sys
import bpy
import bmesh
argv = sys.argv[sys.argv.index("--") + 1:]
scripts, blend, out, plan_path = argv
sys.path.insert(0, scripts)
import densemark_addon as dm
plan = json.load(open(plan_path))
dm.register(); dm.register()  # twice: re-running the script from the Text editor must work
assert hasattr(bpy.types, "VIEW3D_PT_densemark")

bpy.ops.wm.open_mainfile(filepath=blend)
obj = bpy.data.objects["FaceTemplate"]
bpy.context.view_layer.objects.active = obj
bpy.ops.object.mode_set(mode="EDIT")
bpy.ops.mesh.select_mode(type="VERT")
report = {}

def select(ids):
    bpy.ops.mesh.select_all(action="DESELECT")
    bm = bmesh.from_edit_mesh(obj.data)
    bm.verts.ensure_lookup_table()
    for i in ids:
        bm.verts[i].select_set(True)
    bm.select_flush_mode()
    bmesh.update_edit_mesh(obj.data)

assert bpy.ops.densemark.load_set() == {"FINISHED"}
report["loaded"] = dm.selected_ids(obj).tolist()

# 1. remove some landmarks with Blender's own vertex-group operator
select(plan["remove"])
bpy.ops.object.vertex_group_set_active(group="landmarks")
bpy.ops.object.vertex_group_remove_from()

# 2. add vertices and their mirror partners (add-on), assign with Blender's operator
select(plan["add"])
assert bpy.ops.densemark.mirror_selection() == {"FINISHED"}
report["mirrored_selection"] = dm.selected_ids(obj).tolist()
bpy.context.scene.tool_settings.vertex_group_weight = 1.0
bpy.ops.object.vertex_group_assign()

# 3. the add-on's assign operator, add and remove modes
select(plan["add_op"])
assert bpy.ops.densemark.assign_selection(mode="ADD") == {"FINISHED"}
select(plan["remove_op"])
assert bpy.ops.densemark.assign_selection(mode="REMOVE") == {"FINISHED"}
report["status"] = bpy.context.window_manager.densemark_status

# the panel draws (a stand-in layout records what it shows)
class Layout:
    def __init__(self, log): self.log = log
    def label(self, text=""): self.log.append(text)
    def column(self, align=False): return self
    def row(self, align=False): return self
    def operator(self, idname, text="", icon="NONE"):
        self.log.append(idname); return type("Props", (), {})()
drawn = []
dm.VIEW3D_PT_densemark.draw(type("Panel", (), {"layout": Layout(drawn)})(), bpy.context)
report["panel_drawn"] = drawn

# 4. the panel's export, then save while still in Edit Mode
assert bpy.ops.densemark.export_set(filepath=plan["panel_export"]) == {"FINISHED"}
bpy.ops.wm.save_as_mainfile(filepath=out)
dm.unregister()
assert not hasattr(bpy.types, "VIEW3D_PT_densemark")
json.dump(report, open(plan["report"], "w"))
print("person: done")
'''


def _person_session(blend: Path, edited: Path, plan: dict, tmp_path: Path) -> dict:
    script = tmp_path / "person.py"
    script.write_text(PERSON)
    plan = {**plan, "report": str(tmp_path / "report.json"), "panel_export": str(tmp_path / "panel.json")}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    cmd = [*blender_prefix(), str(script), "--", str(SCRIPTS), str(blend), str(edited), str(tmp_path / "plan.json")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0 and "person: done" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    return {**json.loads((tmp_path / "report.json").read_text()), "panel": json.loads((tmp_path / "panel.json").read_text())}


def _plan(t: FaceTemplate, parent: LandmarkSet) -> tuple[dict, np.ndarray, np.ndarray]:
    """Pick edits; return (plan, expected added, expected removed)."""
    mirror = template_mirror(t).ids
    members = set(parent.ids.tolist())
    kpts = set(parent.kpt68_ids.tolist())
    free = [i for i in parent.ids.tolist() if i not in kpts]
    x = t.vertices[:, 0]
    # off-midline non-members whose mirror partner is also a non-member: the mirror op adds it
    cand = [i for i in range(t.n_vertices) if i not in members and mirror[i] not in members and abs(x[i]) > 3 and mirror[i] != i]
    add = cand[:3]
    add_op = [i for i in cand[10:] if i not in add and mirror[i] not in add][:1]
    plan = {"remove": free[:4], "add": add, "add_op": add_op, "remove_op": free[4:6]}
    added = np.unique(np.concatenate([add, mirror[add], add_op]))
    removed = np.unique(free[:6])
    return plan, added, removed


def _round_trip(tdir: Path, set_path: Path, t: FaceTemplate, parent: LandmarkSet, tmp_path: Path) -> None:
    blend = bl.export_blend(set_path, tdir, tmp_path / "face.blend")
    plan, added, removed = _plan(t, parent)
    edited = tmp_path / "edited.blend"
    rep = _person_session(blend, edited, plan, tmp_path)
    assert rep["loaded"] == sorted(parent.ids.tolist())
    mirror = template_mirror(t).ids
    assert rep["mirrored_selection"] == sorted(set(plan["add"]) | set(mirror[plan["add"]].tolist()))
    assert rep["panel_drawn"][0] == f"Set: {parent.name}" and "densemark.export_set" in rep["panel_drawn"]
    assert rep["status"] == f"set: {len(parent) - len(removed) + len(added)} landmarks (+0 / -2)"

    child = bl.import_blend(edited, set_path, tdir, tmp_path / "child.json", note="hand fix", name="fixed")
    want = np.union1d(np.setdiff1d(parent.ids, removed), added)
    np.testing.assert_array_equal(np.sort(child.ids), want)
    assert rep["panel"]["ids"] == want.tolist()  # the panel's export agrees with the headless one
    assert rep["panel"]["source"]["set"]["sha256"] == parent.sha256()
    new_edits = child.provenance["edits"][len(parent.provenance["edits"]) :]
    assert new_edits == [
        {"op": "remove", "ids": removed.tolist(), "source": "blender:edited.blend", "note": "hand fix"},
        {"op": "add", "ids": added.tolist(), "source": "blender:edited.blend", "note": "hand fix"},
    ]
    assert child.provenance["parent"] == {"name": parent.name, "sha256": parent.sha256()}
    assert child.name == "fixed"
    np.testing.assert_array_equal(child.kpt68_ids, parent.kpt68_ids)
    again = LandmarkSet.load(tmp_path / "child.json", t)
    assert again.sha256() == child.sha256()

    # the unedited file imports as an edit-free child; a wrong parent is refused
    same = bl.import_blend(blend, set_path, tdir, tmp_path / "same.json")
    np.testing.assert_array_equal(same.ids, parent.ids)
    assert same.provenance["edits"] == parent.provenance["edits"]
    child.save(tmp_path / "other-parent.json")
    with pytest.raises(InputError, match="source.set.sha256"):
        bl.import_blend(edited, tmp_path / "other-parent.json", tdir, tmp_path / "bad.json")


@pytest.mark.blender
def test_round_trip_small(small, tmp_path):
    blender_prefix()
    tdir, set_path, t, parent = small
    _round_trip(tdir, set_path, t, parent, tmp_path)


@pytest.mark.blender
@pytest.mark.real
@pytest.mark.slow
def test_round_trip_real(real_dir, tmp_path):
    blender_prefix()
    from densemark.sampling.seed_import import import_seed

    tdir = real_dir / "template"
    t = load_template(tdir)
    parent = import_seed(real_dir / "seed", t)
    set_path = parent.save(tmp_path / "seed.json")
    _round_trip(tdir, set_path, t, parent, tmp_path)


@pytest.mark.blender
def test_script_errors(tmp_path):
    blender_prefix()
    bad = tmp_path / "bad.npz"
    np.savez(
        bad, meta=np.array(json.dumps({"format": bl.BUNDLE_FORMAT})), vertices=np.zeros((3, 3)),
        triangles=np.array([[0, 1, 5]]), ids=np.array([0]), kpt68=np.zeros(0, np.int64), mirror=np.full(3, -1),
    )
    with pytest.raises(bl.BlenderError, match="field triangles: ids must lie in"):
        bl.run_script("build_template_blend.py", [str(bad), str(tmp_path / "x.blend")])
    assert not (tmp_path / "x.blend").exists()
    with pytest.raises(bl.BlenderError, match="file not found"):
        bl.run_script("export_landmarks.py", [str(tmp_path / "missing.blend"), str(tmp_path / "x.json")])


@pytest.mark.blender
def test_cli_round_trip(small, tmp_path):
    blender_prefix()
    tdir, set_path, _, parent = small
    blend = tmp_path / "cli.blend"
    base = [sys.executable, "-m", "densemark", "blender"]
    r = subprocess.run([*base, "export", "--set", str(set_path), "--template", str(tdir), "--out", str(blend)], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and blend.is_file(), r.stderr
    out = tmp_path / "child.json"
    r = subprocess.run(
        [*base, "import", str(blend), "--parent", str(set_path), "--template", str(tdir), "--out", str(out), "--note", "none"],
        capture_output=True, text=True, check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "(+0 / -0)" in r.stdout
    np.testing.assert_array_equal(LandmarkSet.load(out).ids, parent.ids)

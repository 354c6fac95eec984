"""The Blender round trip: bundle writer and errors (no bpy), and a headless edit session (bpy).

The ``blender``-marked tests run the scripts in ``blender_scripts/`` in the separate Blender
environment (``scripts/setup-blender.sh`` or ``DENSEMARK_BLENDER``) and skip without it.
One subprocess "acts as a person": edit-mode selection with bpy ops and bmesh, the add-on's
operators, vertex-group assign/remove, save while in Edit Mode.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from densemark.cli import build_parser, main
from densemark.core.errors import InputError
from densemark.faces.template import FaceTemplate, load_template
from densemark.sampling import blender as bl
from densemark.sampling.landmark_set import LandmarkSet, make_set
from densemark.sampling.symmetry import template_mirror
from tests.blender_support import (
    SCRIPTS,
    blend_stub,
    blender_prefix,
    fake_export,
    import_args,
    small_world,
)
from tests.factories import disc_template

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def small(tmp_path) -> tuple[Path, Path, FaceTemplate, LandmarkSet]:
    """(template dir, parent set file, template, parent set) for the disc template."""
    return small_world(tmp_path)


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
        np.testing.assert_array_equal(
            m[m], np.arange(t.n_vertices)
        )  # the disc is exactly symmetric
        uv = z["uv"]
        assert uv.shape == (t.n_vertices, 2) and (uv > 0).all() and (uv < 1).all()
    assert meta["format"] == bl.BUNDLE_FORMAT
    assert meta["set"] == {
        "name": "disc-demo",
        "sha256": parent.sha256(),
        "n_ids": len(parent),
        "parent": None,
    }
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
    rc = main(
        [
            "blender",
            "export",
            "--set",
            str(set_path),
            "--template",
            str(tdir),
            "--out",
            str(tmp_path / "a.blend"),
        ]
    )
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
    check(
        {**good, "source": {**good["source"], "template": {"sha256": "0" * 64}}},
        "source.template.sha256",
    )
    check({**good, "n_vertices": 5}, "n_vertices")
    check({**good, "ids": []}, "ids")
    check({**good, "ids": [t.n_vertices]}, "ids")


def test_cli_registered():
    args = build_parser().parse_args(
        [
            "blender",
            "import",
            "a.blend",
            "--parent",
            "p.json",
            "--template",
            "t",
            "--out",
            "c.json",
            "--note",
            "n",
        ]
    )
    assert args.blend == "a.blend" and args.note == "n" and callable(args.func)


def test_read_export_checks_template_before_set(small, tmp_path):
    _, _, t, parent = small
    sha_t, sha_s = t.sha256(), parent.sha256()

    def near(h: str) -> str:  # same first 30 characters
        return h[:30] + ("0" if h[30] != "0" else "1") + h[31:]

    obj = {
        "format": bl.EXPORT_FORMAT,
        "blend": "a.blend",
        "n_vertices": t.n_vertices,
        "ids": [1, 2],
        "source": {"set": {"sha256": near(sha_s)}, "template": {"sha256": near(sha_t)}},
    }
    p = tmp_path / "e.json"
    p.write_text(json.dumps(obj))
    with pytest.raises(InputError) as ei:
        bl.read_export(p, parent, t, source=tmp_path / "a.blend")
    assert ei.value.field == "source.template.sha256" and ei.value.path == str(tmp_path / "a.blend")
    shown = re.findall(r"[0-9a-f]{12,64}", ei.value.message)
    assert len(shown) == 2 and shown[0] != shown[1], ei.value.message
    obj["source"]["template"]["sha256"] = sha_t
    p.write_text(json.dumps(obj))
    with pytest.raises(InputError, match="source.set.sha256") as ei:
        bl.read_export(p, parent, t)
    shown = re.findall(r"[0-9a-f]{12,64}", ei.value.message)
    assert len(shown) == 2 and shown[0] != shown[1], ei.value.message


def test_import_errors_name_the_blend_not_a_temp_file(small, tmp_path, monkeypatch):
    tdir, set_path, t, parent = small
    fake_export(monkeypatch, t, parent, parent.ids, format="something else")
    blend = blend_stub(tmp_path / "face.blend")
    with pytest.raises(InputError) as ei:
        bl.import_blend(blend, set_path, tdir, tmp_path / "c.json")
    assert ei.value.path == str(blend) and "export.json" not in str(ei.value)


def test_import_notes_symmetry_and_no_change(small, tmp_path, monkeypatch, capsys):
    tdir, set_path, t, parent = small
    tm = template_mirror(t)
    blend = blend_stub(tmp_path / "face.blend")
    cmd = ["blender", "import", str(blend), "--parent", str(set_path), "--template", str(tdir)]
    fake_export(monkeypatch, t, parent, parent.ids)
    assert main([*cmd, "--out", str(tmp_path / "same.json")]) == 0
    out = capsys.readouterr()
    assert "no change" in out.out and "(+0 / -0)" in out.out and "symmetry" not in out.err

    members, kpt = set(parent.ids.tolist()), set(parent.kpt68_ids.tolist())
    pairs = [
        i
        for i in parent.ids.tolist()
        if i not in kpt
        and tm.exact[i]
        and tm.ids[i] != i
        and int(tm.ids[i]) in members
        and int(tm.ids[i]) not in kpt
    ]
    drop = pairs[:2]  # their partners stay: 2 landmarks lose their partner
    lone = [
        i
        for i in range(t.n_vertices)
        if i not in members and tm.ids[i] != i and int(tm.ids[i]) not in members
    ][:1]
    fake_export(monkeypatch, t, parent, sorted((members - set(drop)) | set(lone)))
    assert main([*cmd, "--out", str(tmp_path / "c.json")]) == 0
    err = capsys.readouterr().err
    assert "breaks the mirror symmetry" in err
    assert (
        "2 landmark(s) lost their mirror partner" in err
        and "1 added landmark(s) have no mirror partner" in err
    )


def test_import_keypoint_drop_names_cli_flag(small, tmp_path, monkeypatch, capsys):
    tdir, set_path, t, parent = small
    fake_export(monkeypatch, t, parent, np.setdiff1d(parent.ids, parent.kpt68_ids[[8]]))
    blend = blend_stub(tmp_path / "face.blend")
    cmd = [
        "blender",
        *import_args(blend, set_path, tdir, tmp_path / "c.json"),
    ]
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert "--allow-drop-kpt" in err and "allow_drop_kpt" not in err
    assert main([*cmd, "--allow-drop-kpt"]) == 0
    assert LandmarkSet.load(tmp_path / "c.json").kpt68 is None


def test_not_a_blend_is_one_line(small, tmp_path, capsys):
    tdir, set_path, _, _ = small
    junk = tmp_path / "junk.blend"
    junk.write_text("not a blend file at all\n")
    rc = main(
        [
            "blender",
            *import_args(junk, set_path, tdir, tmp_path / "c.json"),
        ]
    )
    err = capsys.readouterr().err
    assert (
        rc == 2
        and err.startswith("densemark: error: ")
        and err.count("\n") == 1
        and "not a Blender file" in err
    )


def test_script_error_is_one_line_without_temp_paths(small, tmp_path, monkeypatch):
    """A script's own error line is the message; the temp bundle is named for what it is."""
    tdir, set_path, _, _ = small
    fake = tmp_path / "python-fake"
    fake.write_text(
        '#!/bin/sh\necho "Read blend: noise" >&2\n'
        'echo "build_template_blend: error: $3: field meta: not a JSON string" >&2\n'
        'echo "more noise" >&2\nexit 2\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv(bl.BLENDER_ENV, str(fake))
    with pytest.raises(bl.BlenderError) as ei:
        bl.export_blend(set_path, tdir, tmp_path / "x.blend")
    msg = str(ei.value)
    assert msg == "build_template_blend.py: the exchange bundle: field meta: not a JSON string", msg


# ----------------------------------------------------------------------------- packaging


def _bl_info() -> dict:
    tree = ast.parse((SCRIPTS / "densemark_addon.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "bl_info" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("no bl_info in densemark_addon.py")


def test_extension_manifest_agrees_with_bl_info():
    man = tomllib.loads((ROOT / "blender_scripts" / "blender_manifest.toml").read_text())
    info = _bl_info()
    required = {
        "schema_version",
        "id",
        "version",
        "name",
        "tagline",
        "maintainer",
        "type",
        "blender_version_min",
        "license",
    }
    assert required <= set(man) and man["type"] == "add-on"
    assert man["name"] == info["name"]
    assert man["version"] == ".".join(map(str, info["version"]))
    # extensions exist from Blender 4.2; the legacy add-on (bl_info) runs from 3.4
    assert tuple(map(int, man["blender_version_min"].split("."))) == max(
        (4, 2, 0), tuple(info["blender"])
    )
    assert tuple(info["blender"]) == (3, 4, 0)
    assert len(man["tagline"]) <= 64 and man["tagline"][-1].isalnum()
    assert re.fullmatch(r"[a-z][a-z0-9_]*", man["id"])
    init = ast.parse(
        (ROOT / "blender_scripts" / "__init__.py").read_text()
    )  # the extension's entry point
    names = {
        a.name
        for n in init.body
        if isinstance(n, ast.ImportFrom) and n.module == "densemark_addon"
        for a in n.names
    }
    assert {"register", "unregister"} <= names


@pytest.mark.slow
def test_scripts_ship_in_the_wheel(tmp_path):
    """A wheel holds the Blender scripts, and an installed densemark finds them there."""
    st = pytest.importorskip(
        "setuptools", minversion="68", reason="building the wheel offline needs setuptools>=68 here"
    )
    if tuple(int(x) for x in st.__version__.split(".")[:2]) < (70, 1):
        pytest.importorskip("wheel", reason="setuptools<70.1 builds wheels with the wheel package")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for d in ("densemark", "blender_scripts"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("densemark-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"densemark/sampling/blender_scripts/{f}"
        for f in (*bl.SCRIPTS, "__init__.py", "blender_manifest.toml", "README.md")
    }
    assert shipped <= names, sorted(shipped - names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import densemark, densemark.sampling.blender as b; print(densemark.__file__); print(b.scripts_dir())"
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    pkg, found = (Path(x) for x in r.stdout.split())
    assert pkg.is_relative_to(site) and found == site / "densemark" / "sampling" / "blender_scripts"


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
report["loaded"] = list(dm.selected_ids(obj))

# 1. remove some landmarks with Blender's own vertex-group operator
select(plan["remove"])
bpy.ops.object.vertex_group_set_active(group="landmarks")
bpy.ops.object.vertex_group_remove_from()

# 2. add vertices and their mirror partners (add-on), assign with Blender's operator
select(plan["add"])
assert bpy.ops.densemark.mirror_selection() == {"FINISHED"}
report["mirrored_selection"] = list(dm.selected_ids(obj))
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
    plan = {
        **plan,
        "report": str(tmp_path / "report.json"),
        "panel_export": str(tmp_path / "panel.json"),
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    cmd = [
        *blender_prefix(),
        str(script),
        "--",
        str(SCRIPTS),
        str(blend),
        str(edited),
        str(tmp_path / "plan.json"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0 and "person: done" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    return {
        **json.loads((tmp_path / "report.json").read_text()),
        "panel": json.loads((tmp_path / "panel.json").read_text()),
    }


def _plan(t: FaceTemplate, parent: LandmarkSet) -> tuple[dict, np.ndarray, np.ndarray]:
    """Pick edits; return (plan, expected added, expected removed)."""
    mirror = template_mirror(t).ids
    members = set(parent.ids.tolist())
    kpts = set(parent.kpt68_ids.tolist())
    free = [i for i in parent.ids.tolist() if i not in kpts]
    x = t.vertices[:, 0]
    # off-midline non-members whose mirror partner is also a non-member: the mirror op adds it
    cand = [
        i
        for i in range(t.n_vertices)
        if i not in members and mirror[i] not in members and abs(x[i]) > 3 and mirror[i] != i
    ]
    add = cand[:3]
    add_op = [i for i in cand[10:] if i not in add and mirror[i] not in add][:1]
    plan = {"remove": free[:4], "add": add, "add_op": add_op, "remove_op": free[4:6]}
    added = np.unique(np.concatenate([add, mirror[add], add_op]))
    removed = np.unique(free[:6])
    return plan, added, removed


def _round_trip(
    tdir: Path, set_path: Path, t: FaceTemplate, parent: LandmarkSet, tmp_path: Path
) -> None:
    blend = bl.export_blend(set_path, tdir, tmp_path / "face.blend")
    plan, added, removed = _plan(t, parent)
    edited = tmp_path / "edited.blend"
    rep = _person_session(blend, edited, plan, tmp_path)
    assert rep["loaded"] == sorted(parent.ids.tolist())
    mirror = template_mirror(t).ids
    assert rep["mirrored_selection"] == sorted(set(plan["add"]) | set(mirror[plan["add"]].tolist()))
    assert (
        rep["panel_drawn"][0] == f"Set: {parent.name}"
        and "densemark.export_set" in rep["panel_drawn"]
    )
    assert rep["status"] == f"Set: {len(parent) - len(removed) + len(added)} (+0 / -2)"

    child = bl.import_blend(
        edited, set_path, tdir, tmp_path / "child.json", note="hand fix", name="fixed"
    )
    want = np.union1d(np.setdiff1d(parent.ids, removed), added)
    np.testing.assert_array_equal(np.sort(child.ids), want)
    assert rep["panel"]["ids"] == want.tolist()  # the panel's export agrees with the headless one
    assert rep["panel"]["source"]["set"]["sha256"] == parent.sha256()
    new_edits = child.provenance["edits"][len(parent.provenance["edits"]) :]
    assert new_edits == [
        {
            "op": "remove",
            "ids": removed.tolist(),
            "source": "blender:edited.blend",
            "note": "hand fix",
        },
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
        bad,
        meta=np.array(json.dumps({"format": bl.BUNDLE_FORMAT})),
        vertices=np.zeros((3, 3)),
        triangles=np.array([[0, 1, 5]]),
        ids=np.array([0]),
        kpt68=np.zeros(0, np.int64),
        mirror=np.full(3, -1),
    )
    with pytest.raises(bl.BlenderError, match="field triangles: ids must lie in"):
        bl.run_script("build_template_blend.py", [str(bad), str(tmp_path / "x.blend")])
    assert not (tmp_path / "x.blend").exists()
    with pytest.raises(bl.BlenderError, match="file not found"):
        bl.run_script(
            "export_landmarks.py", [str(tmp_path / "missing.blend"), str(tmp_path / "x.json")]
        )


@pytest.mark.blender
def test_cli_round_trip(small, tmp_path):
    blender_prefix()
    tdir, set_path, _, parent = small
    blend = tmp_path / "cli.blend"
    base = [sys.executable, "-m", "densemark", "blender"]
    r = subprocess.run(
        [*base, "export", "--set", str(set_path), "--template", str(tdir), "--out", str(blend)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and blend.is_file(), r.stderr
    out = tmp_path / "child.json"
    r = subprocess.run(
        [
            *base,
            *import_args(blend, set_path, tdir, out, "--note", "none"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "(+0 / -0)" in r.stdout and "no change" in r.stdout
    np.testing.assert_array_equal(LandmarkSet.load(out).ids, parent.ids)
    # a truncated .blend: one line from the CLI, no Blender traceback
    cut = tmp_path / "cut.blend"
    cut.write_bytes(blend.read_bytes()[: blend.stat().st_size // 2])
    r = subprocess.run(
        [
            *base,
            *import_args(cut, set_path, tdir, tmp_path / "cut.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        r.returncode == 2
        and r.stderr.startswith("densemark: error: ")
        and r.stderr.count("\n") == 1
    ), r.stderr
    assert (
        "cut.blend" in r.stderr
        and "Blender cannot read" in r.stderr
        and "Traceback" not in r.stderr
    )


EXTENSION = r"""
import os, subprocess, sys, zipfile
import bpy
argv = sys.argv[sys.argv.index("--") + 1:]
src, work = argv
if bpy.app.version < (4, 2, 0):
    print("extension: needs Blender 4.2, this is", bpy.app.version_string)
    sys.exit(0)
cli = os.path.join(bpy.utils.system_resource("SCRIPTS"), "addons_core", "bl_pkg", "cli", "blender_ext.py")
for cmd in (["validate", src], ["build", "--source-dir", src, "--output-dir", work]):
    r = subprocess.run([sys.executable, cli, *cmd], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
(zname,) = [f for f in os.listdir(work) if f.endswith(".zip")]
pkg = os.path.join(work, "pkg", "densemark_landmarks")
zipfile.ZipFile(os.path.join(work, zname)).extractall(pkg)
sys.path.insert(0, os.path.dirname(pkg))
import densemark_landmarks
densemark_landmarks.register()
assert hasattr(bpy.types, "VIEW3D_PT_densemark")
densemark_landmarks.unregister()
print("extension: ok", zname)
"""


@pytest.mark.blender
def test_extension_builds_and_registers(tmp_path):
    """Blender's own extension tool validates the manifest and builds the add-on, which registers."""
    prefix = blender_prefix()
    script = tmp_path / "ext.py"
    script.write_text(EXTENSION)
    (tmp_path / "work").mkdir()
    r = subprocess.run(
        [*prefix, str(script), "--", str(SCRIPTS), str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if "extension: needs Blender 4.2" in r.stdout:
        pytest.skip("Blender extensions need Blender 4.2 (DENSEMARK_BLENDER names an older one)")
    assert r.returncode == 0 and "extension: ok densemark_landmarks-0.2.0.zip" in r.stdout, (
        r.stdout[-3000:] + r.stderr[-3000:]
    )

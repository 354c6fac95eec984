"""Landmark editing in Blender's real window (Xvfb), with the Blender that builds the file.

The file is built by the GUI Blender itself (``DENSEMARK_BLENDER``: a ``.blend`` opens only in
a Blender at least as new as the one that wrote it), opened in its window under Xvfb, and
screenshotted: the pixels must show the face and its red landmarks, in Object Mode as opened
and in Edit Mode. A startup script (``--python``) then acts in that window session: Tab (Edit
Mode must select exactly the set), the panel's operators (Edit set, Mirror selection, Add,
Remove, Load set) run with the window's context, after a real click (xdotool) on the sidebar's
Densemark tab; save; ``densemark blender import`` must record
exactly that edit, and refuse a "select all, Add" slip unless ``--allow-large-edit``.

Needs a ``blender`` executable (Debian's 3.4.1 here: ``apt-get install blender xvfb``, or
``bash scripts/setup-ci-gui.sh``; ``DENSEMARK_GUI_BLENDER`` names another), ``xvfb-run`` and
the real template (``DENSEMARK_REAL_DATA``); skips with the reason otherwise. Set
``DENSEMARK_GUI_SCREENSHOTS=DIR`` to keep the screenshots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densemark.faces.template import load_template
from densemark.sampling import blender as bl
from densemark.sampling.landmark_set import LandmarkSet
from densemark.sampling.symmetry import template_mirror
from tests.blender_support import import_args

pytestmark = [pytest.mark.blender, pytest.mark.real, pytest.mark.slow]

DRIVER = r'''
"""Act in Blender's window session; args after --: scripts plan.json."""
import json, os, shutil, subprocess, sys, traceback
import bpy
import bmesh
argv = sys.argv[sys.argv.index("--") + 1:]
scripts, plan_path = argv
plan = json.load(open(plan_path))
sys.path.insert(0, scripts)
import densemark_addon as dm
dm.register()
report = {"version": bpy.app.version_string, "panel_drawn": 0}
_draw = dm.VIEW3D_PT_densemark.draw


def draw(self, context):  # counts the times Blender draws the panel in the window
    report["panel_drawn"] += 1
    _draw(self, context)


dm.VIEW3D_PT_densemark.draw = draw


def view3d():
    win = bpy.context.window_manager.windows[0]
    area = max((a for a in win.screen.areas if a.type == "VIEW_3D"), key=lambda a: a.width * a.height)
    region = next(r for r in area.regions if r.type == "WINDOW")
    return win, area, region


def shot(name):
    win, area, region = view3d()
    with bpy.context.temp_override(window=win, area=area, region=region):
        bpy.ops.screen.screenshot(filepath=os.path.join(plan["out"], name))
    # the 3D view's drawing region, in window pixels from the bottom left
    report[name] = {"x": region.x, "y": region.y, "w": region.width, "h": region.height, "win_h": win.height}


def click_tab():
    """Click the sidebar's Densemark tab with xdotool: the 4th tab, found in the first screenshot."""
    if not shutil.which("xdotool"):
        report["clicked"] = "no xdotool"
        return
    win, area, _ = view3d()
    ui = next(r for r in area.regions if r.type == "UI")
    img = bpy.data.images.load(os.path.join(plan["out"], "open.png"))
    w, h = img.size
    px = img.pixels[:]
    x = ui.x + ui.width - 8  # the tab strip at the sidebar's right edge
    # rows from the bottom; the tabs are lit runs separated by dark gaps
    lum = [sum(px[4 * (y * w + x) : 4 * (y * w + x) + 3]) / 3 for y in range(h)]
    runs, start = [], None
    for y in range(ui.y + ui.height - 1, ui.y, -1):
        lit = lum[y] > 0.104  # tabs (active 48, others 29 of 255) vs gaps (24)
        if lit and start is None:
            start = y
        elif not lit and start is not None:
            if start - y > 12:
                runs.append((start + y) // 2)
            start = None
    report["tabs"] = len(runs)
    report["ui"] = [ui.x, ui.y, ui.width, ui.height, w, h]
    if len(runs) >= 4:
        subprocess.run(["xdotool", "mousemove", str(x), str(win.height - runs[3]), "click", "1"], check=True)
        report["clicked"] = "Densemark"


def selection(obj):
    bm = bmesh.from_edit_mesh(obj.data)
    sel = {v.index for v in bm.verts if v.select}
    stray_e = sum(1 for e in bm.edges if e.select and not all(v.select for v in e.verts))
    stray_f = sum(1 for f in bm.faces if f.select and not all(v.select for v in f.verts))
    return sorted(sel), stray_e + stray_f


def edit():
    win, area, region = view3d()
    obj = bpy.data.objects["FaceTemplate"]
    with bpy.context.temp_override(window=win, area=area, region=region):
        bpy.ops.object.mode_set(mode="EDIT")  # what Tab does
        report["tab_selected"], report["tab_stray"] = selection(obj)
        bpy.ops.object.mode_set(mode="OBJECT")
        assert bpy.ops.densemark.edit_set() == {"FINISHED"}  # the panel's button in Object Mode
        report["edit_set_status"] = bpy.context.window_manager.densemark_status
        dm.select_ids(obj, plan["add"])  # clicks on three vertices
        assert bpy.ops.densemark.mirror_selection() == {"FINISHED"}
        report["mirror_status"] = bpy.context.window_manager.densemark_status
        assert bpy.ops.densemark.assign_selection(mode="ADD") == {"FINISHED"}
        dm.select_ids(obj, plan["remove"])
        assert bpy.ops.densemark.assign_selection(mode="REMOVE") == {"FINISHED"}
        report["assign_status"] = bpy.context.window_manager.densemark_status
        assert bpy.ops.densemark.load_set() == {"FINISHED"}
        report["loaded"], _ = selection(obj)
        area.spaces.active.region_3d.view_distance *= 0.55  # zoom in, as one does to click vertices
        report["panel_drawn_before"] = report["panel_drawn"]


def save():
    win, area, region = view3d()
    with bpy.context.temp_override(window=win, area=area, region=region):
        bpy.ops.wm.save_mainfile()
        bpy.ops.mesh.select_all(action="SELECT")  # the slip: everything selected, then Add
        assert bpy.ops.densemark.assign_selection(mode="ADD") == {"FINISHED"}
        bpy.ops.wm.save_as_mainfile(filepath=plan["slip"], copy=True)


steps = [lambda: None, lambda: shot("open.png"), click_tab, edit, lambda: None, lambda: shot("edit.png"), save]


def tick():
    try:
        steps.pop(0)()
    except Exception:
        report["error"] = traceback.format_exc()
        steps.clear()
    if steps:
        return 0.5
    with open(plan["report"], "w") as f:
        json.dump(report, f)
    bpy.ops.wm.quit_blender()
    return None


bpy.app.timers.register(tick, first_interval=1.5)
'''


def gui_tools() -> tuple[str, str]:
    """(blender, xvfb-run) executables, or skip saying what is missing."""
    blender = os.environ.get("DENSEMARK_GUI_BLENDER") or shutil.which("blender")
    if not blender:
        pytest.skip(
            "no `blender` executable for the GUI test (apt-get install blender xvfb, or bash scripts/setup-ci-gui.sh)"
        )
    xvfb = shutil.which("xvfb-run")
    if not xvfb or not shutil.which("Xvfb"):
        pytest.skip(
            "no Xvfb / xvfb-run for the GUI test (apt-get install xvfb, or bash scripts/setup-ci-gui.sh)"
        )
    return blender, xvfb


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "densemark", "blender", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=300,
    )


def _view(png: Path, box: dict) -> np.ndarray:
    """(h, w, 3) int pixels of the central half of the 3D view's drawing region."""
    from PIL import Image

    a = np.asarray(Image.open(png).convert("RGB")).astype(int)
    top = a.shape[0] - (box["y"] + box["h"])  # window coordinates count from the bottom
    x0, y0 = box["x"] + box["w"] // 4, top + box["h"] // 4
    return a[y0 : y0 + box["h"] // 2, x0 : x0 + box["w"] // 2]


def _pixels(view: np.ndarray) -> dict[str, int]:
    """Pixel counts of the colours that matter: skin (the face), red (landmarks), orange (selected)."""
    r, g, b = view[..., 0], view[..., 1], view[..., 2]
    return {
        "skin": int(((r >= g) & (g >= b) & (r - b > 10) & (r - b < 60) & (r > 120)).sum()),
        "red": int(((r - g > 40) & (abs(g - b) < 30)).sum()),
        "orange": int(((r > 200) & (g - b > 50) & (g > 80)).sum()),
        "all": int(r.size),
    }


def test_edit_in_blender_window(real_dir, tmp_path):
    blender, xvfb = gui_tools()
    from densemark.sampling.seed_import import import_seed

    tdir = real_dir / "template"
    t = load_template(tdir)
    parent = import_seed(real_dir / "seed", t)
    set_path = parent.save(tmp_path / "seed.json")
    env = {**os.environ, bl.BLENDER_ENV: blender}

    blend = tmp_path / "face.blend"
    r = _cli(["export", "--set", str(set_path), "--template", str(tdir), "--out", str(blend)], env)
    assert r.returncode == 0, r.stderr
    ver = bl.blend_file_version(blend)
    assert ver is not None and f"saved by Blender {ver[0]}.{ver[1]}" in r.stdout

    # the edit: three vertices off the midline (not in the set, nor their mirror partners) and
    # their partners added; two non-keypoint landmarks removed
    mirror = template_mirror(t).ids
    members = set(parent.ids.tolist())
    x = t.vertices[:, 0]
    cand = [
        i
        for i in range(0, t.n_vertices, 97)
        if i not in members and mirror[i] not in members and abs(x[i]) > 20
    ]
    add = cand[:3]
    remove = [i for i in parent.ids.tolist() if i not in set(parent.kpt68_ids.tolist())][:2]
    added = np.unique(np.concatenate([add, mirror[add]]))
    shots = tmp_path / "shots"
    shots.mkdir()
    plan = {
        "add": add,
        "remove": remove,
        "out": str(shots),
        "report": str(tmp_path / "report.json"),
        "slip": str(tmp_path / "slip.blend"),
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "driver.py").write_text(DRIVER)
    cmd = [
        xvfb, "-a", "-s", "-screen 0 1280x800x24",
        blender, "--factory-startup", str(blend), "--python", str(tmp_path / "driver.py"), "--", str(bl.scripts_dir()), str(tmp_path / "plan.json"),
    ]  # fmt: skip
    run = subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=600, cwd=tmp_path
    )
    assert (tmp_path / "report.json").is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    rep = json.loads((tmp_path / "report.json").read_text())
    assert "error" not in rep, rep["error"]
    if os.environ.get("DENSEMARK_GUI_SCREENSHOTS"):
        keep = Path(os.environ["DENSEMARK_GUI_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for png in shots.iterdir():
            shutil.copy(png, keep / png.name)

    # as opened: the face fills much of the view and its landmarks show as red dots
    opened = _pixels(_view(shots / "open.png", rep["open.png"]))
    assert opened["skin"] > 0.25 * opened["all"], opened
    assert 0.002 * opened["all"] < opened["red"] < 0.2 * opened["all"], opened
    # Tab selects exactly the set, and no edge or face beyond what its vertices imply
    assert rep["tab_selected"] == parent.ids.tolist() and rep["tab_stray"] == 0
    # in Edit Mode after the edit: face, red landmarks and the selected (orange) set all show
    edited = _pixels(_view(shots / "edit.png", rep["edit.png"]))
    assert edited["skin"] > 0.2 * edited["all"] and edited["red"] > 0.001 * edited["all"], edited
    assert edited["orange"] > 0.002 * edited["all"], edited
    # a real click (xdotool) on the sidebar's Densemark tab shows the panel in the window
    if shutil.which("xdotool"):
        assert rep["clicked"] == "Densemark" and rep["panel_drawn"] > 0, rep
    # the statuses are short enough for the sidebar
    n_after = len(parent) + len(added) - len(remove)
    assert rep["edit_set_status"] == f"Loaded {len(parent)} landmarks"
    assert rep["mirror_status"] == "Mirror: +3 selected"
    assert rep["assign_status"] == f"Set: {n_after} (+0 / -{len(remove)})"
    assert rep["loaded"] == sorted(set(parent.ids.tolist()) - set(remove) | set(added.tolist()))

    # densemark blender import records exactly that edit
    out = tmp_path / "child.json"
    r = _cli(
        import_args(blend, set_path, tdir, out, "--note", "gui"),
        env,
    )
    assert r.returncode == 0, r.stderr
    assert f"(+{len(added)} / -{len(remove)})" in r.stdout
    child = LandmarkSet.load(out, t)
    edits = child.provenance["edits"][len(parent.provenance["edits"]) :]
    assert edits == [
        {"op": "remove", "ids": sorted(remove), "source": "blender:face.blend", "note": "gui"},
        {"op": "add", "ids": added.tolist(), "source": "blender:face.blend", "note": "gui"},
    ]
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())

    # "select all, Add" is refused, unless asked for
    slip = import_args(plan["slip"], set_path, tdir, tmp_path / "slip.json")
    r = _cli(slip, env)
    assert r.returncode == 2 and "--allow-large-edit" in r.stderr and r.stderr.count("\n") == 1, (
        r.stderr
    )
    assert not (tmp_path / "slip.json").exists()
    r = _cli([*slip, "--allow-large-edit"], env)
    assert r.returncode == 0 and f"(+{t.n_vertices - len(parent)} / -0)" in r.stdout, (
        r.stdout + r.stderr
    )


def test_newer_file_in_older_blender_is_explained(real_dir, tmp_path):
    """A bpy-5 file given to an older Blender: one line naming both versions, before Blender reads it."""
    blender, _ = gui_tools()
    try:
        bl.find_blender()
    except bl.BlenderError as exc:
        pytest.skip(f"no bpy environment to build a newer file: {exc}")
    from densemark.sampling.seed_import import import_seed

    tdir = real_dir / "template"
    t = load_template(tdir)
    set_path = import_seed(real_dir / "seed", t).save(tmp_path / "seed.json")
    env = {k: v for k, v in os.environ.items() if k != bl.BLENDER_ENV}
    blend = tmp_path / "new.blend"
    r = _cli(["export", "--set", str(set_path), "--template", str(tdir), "--out", str(blend)], env)
    assert r.returncode == 0, r.stderr
    new, old = bl.blend_file_version(blend), _version(blender)
    if new is None or new <= old:
        pytest.skip(f"the bpy environment ({new}) is not newer than {blender} ({old})")
    r = _cli(
        import_args(blend, set_path, tdir, tmp_path / "c.json"),
        {**env, bl.BLENDER_ENV: blender},
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert (
        f"saved by Blender {new[0]}.{new[1]}" in r.stderr and "cannot read newer files" in r.stderr
    ), r.stderr


def _version(blender: str) -> tuple[int, int]:
    r = subprocess.run(
        [blender, "--version"], capture_output=True, text=True, check=True, timeout=120
    )
    major, minor = r.stdout.split()[1].split(".")[:2]
    return int(major), int(minor)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

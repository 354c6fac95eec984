"""Shared set-up of the Blender tests: a small disc template and set, Blender's location, and
stand-ins for Blender where a test checks only densemark's side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densemark.faces.template import FaceTemplate, grid_triangles, load_template, save_template
from densemark.sampling import blender as bl
from densemark.sampling.landmark_set import LandmarkSet, make_set
from tests.factories import disc_template

SCRIPTS = bl.scripts_dir()


def small_template() -> FaceTemplate:
    """A 2,480-vertex disc template embedded, centred, in the 256x256 UV map (the on-disk res)."""
    s = disc_template(64)
    off = (256 - 64) // 2
    u, v = s.face_ind % 64 + off, s.face_ind // 64 + off
    fi = v * 256 + u
    return FaceTemplate(
        face_ind=fi,
        uv_kpt_ind=s.uv_kpt_ind + off,
        vertices=s.vertices,
        triangles=grid_triangles(fi, 256),
        res=256,
    )


def small_world(folder: Path) -> tuple[Path, Path, FaceTemplate, LandmarkSet]:
    """(template dir, parent set file, template, parent set) of the disc template, in ``folder``."""
    tdir = save_template(small_template(), folder / "template")
    t = load_template(tdir)
    ids = np.unique(np.concatenate([t.kpt_ids, np.arange(0, t.n_vertices, 9)]))
    parent = make_set(t, ids, name="disc-demo", kpt68=np.searchsorted(ids, t.kpt_ids))
    return tdir, parent.save(folder / "parent.json"), t, parent


def blender_prefix() -> list[str]:
    """The command that runs Blender's Python (``bl.find_blender``), or skip saying why."""
    try:
        return bl.find_blender()
    except bl.BlenderError as exc:
        pytest.skip(f"no Blender environment: {exc}")


def fake_export(monkeypatch, t: FaceTemplate, parent: LandmarkSet, ids, **extra) -> None:
    """Stand in for Blender: export_landmarks.py 'writes' an export of ``ids``."""

    def run_script(script, args, **kw):
        assert script == "export_landmarks.py"
        payload = {
            "format": bl.EXPORT_FORMAT,
            "blend": Path(args[0]).name,
            "n_vertices": t.n_vertices,
            "ids": sorted(int(i) for i in ids),
            "source": {"set": {"sha256": parent.sha256()}, "template": {"sha256": t.sha256()}},
            **extra,
        }
        Path(args[1]).write_text(json.dumps(payload))
        return ""

    monkeypatch.setattr(bl, "run_script", run_script)


def blend_stub(path: Path) -> Path:
    """A file that passes the ``.blend`` header check (Blender itself is faked)."""
    path.write_bytes(b"BLENDER-v500" + bytes(64))
    return path


def import_args(blend, set_path, template_dir, out, *extra: str) -> list[str]:
    """The arguments of ``densemark blender import`` after ``blender``: the edited ``blend``
    against its parent set and template, written to ``out``, then ``extra``."""
    return ["import", str(blend), "--parent", str(set_path), "--template", str(template_dir),
            "--out", str(out), *extra]  # fmt: skip

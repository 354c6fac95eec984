"""The Blender round trip for correcting a landmark set by hand (host side).

``export_blend`` writes an exchange bundle (template + set + mirror map, see
:func:`write_bundle`) and runs ``blender_scripts/build_template_blend.py`` in the Blender
environment to make a ``.blend``; a person edits the vertex group ``landmarks`` there (the
``densemark_addon.py`` panel helps); ``import_blend`` runs ``blender_scripts/export_landmarks.py``
on the edited file and records the result as a child set of the parent with
:func:`densemark.sampling.landmark_set.edit` (one ``remove`` and/or ``add`` entry).

The Blender environment is separate from the toolkit's (PyPI's ``bpy`` pins numpy<2):
``find_blender`` looks at ``DENSEMARK_BLENDER`` (a ``blender`` executable, or a Python that
can ``import bpy``), then at ``.venv-blender/bin/python`` at the repository root (made by
``scripts/setup-blender.sh``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from densemark.core.atomic import atomic_path
from densemark.core.errors import DensemarkError, InputError
from densemark.faces.template import FaceTemplate, load_template
from densemark.sampling.landmark_set import LandmarkSet, edit
from densemark.sampling.symmetry import MIRROR_SPACE, template_mirror

BLENDER_ENV = "DENSEMARK_BLENDER"
BUNDLE_FORMAT = "densemark-blender-bundle/1"
EXPORT_FORMAT = "densemark-blender-export/1"
ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = ROOT / "blender_scripts"
SETUP_HINT = (
    "run `bash scripts/setup-blender.sh` at the repository root (creates .venv-blender with bpy), "
    f"or set {BLENDER_ENV} to a `blender` executable or to a Python that can `import bpy`"
)


class BlenderError(DensemarkError):
    """No Blender environment, or a Blender script failed (the message says which and why)."""


# ----------------------------------------------------------------------------- bundle


def write_bundle(lset: LandmarkSet, template: FaceTemplate, path: str | os.PathLike) -> Path:
    """Write the exchange bundle (``.npz``, no pickles) that ``build_template_blend.py`` reads.

    Arrays: ``vertices`` (V, 3) float64, ``triangles`` (T, 3) int64, ``uv`` (V, 2) float32
    pixel centres in [0, 1] (v up), ``ids`` (K,) the set, ``kpt68`` (68,) the keypoints'
    template ids (the set's own, else the template's; (0,) if neither), ``mirror`` (V,) the
    mirror vertex of each template vertex (the convention of ``mirror_match``), ``meta`` a
    JSON string: format, set {name, sha256, n_ids, parent}, template {sha256, n_vertices, res},
    kpt68_source, mirror_space.

    Raises:
        InputError: the set does not belong to the template.
    """
    lset.validate(template)
    if lset.kpt68_ids is not None:
        kpt, kpt_src = lset.kpt68_ids, "set"
    else:
        kpt, kpt_src = template.kpt_ids, "template"
    uv = (template.pixel_uv.astype(np.float64) + 0.5) / template.res
    uv[:, 1] = 1.0 - uv[:, 1]
    meta = {
        "format": BUNDLE_FORMAT,
        "set": {
            "name": lset.name,
            "sha256": lset.sha256(),
            "n_ids": len(lset),
            "parent": lset.provenance.get("parent"),
        },
        "template": {"sha256": template.sha256(), "n_vertices": template.n_vertices, "res": template.res},
        "kpt68_source": kpt_src,
        "mirror_space": MIRROR_SPACE,
    }
    p = Path(path)
    with atomic_path(p) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            meta=np.array(json.dumps(meta, sort_keys=True)),
            vertices=np.asarray(template.vertices, np.float64),
            triangles=np.asarray(template.triangles, np.int64),
            uv=uv.astype(np.float32),
            ids=np.asarray(lset.ids, np.int64),
            kpt68=np.asarray(kpt, np.int64),
            mirror=np.asarray(template_mirror(template).ids, np.int64),
        )
    return p


def read_export(path: str | os.PathLike, parent: LandmarkSet, template: FaceTemplate) -> np.ndarray:
    """Read ``export_landmarks.py``'s JSON and check it against the parent set and template.

    Returns:
        (K',) int64 sorted template ids of the edited set.

    Raises:
        InputError: naming the file and field: wrong format, a ``.blend`` built from another
            set or template, ids out of range, an empty set.
    """
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(p, None, f"cannot read the Blender export ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != EXPORT_FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise InputError(p, "format", f"expected {EXPORT_FORMAT!r}, got {got!r}")
    src = obj.get("source") or {}
    blend = obj.get("blend") or "the .blend"
    want_set = src.get("set", {}).get("sha256")
    if want_set != parent.sha256():
        raise InputError(
            p,
            "source.set.sha256",
            f"{blend} was built from set {str(want_set)[:12]}..., not the given parent "
            f"{parent.name!r} ({parent.sha256()[:12]}...)",
        )
    want_tpl = src.get("template", {}).get("sha256")
    if want_tpl != template.sha256():
        raise InputError(p, "source.template.sha256", f"{blend} was built on another template ({str(want_tpl)[:12]}...)")
    if obj.get("n_vertices") != template.n_vertices:
        raise InputError(
            p, "n_vertices", f"the mesh has {obj.get('n_vertices')} vertices, the template {template.n_vertices} (vertices added or deleted?)"
        )
    ids = obj.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InputError(p, "ids", "expected a list of integers")
    arr = np.unique(np.asarray(ids, np.int64))
    if arr.size == 0:
        raise InputError(p, "ids", "the vertex group 'landmarks' is empty")
    if arr.min() < 0 or arr.max() >= template.n_vertices:
        raise InputError(p, "ids", f"ids out of range 0..{template.n_vertices - 1}")
    return arr


# ----------------------------------------------------------------------------- Blender


def find_blender() -> list[str]:
    """Command prefix that runs a Blender script: ``prefix + [script, "--", *args]``.

    ``DENSEMARK_BLENDER`` names a Blender executable (used as ``blender --background
    --factory-startup --python-exit-code 1 --python``) or, when its file name starts with
    ``python``, a Python with ``bpy``; otherwise ``.venv-blender/bin/python`` at the
    repository root (or the working directory).

    Raises:
        BlenderError: nothing found, with the set-up instructions.
    """
    env = os.environ.get(BLENDER_ENV, "").strip()
    if env:
        exe = shutil.which(env) or (env if Path(env).is_file() else None)
        if exe is None:
            raise BlenderError(f"{BLENDER_ENV}={env}: not an executable; {SETUP_HINT}")
        if Path(exe).name.lower().startswith("python"):
            return [exe]
        return [exe, "--background", "--factory-startup", "--python-exit-code", "1", "--python"]
    for base in (ROOT, Path.cwd()):
        py = base / ".venv-blender" / "bin" / "python"
        if py.is_file():
            return [str(py)]
    raise BlenderError(f"no Blender environment found; {SETUP_HINT}")


def run_script(script: str, args: list[str], *, timeout: float = 600.0) -> str:
    """Run ``blender_scripts/<script>`` headless with ``args``; returns its stdout.

    Raises:
        BlenderError: no Blender, the script is missing, it failed or timed out (with its stderr).
    """
    path = SCRIPTS_DIR / script
    if not path.is_file():
        raise BlenderError(f"{path}: Blender script not found (blender_scripts/ ships with the source tree)")
    cmd = [*find_blender(), str(path), "--", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BlenderError(f"{script}: timed out after {timeout:.0f} s") from exc
    except OSError as exc:
        raise BlenderError(f"{script}: cannot start {cmd[0]} ({exc}); {SETUP_HINT}") from exc
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-15:])
        raise BlenderError(f"{script} failed (exit {r.returncode}):\n{tail}")
    return r.stdout


# ----------------------------------------------------------------------------- round trip


def export_blend(set_path: str | os.PathLike, template_dir: str | os.PathLike, out_blend: str | os.PathLike) -> Path:
    """Make the editing ``.blend`` for the set at ``set_path`` on the template in ``template_dir``.

    Raises:
        InputError: bad set / template files, or a set made for another template.
        BlenderError: no Blender environment or the build failed.
    """
    template = load_template(template_dir)
    lset = LandmarkSet.load(set_path, template)
    out = Path(out_blend)
    if out.suffix.lower() != ".blend":
        raise InputError(out, None, "the output must end in .blend")
    with tempfile.TemporaryDirectory(prefix="densemark-blender-") as tmp:
        bundle = write_bundle(lset, template, Path(tmp) / "bundle.npz")
        run_script("build_template_blend.py", [str(bundle), str(out.resolve())])
    if not out.is_file():
        raise BlenderError(f"{out}: the build script reported success but wrote no file")
    return out


def import_blend(
    blend: str | os.PathLike,
    parent_path: str | os.PathLike,
    template_dir: str | os.PathLike,
    out_json: str | os.PathLike,
    note: str = "",
    *,
    name: str | None = None,
    allow_drop_kpt: bool = False,
) -> LandmarkSet:
    """Read the edited ``landmarks`` group of ``blend`` and save it as a child of the parent set.

    The child's provenance names the parent and appends the ids removed and added (source
    ``blender:<file name>``, ``note``). Returns the child, written to ``out_json``.

    Raises:
        InputError: bad files, a ``.blend`` built from another set or template, an edit that
            removes keypoints (unless ``allow_drop_kpt``).
        BlenderError: no Blender environment or the export failed.
    """
    b = Path(blend)
    if not b.is_file():
        raise InputError(b, None, "file not found")
    template = load_template(template_dir)
    parent = LandmarkSet.load(parent_path, template)
    with tempfile.TemporaryDirectory(prefix="densemark-blender-") as tmp:
        exp = Path(tmp) / "export.json"
        run_script("export_landmarks.py", [str(b.resolve()), str(exp)])
        ids = read_export(exp, parent, template)
    child = edit(parent, template, ids, source=f"blender:{b.name}", note=note, name=name, allow_drop_kpt=allow_drop_kpt)
    child.save(out_json)
    return child

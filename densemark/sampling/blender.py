"""The Blender round trip for correcting a landmark set by hand (host side).

``export_blend`` writes an exchange bundle (template + set + mirror map, see
:func:`write_bundle`) and runs ``build_template_blend.py`` in the Blender environment to make a
``.blend``; a person edits the vertex group ``landmarks`` there (the ``densemark_addon.py``
panel helps); ``import_blend`` runs ``export_landmarks.py`` on the edited file and records the
result as a child set of the parent with :func:`densemark.sampling.landmark_set.edit` (one
``remove`` and/or ``add`` entry).

The scripts live in ``blender_scripts/`` at the repository root; the wheel ships them as the
package data ``densemark/sampling/blender_scripts/`` (``setup.py`` maps the folder there), and
:func:`scripts_dir` finds either.

The Blender environment is separate from the toolkit's (PyPI's ``bpy`` pins numpy<2):
``find_blender`` looks at ``DENSEMARK_BLENDER`` (a ``blender`` executable, or a Python that
can ``import bpy``), then at ``.venv-blender/bin/python`` at the repository root (made by
``scripts/setup-blender.sh``). The scripts run on Blender >= 3.4 (pure Python, no numpy); a
``.blend`` opens only in a Blender at least as new as the one that wrote it
(:func:`blend_file_version` reads that from the file's header).
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from densemark.core.errors import DensemarkError, InputError
from densemark.core.report import StageResult
from densemark.faces.template import load_template
from densemark.sampling.blender_files import (  # noqa: F401 - re-exported
    BLEND_MAGIC,
    BUNDLE_FORMAT,
    EXPORT_FORMAT,
    VIEW_EXTENT_M,
    blend_file_version,
    blender_frame,
    check_blend_file,
    read_export,
    write_bundle,
)
from densemark.sampling.landmark_set import LandmarkSet, edit, edit_summary

BLENDER_ENV = "DENSEMARK_BLENDER"
ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("build_template_blend.py", "export_landmarks.py", "densemark_addon.py")
# an edit changing more points than max(LARGE_EDIT_MIN, parent size) is refused without allow_large_edit
LARGE_EDIT_MIN = 256
SETUP_HINT = (
    "run `bash scripts/setup-blender.sh` at the repository root (creates .venv-blender with bpy), "
    f"or set {BLENDER_ENV} to a `blender` executable or to a Python that can `import bpy`"
)


class BlenderError(DensemarkError):
    """No Blender environment, or a Blender script failed (the message says which and why)."""


# ----------------------------------------------------------------------------- bundle


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


def scripts_dir() -> Path:
    """The folder of the Blender scripts: the installed package's data, else the source tree's.

    Raises:
        BlenderError: neither holds them.
    """
    packaged = importlib.resources.files("densemark.sampling") / "blender_scripts"
    for d in (Path(str(packaged)), ROOT / "blender_scripts"):
        if all((d / s).is_file() for s in SCRIPTS):
            return d
    raise BlenderError(
        "the Blender scripts are missing: neither densemark/sampling/blender_scripts/ (installed "
        "package) nor blender_scripts/ (source checkout) holds them; reinstall densemark"
    )


def run_script(
    script: str,
    args: list[str],
    *,
    timeout: float = 600.0,
    names: dict[str, str] | None = None,
    warnings: list[str] | None = None,
) -> str:
    """Run the Blender script ``script`` (from :func:`scripts_dir`) headless; returns its stdout.

    Args:
        script: file name, one of :data:`SCRIPTS`.
        args: its arguments (after ``--``).
        timeout: seconds.
        names: ``{text: replacement}`` applied to error and warning messages (temporary paths
            -> what they stand for), so that no message names a file that is gone by then.
        warnings: when given, the script's own ``<script>: warning: ...`` lines are appended
            (as ``<script>: ...``, with ``names`` applied).

    Raises:
        BlenderError: no Blender, the script is missing, it failed or timed out. When the script
            reported its own error (a ``<script>: error: ...`` line) the message is that line;
            otherwise the last lines of its output.
    """
    path = scripts_dir() / script
    cmd = [*find_blender(), str(path), "--", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BlenderError(f"{script}: timed out after {timeout:.0f} s") from exc
    except OSError as exc:
        raise BlenderError(f"{script}: cannot start {cmd[0]} ({exc}); {SETUP_HINT}") from exc

    def rename(msg: str) -> str:
        for old, new in (names or {}).items():
            msg = msg.replace(old, new)
        return msg

    if warnings is not None:
        wtag = f"{Path(script).stem}: warning: "
        lines = (r.stderr or "").splitlines() + (r.stdout or "").splitlines()
        warnings.extend(
            rename(f"{script}: {ln[len(wtag) :]}") for ln in lines if ln.startswith(wtag)
        )
    if r.returncode != 0:
        tag = f"{Path(script).stem}: error: "
        own = [ln[len(tag) :] for ln in (r.stderr or "").splitlines() if ln.startswith(tag)]
        if own:
            msg = f"{script}: {own[-1]}"
        else:
            tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-15:])
            msg = f"{script} failed (exit {r.returncode}):\n{tail}"
        raise BlenderError(rename(msg))
    return r.stdout


# ----------------------------------------------------------------------------- round trip


def export_blend(
    set_path: str | os.PathLike, template_dir: str | os.PathLike, out_blend: str | os.PathLike
) -> Path:
    """Make the editing ``.blend`` for the set at ``set_path`` on the template in ``template_dir``.

    Returns the ``.blend``; :func:`run_export` also returns the build's warnings.

    Raises:
        InputError: bad set / template files, or a set made for another template.
        BlenderError: no Blender environment or the build failed.
    """
    return run_export(set_path, template_dir, out_blend)["outputs"]["blend"]


def run_export(
    set_path: str | os.PathLike, template_dir: str | os.PathLike, out_blend: str | os.PathLike
) -> dict:
    """:func:`export_blend` with its report.

    Returns:
        ``{"outputs": {"blend": path}, "blender_version": (major, minor) or None,
        "messages": [str]}``: the Blender version that wrote the file (the oldest that opens
        it) and the build script's warnings (``"warning: ..."``).
    """
    template = load_template(template_dir)
    lset = LandmarkSet.load(set_path, template)
    out = Path(out_blend)
    if out.suffix.lower() != ".blend":
        raise InputError(out, None, "the output must end in .blend")
    with tempfile.TemporaryDirectory(prefix="densemark-blender-") as tmp:
        bundle = write_bundle(lset, template, Path(tmp) / "bundle.npz")
        warnings: list[str] = []
        run_script(
            "build_template_blend.py",
            [str(bundle), str(out.resolve())],
            names={str(bundle): "the exchange bundle"},
            warnings=warnings,
        )
    if not out.is_file():
        raise BlenderError(f"{out}: the build script reported success but wrote no file")
    return {
        "outputs": {"blend": out},
        "blender_version": blend_file_version(out),
        "messages": [f"warning: {w}" for w in warnings],
    }


def import_blend(
    blend: str | os.PathLike,
    parent_path: str | os.PathLike,
    template_dir: str | os.PathLike,
    out_json: str | os.PathLike,
    note: str = "",
    *,
    name: str | None = None,
    allow_drop_kpt: bool = False,
    allow_large_edit: bool = False,
) -> LandmarkSet:
    """Read the edited ``landmarks`` group of ``blend`` and save it as a child of the parent set.

    The child's provenance names the parent and appends the ids removed and added (source
    ``blender:<file name>``, ``note``). Returns the child, written to ``out_json``; see
    :func:`run_import` for what the edit changed.

    Raises:
        InputError: bad files (a missing or non-Blender ``.blend``), a ``.blend`` built on
            another template or from another set, an edit that removes keypoints (unless
            ``allow_drop_kpt``, the CLI's ``--allow-drop-kpt``), an edit that adds or removes
            implausibly many points (unless ``allow_large_edit``; see :func:`check_edit_size`).
        BlenderError: no Blender environment, or Blender cannot read the file (truncated, or
            saved by a newer Blender than the one that runs the import).
    """
    return run_import(
        blend,
        parent_path,
        template_dir,
        out_json,
        note,
        name=name,
        allow_drop_kpt=allow_drop_kpt,
        allow_large_edit=allow_large_edit,
    ).value


def run_import(
    blend: str | os.PathLike,
    parent_path: str | os.PathLike,
    template_dir: str | os.PathLike,
    out_json: str | os.PathLike,
    note: str = "",
    *,
    name: str | None = None,
    allow_drop_kpt: bool = False,
    allow_large_edit: bool = False,
) -> StageResult:
    """:func:`import_blend` with its report.

    Returns:
        output ``set``; report :func:`~densemark.sampling.landmark_set.edit_summary` plus the
        parent's ``parent_name``; the child :class:`LandmarkSet` as ``value``; notes carrying the
        Blender script's warnings and saying when the edit changed nothing or broke the mirror
        symmetry (how many landmarks lost their partner).
    """
    b = check_blend_file(blend)
    template = load_template(template_dir)
    parent = LandmarkSet.load(parent_path, template)
    with tempfile.TemporaryDirectory(prefix="densemark-blender-") as tmp:
        exp = Path(tmp) / "export.json"
        warnings: list[str] = []
        run_script(
            "export_landmarks.py",
            [str(b.resolve()), str(exp)],
            names={str(exp): "the export JSON"},
            warnings=warnings,
        )
        ids = read_export(exp, parent, template, source=b)
    if not allow_large_edit:
        check_edit_size(b, parent, ids, template.n_vertices)
    if parent.kpt68 is not None and not allow_drop_kpt:
        kpt = parent.kpt68_ids
        lost = ~np.isin(kpt, ids)
        if lost.any():
            raise InputError(
                b,
                "landmarks",
                f"the edit removes {int(lost.sum())} keypoint vertices (ids {kpt[lost].tolist()}, keypoints "
                f"{np.flatnonzero(lost).tolist()}); put them back, or pass --allow-drop-kpt to accept a "
                "child without kpt68",
            )
    child = edit(
        parent,
        template,
        ids,
        source=f"blender:{b.name}",
        note=note,
        name=name,
        allow_drop_kpt=allow_drop_kpt,
    )
    path = child.save(out_json)
    rep = edit_summary(parent, child, template)
    notes = [f"warning: {w}" for w in warnings] + edit_messages(rep)
    return StageResult(
        outputs={"set": path}, report={**rep, "parent_name": parent.name}, value=child, notes=notes
    )


def check_edit_size(blend: Path, parent: LandmarkSet, ids: np.ndarray, n_vertices: int) -> None:
    """Refuse an edit that adds or removes more than ``max(LARGE_EDIT_MIN, len(parent))`` points.

    Such an edit is almost always a slip (everything selected when Add was pressed).

    Args:
        blend: the edited file (named in the error).
        parent: the set the file was built from.
        ids: (K',) the edited set's template ids.
        n_vertices: the template's vertex count.

    Raises:
        InputError: naming the file, the counts and the ``--allow-large-edit`` flag.
    """
    added = int(np.setdiff1d(ids, parent.ids).size)
    removed = int(np.setdiff1d(parent.ids, ids).size)
    limit = max(LARGE_EDIT_MIN, len(parent))
    if added > limit or removed > limit:
        raise InputError(
            blend,
            "landmarks",
            f"the edit adds {added} and removes {removed} points (the parent has {len(parent)}, the mesh "
            f"{n_vertices}; more than {limit} either way looks like a slip, e.g. everything selected when "
            "Add was pressed); undo it in Blender, or pass --allow-large-edit to accept it",
        )


def edit_messages(rep: dict) -> list[str]:
    """Plain-language notes on an :func:`~densemark.sampling.landmark_set.edit_summary`."""
    out = []
    if rep["unchanged"]:
        out.append(
            "no change: the vertex group 'landmarks' holds exactly the parent's landmarks (the child records no edit)"
        )
    lost, unp = rep["lost_partner"], rep["unpaired_added"]
    if lost or unp:
        parts = []
        if lost:
            parts.append(f"{len(lost)} landmark(s) lost their mirror partner (e.g. ids {lost[:8]})")
        if unp:
            parts.append(
                f"{len(unp)} added landmark(s) have no mirror partner in the set (e.g. ids {unp[:8]})"
            )
        was = (
            "; the parent was exactly mirror-symmetric, the child is not"
            if rep["parent_exact"] and not rep["child_exact"]
            else ""
        )
        out.append(
            "warning: the edit breaks the mirror symmetry: "
            + ", ".join(parts)
            + was
            + " (the add-on's 'Mirror selection' adds partners)"
        )
    return out

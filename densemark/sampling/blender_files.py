"""The files of the Blender round trip: the exchange bundle a ``.blend`` is built from, the
export JSON read back, the ``.blend`` header (magic and version), and the Blender frame the
template is shown in."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from densemark.core.atomic import atomic_path
from densemark.core.errors import InputError, distinct_prefixes
from densemark.core.validate import check_ids
from densemark.faces.template import FaceTemplate
from densemark.sampling.landmark_set import LandmarkSet
from densemark.sampling.symmetry import MIRROR_SPACE, template_mirror

BUNDLE_FORMAT = "densemark-blender-bundle/1"
EXPORT_FORMAT = "densemark-blender-export/1"
# a .blend starts with "BLENDER", or is gzip- (Blender < 3) or zstd-compressed (Blender >= 3)
BLEND_MAGIC = (b"BLENDER", b"\x1f\x8b", b"\x28\xb5\x2f\xfd")
# the .blend shows the face at about a real face's size: largest extent in (0.125, 0.25] m
VIEW_EXTENT_M = 0.25


def blender_frame(vertices: np.ndarray) -> dict:
    """How ``build_template_blend.py`` maps template coordinates to Blender's (JSON-able).

    Template (PRNet's frame: x right, y down, z towards the viewer) -> Blender (X right, Y
    away from the front view, Z up), in metres:

        X = s (x - ox),  Y = -s (z - oz),  Z = -s (y - oy)

    with ``offset`` (ox, oy, oz) the centre of the bounding box and ``scale`` s the power of
    two that brings the largest extent into (0.125, 0.25] m. Back: ``x = X / s + ox``,
    ``y = oy - Z / s``, ``z = oz - Y / s`` (the ``.blend`` stores float32 coordinates; the
    round trip reads vertex ids, never coordinates).

    Args:
        vertices: (V, 3) template coordinates.
    """
    v = np.asarray(vertices, np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    extent = float((hi - lo).max())
    k = (
        math.frexp(VIEW_EXTENT_M / extent)[1] - 1 if extent > 0 else 0
    )  # floor(log2(ratio)), exactly
    return {
        "axes": "x,-z,-y",
        "offset": ((lo + hi) / 2).tolist(),
        "scale": math.ldexp(1.0, k),
        "units": "m",
    }


def write_bundle(lset: LandmarkSet, template: FaceTemplate, path: str | os.PathLike) -> Path:
    """Write the exchange bundle (``.npz``, no pickles) that ``build_template_blend.py`` reads.

    Arrays: ``vertices`` (V, 3) float64, ``triangles`` (T, 3) int64, ``uv`` (V, 2) float32
    pixel centres in [0, 1] (v up), ``ids`` (K,) the set, ``kpt68`` (68,) the keypoints'
    template ids (the set's own, else the template's; (0,) if neither), ``mirror`` (V,) the
    mirror vertex of each template vertex (the convention of ``mirror_match``), ``meta`` a
    JSON string: format, set {name, sha256, n_ids, parent}, template {sha256, n_vertices, res},
    kpt68_source, mirror_space, frame (:func:`blender_frame`).

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
        "template": {
            "sha256": template.sha256(),
            "n_vertices": template.n_vertices,
            "res": template.res,
        },
        "kpt68_source": kpt_src,
        "mirror_space": MIRROR_SPACE,
        "frame": blender_frame(template.vertices),
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


def read_export(
    path: str | os.PathLike,
    parent: LandmarkSet,
    template: FaceTemplate,
    *,
    source: str | os.PathLike | None = None,
) -> np.ndarray:
    """Read ``export_landmarks.py``'s JSON and check it against the template, then the parent set.

    Args:
        path: the export JSON.
        parent: the set the ``.blend`` must have been built from.
        template: the template it must have been built on.
        source: the file named in errors instead of ``path`` (the ``.blend``, when ``path`` is
            a temporary file).

    Returns:
        (K',) int64 sorted template ids of the edited set.

    Raises:
        InputError: naming the file and field: wrong format, a ``.blend`` built on another
            template or from another set, ids out of range, an empty set.
    """
    p = Path(path)
    where = p if source is None else Path(source)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            where, None, f"cannot read the Blender export ({type(exc).__name__})"
        ) from exc
    if not isinstance(obj, dict) or obj.get("format") != EXPORT_FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise InputError(where, "format", f"expected {EXPORT_FORMAT!r}, got {got!r}")
    src = obj.get("source") or {}
    blend = obj.get("blend") or "the .blend"
    want_tpl = str(src.get("template", {}).get("sha256"))
    if want_tpl != template.sha256():
        a, b = distinct_prefixes(want_tpl, template.sha256())
        raise InputError(
            where,
            "source.template.sha256",
            f"{blend} was built on template {a}, not the given one ({b})",
        )
    want_set = str(src.get("set", {}).get("sha256"))
    if want_set != parent.sha256():
        a, b = distinct_prefixes(want_set, parent.sha256())
        raise InputError(
            where,
            "source.set.sha256",
            f"{blend} was built from set {a}, not the given parent {parent.name!r} ({b})",
        )
    if obj.get("n_vertices") != template.n_vertices:
        raise InputError(
            where,
            "n_vertices",
            f"the mesh has {obj.get('n_vertices')} vertices, the template {template.n_vertices} (vertices added or deleted?)",
        )
    ids = obj.get("ids")
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise InputError(where, "ids", "expected a list of integers")
    arr = check_ids(ids, where, "ids", template.n_vertices, unique=False, allow_empty=True)
    if arr.size == 0:
        raise InputError(where, "ids", "the vertex group 'landmarks' is empty")
    return np.unique(arr)


def check_blend_file(path: str | os.PathLike) -> Path:
    """``path`` if it exists and starts like a ``.blend`` (``BLENDER``, gzip or zstd header).

    Raises:
        InputError: missing, or not a Blender file.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, None, "file not found")
    with open(p, "rb") as f:
        head = f.read(8)
    if not head.startswith(BLEND_MAGIC):
        raise InputError(
            p,
            None,
            f"not a Blender file (starts with {head[:7]!r}, not 'BLENDER' or a gzip/zstd header)",
        )
    return p


def blend_file_version(path: str | os.PathLike) -> tuple[int, int] | None:
    """(major, minor) of the Blender that saved ``path``, from the header; None if unknown.

    ``BLENDER_v304`` / ``BLENDER-v304`` before Blender 5, ``BLENDER17-01v0500`` from Blender 5
    on; a compressed file (gzip, zstd) gives None.
    """
    with open(path, "rb") as f:
        head = f.read(17)
    if not head.startswith(b"BLENDER"):
        return None
    digits = head[13:17] if head[7:9].isdigit() else head[9:12]
    if not digits.isdigit():
        return None
    v = int(digits)
    return v // 100, v % 100


# ----------------------------------------------------------------------------- Blender

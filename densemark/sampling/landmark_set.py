"""The landmark-set artifact: K template vertex ids, their 68 keypoints, mirror pairing, provenance.

On disk (JSON, key-sorted, byte-stable)::

    {"format": "densemark-landmark-set", "version": 1, "name": str,
     "template": {"sha256": str, "n_vertices": int},
     "ids": [int]*K,                 # template vertex ids, in landmark order
     "kpt68": [int]*68 | null,       # positions (0..K-1) of the 68 keypoints inside ids
     "mirror": {"perm": [int]*K, "residual": [float]*K, "exact": bool, "space": str,
                "convention": str},     # absent in files written before it was added
     "provenance": {"parent": {"name", "sha256"} | null, "sampler": {...} | null,
                    "raw_ids": [int] | null,
                    "edits": [{"op": "add"|"remove", "ids": [int], "source": str, "note": str}],
                    "created_by": "densemark <version>"}}

``mirror.perm`` is an involution: ``perm[i]`` is the position of landmark i's left/right
partner (itself on the midline or when unpaired); ``residual[i]`` is the 3D template distance
from i's mirror position to that partner (0 for exact pairs); ``exact`` = all residuals are 0.
``mirror.convention`` states the template mirror in words (:data:`MIRROR_CONVENTION`: UV pixel
``u -> res-1-u``; vertices on the two centre columns pair with themselves); files without it
(written before it was added) load unchanged, with the same ``sha256``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import densemark
from densemark.core.atomic import write_text
from densemark.core.errors import InputError, distinct_prefixes
from densemark.core.validate import check_ids
from densemark.faces.template import FaceTemplate
from densemark.sampling.symmetry import (
    MIRROR_CONVENTION,
    MIRROR_SPACE,
    mirror_match,
    template_mirror,
)

FORMAT = "densemark-landmark-set"
VERSION = 1
_EDIT_OPS = ("add", "remove")


@dataclass(frozen=True, eq=False)
class LandmarkSet:
    """A versioned landmark set (see module docstring).

    Attributes:
        name: set name.
        ids: (K,) int64 template vertex ids (landmark order).
        kpt68: (68,) int64 positions of the 68 keypoints inside ``ids``, or None.
        mirror_perm: (K,) int64 mirror involution over positions.
        mirror_residual: (K,) float64 mirror residuals (template units).
        mirror_exact: True when every residual is 0.
        template_sha256: hash of the template the ids index (``FaceTemplate.sha256()``).
        n_template: number of template vertices.
        provenance: parent / sampler / raw_ids / edits / created_by.
        mirror_space: how mirror vertices were found.
        mirror_convention: the mirror rule in words (:data:`MIRROR_CONVENTION`), or None for
            files written before it was recorded.
    """

    name: str
    ids: np.ndarray
    kpt68: np.ndarray | None
    mirror_perm: np.ndarray
    mirror_residual: np.ndarray
    mirror_exact: bool
    template_sha256: str
    n_template: int
    provenance: dict = field(default_factory=dict)
    mirror_space: str = MIRROR_SPACE
    mirror_convention: str | None = MIRROR_CONVENTION

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def kpt68_ids(self) -> np.ndarray | None:
        """(68,) template ids of the keypoints, or None."""
        return None if self.kpt68 is None else self.ids[self.kpt68]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (plain Python types)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "template": {"sha256": self.template_sha256, "n_vertices": int(self.n_template)},
            "ids": [int(x) for x in self.ids],
            "kpt68": None if self.kpt68 is None else [int(x) for x in self.kpt68],
            "mirror": {
                "perm": [int(x) for x in self.mirror_perm],
                "residual": [float(x) for x in self.mirror_residual],
                "exact": bool(self.mirror_exact),
                "space": self.mirror_space,
                **(
                    {} if self.mirror_convention is None else {"convention": self.mirror_convention}
                ),
            },
            "provenance": _plain(self.provenance),
        }

    def to_json(self) -> str:
        """Canonical, human-readable JSON text (key-sorted, 2-space indent, trailing newline)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def sha256(self) -> str:
        """SHA-256 (hex) of the canonical compact JSON."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        """Validate and write atomically; the same set always gives the same bytes."""
        self.validate(path=path)
        return write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike, template: FaceTemplate | None = None) -> LandmarkSet:
        """Read and validate a set file (against ``template`` too when given).

        Raises:
            InputError: naming the file and the field at fault.
        """
        p = Path(path)
        if not p.is_file():
            raise InputError(p, None, "landmark set file not found")
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(p, None, f"not valid JSON ({exc})") from exc
        ls = cls.from_dict(obj, path=p)
        ls.validate(template, path=p)
        return ls

    @classmethod
    def from_dict(cls, obj: object, *, path: str | os.PathLike | None = None) -> LandmarkSet:
        """Build from the JSON object, checking types and presence of every field."""
        if not isinstance(obj, dict):
            raise InputError(path, None, f"expected a JSON object, got {type(obj).__name__}")
        if obj.get("format") != FORMAT:
            raise InputError(path, "format", f"expected {FORMAT!r}, got {obj.get('format')!r}")
        if obj.get("version") != VERSION:
            raise InputError(
                path,
                "version",
                f"unsupported version {obj.get('version')!r} (this reads {VERSION})",
            )
        for key in ("name", "template", "ids", "kpt68", "mirror", "provenance"):
            if key not in obj:
                raise InputError(path, key, "missing")
        if not isinstance(obj["name"], str):
            raise InputError(path, "name", "expected a string")
        tpl = _get_dict(obj, "template", path)
        mir = _get_dict(obj, "mirror", path)
        prov = _get_dict(obj, "provenance", path)
        for key in ("sha256", "n_vertices"):
            if key not in tpl:
                raise InputError(path, f"template.{key}", "missing")
        for key in ("perm", "residual", "exact", "space"):
            if key not in mir:
                raise InputError(path, f"mirror.{key}", "missing")
        for key in ("parent", "sampler", "raw_ids", "edits", "created_by"):
            if key not in prov:
                raise InputError(path, f"provenance.{key}", "missing")
        if not isinstance(tpl["sha256"], str) or not _is_int(tpl["n_vertices"]):
            raise InputError(path, "template", "expected sha256: str and n_vertices: int")
        if not isinstance(mir["exact"], bool):
            raise InputError(path, "mirror.exact", "expected true or false")
        if not isinstance(mir["space"], str):
            raise InputError(path, "mirror.space", "expected a string")
        if not isinstance(mir.get("convention", ""), str):
            raise InputError(path, "mirror.convention", "expected a string")
        kpt = obj["kpt68"]
        return cls(
            name=obj["name"],
            ids=_int_list(obj["ids"], path, "ids"),
            kpt68=None if kpt is None else _int_list(kpt, path, "kpt68"),
            mirror_perm=_int_list(mir["perm"], path, "mirror.perm"),
            mirror_residual=_float_list(mir["residual"], path, "mirror.residual"),
            mirror_exact=mir["exact"],
            template_sha256=tpl["sha256"],
            n_template=int(tpl["n_vertices"]),
            provenance=prov,
            mirror_space=mir["space"],
            mirror_convention=mir.get("convention"),
        )

    def validate(
        self,
        template: FaceTemplate | None = None,
        *,
        require_kpt68: bool = False,
        path: str | os.PathLike | None = None,
    ) -> LandmarkSet:
        """Check internal consistency (and the template match when given); returns self.

        Raises:
            InputError: ids out of range / repeated, kpt68 missing / wrong length / out of range /
                repeated, perm of the wrong length / out of range / not an involution, residuals
                inconsistent with ``exact``, template hash or size mismatch, bad edits.
        """
        k = len(self.ids)
        if k == 0:
            raise InputError(path, "ids", "empty landmark set")
        check_ids(self.ids, path, "ids", self.n_template)
        if self.kpt68 is None:
            if require_kpt68:
                raise InputError(path, "kpt68", "missing (null): the 68 keypoints are required")
        else:
            if self.kpt68.shape != (68,):
                raise InputError(path, "kpt68", f"expected 68 positions, got {self.kpt68.shape[0]}")
            check_ids(self.kpt68, path, "kpt68", k)
        perm, res = self.mirror_perm, self.mirror_residual
        if perm.shape != (k,):
            raise InputError(path, "mirror.perm", f"expected length {k}, got {perm.shape[0]}")
        check_ids(perm, path, "mirror.perm", k, unique=False)
        if not np.array_equal(perm[perm], np.arange(k)):
            bad = np.flatnonzero(perm[perm] != np.arange(k))
            raise InputError(
                path,
                "mirror.perm",
                f"not an involution (perm[perm[i]] != i at i = {bad[:5].tolist()})",
            )
        if res.shape != (k,):
            raise InputError(path, "mirror.residual", f"expected length {k}, got {res.shape[0]}")
        if not np.isfinite(res).all() or (res < 0).any():
            raise InputError(path, "mirror.residual", "residuals must be finite and >= 0")
        if self.mirror_convention is not None and self.mirror_convention != MIRROR_CONVENTION:
            raise InputError(
                path,
                "mirror.convention",
                f"unknown convention {self.mirror_convention!r}; this reads {MIRROR_CONVENTION!r}",
            )
        if bool(self.mirror_exact) != bool((res == 0).all()):
            raise InputError(
                path,
                "mirror.exact",
                f"is {self.mirror_exact} but residuals say {bool((res == 0).all())}",
            )
        for i, e in enumerate(self.provenance.get("edits", [])):
            if (
                not isinstance(e, dict)
                or e.get("op") not in _EDIT_OPS
                or not isinstance(e.get("ids"), list)
            ):
                raise InputError(
                    path,
                    f"provenance.edits[{i}]",
                    "expected {op: add|remove, ids: [int], source, note}",
                )
        if template is not None:
            if template.n_vertices != self.n_template:
                raise InputError(
                    path,
                    "template.n_vertices",
                    f"set is for {self.n_template} vertices, template has {template.n_vertices}",
                )
            sha = template.sha256()
            if sha != self.template_sha256:
                want, got = distinct_prefixes(self.template_sha256, sha)
                raise InputError(
                    path, "template.sha256", f"set is for template {want}, given template {got}"
                )
        return self


def make_set(
    template: FaceTemplate,
    ids: Sequence[int] | np.ndarray,
    *,
    name: str,
    kpt68: Sequence[int] | np.ndarray | None = None,
    sampler: dict | None = None,
    raw_ids: Sequence[int] | np.ndarray | None = None,
    parent: LandmarkSet | None = None,
    edits: Iterable[dict] = (),
) -> LandmarkSet:
    """Build a validated set on ``template``, computing its mirror pairing and residuals.

    Args:
        template: the face template the ids index.
        ids: (K,) template vertex ids in landmark order.
        name: set name.
        kpt68: (68,) positions of the 68 keypoints inside ``ids`` (not template ids), or None.
        sampler: the sampler's parameters and report, recorded as provenance.
        raw_ids: ids before post-processing (e.g. the raw sampler output), recorded as provenance.
        parent: the set this one was derived from.
        edits: the full edit history (dicts with op, ids, source, note).
    """
    arr = check_ids(ids, None, "ids", template.n_vertices, allow_empty=True)
    perm, res = mirror_match(template, arr)
    prov = {
        "parent": None if parent is None else {"name": parent.name, "sha256": parent.sha256()},
        "sampler": sampler,
        "raw_ids": None if raw_ids is None else [int(x) for x in raw_ids],
        "edits": [_edit_entry(e) for e in edits],
        "created_by": f"densemark {densemark.__version__}",
    }
    ls = LandmarkSet(
        name=name,
        ids=arr,
        kpt68=None if kpt68 is None else np.asarray(kpt68).astype(np.int64),
        mirror_perm=perm,
        mirror_residual=res,
        mirror_exact=bool((res == 0).all()),
        template_sha256=template.sha256(),
        n_template=template.n_vertices,
        provenance=_plain(prov),
    )
    return ls.validate(template)


def diff_ids(parent_ids: Iterable[int], child_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """(added, removed): sorted int64 ids in the child but not the parent, and vice versa."""
    p = np.asarray(list(parent_ids), np.int64)
    c = np.asarray(list(child_ids), np.int64)
    return np.setdiff1d(c, p).astype(np.int64), np.setdiff1d(p, c).astype(np.int64)


def edit(
    parent: LandmarkSet,
    template: FaceTemplate,
    new_ids: Iterable[int],
    *,
    source: str,
    note: str = "",
    name: str | None = None,
    allow_drop_kpt: bool = False,
) -> LandmarkSet:
    """A child set holding ``new_ids``: surviving ids keep the parent's order, added ids follow, sorted.

    The child's edits are the parent's plus one ``remove`` and/or one ``add`` entry; its
    ``provenance.parent`` names the parent (name + sha256); sampler and raw_ids are inherited.
    Keypoint positions follow their ids.

    Raises:
        InputError: a keypoint id is removed (unless ``allow_drop_kpt``: the child then has no
            kpt68), or new_ids repeat / are out of range, or the parent is for another template.
    """
    parent.validate(template)
    new = check_ids(list(new_ids), None, "new_ids", template.n_vertices, allow_empty=True)
    added, removed = diff_ids(parent.ids, new)
    keep = ~np.isin(parent.ids, removed)
    ids = np.concatenate([parent.ids[keep], added])
    kpt68 = None
    if parent.kpt68 is not None:
        lost = np.isin(parent.ids[parent.kpt68], removed)
        if lost.any() and not allow_drop_kpt:
            raise InputError(
                None,
                "new_ids",
                f"removes keypoint ids {parent.ids[parent.kpt68][lost].tolist()} (keypoints "
                f"{np.flatnonzero(lost).tolist()}); pass allow_drop_kpt=True to drop kpt68",
            )
        if not lost.any():
            newpos = np.cumsum(keep) - 1  # parent position -> child position
            kpt68 = newpos[parent.kpt68]
    edits = list(parent.provenance.get("edits", []))
    for op, x in (("remove", removed), ("add", added)):
        if len(x):
            edits.append({"op": op, "ids": x.tolist(), "source": source, "note": note})
    return make_set(
        template,
        ids,
        name=parent.name if name is None else name,
        kpt68=kpt68,
        sampler=parent.provenance.get("sampler"),
        raw_ids=parent.provenance.get("raw_ids"),
        parent=parent,
        edits=edits,
    )


def edit_summary(parent: LandmarkSet, child: LandmarkSet, template: FaceTemplate) -> dict[str, Any]:
    """What an edit did to the ids and to the mirror symmetry (exact template mirror pairs).

    Returns:
        ``added``, ``removed``: sorted ids; ``unchanged``: no id added or removed;
        ``lost_partner``: sorted ids kept from the parent whose exact mirror partner was in the
        parent and was removed; ``unpaired_added``: sorted added ids whose exact mirror partner
        is not in the child; ``parent_exact``, ``child_exact``: the sets' ``mirror_exact``.
        Midline vertices (their own mirror) and vertices without an exact mirror count for neither.
    """
    tm = template_mirror(template)
    added, removed = diff_ids(parent.ids, child.ids)
    kept = np.intersect1d(parent.ids, child.ids)
    partner = tm.ids[kept]
    paired = tm.exact[kept] & (partner != kept)
    lost = kept[paired & np.isin(partner, removed)]
    mate = tm.ids[added]
    unpaired = added[tm.exact[added] & (mate != added) & ~np.isin(mate, child.ids)]
    return {
        "added": added.tolist(),
        "removed": removed.tolist(),
        "unchanged": not (added.size or removed.size),
        "lost_partner": lost.tolist(),
        "unpaired_added": unpaired.tolist(),
        "parent_exact": bool(parent.mirror_exact),
        "child_exact": bool(child.mirror_exact),
    }


# --- helpers -------------------------------------------------------------------------------


def _edit_entry(e: dict) -> dict:
    if not isinstance(e, dict) or e.get("op") not in _EDIT_OPS:
        raise InputError(None, "edits", f"bad edit entry {e!r}: op must be one of {_EDIT_OPS}")
    return {
        "op": e["op"],
        "ids": sorted(int(x) for x in e.get("ids", [])),
        "source": str(e.get("source", "")),
        "note": str(e.get("note", "")),
    }


def _plain(o: Any) -> Any:
    """Recursively convert numpy / tuples / paths to JSON types."""
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, np.ndarray):
        return _plain(o.tolist())
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return o.as_posix()
    if isinstance(o, float) and not np.isfinite(o):
        raise InputError(None, "provenance", "non-finite number")
    return o


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _get_dict(obj: dict, key: str, path: object) -> dict:
    v = obj[key]
    if not isinstance(v, dict):
        raise InputError(path, key, f"expected an object, got {type(v).__name__}")
    return v


def _int_list(v: object, path: object, fld: str) -> np.ndarray:
    if not isinstance(v, list) or not all(_is_int(x) for x in v):
        raise InputError(path, fld, "expected a list of integers")
    return np.asarray(v, np.int64).reshape(-1)


def _float_list(v: object, path: object, fld: str) -> np.ndarray:
    if not isinstance(v, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
    ):
        raise InputError(path, fld, "expected a list of numbers")
    return np.asarray(v, np.float64).reshape(-1)

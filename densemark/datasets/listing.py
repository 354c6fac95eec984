"""The source of a build listed: samples, their image groups and splits, ``_Flip`` twins, file
hashes; and how the listed samples are cut into chunks and which of them are mirrored.

Splits are drawn per source image group (all pose variants ``<name>_<k>`` of one image and its
``_Flip`` twin share a split), seeded by ``splits.seed``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from densemark.core.errors import InputError
from densemark.core.seeding import key_of
from densemark.datasets.manifest import chunk_stem
from densemark.datasets.params import BuildParams, SplitParams
from densemark.sources.readers import IMAGE_SUFFIXES, list_fit_rels

_GROUP = re.compile(r"^(.*)_\d+$")

# ----------------------------------------------------------------------------- sources, splits


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One source sample: ``rel`` (the ``.mat`` path relative to the source, posix), its
    ``subset`` (top folder, or ``build.root_subset``), ``source_id`` (image group), ``split``,
    and ``sha256`` of its ``.mat`` + image bytes; ``twin``: its ``_Flip`` twin (the same file
    name in ``<subset>_Flip``, or in ``<subset>`` for a ``_Flip`` sample) is in the source and
    the build does not mirror it again (see :func:`flip_twins`)."""

    rel: str
    subset: str
    source_id: str
    split: str
    sha256: str
    twin: bool = False

    @property
    def stem(self) -> str:
        return Path(self.rel).stem

    def record(self) -> dict[str, str]:
        """The fields as a dict (what ``dataclasses.asdict`` gives, without its deep copies)."""
        # ``twin`` is in the chunk fingerprint: a twin added or removed in another chunk changes this chunk's rows
        return {
            "rel": self.rel,
            "subset": self.subset,
            "source_id": self.source_id,
            "split": self.split,
            "sha256": self.sha256,
            "twin": self.twin,
        }


def source_group(subset: str, stem: str) -> str:
    """The source image group: ``<subset without _Flip>/<stem without its trailing _<k>>``."""
    base = subset[: -len("_Flip")] if subset.endswith("_Flip") else subset
    m = _GROUP.match(stem)
    return f"{base}/{m.group(1) if m else stem}"


def split_of(source_id: str, splits: SplitParams) -> str:
    """``train`` / ``val`` / ``test`` for a source group, from a stable hash of (seed, group)."""
    u = key_of(f"{splits.seed}/{source_id}") / 2.0**63
    if u < splits.test:
        return "test"
    if u < splits.test + splits.val:
        return "val"
    return "train"


FLIP = "_Flip"


def flip_twins(rels: list[str]) -> list[bool]:
    """For each sample (``.mat`` path relative to the source, posix), whether its ``_Flip``
    twin is in the list: ``X/<path>`` <-> ``X_Flip/<path>`` (300W-LP keeps a refitted mirrored
    copy of each sample of ``AFW``, ``HELEN``, ``IBUG``, ``LFPW`` in ``AFW_Flip``, ...).
    Samples directly in the source folder have no twin."""
    have = set(rels)
    out = []
    for r in rels:
        top, sep, rest = r.partition("/")
        if not sep:
            out.append(False)
            continue
        other = top[: -len(FLIP)] if top.endswith(FLIP) else top + FLIP
        out.append(bool(other) and f"{other}/{rest}" in have)
    return out


def _file_hash(mat: str | Path) -> str:
    """sha256 of a sample's ``.mat`` bytes, ``|``, and its image's bytes (the first of
    :data:`IMAGE_SUFFIXES` beside it; none: nothing)."""
    with open(mat, "rb") as f:
        h = hashlib.sha256(f.read())
    stem = os.path.splitext(mat)[0]
    for suf in IMAGE_SUFFIXES:
        try:
            with open(stem + suf, "rb") as f:
                h.update(b"|" + f.read())
                return h.hexdigest()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
    h.update(b"|")
    return h.hexdigest()


def _file_hashes(mats: list[str]) -> list[str]:
    return [_file_hash(m) for m in mats]


PMap = Callable[..., Iterable]  # map(fn, iterable): builtins.map or an executor's map


def list_items(
    source_dir: str | Path,
    root_subset: str,
    splits: SplitParams,
    *,
    mats: list[Path] | None = None,
    pmap: PMap | None = None,
    mark_twins: bool = False,
    rels: list[str] | None = None,
) -> list[SourceItem]:
    """Every ``.mat`` sample of a source folder (sorted), with subset, group, split and content hash.

    Args:
        mats: the folder's :func:`list_fit_mats` when already listed; rels: the same as
            :func:`list_fit_rels` gives (relative posix strings: less memory), instead.
        pmap: a ``map`` that hashes the files in batches (an executor's: other processes);
            None: here. The result does not depend on it.
        mark_twins: set ``twin`` on the samples whose ``_Flip`` twin is listed (:func:`flip_twins`).
    """
    d = Path(source_dir)
    if rels is None:
        rels = list_fit_rels(d) if mats is None else [p.relative_to(d).as_posix() for p in mats]
    twins = flip_twins(rels) if mark_twins else [False] * len(rels)
    step = 64
    batches = (
        [os.path.join(d, *rels[j].split("/")) for j in range(i, min(i + step, len(rels)))]
        for i in range(0, len(rels), step)
    )  # built as the hashing consumes them: no second list of full paths
    hashes = [h for b in (pmap or map)(_file_hashes, batches) for h in b]
    out = []
    subsets: dict[str, str] = {}  # one string object per subset name
    for rel, sha, twin in zip(rels, hashes, twins, strict=True):
        top, sep, name = rel.partition("/")
        subset = subsets.setdefault(top, top) if sep else root_subset
        gid = source_group(subset, os.path.splitext(rel.rsplit("/", 1)[-1])[0])
        out.append(SourceItem(rel, subset, gid, split_of(gid, splits), sha, twin))
    return out


# ----------------------------------------------------------------------------- plan


def mirroring_of(items: tuple[SourceItem, ...], build: BuildParams, flip: bool) -> dict:
    """Which source samples get a mirrored row, and why (the manifest's ``mirroring``):
    ``{"rule", "mirrored_samples", "twin_samples", "reason"}``. Rows with ``flip`` true are
    the mirrored copies; a sample with ``twin`` set has none (its ``_Flip`` twin is its mirror)."""
    n_twin = sum(it.twin for it in items)
    n = len(items)
    if not flip:
        why = (
            "build.flip is false"
            if not build.flip
            else "the landmark set has no exact mirror permutation"
        )
        return {
            "rule": "none",
            "mirrored_samples": 0,
            "twin_samples": 0,
            "reason": f"no mirrored rows: {why}",
        }
    if n_twin:
        reason = (
            f"{n_twin} of {n} source samples have their _Flip twin in the source (e.g. AFW/x.mat and AFW_Flip/x.mat: "
            "300W-LP's refitted mirrored copies), so they are not mirrored again (build.skip_flip_twins: true); "
            + (
                f"the other {n - n_twin} each also give a mirrored row (flip = true)"
                if n > n_twin
                else "no row is a mirrored copy"
            )
        )
        return {
            "rule": "skip_flip_twins",
            "mirrored_samples": n - n_twin,
            "twin_samples": n_twin,
            "reason": reason,
        }
    twins_kept = (
        " (build.skip_flip_twins is false: samples with a _Flip twin are mirrored too)"
        if not build.skip_flip_twins
        else ""
    )
    return {
        "rule": "all",
        "mirrored_samples": n,
        "twin_samples": 0,
        "reason": f"every source sample also gives a mirrored row (flip = true){twins_kept}",
    }


def split_chunks(
    splits: list[str], chunk_size: int
) -> tuple[tuple[tuple[int, int], ...], tuple[str, ...]]:
    """Cut samples ordered by split into chunks of at most ``chunk_size`` that never cross a split.

    Args:
        splits: each sample's split, grouped (all of one split together).

    Returns:
        ``(bounds, stems)``: chunk k holds samples ``bounds[k][0]:bounds[k][1]``; ``stems[k]`` is
        its file stem ``<split>-<j>-of-<n>`` (:func:`chunk_stem`).

    >>> split_chunks(["train"] * 5 + ["test"] * 2, 2)
    (((0, 2), (2, 4), (4, 5), (5, 7)), ('train-00000-of-00003', 'train-00001-of-00003', 'train-00002-of-00003', 'test-00000-of-00001'))
    """
    bounds: list[tuple[int, int]] = []
    stems: list[str] = []
    start = 0
    while start < len(splits):
        stop = start
        while stop < len(splits) and splits[stop] == splits[start]:
            stop += 1
        n = -(-(stop - start) // chunk_size)
        for j in range(n):
            bounds.append((start + j * chunk_size, min(stop, start + (j + 1) * chunk_size)))
            stems.append(chunk_stem(splits[start], j, n))
        start = stop
    if len(set(stems)) != len(stems):
        raise InputError(None, "split", "samples are not grouped by split")
    return tuple(bounds), tuple(stems)


# ----------------------------------------------------------------------------- per-process context

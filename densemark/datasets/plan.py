"""The plan of a build: the source listed and hashed, split, cut into chunks, fingerprinted.

A :class:`BuildPlan` is plain data (picklable, JSON-able): everything a chunk writer needs, on
any machine. Chunk ``k`` is a fixed list of source samples of one split (the samples are ordered
train, val, test, each split cut into chunks of its own, so a chunk's shard is a split file as
the Hub names them, :func:`densemark.datasets.manifest.chunk_stem`); its fingerprint hashes the build's
inputs (params, model, template, landmark set) and the contents of its source files, so a
change of any input changes every fingerprint and nothing built for other inputs is reused.

Splits are drawn per source image group (all pose variants ``<name>_<k>`` of one image and its
``_Flip`` twin share a split), seeded by ``splits.seed``.

The model, template, landmark set and label geometry a plan needs are loaded once per process
(:func:`load_context`): the planner and the chunk writers of one process share them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from densemark.core import outdir
from densemark.core.errors import InputError
from densemark.core.hashing import sha256_json
from densemark.core.seeding import key_of
from densemark.datasets.labels import LabelGeometry
from densemark.datasets.manifest import (
    FORMAT,
    VERSION,
    Manifest,
    chunk_stem,
    record_name,
    shard_name,
    split_key,
)
from densemark.datasets.params import BuildParams, SplitParams
from densemark.faces.model import MorphableModel
from densemark.faces.params import ModelParams
from densemark.faces.stages import load_configured_model
from densemark.faces.template import FaceTemplate, load_template
from densemark.faces.uvmap import UVMap
from densemark.sampling.landmark_set import LandmarkSet
from densemark.sources.readers import IMAGE_SUFFIXES, list_fit_rels, orphan_images

_GROUP = re.compile(r"^(.*)_\d+$")
OUTPUT_NEUTRAL = ("workers", "batch")  # build params that never change a written byte

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


@dataclass(frozen=True)
class BuildPaths:
    """Where a build reads and writes (plain strings: picklable, JSON-able).

    Attributes:
        model_dir: the configured model's folder; template_dir: the face template's;
        set_path: the landmark-set file; source_dir: a 300W-LP-format source folder;
        out_dir: the dataset folder.
    """

    model_dir: str
    template_dir: str
    set_path: str
    source_dir: str
    out_dir: str

    def __post_init__(self) -> None:
        for name in ("model_dir", "template_dir", "set_path", "source_dir", "out_dir"):
            object.__setattr__(self, name, os.fspath(getattr(self, name)))


@dataclass(frozen=True)
class BuildPlan:
    """Everything a chunk writer needs (plain data: picklable, JSON-able).

    A plan cut to one chunk (:meth:`for_chunk`) has ``only_chunk`` set: its ``items`` and
    ``chunk_fingerprints`` are that chunk's alone, ``total_chunks`` the whole plan's count. It
    is what a pool or cluster sends with each chunk task, so the bytes sent over a build grow
    with the samples, not with samples x chunks.
    """

    paths: BuildPaths
    model: dict
    build: dict
    splits: dict
    items: tuple[SourceItem, ...]
    fingerprint: str
    chunk_fingerprints: tuple[str, ...]
    model_sha256: str
    landmark_set: dict
    flip: bool
    notes: tuple[str, ...] = ()
    orphans: tuple[
        str, ...
    ] = ()  # images of the source without a .mat (relative, posix): reported, never built
    chunk_bounds: tuple[tuple[int, int], ...] = ()  # chunk k: items[start:stop]
    chunk_stems: tuple[str, ...] = ()  # chunk k's file stem (:func:`chunk_stem`)
    mirroring: dict = field(default_factory=dict)
    only_chunk: int | None = None
    total_chunks: int | None = None

    @property
    def params(self) -> BuildParams:
        return BuildParams.model_validate(self.build)

    @property
    def out_dir(self) -> Path:
        return Path(self.paths.out_dir)

    @property
    def n_chunks(self) -> int:
        return (
            len(self.chunk_fingerprints) if self.only_chunk is None else int(self.total_chunks or 0)
        )

    @property
    def output_params(self) -> dict:
        """The ``build`` section without the params that never change the output."""
        return {k: v for k, v in self.build.items() if k not in OUTPUT_NEUTRAL}

    def chunk_items(self, k: int) -> tuple[SourceItem, ...]:
        """The source samples of chunk ``k``."""
        if self.only_chunk is not None:
            self._check_cut(k)
            return self.items
        a, b = self.chunk_bounds[k]
        return self.items[a:b]

    def chunk_split(self, k: int) -> str:
        """The split every sample of chunk ``k`` belongs to."""
        return self.chunk_items(k)[0].split

    def chunk_fingerprint(self, k: int) -> str:
        """The fingerprint of chunk ``k``."""
        if self.only_chunk is not None:
            self._check_cut(k)
            return self.chunk_fingerprints[0]
        return self.chunk_fingerprints[k]

    def for_chunk(self, k: int) -> BuildPlan:
        """This plan cut to chunk ``k``: the chunk's items and fingerprint, everything else
        shared (what a chunk task needs; a few KB plus the chunk's items)."""
        if self.only_chunk is not None:
            self._check_cut(k)
            return self
        if not 0 <= k < self.n_chunks:
            raise InputError(None, "chunk", f"chunk {k} outside 0..{self.n_chunks - 1}")
        return replace(
            self,
            items=self.chunk_items(k),
            chunk_fingerprints=(self.chunk_fingerprints[k],),
            only_chunk=k,
            total_chunks=self.n_chunks,
        )

    def _check_cut(self, k: int) -> None:
        if k != self.only_chunk:
            raise InputError(
                None, "chunk", f"this plan is cut to chunk {self.only_chunk}, not chunk {k}"
            )

    def shard_paths(self, k: int) -> dict[str, Path]:
        return {f: self.out_dir / shard_name(self.chunk_stems[k], f) for f in self.build["formats"]}

    def record_path(self, k: int) -> Path:
        return self.out_dir / record_name(k)


def set_summary(lset: LandmarkSet) -> dict:
    """What the manifest and the torch dataset record about a landmark set."""
    return {
        "name": lset.name,
        "sha256": lset.sha256(),
        "n_points": len(lset),
        "kpt68": None if lset.kpt68 is None else [int(x) for x in lset.kpt68],
        "mirror_perm": [int(x) for x in lset.mirror_perm],
        "mirror_exact": bool(lset.mirror_exact),
        "template_sha256": lset.template_sha256,
        "sampler": {
            k: v
            for k, v in (lset.provenance.get("sampler") or {}).items()
            if k in ("method", "source")
        },
    }


def plan_build(
    model: ModelParams,
    build: BuildParams,
    splits: SplitParams,
    paths: BuildPaths,
    *,
    mats: list[Path] | None = None,
    pmap: PMap | None = None,
    rels: list[str] | None = None,
) -> BuildPlan:
    """Plan a build: list and hash the source, split it, cut it into chunks, fingerprint everything.

    ``mats`` / ``rels`` (the source's ``.mat`` files, when already listed) and ``pmap`` (a ``map`` over other
    processes for the hashing) only save time: see :func:`list_items`.

    Also prepares the output folder (:func:`prepare_out`).

    Raises:
        InputError: a missing model / template / set / source, a set made on another template,
            an output folder holding files no build wrote, or one another process is writing.
    """
    ctx = load_context(
        model.model_dump(mode="json"), paths.model_dir, paths.template_dir, paths.set_path
    )
    template, lset = ctx.template, ctx.lset
    flip = build.flip and bool(lset.mirror_exact)
    src = Path(paths.source_dir)
    listed = list_items(
        src,
        build.root_subset,
        splits,
        mats=mats,
        pmap=pmap,
        mark_twins=flip and build.skip_flip_twins,
        rels=rels,
    )
    items = tuple(
        sorted(listed, key=lambda it: split_key(it.split))
    )  # stable: listing order within a split
    known = mats if mats is not None else ([src / r for r in rels] if rels is not None else None)
    orphans = tuple(p.relative_to(src).as_posix() for p in orphan_images(src, mats=known))
    notes = []
    if build.flip and not flip:
        notes.append(
            f"landmark set {lset.name!r} has no exact mirror permutation: no mirrored copies are made; "
            "the refitted _Flip subsets of the source are used where present"
        )
    mirroring = mirroring_of(items, build, flip)
    if mirroring["twin_samples"]:
        notes.append(mirroring["reason"])
    bdump = build.model_dump(mode="json")
    base = {
        "format": FORMAT, "version": VERSION, "model": ctx.model_sha256, "uv_res": model.uv_res, "template": template.sha256(),
        "set": lset.sha256(), "splits": splits.model_dump(mode="json"), "flip": flip,
        "build": {k: v for k, v in bdump.items() if k not in OUTPUT_NEUTRAL},
    }  # fmt: skip
    bounds, stems = split_chunks([it.split for it in items], build.chunk_size)
    chunk_fps = tuple(
        sha256_json({"base": base, "chunk": k, "items": [it.record() for it in items[a:b]]})
        for k, (a, b) in enumerate(bounds)
    )
    plan = BuildPlan(
        paths=paths, model=model.model_dump(mode="json"), build=bdump, splits=splits.model_dump(mode="json"), items=items,
        fingerprint=sha256_json({"base": base, "chunks": chunk_fps}), chunk_fingerprints=chunk_fps,
        model_sha256=ctx.model_sha256, landmark_set=set_summary(lset), flip=flip, notes=tuple(notes), orphans=orphans,
        chunk_bounds=bounds, chunk_stems=stems, mirroring=mirroring,
    )  # fmt: skip
    prepare_out(plan, base)
    return plan


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


BUILD_OUTPUTS = (
    "part-*",
    "manifest.json",
    "report.json",
    "README.md",
    "LICENSE.md",
    "data/*",
    "hdf5/*",
    "labels/*/*",
)  # what a build (and a relabel in place) writes


def prepare_out(plan: BuildPlan, inputs: dict) -> None:
    """Make the output folder ready, under its write lock (:mod:`densemark.core.outdir`, the
    mechanism every folder-writing stage uses): created when missing; refused when it holds
    build outputs (:data:`BUILD_OUTPUTS`) that no build stamped (someone else's files: nothing
    is touched); stale ``*.tmp`` files of a killed run removed; every old output removed when
    ``inputs`` (params, model, template, set) changed; a ``manifest.json`` of other source
    files removed (a rebuild into the same folder never looks finished early).

    Raises:
        InputError: the folder holds someone else's files, or another process is writing it.
    """
    out = plan.out_dir
    with outdir.locked(out, "build"):
        outdir.prepare(out, "build", inputs, BUILD_OUTPUTS)
        man = Manifest.path(out)
        if man.is_file() and Manifest.load_same(out, plan.fingerprint) is None:
            man.unlink()


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


@dataclass
class Context:
    """What a chunk writer computes with: the loaded model (and its content hash), template,
    landmark set, UV map and label geometry."""

    model: MorphableModel
    template: FaceTemplate
    lset: LandmarkSet
    uvm: UVMap
    geo: LabelGeometry
    model_sha256: str


_CTX: dict[tuple, Context] = {}


def _stat_key(*paths: str) -> tuple:
    """(name, size, mtime_ns) of the given files and of the files directly in the given folders:
    a loaded context is reused only while its inputs are untouched."""
    out = []
    for p in map(Path, paths):
        for f in sorted(p.iterdir()) if p.is_dir() else [p]:
            try:
                st = f.stat()
            except OSError:
                continue
            out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def mirror_of(lset: LandmarkSet) -> np.ndarray | None:
    """The set's mirror permutation when it may be flipped (an exact one), else None."""
    return lset.mirror_perm if lset.mirror_exact else None


def load_context(model: dict, model_dir: str, template_dir: str, set_path: str) -> Context:
    """Model, template, landmark set, UV map and label geometry, loaded once per process and
    inputs (the planner and the chunk writers of one process share them; a pool's workers load
    theirs while the parent plans)."""
    key = (
        sha256_json(model),
        model_dir,
        template_dir,
        set_path,
        _stat_key(model_dir, template_dir, set_path),
    )
    if key not in _CTX:
        mp = ModelParams.model_validate(model)
        m = load_configured_model(mp, model_dir)
        template = load_template(template_dir, res=mp.uv_res)
        lset = LandmarkSet.load(set_path, template)
        msha = m.content_hash()
        uvm = UVMap.for_model(m, mp.uv_res, mp.cache_dir)
        cache = (
            None if mp.cache_dir is None else Path(mp.cache_dir) / f"mesh-patches-{msha[:16]}.npz"
        )
        _CTX.clear()
        _CTX[key] = Context(
            m,
            template,
            lset,
            uvm,
            LabelGeometry(
                m, uvm, template, lset.ids, patches_cache=cache, mirror_perm=mirror_of(lset)
            ),
            msha,
        )
    return _CTX[key]


def plan_context(plan: BuildPlan) -> Context:
    """The context of a plan, checked to be the model and set it was planned with.

    Raises:
        InputError: the model or the landmark set changed since the plan was made.
    """
    p = plan.paths
    ctx = load_context(plan.model, p.model_dir, p.template_dir, p.set_path)
    if ctx.model_sha256 != plan.model_sha256 or ctx.lset.sha256() != plan.landmark_set["sha256"]:
        raise InputError(
            p.set_path, None, "the model or landmark set changed since the build was planned"
        )
    return ctx

"""The plan of a build: the source listed and hashed, split, cut into chunks, fingerprinted.

A :class:`BuildPlan` is plain data (picklable, JSON-able): everything a chunk writer needs, on
any machine. Chunk ``k`` is a fixed list of source samples of one split (the samples are ordered
train, val, test, each split cut into chunks of its own, so a chunk's shard is a split file as
the Hub names them, :func:`densemark.datasets.manifest.chunk_stem`); its fingerprint hashes the build's
inputs (params, model, template, landmark set) and the contents of its source files, so a
change of any input changes every fingerprint and nothing built for other inputs is reused.

Splits are drawn per source image group (all pose variants ``<name>_<k>`` of one image and its
``_Flip`` twin share a split), seeded by ``splits.seed`` (:mod:`densemark.datasets.listing`).

The model, template, landmark set and label geometry a plan needs are loaded once per process
(:func:`load_context`): the planner and the chunk writers of one process share them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from densemark.core import outdir
from densemark.core.errors import InputError
from densemark.core.hashing import sha256_json
from densemark.datasets.labels import LabelGeometry
from densemark.datasets.listing import (  # noqa: F401 - the listing's names, re-exported for callers of the plan
    FLIP,
    PMap,
    SourceItem,
    flip_twins,
    list_items,
    mirroring_of,
    source_group,
    split_chunks,
    split_of,
)
from densemark.datasets.manifest import (
    FORMAT,
    VERSION,
    Manifest,
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
from densemark.sources.readers import orphan_images

OUTPUT_NEUTRAL = ("workers", "batch")  # build params that never change a written byte


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
        items = self.chunk_items(k)
        return replace(
            self,
            items=items,
            chunk_fingerprints=(self.chunk_fingerprints[k],),
            chunk_bounds=((0, len(items)),),  # per-chunk tables cut too: a task's size is O(chunk)
            chunk_stems=(self.chunk_stems[k],),
            only_chunk=k,
            total_chunks=self.n_chunks,
        )

    def _check_cut(self, k: int) -> None:
        if k != self.only_chunk:
            raise InputError(
                None, "chunk", f"this plan is cut to chunk {self.only_chunk}, not chunk {k}"
            )

    def chunk_stem(self, k: int) -> str:
        """The file stem of chunk ``k``'s shards (``<split>-<j>-of-<n>``)."""
        if self.only_chunk is not None:
            self._check_cut(k)
            return self.chunk_stems[0]
        return self.chunk_stems[k]

    def shard_paths(self, k: int) -> dict[str, Path]:
        return {f: self.out_dir / shard_name(self.chunk_stem(k), f) for f in self.build["formats"]}

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

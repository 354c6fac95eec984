"""The ``build`` stage: a 300W-LP-format source -> crops + dense landmark labels in shards.

Organised so it can be distributed::

    plan = plan_build(...)                         # deterministic chunks + fingerprints
    results = [write_chunk(plan, k) for k in range(plan.n_chunks)]   # any order, any machine
    finish_build(plan, results)                    # manifest.json + report.json

:func:`run_build` does exactly that, over a process pool. Chunk ``k`` is a fixed list of source
samples and gives one shard per format (``part-{k:05d}.parquet`` / ``.h5``) plus its commit
record ``part-{k:05d}.json`` (written last). A chunk whose record carries the same fingerprint
(params, model, template, landmark set, source file contents) and whose shards still hash as
recorded is skipped, so a killed build resumes, and the output is byte-identical to an
uninterrupted one. A change of any input changes every fingerprint: the shards are rewritten,
never mixed; stale ``*.tmp`` files and shards outside the plan are removed.

Rows: each source sample gives a row and, when the landmark set has an exact mirror
permutation and ``build.flip`` is on, its mirrored copy (image flipped, ``x -> res - 1 - x``,
labels read at the mirrored UV pixels: the permutation's partners, and for the two centre
columns, which the permutation pairs with themselves, the neighbouring column
(:func:`densemark.datasets.labels.mirror_sources`); 68 keypoints by the iBUG mirror). Columns: see
:data:`COLUMNS`. Splits are drawn per source image group (all pose variants ``<name>_<k>``
of one image and its ``_Flip`` twin share a split), seeded by ``splits.seed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from densemark.core.atomic import remove_stale_temps, write_json
from densemark.core.errors import InputError
from densemark.core.outdir import sha256_file
from densemark.core.report import RunReport
from densemark.core.seeding import key_of, rng_for
from densemark.datasets import shards
from densemark.datasets.labels import LabelGeometry, flip_points
from densemark.datasets.params import BuildParams, SplitParams
from densemark.faces.crop import CropTransform
from densemark.faces.geometry import pose_batch
from densemark.faces.model import KPT68_MIRROR, MorphableModel
from densemark.faces.params import ModelParams, recorded_model_params
from densemark.faces.stages import load_configured_model
from densemark.faces.template import FaceTemplate, load_template
from densemark.faces.uvmap import UVMap
from densemark.sampling.landmark_set import LandmarkSet
from densemark.sources.readers import IMAGE_SUFFIXES, list_fit_mats, read_fit_mat

FORMAT = "densemark-dataset"
VERSION = 2  # 2: flipped labels exact on the centre UV columns; HDF5 without variable-length data, allocated in column order
KILL_ENV = "DENSEMARK_BUILD_KILL_AFTER"  # tests: SIGKILL while writing chunk number N (0-based count)
SUFFIX = {"parquet": ".parquet", "hdf5": ".h5"}
CONVENTIONS = {
    "landmarks": "crop pixels, row-major (K, 3): x right, y down (0..res-1 inside the crop), z = crop-scaled depth shifted so the mesh minimum is 0 (PRNet position-map convention)",
    "kpt68": "the model's 68 keypoint vertices, same space as landmarks, (68, 3) row-major",
    "pose": "[pitch, yaw, roll] degrees (3DDFA); negated yaw and roll on flipped rows",
    "crop": "[scale, tx, ty, tz, size]: crop = scale * image + (tx, ty, tz); the same for a row and its flipped copy",
    "flip": "true: the image is the crop mirrored left-right, x -> res - 1 - x; landmark j is the mirror of the surface point at UV pixel (res-1-u, v) of landmark j's (u, v): the set's mirror partner, or on the two centre UV columns (self-paired in the mirror permutation) the neighbouring column; kpt68 by the iBUG 68-point mirror; pose_para/crop are the unflipped sample's",
    "pose_para": "300W-LP Pose_Para [pitch, yaw, roll, tx, ty, tz, s] (radians, source pixels)",
    "image": "JPEG bytes of the RGB res x res crop",
    "valid": "false when a landmark lies outside the crop (n_outside counts them)",
}
COLUMNS = (
    "id", "source_id", "subset", "split", "flip", "source_file", "image", "landmarks", "kpt68", "pose", "crop",
    "shape_para", "exp_para", "pose_para", "source_size", "valid", "n_outside",
)  # fmt: skip
_GROUP = re.compile(r"^(.*)_\d+$")


# ----------------------------------------------------------------------------- sources, splits


@dataclass(frozen=True)
class SourceItem:
    """One source sample: ``rel`` (the ``.mat`` path relative to the source, posix), its
    ``subset`` (top folder, or ``build.root_subset``), ``source_id`` (image group), ``split``,
    and ``sha256`` of its ``.mat`` + image bytes."""

    rel: str
    subset: str
    source_id: str
    split: str
    sha256: str

    @property
    def stem(self) -> str:
        return Path(self.rel).stem

    def record(self) -> dict[str, str]:
        """The fields as a dict (what ``dataclasses.asdict`` gives, without its deep copies)."""
        return {"rel": self.rel, "subset": self.subset, "source_id": self.source_id, "split": self.split, "sha256": self.sha256}


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
    source_dir: str | Path, root_subset: str, splits: SplitParams, *, mats: list[Path] | None = None, pmap: PMap | None = None
) -> list[SourceItem]:
    """Every ``.mat`` sample of a source folder (sorted), with subset, group, split and content hash.

    Args:
        mats: the folder's :func:`list_fit_mats` when already listed.
        pmap: a ``map`` that hashes the files in batches (an executor's: other processes);
            None: here. The result does not depend on it.
    """
    d = Path(source_dir)
    mats = list_fit_mats(d) if mats is None else mats
    names = [str(p) for p in mats]
    step = 64
    batches = [names[i : i + step] for i in range(0, len(names), step)]
    hashes = [h for b in (pmap or map)(_file_hashes, batches) for h in b]
    out = []
    for p, sha in zip(mats, hashes, strict=True):
        rel = p.relative_to(d).as_posix()
        parts = rel.split("/")
        subset = parts[0] if len(parts) > 1 else root_subset
        gid = source_group(subset, p.stem)
        out.append(SourceItem(rel, subset, gid, split_of(gid, splits), sha))
    return out


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class BuildPlan:
    """Everything a chunk writer needs (plain data: picklable, JSON-able)."""

    out_dir: str
    source_dir: str
    model_dir: str
    template_dir: str
    set_path: str
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

    @property
    def params(self) -> BuildParams:
        return BuildParams.model_validate(self.build)

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_fingerprints)

    def chunk_items(self, k: int) -> tuple[SourceItem, ...]:
        cs = self.build["chunk_size"]
        return self.items[k * cs : (k + 1) * cs]

    def shard_paths(self, k: int) -> dict[str, Path]:
        return {f: Path(self.out_dir) / f"part-{k:05d}{SUFFIX[f]}" for f in self.build["formats"]}

    def record_path(self, k: int) -> Path:
        return Path(self.out_dir) / f"part-{k:05d}.json"


def _sha(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def model_sha256(model: MorphableModel) -> str:
    """SHA-256 over every array of the model (bases included): each array's dtype, shape and
    C-order bytes (hashed in row blocks: no full copy of a Fortran-ordered basis)."""
    h = hashlib.sha256()
    for a in (model.mean, model.shape_basis, model.exp_basis, model.triangles, model.kpt_ind, model.uv if model.uv is not None else np.zeros(0)):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        if a.ndim == 0 or a.flags.c_contiguous:
            h.update(np.ascontiguousarray(a).tobytes())
            continue
        step = max(1, (1 << 20) // max(a[0].nbytes, 1))
        for i in range(0, a.shape[0], step):
            h.update(np.ascontiguousarray(a[i : i + step]).data)
    return h.hexdigest()


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
    }


def plan_build(
    model: ModelParams,
    build: BuildParams,
    splits: SplitParams,
    *,
    model_dir: str | Path,
    template_dir: str | Path,
    set_path: str | Path,
    source_dir: str | Path,
    out_dir: str | Path,
    mats: list[Path] | None = None,
    pmap: PMap | None = None,
) -> BuildPlan:
    """Plan a build: list and hash the source, split it, cut it into chunks, fingerprint everything.

    ``mats`` (the source's ``.mat`` files, when already listed) and ``pmap`` (a ``map`` over other
    processes for the hashing) only save time: see :func:`list_items`.

    Also prepares ``out_dir``: creates it, removes stale ``*.tmp`` files of a killed run and a
    ``manifest.json`` of other inputs (a rebuild into the same folder never looks finished early).

    Raises:
        InputError: a missing model / template / set / source, or a set made on another template.
    """
    ctx = _load_context(model.model_dump(mode="json"), str(model_dir), str(template_dir), str(set_path))
    template, lset = ctx.template, ctx.lset
    items = tuple(list_items(source_dir, build.root_subset, splits, mats=mats, pmap=pmap))
    notes = []
    flip = build.flip and bool(lset.mirror_exact)
    if build.flip and not flip:
        notes.append(
            f"landmark set {lset.name!r} has no exact mirror permutation: no mirrored copies are made; "
            "the refitted _Flip subsets of the source are used where present"
        )
    msha = ctx.model_sha256
    bdump = build.model_dump(mode="json")
    base = {
        "format": FORMAT, "version": VERSION, "model": msha, "uv_res": model.uv_res, "template": template.sha256(),
        "set": lset.sha256(), "splits": splits.model_dump(mode="json"), "flip": flip,
        "build": {k: v for k, v in bdump.items() if k not in ("workers", "batch")},
    }  # fmt: skip
    cs = build.chunk_size
    chunk_fps = tuple(
        _sha({"base": base, "chunk": k, "items": [it.record() for it in items[k * cs : (k + 1) * cs]]})
        for k in range((len(items) + cs - 1) // cs)
    )
    plan = BuildPlan(
        out_dir=str(out_dir), source_dir=str(source_dir), model_dir=str(model_dir), template_dir=str(template_dir),
        set_path=str(set_path), model=model.model_dump(mode="json"), build=bdump, splits=splits.model_dump(mode="json"),
        items=items, fingerprint=_sha({"base": base, "chunks": chunk_fps}), chunk_fingerprints=chunk_fps,
        model_sha256=msha, landmark_set=set_summary(lset), flip=flip, notes=tuple(notes),
    )  # fmt: skip
    _prepare_out(plan)
    return plan


def _prepare_out(plan: BuildPlan) -> None:
    out = Path(plan.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    man = out / "manifest.json"
    if man.is_file():
        try:
            same = json.loads(man.read_text(encoding="utf-8")).get("fingerprint") == plan.fingerprint
        except (json.JSONDecodeError, UnicodeDecodeError):
            same = False
        if not same:
            man.unlink()


# ----------------------------------------------------------------------------- per-process context


@dataclass
class _Context:
    model: MorphableModel
    template: FaceTemplate
    lset: LandmarkSet
    uvm: UVMap
    geo: LabelGeometry
    model_sha256: str


_CTX: dict[tuple, _Context] = {}
_WRITTEN = [0]  # chunks written by this process (the kill hook counts them)


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


def _load_context(model: dict, model_dir: str, template_dir: str, set_path: str) -> _Context:
    """Model, template, landmark set, UV map and label geometry, loaded once per process and
    inputs (the planner and the chunk writers of one process share them; a pool's workers load
    theirs while the parent plans)."""
    key = (json.dumps(model, sort_keys=True), model_dir, template_dir, set_path, _stat_key(model_dir, template_dir, set_path))
    if key not in _CTX:
        mp = ModelParams.model_validate(model)
        m = load_configured_model(mp, model_dir)
        template = load_template(template_dir, res=mp.uv_res)
        lset = LandmarkSet.load(set_path, template)
        msha = model_sha256(m)
        uvm = UVMap.for_model(m, mp.uv_res, mp.cache_dir)
        cache = None if mp.cache_dir is None else Path(mp.cache_dir) / f"mesh-patches-{msha[:16]}.npz"
        _CTX.clear()
        _CTX[key] = _Context(m, template, lset, uvm, LabelGeometry(m, uvm, template, lset.ids, patches_cache=cache, mirror_perm=_mirror(lset)), msha)
    return _CTX[key]


def _mirror(lset: LandmarkSet) -> np.ndarray | None:
    """The set's mirror permutation when it may be flipped (an exact one), else None."""
    return lset.mirror_perm if lset.mirror_exact else None


def _context(plan: BuildPlan) -> _Context:
    ctx = _load_context(plan.model, plan.model_dir, plan.template_dir, plan.set_path)
    if ctx.model_sha256 != plan.model_sha256 or ctx.lset.sha256() != plan.landmark_set["sha256"]:
        raise InputError(plan.set_path, None, "the model or landmark set changed since the build was planned")
    return ctx


# ----------------------------------------------------------------------------- chunks


@dataclass
class ChunkResult:
    """What :func:`write_chunk` did: shard files (name, sha256, bytes, rows), counts, quarantine
    entries (sample, file, field, error) and a per-row summary (id, subset, split, flip, yaw, valid)."""

    k: int
    fingerprint: str
    files: dict[str, dict]
    counts: dict[str, int]
    quarantine: list[dict]
    rows: dict[str, list]
    skipped: bool = False

    def to_dict(self) -> dict:
        """Plain JSON-able fields (not ``skipped``), copied one level deep (the values are plain)."""
        return {
            "k": self.k, "fingerprint": self.fingerprint, "files": {f: dict(e) for f, e in self.files.items()},
            "counts": dict(self.counts), "quarantine": [dict(q) for q in self.quarantine],
            "rows": {c: list(v) for c, v in self.rows.items()},
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict, skipped: bool = False) -> ChunkResult:
        return cls(**d, skipped=skipped)


def _existing(plan: BuildPlan, k: int) -> ChunkResult | None:
    rec = plan.record_path(k)
    if not rec.is_file():
        return None
    try:
        d = json.loads(rec.read_text(encoding="utf-8"))
        r = ChunkResult.from_dict(d, skipped=True)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        return None
    if r.fingerprint != plan.chunk_fingerprints[k] or set(r.files) != set(plan.build["formats"]):
        return None
    for f, p in plan.shard_paths(k).items():
        if not p.is_file() or sha256_file(p) != r.files[f]["sha256"]:
            return None
    return r


def _kill_hook(tmp: Path) -> None:
    n = os.environ.get(KILL_ENV)
    if n is not None and _WRITTEN[0] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)


def write_chunk(plan: BuildPlan, k: int) -> ChunkResult:
    """Build chunk ``k``: its shard(s) and commit record, atomically; skipped when already done.

    Bad samples are quarantined (file, field, reason) and the chunk goes on.
    """
    if not 0 <= k < plan.n_chunks:
        raise InputError(None, "chunk", f"chunk {k} outside 0..{plan.n_chunks - 1}")
    done = _existing(plan, k)
    if done is not None:
        return done
    ctx = _context(plan)
    cols, counts, quarantine = _chunk_rows(ctx, plan, k)
    meta = {
        "format": "densemark-shard", "version": VERSION, "chunk": k, "fingerprint": plan.chunk_fingerprints[k],
        "dataset_fingerprint": plan.fingerprint, "landmark_set": {x: plan.landmark_set[x] for x in ("name", "sha256", "n_points")},
        "res": plan.build["res"], "conventions": CONVENTIONS,
    }  # fmt: skip
    files = {}
    bp = plan.params
    for f, p in plan.shard_paths(k).items():
        if f == "parquet":
            shards.write_parquet(p, shards.to_table(cols, meta), bp.row_group_size, hook=_kill_hook)
        else:
            shards.write_hdf5(p, cols, meta, bp.hdf5_compression, hook=_kill_hook)
        files[f] = {"name": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size, "rows": len(cols["id"])}
    yaw = np.asarray(cols["pose"], np.float64).reshape(-1, 3)[:, 1] if len(cols["id"]) else np.zeros(0)
    rows = {
        "id": list(cols["id"]), "subset": list(cols["subset"]), "split": list(cols["split"]),
        "flip": [bool(x) for x in cols["flip"]], "yaw": [round(float(y), 3) for y in yaw],
        "valid": [bool(x) for x in cols["valid"]],
    }  # fmt: skip
    res = ChunkResult(k, plan.chunk_fingerprints[k], files, dict(sorted(counts.items())), quarantine, rows)
    write_json(plan.record_path(k), res.to_dict())
    _WRITTEN[0] += 1
    return res


def _q(item: SourceItem, field_: str | None, error: BaseException | str, row_id: str | None = None) -> dict:
    return {"sample": row_id or f"{item.subset}/{item.stem}", "file": item.rel, "field": field_ or "", "error": str(getattr(error, "message", error))}


def _chunk_rows(ctx: _Context, plan: BuildPlan, k: int) -> tuple[dict, dict[str, int], list[dict]]:
    import cv2

    bp = plan.params
    res = bp.res
    src = Path(plan.source_dir)
    m = ctx.model
    lset = ctx.lset
    kpos = lset.kpt68
    tol = bp.kpt68_tol * res
    counts: dict[str, int] = {}
    quarantine: list[dict] = []
    names = [*COLUMNS, *(["posmap"] if bp.posmaps else [])]
    rows: dict[str, list] = {c: [] for c in names}

    def count(key: str, n: int = 1) -> None:
        counts[key] = counts.get(key, 0) + n

    def add(item, fit, flip, jpeg, lm, kp, tf, valid, n_out, pm=None):
        rows["id"].append(f"{item.subset}/{item.stem}" + ("/flip" if flip else ""))
        rows["source_id"].append(item.source_id)
        rows["subset"].append(item.subset)
        rows["split"].append(item.split)
        rows["flip"].append(flip)
        rows["source_file"].append(item.rel)
        rows["image"].append(jpeg)
        rows["landmarks"].append(lm.reshape(-1))
        rows["kpt68"].append(kp.reshape(-1))
        ang = np.degrees(fit.pose_para[:3])
        rows["pose"].append(np.array([ang[0], -ang[1], -ang[2]] if flip else ang, np.float32))
        rows["crop"].append(tf.as_vector())
        rows["shape_para"].append(fit.shape_para)
        rows["exp_para"].append(fit.exp_para)
        rows["pose_para"].append(fit.pose_para)
        rows["source_size"].append(np.array(fit.size, np.int32))
        rows["valid"].append(valid)
        rows["n_outside"].append(n_out)
        if bp.posmaps:
            rows["posmap"].append(pm.reshape(-1))
        count("rows")
        count("flipped" if flip else "original")

    items = plan.chunk_items(k)
    crop_buf, flipped = np.empty((res, res, 3), np.uint8), np.empty((res, res, 3), np.uint8)  # reused: no fresh pages per sample
    for b0 in range(0, len(items), bp.batch):
        batch = []
        for item in items[b0 : b0 + bp.batch]:
            try:
                fit = read_fit_mat(src / item.rel, m.n_shape or None, m.n_exp or None, fit_only=True)
                if fit.image_path is None:
                    raise InputError(src / item.rel, "image", "no image beside the .mat")
                img = cv2.imdecode(np.fromfile(fit.image_path, np.uint8), cv2.IMREAD_COLOR)
                if img is None:
                    raise InputError(fit.image_path, "image", "cannot decode (empty, truncated or not an image)")
            except InputError as exc:
                quarantine.append(_q(item, exc.field, exc))
                continue
            batch.append((item, _Fit(fit.shape_para, fit.exp_para, fit.pose_para, img.shape[:2]), img))
        for group in _label_groups(ctx, bp, batch, quarantine):
            labels, pms = group["labels"], group["posmaps"]
            lms, kps = labels.landmarks, labels.kpt68  # (B, K, 3), (B, 68, 3): checked batch-wise
            with np.errstate(invalid="ignore", over="ignore"):
                finite = np.isfinite(lms).all((1, 2)) & np.isfinite(kps).all((1, 2))
                gap = _subset_gap(lms, kps, kpos)
                nout = ((lms[..., :2] < 0) | (lms[..., :2] > res - 1)).any(2).sum(1)
                if plan.flip:
                    fkps = flip_points(kps, KPT68_MIRROR, res)
                    fgap = _subset_gap(labels.flipped, fkps, kpos)
            for i, (item, fit, img) in enumerate(group["batch"]):
                lm, kp, tf, no = lms[i], kps[i], labels.crops[i], int(nout[i])
                if not finite[i]:
                    quarantine.append(_q(item, "landmarks", "non-finite landmarks"))
                    continue
                if gap[i] > tol:
                    quarantine.append(_q(item, "kpt68", f"the set's 68 subset is {gap[i]:.2f} px from the model keypoints (> {tol:.2f})"))
                    continue
                crop = cv2.warpAffine(img, tf.affine, (res, res), crop_buf, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                jpeg = _jpeg(crop, bp.jpeg_quality)
                count("outside_crop", int(no > 0))
                add(item, fit, False, jpeg, lm, kp, tf, no == 0, no, None if pms is None else pms[i])
                if not plan.flip:
                    continue
                # the flipped labels are read at the mirrored UV pixels (exact on the centre columns too)
                if fgap[i] > tol:
                    quarantine.append(_q(item, "flip", f"flipped 68 subset is {fgap[i]:.2f} px from the flipped keypoints", f"{item.subset}/{item.stem}/flip"))
                    continue
                fpm = None
                if pms is not None:
                    mir = ctx.template.mirror_ids
                    fpm = flip_points(pms[i].astype(np.float32), mir, res).astype(np.float16) if (mir >= 0).all() else np.full_like(pms[i], np.nan)
                add(item, fit, True, _jpeg(cv2.flip(crop, 1, flipped), bp.jpeg_quality), labels.flipped[i], fkps[i], tf, no == 0, no, fpm)
    count("quarantined", len(quarantine))
    cols = _columns(rows, lset, bp)
    return cols, counts, quarantine


def _subset_gap(lms: np.ndarray, kps: np.ndarray, kpos: np.ndarray | None) -> np.ndarray:
    """(B,) largest 2D distance between the set's 68 subset ``lms[:, kpos]`` (B, K, 3) and the
    keypoints ``kps`` (B, 68, 3); zeros without a subset."""
    if kpos is None:
        return np.zeros(lms.shape[0])
    d = lms[:, kpos, :2] - kps[:, :, :2]
    return np.sqrt((d * d).sum(2)).max(1, initial=0)


@dataclass(frozen=True)
class _Fit:
    shape_para: np.ndarray
    exp_para: np.ndarray
    pose_para: np.ndarray
    size: tuple[int, int]  # (h, w)


def _jpeg(bgr: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(None, "image", "JPEG encoding failed")
    return buf.tobytes()


def _label_groups(ctx: _Context, bp: BuildParams, batch: list, quarantine: list[dict]):
    """Yield {batch, labels, posmaps} for a batch; when the batch fails (a bad fit), one by one."""
    if not batch:
        return
    try:
        yield _labels(ctx, bp, batch)
    except InputError as exc:
        if len(batch) == 1:
            quarantine.append(_q(batch[0][0], exc.field, exc))
            return
        for one in batch:
            yield from _label_groups(ctx, bp, [one], quarantine)


def _labels(ctx: _Context, bp: BuildParams, batch: list) -> dict:
    args = dict(
        shape_para=np.stack([f.shape_para for _, f, _ in batch]),
        exp_para=np.stack([f.exp_para for _, f, _ in batch]),
        pose_para=np.stack([f.pose_para for _, f, _ in batch]),
        image_height=np.array([f.size[0] for _, f, _ in batch]),
        res=bp.res, crop_scale=bp.crop_scale, jitter=bp.jitter, size_jitter=bp.size_jitter,
    )  # fmt: skip
    jit = bp.jitter > 0 or bp.size_jitter > 0
    labels = ctx.geo.compute(**args, rngs=[rng_for(bp.seed, it.subset, it.stem) for it, _, _ in batch] if jit else None)
    pms = None
    if bp.posmaps:
        g = pose_batch(ctx.model, **args, rngs=[rng_for(bp.seed, it.subset, it.stem) for it, _, _ in batch] if jit else None)
        maps = ctx.uvm.render(g.vertices, vertex_major=True).reshape(len(batch), -1, 3)
        pms = maps[:, ctx.template.face_ind].astype(np.float16)
    return {"batch": batch, "labels": labels, "posmaps": pms}


def _columns(rows: dict[str, list], lset: LandmarkSet, bp: BuildParams) -> dict[str, object]:
    n = len(rows["id"])
    k3 = 3 * len(lset)

    def arr(name: str, width: int, dtype) -> np.ndarray:
        return np.asarray(rows[name], dtype).reshape(n, width) if n else np.zeros((0, width), dtype)

    cols: dict[str, object] = {c: rows[c] for c in ("id", "source_id", "subset", "split")}
    cols["flip"] = np.asarray(rows["flip"], bool)
    cols["source_file"] = rows["source_file"]
    cols["image"] = rows["image"]
    cols["landmarks"] = arr("landmarks", k3, np.float32)
    cols["kpt68"] = arr("kpt68", 204, np.float32)
    cols["pose"] = arr("pose", 3, np.float32)
    cols["crop"] = arr("crop", 5, np.float64)
    cols["shape_para"] = rows["shape_para"]
    cols["exp_para"] = rows["exp_para"]
    cols["pose_para"] = arr("pose_para", 7, np.float64)
    cols["source_size"] = arr("source_size", 2, np.int32)
    cols["valid"] = np.asarray(rows["valid"], bool)
    cols["n_outside"] = np.asarray(rows["n_outside"], np.int16)
    if bp.posmaps:
        width = len(rows["posmap"][0]) if n else 0
        cols["posmap"] = arr("posmap", width, np.float16)
    return cols


# ----------------------------------------------------------------------------- finish


@dataclass
class BuildResult:
    """The finished build: ``manifest`` (dict), its path and sha256 (the dataset's identity), the run report."""

    manifest_path: Path
    manifest: dict
    manifest_sha256: str
    report: dict = field(default_factory=dict)


YAW_BINS = list(range(-90, 91, 15))


def finish_build(plan: BuildPlan, results: list[ChunkResult], report_path: str | Path | None = None) -> BuildResult:
    """Check every chunk is there, remove files outside the plan, write ``report.json`` and
    ``manifest.json`` (byte-identical for the same inputs, whoever wrote the chunks)."""
    by_k = {r.k: r for r in results}
    missing = sorted(set(range(plan.n_chunks)) - set(by_k))
    if missing:
        raise InputError(plan.out_dir, "chunks", f"{len(missing)} chunk(s) not written, e.g. {missing[:5]}")
    for k, r in by_k.items():
        if r.fingerprint != plan.chunk_fingerprints[k]:
            raise InputError(plan.out_dir, "chunks", f"chunk {k} was written for other inputs")
    out = Path(plan.out_dir)
    keep = {p.name for k in range(plan.n_chunks) for p in [*plan.shard_paths(k).values(), plan.record_path(k)]}
    prev = _previous_manifest(out / "manifest.json", plan.fingerprint)
    keep |= {f["path"] for s in prev.get("extra_sets", {}).values() for f in s.get("files", [])}  # relabel sidecars
    for p in out.glob("part-*"):
        if p.name not in keep:
            p.unlink()
    res = [by_k[k] for k in range(plan.n_chunks)]
    bparams = {k: v for k, v in plan.build.items() if k not in ("workers", "batch")}  # they never change the output
    rep = RunReport("build", params={"build": bparams, "splits": plan.splits, "model": recorded_model_params(plan.model)})
    for r in res:
        for key, n in r.counts.items():
            if key != "quarantined":
                rep.count(key, n)
        for q in r.quarantine:
            rep.quarantine.append(q)
            rep.count("quarantined")
    rep.count("chunks", plan.n_chunks)
    rep.count("source_samples", len(plan.items))
    rep.extra["notes"] = list(plan.notes)
    rep.extra["fingerprint"] = plan.fingerprint
    rep_path = rep.write(out / "report.json")
    if report_path is not None:
        rep.write(report_path)
    manifest = _manifest(plan, res, sha256_file(rep_path))
    if prev.get("files") == manifest["files"]:  # a finished build of the same inputs may carry relabelled columns: keep their record
        manifest["extra_sets"] = prev.get("extra_sets", {})
        manifest["columns"] = prev.get("columns", manifest["columns"])
    mpath = write_json(out / "manifest.json", manifest)
    return BuildResult(mpath, manifest, sha256_file(mpath), rep.to_dict())


def _previous_manifest(path: Path, fingerprint: str) -> dict:
    """The manifest already in the folder when it records the same build, else {}."""
    if not path.is_file():
        return {}
    try:
        prev = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return prev if prev.get("fingerprint") == fingerprint else {}


def _manifest(plan: BuildPlan, res: list[ChunkResult], report_sha: str) -> dict:
    counts: dict[str, dict] = {"subset": {}, "split": {}, "flip": {}, "subset_split": {}, "yaw_bins": {}, "valid": {}}
    total = 0
    for r in res:
        rows = r.rows
        n = len(rows["id"])
        total += n
        flips, valid = [str(x).lower() for x in rows["flip"]], [str(x).lower() for x in rows["valid"]]
        bins = np.clip(np.digitize(np.asarray(rows["yaw"], np.float64), YAW_BINS) - 1, 0, len(YAW_BINS) - 2) if n else []
        for key, vals in (("subset", rows["subset"]), ("split", rows["split"]), ("flip", flips), ("valid", valid),
                          ("subset_split", [f"{a}/{b}" for a, b in zip(rows["subset"], rows["split"], strict=True)]),
                          ("yaw_bins", [f"{YAW_BINS[b]}..{YAW_BINS[b + 1]}" for b in bins])):  # fmt: skip
            c = counts[key]
            for v in vals:
                c[v] = c.get(v, 0) + 1
    files = []
    for r in res:
        for f in plan.build["formats"]:
            e = r.files[f]
            files.append({"path": e["name"], "format": f, "chunk": r.k, "rows": e["rows"], "bytes": e["bytes"], "sha256": e["sha256"]})
    return {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": plan.fingerprint,
        "rows": total,
        "source_samples": len(plan.items),
        "quarantined": sum(len(r.quarantine) for r in res),
        "counts": {k: dict(sorted(v.items())) for k, v in counts.items()},
        "landmark_set": plan.landmark_set,
        "extra_sets": {},
        "model": {"sha256": plan.model_sha256, "uv_res": plan.model["uv_res"], "source": plan.model["source"]},
        "res": plan.build["res"],
        "flip": plan.flip,
        "formats": plan.build["formats"],
        "columns": [*COLUMNS, *(["posmap"] if plan.build["posmaps"] else [])],
        "conventions": CONVENTIONS,
        "params": {"build": {k: v for k, v in plan.build.items() if k not in ("workers", "batch")}, "splits": plan.splits, "model": recorded_model_params(plan.model)},
        "notes": list(plan.notes),
        "files": files,
        "report": {"path": "report.json", "sha256": report_sha},
    }


# ----------------------------------------------------------------------------- run


def run_build(
    model: ModelParams,
    build: BuildParams,
    splits: SplitParams,
    *,
    model_dir: str | Path,
    template_dir: str | Path,
    set_path: str | Path,
    source_dir: str | Path,
    out_dir: str | Path,
    report_path: str | Path | None = None,
    workers: int | None = None,
) -> BuildResult:
    """Plan, write every chunk (``workers`` processes, default ``build.workers``), finish."""
    mats = list_fit_mats(source_dir)
    kw = dict(model_dir=model_dir, template_dir=template_dir, set_path=set_path, source_dir=source_dir, out_dir=out_dir, mats=mats)
    w = min(workers or build.workers, -(-len(mats) // build.chunk_size))
    if w <= 1:
        keep_freed_memory()
        plan = plan_build(model, build, splits, **kw)
        _notes(plan)
        results = [write_chunk(plan, k) for k in tqdm(range(plan.n_chunks), desc="build", unit="chunk", disable=None)]
        return finish_build(plan, results, report_path)
    import multiprocessing as mp

    import cv2

    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})  # one BLAS thread per worker; spawned children inherit it
    spec = (model.model_dump(mode="json"), str(model_dir), str(template_dir), str(set_path))
    cv_threads = cv2.getNumThreads()
    try:
        fork = _single_threaded() and "fork" in mp.get_all_start_methods()
        if fork:
            # a single-threaded process (the CLI, DVC): load the model, template and label
            # geometry here, then fork (at the pool's first task); the workers inherit all of it
            # instead of importing and loading it again (about 1.5 CPU-seconds each), and hash
            # the source files for the plan. OpenCV's pool is shut down first, so no child
            # inherits a pool whose threads did not survive the fork.
            keep_freed_memory()
            _load_context(*spec)
            _preload(build.formats)
            cv2.setNumThreads(1)
            ctx, args = mp.get_context("fork"), (None,)
        else:  # threads are running (a flow, a server): forking could deadlock, so spawn
            ctx, args = mp.get_context("spawn"), (spec,)
        with ProcessPoolExecutor(w, mp_context=ctx, initializer=_init_worker, initargs=args) as ex:
            if not fork:  # spawned workers start (imports, model, label geometry) while this process plans
                for _ in range(w):
                    ex.submit(int)
            plan = plan_build(model, build, splits, **kw, pmap=ex.map if fork else None)
            _notes(plan)
            it = ex.map(write_chunk, [plan] * plan.n_chunks, range(plan.n_chunks))
            results = list(tqdm(it, total=plan.n_chunks, desc="build", unit="chunk", disable=None))
    finally:
        cv2.setNumThreads(cv_threads)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return finish_build(plan, results, report_path)


def _single_threaded() -> bool:
    """Whether only the main thread runs, once tqdm's monitor thread (left running by an earlier
    progress bar; tqdm starts a new one with its next bar) has been stopped."""
    import threading

    from tqdm._monitor import TMonitor

    for t in threading.enumerate():
        if isinstance(t, TMonitor):
            t.exit()
    return threading.active_count() == 1


def keep_freed_memory() -> bool:
    """Let glibc keep freed buffers for reuse (``mallopt``: no mmap per large block, no trim below
    256 MB). Every sample allocates a decoded image, a crop and label temporaries; fresh pages
    cost more than the codec work on a virtual machine (measured: JPEG decode 1.2 -> 0.9 ms).
    Process-wide; a no-op returning False where glibc is absent. Output bytes never depend on it."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 64 << 20)) and bool(libc.mallopt(m_trim_threshold, 256 << 20))
    except (OSError, AttributeError):
        return False


def _notes(plan: BuildPlan) -> None:
    for note in plan.notes:
        print(f"build: note: {note}")


def _preload(formats: list[str]) -> None:
    """Before forking: import the shard writers' libraries and run each codec once on a tiny
    input, so every worker inherits them initialised (their first use costs a worker's first
    chunk about a quarter more). Nothing written."""
    import io

    import cv2

    img = np.zeros((16, 16, 3), np.uint8)
    ok, enc = cv2.imencode(".jpg", img)
    cv2.imdecode(enc, cv2.IMREAD_COLOR)
    cv2.warpAffine(img, np.eye(2, 3), (8, 8))
    if "parquet" in formats:
        import pyarrow.parquet as pq

        t = shards.to_table({"id": ["a"], "image": [b"x"], "landmarks": np.zeros((1, 3), np.float32), "shape_para": [np.zeros(2)]}, {})
        pq.write_table(t, io.BytesIO(), compression="zstd")
    if "hdf5" in formats:
        import h5py  # noqa: F401


def _init_worker(spec: tuple | None = None) -> None:
    """A pool worker: one OpenCV thread (set before forking for forked workers), freed memory
    kept, the context loaded from ``spec`` (spawned workers; forked ones inherit it)."""
    import cv2

    if spec is not None:
        cv2.setNumThreads(1)
    keep_freed_memory()
    if spec is not None:
        try:
            _load_context(*spec)
        except Exception:  # noqa: BLE001 - the chunk writer reports the same error where it belongs
            pass


# ----------------------------------------------------------------------------- relabel

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def sidecar_name(shard: str, set_name: str) -> str:
    """The label sidecar of a shard for a landmark set: ``part-00000.labels-<set>.parquet`` (or ``.h5``)."""
    p = Path(shard)
    return f"{p.stem}.labels-{_SAFE.sub('_', set_name)}{p.suffix}"


def relabel(
    model: ModelParams,
    *,
    dataset_dir: str | Path,
    set_path: str | Path,
    model_dir: str | Path,
    template_dir: str | Path,
    out_dir: str | Path | None = None,
    batch: int = 512,
) -> dict:
    """Add a ``landmarks__<set name>`` column for another landmark set (any density) to a built
    dataset, from each row's stored 3DMM parameters and crop transform: no image is read,
    decoded or rewritten, no mesh minimum searched.

    The column goes into one sidecar file per shard (:func:`sidecar_name`: columns ``id`` and
    ``landmarks__<name>``, the shard's rows in the shard's order; Parquet row groups as the
    shard's), written atomically and recorded in ``manifest.json`` ``extra_sets[<name>]``
    (the set's summary, ``column`` and ``files`` with their sha256). The shards themselves are
    left untouched. A rerun with the same set rewrites the same bytes. With ``out_dir``, the
    dataset is first copied there (shards, records, report) and the sidecars written beside.
    Flipped rows get the mirrored labels when the new set has an exact mirror permutation, else NaN.

    Returns:
        The updated manifest.

    Raises:
        InputError: no manifest, another model than the dataset's, a set on another template.
    """
    import shutil

    keep_freed_memory()  # per batch: (rows, batch) float64 products and their checks, reused
    src = Path(dataset_dir)
    man_path = src / "manifest.json"
    if not man_path.is_file():
        raise InputError(man_path, None, "no manifest: not a finished dataset")
    manifest = json.loads(man_path.read_text(encoding="utf-8"))
    m = load_configured_model(model, model_dir)
    if model_sha256(m) != manifest["model"]["sha256"]:
        raise InputError(model_dir, "model", "not the model the dataset was built with (sha256 differs)")
    template = load_template(template_dir, res=model.uv_res)
    lset = LandmarkSet.load(set_path, template)
    uvm = UVMap.for_model(m, model.uv_res, model.cache_dir)
    geo = LabelGeometry(m, uvm, template, lset.ids, full_mesh=False, mirror_perm=_mirror(lset))
    col = f"landmarks__{lset.name}"
    if col in COLUMNS:
        raise InputError(set_path, "name", f"a set named {lset.name!r} would shadow a built column")
    dst = Path(out_dir) if out_dir is not None else src
    dst.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dst)  # a killed relabel's half-written sidecars
    if dst.resolve() != src.resolve():
        keep = [e["path"] for e in manifest["files"]] + [p.name for p in src.glob("part-*.json")] + ["report.json"]
        keep += [f["path"] for s in manifest.get("extra_sets", {}).values() for f in s.get("files", [])]
        for name in keep:
            shutil.copyfile(src / name, dst / name)
    meta = {"format": "densemark-labels", "version": VERSION, "column": col, "landmark_set": {"name": lset.name, "sha256": lset.sha256(), "n_points": len(lset)},
            "dataset_fingerprint": manifest["fingerprint"], "conventions": {col: CONVENTIONS["landmarks"]}}  # fmt: skip
    rgs = int(manifest["params"]["build"]["row_group_size"])
    files = []
    names = ["id", "shape_para", "exp_para", "pose_para", "source_size", "crop", "flip"]
    for e in tqdm(manifest["files"], desc="relabel", unit="shard", disable=None):
        p = dst / e["path"]
        q = dst / sidecar_name(e["path"], lset.name)
        data = _read_parquet_fits(p, names) if e["format"] == "parquet" else _read_h5(p, names)
        lab = _relabel_rows(geo, data, lset, batch)
        shard_meta = {**meta, "shard": {"path": e["path"], "sha256": e["sha256"]}}
        if e["format"] == "parquet":
            t = shards.to_table({"id": data["id"], col: lab.reshape(len(lab), -1)}, shard_meta)
            shards.write_parquet(q, t, rgs, compression="none")  # label floats: lz4 saves ~4 % at 1.5x the write time
        else:
            shards.write_hdf5(q, {"id": data["id"], col: lab.reshape(len(lab), -1)}, shard_meta, int(manifest["params"]["build"]["hdf5_compression"]))
        files.append({"path": q.name, "format": e["format"], "chunk": e["chunk"], "shard": e["path"], "rows": len(lab), "bytes": q.stat().st_size, "sha256": sha256_file(q)})
    extra = dict(manifest.get("extra_sets", {}))
    extra[lset.name] = {**set_summary(lset), "column": col, "files": files}
    manifest = {**manifest, "extra_sets": dict(sorted(extra.items())), "columns": [*[c for c in manifest["columns"] if c != col], col]}
    write_json(dst / "manifest.json", manifest)
    return manifest


def sidecar_paths(manifest: dict, column: str) -> dict[str, str]:
    """``{shard path: sidecar path}`` of an extra label column (empty for the built ``landmarks``)."""
    for s in manifest.get("extra_sets", {}).values():
        if s.get("column") == column:
            return {f["shard"]: f["path"] for f in s.get("files", [])}
    return {}


def _read_parquet_fits(path: Path, names: list[str]) -> dict:
    """The fit columns of a Parquet shard, list columns as (n, k) float64 (no image bytes read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=names)
    out: dict = {}
    for n in names:
        c = t.column(n).combine_chunks()
        if pa.types.is_list(c.type):
            off = c.offsets.to_numpy()
            vals = c.values.to_numpy(zero_copy_only=False).astype(np.float64)
            lens = np.diff(off)
            if len(lens) and (lens == lens[0]).all():
                out[n] = vals[off[0] : off[-1]].reshape(len(c), int(lens[0]))
            else:
                out[n] = [vals[a:b] for a, b in zip(off[:-1], off[1:], strict=True)]
        elif pa.types.is_fixed_size_list(c.type):
            out[n] = c.values.to_numpy(zero_copy_only=False).reshape(len(c), c.type.list_size)
        elif n == "id":
            out[n] = [str(x) for x in c.to_pylist()]
        else:
            out[n] = c.to_numpy(zero_copy_only=False)
    return out


def _read_h5(path: Path, names: list[str]) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return {n: shards.h5_column(f, n) for n in names}


def _relabel_rows(geo: LabelGeometry, data: dict, lset: LandmarkSet, batch: int) -> np.ndarray:
    """(n, K, 3) labels of a shard's rows; a flipped row mirrors its original's (computed once)."""
    n = len(data["flip"])
    flip = np.asarray(data["flip"], bool)
    row_of = {rid: i for i, rid in enumerate(data["id"]) if not flip[i]}
    src = np.array([row_of.get(rid[: -len("/flip")], -1) if flip[i] else i for i, rid in enumerate(data["id"])], np.int64)
    todo = np.flatnonzero(src < 0)  # a flipped row without its original in the shard: computed itself
    src[todo] = todo
    need = np.unique(src)
    lab = np.empty((n, geo.n_points, 3), np.float32)
    flab = np.empty((n, geo.n_points, 3), np.float32) if lset.mirror_exact else None
    pose = np.asarray(data["pose_para"], np.float64).reshape(n, 7)
    h = np.asarray(data["source_size"], np.float64).reshape(n, 2)[:, 0]
    crop = np.asarray(data["crop"], np.float64).reshape(n, 5)
    for b0 in range(0, len(need), batch):
        rows = need[b0 : b0 + batch]
        c = geo.rows.coefficients(_stack(data["shape_para"], rows, geo.rows.k_shape), _stack(data["exp_para"], rows, geo.rows.k_exp), len(rows))
        got = geo.relabel(c, pose[rows], h[rows], crop[rows])
        lab[rows] = got.landmarks
        if flab is not None:
            flab[rows] = got.flipped
    out = lab[src]
    if flip.any():
        out[flip] = flab[src[flip]] if flab is not None else np.nan
    return out


def _stack(values: list | np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """(len(rows), k) float64 coefficients of the given rows, truncated or zero-padded to k."""
    out = np.zeros((len(rows), k), np.float64)
    if isinstance(values, np.ndarray) and values.ndim == 2:
        w = min(k, values.shape[1])
        out[:, :w] = values[rows, :w]
        return out
    for j, i in enumerate(rows):
        r = np.asarray(values[i], np.float64)[:k]
        out[j, : r.size] = r
    return out


def crop_of(row_crop: np.ndarray) -> CropTransform:
    """The :class:`CropTransform` of a row's ``crop`` value ``[scale, tx, ty, tz, size]``."""
    s, tx, ty, tz, n = (float(x) for x in np.asarray(row_crop, np.float64).reshape(5))
    return CropTransform(s, tx, ty, tz, int(n))


def build_metrics(manifest: dict) -> dict[str, int]:
    """DVC metrics of a build: row, sample and quarantine counts, rows per split and flip."""
    c = manifest["counts"]
    m = {"rows": manifest["rows"], "source_samples": manifest["source_samples"], "quarantined": manifest["quarantined"]}
    m.update({f"rows_{k}": v for k, v in c.get("split", {}).items()})
    m["rows_flipped"] = c.get("flip", {}).get("true", 0)
    m["rows_invalid"] = c.get("valid", {}).get("false", 0)
    return m

"""The chunk work of a build: one chunk of source samples -> its shard(s) and commit record.

:func:`write_chunk` reads each sample's fit and image, computes the labels batch-wise
(:class:`densemark.datasets.labels.LabelGeometry`), crops and encodes the image, and writes one
shard per format plus ``part-NNNNN.json`` (the chunk's commit record, written last). Each
source sample gives a row and, when the plan flips, its mirrored copy (image flipped,
``x -> res - 1 - x``, labels read at the mirrored UV pixels: the permutation's partners, and
for the two centre columns, which the permutation pairs with themselves, the neighbouring
column (:func:`densemark.datasets.labels.mirror_sources`); 68 keypoints by the iBUG mirror).
Bad samples are quarantined (file, field, reason) and the chunk goes on: a ``.mat`` that cannot
be read or has no image beside it (filed under the ``.mat``), and an image that is empty, not a
JPEG/PNG, claims more than ``build.max_image_pixels`` in its header (refused before decoding),
has a side under ``build.min_image_side``, cannot be decoded, or gives a blank crop (pixel std
under ``build.blank_crop_std``) (filed under the image). A quarantined sample changes no other
sample's row.

Whether a chunk is already done is decided in one place, :func:`chunk_done`: its record
carries the chunk's fingerprint and every shard still hashes as recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densemark.core.atomic import write_json
from densemark.core.errors import InputError
from densemark.core.hashing import sha256_file
from densemark.core.images import check_pixels, header_size
from densemark.core.seeding import rng_for
from densemark.datasets import shards
from densemark.datasets.labels import flip_points
from densemark.datasets.manifest import COLUMNS, CONVENTIONS, VERSION
from densemark.datasets.params import BuildParams
from densemark.datasets.plan import BuildPlan, Context, SourceItem, plan_context
from densemark.faces.crop import CropTransform
from densemark.faces.geometry import pose_batch
from densemark.faces.model import KPT68_MIRROR
from densemark.sampling.landmark_set import LandmarkSet
from densemark.sources.readers import read_fit_mat

ShardHook = Callable[
    [int, Path], None
]  # (chunk, temp file of a shard about to be renamed into place)


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


def chunk_done(plan: BuildPlan, k: int) -> ChunkResult | None:
    """The result of chunk ``k`` when it is already written for this plan, else None: its
    record parses, carries the chunk's fingerprint and formats, and every shard's bytes still
    hash as recorded. The one resume rule of the build, whoever runs the chunks."""
    rec = plan.record_path(k)
    if not rec.is_file():
        return None
    try:
        d = json.loads(rec.read_text(encoding="utf-8"))
        r = ChunkResult.from_dict(d, skipped=True)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        return None
    if r.fingerprint != plan.chunk_fingerprint(k) or set(r.files) != set(plan.build["formats"]):
        return None
    for f, p in plan.shard_paths(k).items():
        if not p.is_file() or sha256_file(p) != r.files[f]["sha256"]:
            return None
    return r


def write_chunk(plan: BuildPlan, k: int, hook: ShardHook | None = None) -> ChunkResult:
    """Build chunk ``k``: its shard(s) and commit record, atomically; skipped when
    :func:`chunk_done`.

    Args:
        hook: called as ``hook(k, tmp)`` with each shard's temp file before it is renamed into
            place (tests interrupt a build there); None: nothing.
    """
    if not 0 <= k < plan.n_chunks:
        raise InputError(None, "chunk", f"chunk {k} outside 0..{plan.n_chunks - 1}")
    done = chunk_done(plan, k)
    if done is not None:
        return done
    ctx = plan_context(plan)
    shard_hook = None if hook is None else (lambda tmp: hook(k, Path(tmp)))
    cols, counts, quarantine = _chunk_rows(ctx, plan, k)
    meta = {
        "format": "densemark-shard", "version": VERSION, "chunk": k, "fingerprint": plan.chunk_fingerprint(k),
        "dataset_fingerprint": plan.fingerprint, "landmark_set": {x: plan.landmark_set[x] for x in ("name", "sha256", "n_points")},
        "res": plan.build["res"], "conventions": CONVENTIONS,
    }  # fmt: skip
    files = {}
    bp = plan.params
    for f, p in plan.shard_paths(k).items():
        if f == "parquet":
            shards.write_parquet(p, shards.to_table(cols, meta), bp.row_group_size, hook=shard_hook)
        else:
            shards.write_hdf5(p, cols, meta, bp.hdf5_compression, hook=shard_hook)
        files[f] = {
            "name": p.name,
            "sha256": sha256_file(p),
            "bytes": p.stat().st_size,
            "rows": len(cols["id"]),
        }
    yaw = (
        np.asarray(cols["pose"], np.float64).reshape(-1, 3)[:, 1]
        if len(cols["id"])
        else np.zeros(0)
    )
    rows = {
        "id": list(cols["id"]), "subset": list(cols["subset"]), "split": list(cols["split"]),
        "flip": [bool(x) for x in cols["flip"]], "yaw": [round(float(y), 3) for y in yaw],
        "valid": [bool(x) for x in cols["valid"]],
    }  # fmt: skip
    res = ChunkResult(
        k, plan.chunk_fingerprint(k), files, dict(sorted(counts.items())), quarantine, rows
    )
    write_json(plan.record_path(k), res.to_dict())
    return res


def _q(
    item: SourceItem,
    field_: str | None,
    error: BaseException | str,
    row_id: str | None = None,
    file: str | None = None,
) -> dict:
    """A quarantine record: the sample, the file at fault (``file``, else the sample's ``.mat``;
    relative to the source), the field and the reason."""
    return {
        "sample": row_id or f"{item.subset}/{item.stem}",
        "file": file or item.rel,
        "field": field_ or "",
        "error": str(getattr(error, "message", error)),
    }


def _rel_to(src: Path, path: str | None, default: str) -> str:
    """``path`` relative to the source folder (posix), or ``default`` when it is not inside it."""
    if path is None:
        return default
    try:
        return Path(path).relative_to(src).as_posix()
    except ValueError:
        return default


def read_source_image(path: Path, bp: BuildParams) -> np.ndarray:
    """A source image as (H, W, 3) uint8 BGR, checked before and after decoding.

    The header's size is read first (:func:`densemark.core.images.header_size`): an image that
    claims more than ``bp.max_image_pixels`` or has a side under ``bp.min_image_side`` is refused
    without decoding it.

    Raises:
        InputError: naming the image: empty, not a JPEG/PNG, too many pixels, too small,
            undecodable.
    """
    import cv2

    data = np.fromfile(path, np.uint8)
    w, h = header_size(data, path)
    check_pixels((w, h), bp.max_image_pixels, path, "build.max_image_pixels")
    if min(w, h) < bp.min_image_side:
        raise InputError(
            path,
            "image",
            f"{w}x{h} is too small for a crop (a side under build.min_image_side = {bp.min_image_side})",
        )
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None:
        raise InputError(path, "image", "cannot decode (truncated or damaged)")
    return img


def _crop_std(crop: np.ndarray) -> float:
    """The largest per-channel pixel standard deviation of a (res, res, 3) uint8 crop."""
    import cv2

    return float(cv2.meanStdDev(crop)[1].max())


def _chunk_rows(ctx: Context, plan: BuildPlan, k: int) -> tuple[dict, dict[str, int], list[dict]]:
    import cv2

    bp = plan.params
    res = bp.res
    src = Path(plan.paths.source_dir)
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
    crop_buf, flipped = (
        np.empty((res, res, 3), np.uint8),
        np.empty((res, res, 3), np.uint8),
    )  # reused: no fresh pages per sample
    for b0 in range(0, len(items), bp.batch):
        batch = []
        for item in items[b0 : b0 + bp.batch]:
            try:
                fit = read_fit_mat(
                    src / item.rel, m.n_shape or None, m.n_exp or None, fit_only=True
                )
                if fit.image_path is None:
                    raise InputError(src / item.rel, "image", "no image beside the .mat")
                img = read_source_image(fit.image_path, bp)
            except InputError as exc:
                quarantine.append(_q(item, exc.field, exc, file=_rel_to(src, exc.path, item.rel)))
                continue
            image_rel = _rel_to(src, str(fit.image_path), item.rel)
            batch.append(
                (
                    item,
                    _Fit(fit.shape_para, fit.exp_para, fit.pose_para, img.shape[:2], image_rel),
                    img,
                )
            )
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
                    quarantine.append(
                        _q(
                            item,
                            "kpt68",
                            f"the set's 68 subset is {gap[i]:.2f} px from the model keypoints (> {tol:.2f})",
                        )
                    )
                    continue
                crop = cv2.warpAffine(
                    img,
                    tf.affine,
                    (res, res),
                    crop_buf,
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0,
                )
                if bp.blank_crop_std > 0 and (sd := _crop_std(crop)) < bp.blank_crop_std:
                    quarantine.append(
                        _q(
                            item,
                            "image",
                            f"the crop is blank (pixel std {sd:.2f} < build.blank_crop_std = {bp.blank_crop_std})",
                            file=fit.image,
                        )
                    )
                    continue
                jpeg = _jpeg(crop, bp.jpeg_quality)
                count("outside_crop", int(no > 0))
                add(
                    item, fit, False, jpeg, lm, kp, tf, no == 0, no, None if pms is None else pms[i]
                )
                if not plan.flip or item.twin:  # a twin's mirror is its _Flip twin's own row
                    continue
                # the flipped labels are read at the mirrored UV pixels (exact on the centre columns too)
                if fgap[i] > tol:
                    quarantine.append(
                        _q(
                            item,
                            "flip",
                            f"flipped 68 subset is {fgap[i]:.2f} px from the flipped keypoints",
                            f"{item.subset}/{item.stem}/flip",
                        )
                    )
                    continue
                fpm = None
                if pms is not None:
                    mir = ctx.template.mirror_ids
                    fpm = (
                        flip_points(pms[i].astype(np.float32), mir, res).astype(np.float16)
                        if (mir >= 0).all()
                        else np.full_like(pms[i], np.nan)
                    )
                add(
                    item,
                    fit,
                    True,
                    _jpeg(cv2.flip(crop, 1, flipped), bp.jpeg_quality),
                    labels.flipped[i],
                    fkps[i],
                    tf,
                    no == 0,
                    no,
                    fpm,
                )
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
    image: str  # the image file, relative to the source


def _jpeg(bgr: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(None, "image", "JPEG encoding failed")
    return buf.tobytes()


def _label_groups(ctx: Context, bp: BuildParams, batch: list, quarantine: list[dict]):
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


def _labels(ctx: Context, bp: BuildParams, batch: list) -> dict:
    args = dict(
        shape_para=np.stack([f.shape_para for _, f, _ in batch]),
        exp_para=np.stack([f.exp_para for _, f, _ in batch]),
        pose_para=np.stack([f.pose_para for _, f, _ in batch]),
        image_height=np.array([f.size[0] for _, f, _ in batch]),
        res=bp.res, crop_scale=bp.crop_scale, jitter=bp.jitter, size_jitter=bp.size_jitter,
    )  # fmt: skip
    jit = bp.jitter > 0 or bp.size_jitter > 0
    labels = ctx.geo.compute(
        **args, rngs=[rng_for(bp.seed, it.subset, it.stem) for it, _, _ in batch] if jit else None
    )
    pms = None
    if bp.posmaps:
        g = pose_batch(
            ctx.model,
            **args,
            rngs=[rng_for(bp.seed, it.subset, it.stem) for it, _, _ in batch] if jit else None,
        )
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


def crop_of(row_crop: np.ndarray) -> CropTransform:
    """The :class:`CropTransform` of a row's ``crop`` value ``[scale, tx, ty, tz, size]``."""
    s, tx, ty, tz, n = (float(x) for x in np.asarray(row_crop, np.float64).reshape(5))
    return CropTransform(s, tx, ty, tz, int(n))

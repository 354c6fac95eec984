"""The ``build`` stage: a 300W-LP-format source -> crops + dense landmark labels in shards.

Organised so it can be distributed::

    plan = plan_build(...)                         # deterministic chunks + fingerprints (plan.py)
    results = [write_chunk(plan, k) for k in range(plan.n_chunks)]   # any order, any machine (chunks.py)
    finish_build(plan, results)                    # report.json + manifest.json + README.md card (here; Manifest: manifest.py, card: hub.py)

:func:`run_build` does exactly that, over a process pool. A chunk already written for the same
inputs is skipped (:func:`densemark.datasets.chunks.chunk_done`), so a killed build resumes and
the output is byte-identical to an uninterrupted one. A change of any input changes every
fingerprint: the shards are rewritten, never mixed; stale ``*.tmp`` files and shards outside
the plan are removed.

The output folder is written by one build at a time (:func:`densemark.core.outdir.locked`, held
by :func:`run_build` from planning to the manifest) and only when it is empty or stamped by a
build (:func:`densemark.datasets.plan.prepare_out`).

Every bad source file is quarantined and the build goes on: ``report.json`` lists each (file,
field, reason), images without a ``.mat`` included, and the console names the first
:data:`SHOW_QUARANTINED` of them.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from densemark.core import outdir
from densemark.core.atomic import write_json
from densemark.core.errors import InputError
from densemark.core.hashing import sha256_file
from densemark.core.report import RunReport, StageResult
from densemark.core.threads import limit_this_process, one_thread
from densemark.datasets import shards
from densemark.datasets.chunks import ChunkResult, ShardHook, write_chunk
from densemark.datasets.hub import write_card
from densemark.datasets.manifest import (
    COLUMNS,
    LABELS_DIR,
    REPORT,
    SHARD_DIR,
    Manifest,
    count_rows,
    shard_name,
)
from densemark.datasets.params import BuildParams, SplitParams
from densemark.datasets.plan import BuildPaths, BuildPlan, load_context, plan_build
from densemark.faces.params import ModelParams, recorded_model_params
from densemark.sources.readers import list_fit_rels

# ----------------------------------------------------------------------------- finish


@dataclass
class BuildResult(StageResult):
    """:class:`StageResult` of a build: outputs ``dataset``, ``manifest``, ``report`` (and
    ``run_report`` when asked for), the :class:`Manifest` as ``value``, metrics
    :meth:`Manifest.metrics`. ``manifest`` (a dict), ``manifest_sha256`` and ``manifest_path``
    are views of ``value`` for callers that read the manifest as JSON."""

    @property
    def manifest(self) -> dict:
        return self.value.to_dict()

    @property
    def manifest_sha256(self) -> str:
        return self.value.sha256

    @property
    def manifest_path(self) -> Path:
        return self.outputs["manifest"]


SHOW_QUARANTINED = 5  # quarantined files the console names (all are in report.json)


def finish_build(
    plan: BuildPlan,
    results: list[ChunkResult],
    report_path: str | Path | None = None,
    *,
    started: float | None = None,
) -> BuildResult:
    """Check every chunk is there, remove files outside the plan, write ``report.json`` and
    ``manifest.json`` (byte-identical for the same inputs, whoever wrote the chunks).

    A finished build of the same inputs keeps the sidecars of its relabelled sets and their
    record: they still label the same rows.

    Args:
        started: ``time.time()`` when the build began, for the wall time printed (never
            written); None: the time since the report was made.
    """
    by_k = {r.k: r for r in results}
    missing = sorted(set(range(plan.n_chunks)) - set(by_k))
    if missing:
        raise InputError(
            plan.out_dir, "chunks", f"{len(missing)} chunk(s) not written, e.g. {missing[:5]}"
        )
    for k, r in by_k.items():
        if r.fingerprint != plan.chunk_fingerprints[k]:
            raise InputError(plan.out_dir, "chunks", f"chunk {k} was written for other inputs")
    out = plan.out_dir
    keep = {
        p.relative_to(out).as_posix()
        for k in range(plan.n_chunks)
        for p in [*plan.shard_paths(k).values(), plan.record_path(k)]
    }
    prev = Manifest.load_same(out, plan.fingerprint)
    if prev is not None:
        keep |= {f["path"] for f in prev.sidecar_files()}
    remove_outside(out, keep)
    res = [by_k[k] for k in range(plan.n_chunks)]
    rep = RunReport(
        "build",
        params={
            "build": plan.output_params,
            "splits": plan.splits,
            "model": recorded_model_params(plan.model),
        },
    )
    if started is not None:
        rep.started = started
    for rel in plan.orphans:
        p = Path(rel)
        parts = p.parts
        subset = parts[0] if len(parts) > 1 else plan.build["root_subset"]
        rep.quarantine.append(
            {
                "sample": f"{subset}/{p.stem}",
                "file": rel,
                "field": "mat",
                "error": "image without its .mat (no 3DMM fit): not built",
            }
        )
        rep.count("quarantined")
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
    rep_path = rep.write(out / REPORT)  # prints the counts and the wall time, once
    _print_quarantine(rep.to_dict()["quarantine"], rep_path)
    outputs = {"dataset": out, "report": rep_path}
    if report_path is not None:
        outputs["run_report"] = write_json(report_path, rep.to_dict())
    files = [
        {"path": shard_name(plan.chunk_stem(r.k), f), "format": f, "chunk": r.k, "split": plan.chunk_split(r.k),
         "rows": e["rows"], "bytes": e["bytes"], "sha256": e["sha256"]}
        for r in res for f in plan.build["formats"] for e in [r.files[f]]
    ]  # fmt: skip
    manifest = Manifest(
        fingerprint=plan.fingerprint, rows=sum(len(r.rows["id"]) for r in res), source_samples=len(plan.items),
        quarantined=len(rep.quarantine), counts=count_rows([r.rows for r in res]),
        landmark_set=plan.landmark_set, model={"sha256": plan.model_sha256, "uv_res": plan.model["uv_res"], "source": plan.model["source"]},
        res=plan.build["res"], flip=plan.flip, formats=plan.build["formats"], columns=[*COLUMNS, *(["posmap"] if plan.build["posmaps"] else [])],
        params={"build": plan.output_params, "splits": plan.splits, "model": recorded_model_params(plan.model)}, notes=list(plan.notes),
        files=files, report={"path": REPORT, "sha256": sha256_file(rep_path)}, mirroring=dict(plan.mirroring),
    )  # fmt: skip
    if prev is not None and prev.files == manifest.files:
        manifest = replace(manifest, extra_sets=prev.extra_sets, columns=prev.columns)
    manifest = manifest.write(out)
    outputs["manifest"] = Manifest.path(out)
    outputs.update(write_card(manifest, out))
    return BuildResult(outputs=outputs, report=rep, metrics=manifest.metrics(), value=manifest)


def _print_quarantine(entries: list[dict], report: Path) -> None:
    """Name the first :data:`SHOW_QUARANTINED` quarantined files with their reasons, then count the rest."""
    if not entries:
        return
    print(f"build: {len(entries)} source file(s) quarantined (not built):")
    for q in entries[:SHOW_QUARANTINED]:
        field_ = f" [{q['field']}]" if q.get("field") else ""
        print(f"  {q['file']}{field_}: {q['error']}")
    if len(entries) > SHOW_QUARANTINED:
        print(f"  ... and {len(entries) - SHOW_QUARANTINED} more: every one is listed in {report}")


def remove_outside(out: Path, keep: set[str]) -> None:
    """Remove the data files of a dataset folder that ``keep`` (paths relative to it) does not
    list: commit records ``part-*`` at its root, anything under ``data/``, ``hdf5/``,
    ``labels/`` (then empty folders there). Earlier layouts' shards (``part-*.parquet``) too."""
    cands = list(out.glob("part-*"))
    for sub in (*SHARD_DIR.values(), LABELS_DIR):
        if (out / sub).is_dir():
            cands += [p for p in (out / sub).rglob("*") if p.is_file()]
    for p in cands:
        if p.relative_to(out).as_posix() not in keep:
            p.unlink()
    for sub in (*SHARD_DIR.values(), LABELS_DIR):
        for d in sorted((out / sub).rglob("*"), reverse=True) if (out / sub).is_dir() else []:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()


def build_metrics(manifest: dict) -> dict[str, int]:
    """DVC metrics of a build from its manifest's JSON object (:meth:`Manifest.metrics`)."""
    return Manifest.from_dict(manifest).metrics()


# ----------------------------------------------------------------------------- run


def run_build(
    model: ModelParams,
    build: BuildParams,
    splits: SplitParams,
    paths: BuildPaths,
    *,
    report_path: str | Path | None = None,
    workers: int | None = None,
    hook: ShardHook | None = None,
) -> BuildResult:
    """Plan, write every chunk (``workers`` processes, default ``build.workers``), finish.

    Holds the output folder's write lock throughout: a second build into the same folder is
    refused while this one runs.

    Args:
        hook: passed to every :func:`write_chunk` (must pickle when ``workers`` > 1).

    Raises:
        InputError: bad inputs, or an output folder holding someone else's files or being
            written by another process.
    """
    started = time.time()
    with outdir.locked(paths.out_dir, "build"):
        return _run_build(model, build, splits, paths, report_path, workers, hook, started)


def _run_build(model, build, splits, paths, report_path, workers, hook, started) -> BuildResult:  # noqa: ANN001 - run_build's arguments
    rels = list_fit_rels(paths.source_dir)
    w = min(workers or build.workers, -(-len(rels) // build.chunk_size))
    write = partial(write_chunk, hook=hook)
    if w <= 1:  # one process, one compute thread (more BLAS threads only spin: measured
        keep_freed_memory()  # 3.55 against 1.88 CPU-ms per row, the same wall time)
        plan = plan_build(model, build, splits, paths, rels=rels)
        _notes(plan)
        with one_thread():
            results = [
                write(plan, k)
                for k in tqdm(range(plan.n_chunks), desc="build", unit="chunk", disable=None)
            ]
        return finish_build(plan, results, report_path, started=started)
    import multiprocessing as mp

    import cv2

    spec = (model.model_dump(mode="json"), paths.model_dir, paths.template_dir, paths.set_path)
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
            load_context(*spec)
            _preload(build.formats)
            cv2.setNumThreads(1)
            ctx, args = mp.get_context("fork"), (None,)
        else:  # threads are running (a flow, a server): forking could deadlock, so spawn
            ctx, args = mp.get_context("spawn"), (spec,)
        with ProcessPoolExecutor(w, mp_context=ctx, initializer=_init_worker, initargs=args) as ex:
            if (
                not fork
            ):  # spawned workers start (imports, model, label geometry) while this process plans
                for _ in range(w):
                    ex.submit(int)
            plan = plan_build(model, build, splits, paths, rels=rels, pmap=ex.map if fork else None)
            _notes(plan)
            # each task carries its own chunk of the plan (a few KB + its items), never the
            # whole plan: the bytes pickled grow with the samples, not samples x chunks
            ks = range(plan.n_chunks)
            it = ex.map(write, map(plan.for_chunk, ks), ks)
            results = list(tqdm(it, total=plan.n_chunks, desc="build", unit="chunk", disable=None))
    finally:
        cv2.setNumThreads(cv_threads)
    return finish_build(plan, results, report_path, started=started)


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
        return bool(libc.mallopt(m_mmap_threshold, 64 << 20)) and bool(
            libc.mallopt(m_trim_threshold, 256 << 20)
        )
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

        t = shards.to_table(
            {
                "id": ["a"],
                "image": [b"x"],
                "landmarks": np.zeros((1, 3), np.float32),
                "shape_para": [np.zeros(2)],
            },
            {},
        )
        pq.write_table(t, io.BytesIO(), compression="zstd")
    if "hdf5" in formats:
        import h5py  # noqa: F401


def _init_worker(spec: tuple | None = None) -> None:
    """A pool worker: one BLAS/OpenMP and one OpenCV thread (a forked worker inherits its
    parent's BLAS thread count, whatever the environment says: two spinning BLAS threads per
    worker doubled the CPU per row), freed memory kept, the context loaded from ``spec``
    (spawned workers; forked ones inherit it)."""
    limit_this_process()
    keep_freed_memory()
    if spec is not None:
        try:
            load_context(*spec)
        except Exception:  # noqa: BLE001 - the chunk writer reports the same error where it belongs
            pass

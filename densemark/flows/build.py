"""Flow ``build``: the dataset build distributed over a Dask cluster.

``plan_build`` cuts the source into the plan's chunks; ``write_chunk`` is mapped over them, a
few consecutive chunks per task (``flows.chunks_per_task``), on a ``prefect-dask``
``DaskTaskRunner`` (an existing cluster at ``flows.address``, else a ``LocalCluster`` of
``flows.n_workers``); ``finish_build`` writes the manifest and report. The
shards are byte-identical to ``densemark build`` / :func:`densemark.datasets.build.run_build`:
the chunks and their contents come from the plan, never from the runner.

Resume is the build's own: each chunk task calls ``write_chunk``, which returns a chunk already
on disk for the same fingerprint without writing it again
(:func:`densemark.datasets.chunks.chunk_done`); the chunk tasks keep no result cache of their
own, so a lost or changed shard is always rewritten.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import asdict, replace
from io import StringIO
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from densemark.config import Params
from densemark.core.threads import one_thread
from densemark.datasets.build import BuildResult, finish_build, keep_freed_memory
from densemark.datasets.chunks import ChunkResult, write_chunk
from densemark.datasets.manifest import Manifest
from densemark.datasets.params import BuildParams, SplitParams
from densemark.datasets.plan import BuildPaths, BuildPlan, plan_build
from densemark.faces.params import ModelParams
from densemark.flows.common import absolute, in_root, load, retry_transient, stage_call, timed_call
from densemark.flows.overrides import Sections
from densemark.flows.params import FlowParams
from densemark.pipeline import STAGES


def task_runner(fp: FlowParams):
    """The ``DaskTaskRunner`` the ``flows`` section asks for (existing cluster or LocalCluster)."""
    from prefect_dask import DaskTaskRunner

    if fp.address:
        return DaskTaskRunner(address=fp.address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": fp.n_workers, "threads_per_worker": fp.threads_per_worker,
                        "processes": fp.processes, "dashboard_address": ":0"},
    )  # fmt: skip


@task(name="plan", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_transient)
def plan_task(model: ModelParams, build: BuildParams, splits: SplitParams, io: dict) -> BuildPlan:
    """:func:`plan_build` (runs every time: it also clears a killed run's temp files)."""
    return plan_build(model, build, splits, BuildPaths(**io))


@task(
    name="write_chunks",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=retry_transient,
)
def chunk_task(plans: list[BuildPlan], ks: list[int]) -> list[dict]:
    """:func:`write_chunk` for chunks ``ks`` (each with its cut plan; a chunk already written is
    returned from disk), with one BLAS and one OpenCV thread: the cluster's workers already
    fill the cores."""
    keep_freed_memory()  # Dask's nanny trims freed memory at 64 KB: fresh pages for every image
    with one_thread():
        return [write_chunk(p, k).to_dict() for p, k in zip(plans, ks, strict=True)]


def chunk_groups(n_chunks: int, fp: FlowParams) -> list[list[int]]:
    """Chunks ``0..n_chunks-1`` in consecutive groups, one group per task:
    ``fp.chunks_per_task`` each, or with 0 up to 8 while every worker keeps at least 8 tasks.

    >>> [len(g) for g in chunk_groups(20, FlowParams(n_workers=2))]
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    >>> groups = chunk_groups(480, FlowParams(n_workers=2))  # 300W-LP's chunks
    >>> len(groups), {len(g) for g in groups}
    (60, {8})
    >>> chunk_groups(5, FlowParams(chunks_per_task=2))
    [[0, 1], [2, 3], [4]]
    """
    g = fp.chunks_per_task or max(1, min(8, n_chunks // (8 * fp.n_workers)))
    return [list(range(a, min(a + g, n_chunks))) for a in range(0, n_chunks, g)]


@task(
    name="finish",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=retry_transient,
    log_prints=False,
)
def finish_task(plan: BuildPlan, results: list[dict], report_path: str | None) -> dict:
    """`finish_build`: manifest + run report (its own timing line is not logged: the flow logs
    the build's, from the plan to the manifest)."""
    with redirect_stdout(StringIO()):
        res = finish_build(plan, [ChunkResult.from_dict(r) for r in results], report_path)
    return {
        **res.summary(),
        "manifest_sha256": res.manifest_sha256,
        "manifest": res.manifest,
        "report": res.report_dict(),
    }


@flow(name="densemark-build-chunks", log_prints=True)
def build_chunks_flow(
    model: ModelParams,
    build: BuildParams,
    splits: SplitParams,
    flows: FlowParams,
    io: dict,
    report_path: str | None,
) -> dict:
    """Plan, map `write_chunk` over the chunks on this flow's task runner, finish."""
    t0 = time.perf_counter()
    plan = plan_task.with_options(retries=flows.retries, retry_delay_seconds=flows.retry_delay_s)(
        model, build, splits, io
    )
    for note in plan.notes:
        print(f"build: note: {note}")
    opts = dict(retries=flows.retries, retry_delay_seconds=flows.retry_delay_s)
    # each task gets its own chunks of the plan, never the whole plan
    groups = chunk_groups(plan.n_chunks, flows)
    cuts = [[plan.for_chunk(k) for k in g] for g in groups]
    futures = chunk_task.with_options(**opts).map(cuts, groups) if groups else []
    results = [r for f in futures for r in f.result()]
    res = finish_task.with_options(**opts)(plan, results, report_path)
    print(f"build: {res['report']['counts']} in {time.perf_counter() - t0:.1f} s")
    return res


def _dask_build(
    p: Params, io: dict[str, Path], runner: dict[str, Any] | None = None
) -> BuildResult:
    """Runner of the `build` stage with its chunks on Dask (`runner`: the `flows` section)."""
    fp = FlowParams.model_validate(runner or {})
    at = {
        k: os.path.abspath(v) for k, v in io.items()
    }  # Dask workers may run in another folder (the build records no folder)
    paths = BuildPaths(
        model_dir=at["model_dir"],
        template_dir=at["template"],
        set_path=at["set"],
        source_dir=at["source"],
        out_dir=at["out"],
    )
    report = at.get("report")
    with _quiet_dask():
        res = build_chunks_flow.with_options(task_runner=task_runner(fp))(
            p.model, p.build, p.splits, fp, asdict(paths), report
        )
    manifest = Manifest.from_dict(res["manifest"], sha256=res["manifest_sha256"])
    return BuildResult(
        outputs={k: Path(v) for k, v in res["outputs"].items()},
        report=res["report"],
        metrics=manifest.metrics(),
        value=manifest,
    )


# The `build` stage of the registry (its inputs, outputs, params, cache key), its chunks on Dask.
DASK_BUILD = replace(
    STAGES["build"], function="densemark.flows.build:build_chunks_flow", runner=_dask_build
)


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """Keep distributed's chatter out of the run's log: its INFO lines, and the closed-comm
    tracebacks its workers, nanny and batched streams log while a cluster shuts down (the
    normal end of a cluster). Task failures still reach the run through the task states."""
    import distributed  # noqa: F401 - its import sets its loggers' levels: set ours after it

    levels = {"distributed": logging.WARNING, **dict.fromkeys(
        ("distributed.comm", "distributed.core", "distributed.worker", "distributed.nanny", "distributed.batched", "distributed.scheduler"), logging.CRITICAL)}  # fmt: skip
    saved = {n: logging.getLogger(n).level for n in levels}
    for n, lvl in levels.items():
        logging.getLogger(n).setLevel(lvl)
    try:
        yield
    finally:
        for n, lvl in saved.items():
            logging.getLogger(n).setLevel(lvl)


@flow(name="densemark-build", log_prints=True)
def build_flow(
    params_path: str = "params.yaml",
    root: str | None = None,
    overrides: Sections | None = None,
    source: str | None = None,
    landmark_set: str | None = None,
    out: str | None = None,
) -> dict:
    """The `build` stage of `dvc.yaml` (`densemark build`), its chunks spread over a Dask cluster.

    Args:
        params_path: the params file (sections `model`, `build`, `splits`, `flows`).
        root: folder the layout's paths are relative to (default: the params file's folder).
        overrides: params sections merged over the params file (only the keys given).
        source: 300W-LP-format source folder (default `data/sources/300wlp`).
        landmark_set: landmark-set file (default `landmarks/embedded-520.json`).
        out: dataset folder (default `data/dataset`).

    Returns:
        The `build` stage's summary (`outputs`, `metrics`, `notes`), its `state` and
        `manifest_sha256`.
    """
    p, base = load(params_path, overrides, root)
    return run_build_stage(p, base, source=source, set=landmark_set, out=out)


def run_build_stage(p: Params, base: Path, **paths: str | None) -> dict:
    """The `build` stage task (Dask runner) on the registry's paths under `base`; publishes
    the build's artifacts when it ran."""
    kw = stage_call("build", p, base, **paths)
    with in_root(base):
        res, state, seconds = timed_call(
            DASK_BUILD, p.flows, **kw, runner=p.flows.model_dump(mode="json")
        )
    res = absolute(res, base)
    manifest = Manifest.load(res["outputs"]["dataset"])
    if state != "Cached":
        report = json.loads(Path(res["outputs"]["report"]).read_text(encoding="utf-8"))
        publish_build(manifest, report, Path(res["outputs"]["dataset"]))
    return {**res, "state": state, "seconds": seconds, "manifest_sha256": str(manifest.sha256)}


def publish_build(manifest: Manifest, report: dict, out: Path) -> None:
    """Prefect artifacts of a build: counts table, quarantine table, summary."""
    sha = str(manifest.sha256)
    rows = [
        {"group": g, "value": v, "rows": n}
        for g in ("subset", "split", "flip", "subset_split", "valid")
        for v, n in manifest.counts.get(g, {}).items()
    ]
    create_table_artifact(
        rows, key="densemark-build-counts", description=f"rows of dataset {sha[:12]}"
    )
    q = report.get("quarantine", [])
    create_table_artifact(
        q or [{"sample": "", "file": "", "field": "", "error": "(none)"}],
        key="densemark-quarantine",
        description=f"{len(q)} quarantined samples",
    )
    create_markdown_artifact(
        f"# Dataset build\n\n`{out}`: **{manifest.rows} rows** from {manifest.source_samples} source samples, "
        f"{manifest.quarantined} quarantined, {len(manifest.files)} shard files.\n\n"
        f"Manifest sha256 `{sha}`; landmark set `{manifest.landmark_set['name']}` ({manifest.landmark_set['n_points']} points).\n",
        key="densemark-build",
        description="dataset build summary",
    )

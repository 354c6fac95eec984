"""Flow ``build``: the dataset build distributed over a Dask cluster.

``plan_build`` cuts the source into the plan's chunks; ``write_chunk`` is mapped over them on
a ``prefect-dask`` ``DaskTaskRunner`` (an existing cluster at ``flows.address``, else a
``LocalCluster`` of ``flows.n_workers``); ``finish_build`` writes the manifest and report. The
shards are byte-identical to ``densemark build`` / :func:`densemark.datasets.build.run_build`:
the chunks and their contents come from the plan, never from the runner.

Resume is the build's own: each chunk task calls ``write_chunk``, which returns a chunk already
on disk for the same fingerprint without writing it again
(:func:`densemark.datasets.chunks.chunk_done`); the chunk tasks keep no result cache of their
own, so a lost or changed shard is always rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from densemark.datasets.build import finish_build
from densemark.datasets.chunks import ChunkResult, write_chunk
from densemark.datasets.manifest import Manifest
from densemark.datasets.params import BuildParams, SplitParams
from densemark.datasets.plan import BuildPaths, BuildPlan, plan_build
from densemark.faces.params import ModelParams
from densemark.flows.common import LAYOUT, in_root, load, paths, retry_transient
from densemark.flows.params import FlowParams


def task_runner(fp: FlowParams):
    """The ``DaskTaskRunner`` the ``flows`` section asks for (existing cluster or LocalCluster)."""
    from prefect_dask import DaskTaskRunner

    if fp.address:
        return DaskTaskRunner(address=fp.address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": fp.n_workers, "threads_per_worker": fp.threads_per_worker,
                        "processes": fp.processes, "dashboard_address": None},
    )  # fmt: skip


@task(name="plan", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_transient)
def plan_task(model: ModelParams, build: BuildParams, splits: SplitParams, io: dict) -> BuildPlan:
    """:func:`plan_build` (runs every time: it also clears a killed run's temp files)."""
    return plan_build(model, build, splits, BuildPaths(**io))


@task(name="write_chunk", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_transient)
def chunk_task(plan: BuildPlan, k: int) -> dict:
    """:func:`write_chunk` for chunk ``k`` (returns the chunk on disk when it is already written)."""
    return write_chunk(plan, k).to_dict()


@task(name="finish", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_transient)
def finish_task(plan: BuildPlan, results: list[dict], report_path: str | None) -> dict:
    """:func:`finish_build`: manifest + run report."""
    res = finish_build(plan, [ChunkResult.from_dict(r) for r in results], report_path)
    return {"manifest_sha256": res.manifest_sha256, "manifest": res.manifest, "report": res.report.to_dict()}


@flow(name="build-chunks")
def build_chunks_flow(model: ModelParams, build: BuildParams, splits: SplitParams, flows: FlowParams, io: dict, report_path: str | None) -> dict:
    """Plan, map ``write_chunk`` over the chunks on this flow's task runner, finish."""
    plan = plan_task.with_options(retries=flows.retries, retry_delay_seconds=flows.retry_delay_s)(model, build, splits, io)
    for note in plan.notes:
        print(f"build: note: {note}")
    opts = dict(retries=flows.retries, retry_delay_seconds=flows.retry_delay_s)
    ks = list(range(plan.n_chunks))  # each task gets its own chunk of the plan, never the whole plan
    futures = chunk_task.with_options(**opts).map([plan.for_chunk(k) for k in ks], ks) if ks else []
    results = [f.result() for f in futures]
    return finish_task.with_options(**opts)(plan, results, report_path)


@flow(name="build", log_prints=True)
def build_flow(
    params_path: str = "params.yaml",
    root: str | None = None,
    overrides: dict | None = None,
    source: str | None = None,
    landmark_set: str | None = None,
    out: str | None = None,
) -> dict:
    """The dataset build of ``densemark build``, its chunks spread over a Dask cluster.

    Args:
        params_path: the params file (sections ``model``, ``build``, ``splits``, ``flows``).
        root: folder the layout's paths are relative to (default: the params file's folder).
        overrides: ``{section: {key: value}}`` merged over the params file.
        source: 300W-LP-format source folder (default ``data/sources/300wlp``).
        landmark_set: landmark-set file (default ``landmarks/embedded-520.json``).
        out: dataset folder (default ``data/dataset``).

    Returns:
        ``{"manifest_sha256", "manifest", "report"}``.
    """
    p, base = load(params_path, overrides, root)
    rel = lambda v, key: base / (v or LAYOUT[key])  # noqa: E731
    io = paths({
        "model_dir": base / p.model.dir, "template_dir": base / LAYOUT["template"], "set_path": rel(landmark_set, "chosen"),
        "source_dir": rel(source, "300wlp"), "out_dir": rel(out, "dataset"),
    })  # fmt: skip
    report_path = os.fspath(base / LAYOUT["reports"] / "build.json")
    sub = build_chunks_flow.with_options(task_runner=task_runner(p.flows))
    with in_root(base):
        res = sub(p.model, p.build, p.splits, p.flows, io, report_path)
    publish_build(Manifest.from_dict(res["manifest"], sha256=res["manifest_sha256"]), res["report"], Path(io["out_dir"]))
    return res


def publish_build(manifest: Manifest, report: dict, out: Path) -> None:
    """Prefect artifacts of a build: counts table, quarantine table, summary."""
    sha = str(manifest.sha256)
    rows = [{"group": g, "value": v, "rows": n} for g in ("subset", "split", "flip", "subset_split", "valid") for v, n in manifest.counts.get(g, {}).items()]
    create_table_artifact(rows, key="densemark-build-counts", description=f"rows of dataset {sha[:12]}")
    q = report.get("quarantine", [])
    create_table_artifact(
        q or [{"sample": "", "file": "", "field": "", "error": "(none)"}], key="densemark-quarantine", description=f"{len(q)} quarantined samples"
    )
    create_markdown_artifact(
        f"# Dataset build\n\n`{out}`: **{manifest.rows} rows** from {manifest.source_samples} source samples, "
        f"{manifest.quarantined} quarantined, {len(manifest.files)} shard files.\n\n"
        f"Manifest sha256 `{sha}`; landmark set `{manifest.landmark_set['name']}` ({manifest.landmark_set['n_points']} points).\n",
        key="densemark-build",
        description="dataset build summary",
    )

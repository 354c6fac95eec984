"""What every flow shares: loading params relative to a root, stage tasks, calling them.

A stage task is the Prefect task of one stage of the registry (:data:`densemark.pipeline.STAGES`),
named after it: ``task(paths: {name: path}, sections: {section: params}, extra) -> StageResult
summary`` (``{"outputs", "metrics", "notes"}``). It runs :meth:`Stage.run`, the call the CLI and
``dvc.yaml`` make. Its result is persisted as JSON and cached under the sha256 of its input
files, parameters and code (:mod:`densemark.flows.keys`; the inputs and the code parts come from
the registry); a task whose outputs are missing or no longer those the cached run wrote is rerun
even on a cache hit. Failures are retried ``flows.retries`` times, except bad input
(:class:`~densemark.core.errors.DensemarkError`), which fails at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from prefect import task
from prefect.states import State

from densemark.config import Params, load_params
from densemark.core.errors import DensemarkError
from densemark.flows.keys import stage_key, stamp_matches, write_stamp
from densemark.flows.overrides import Sections, as_dict
from densemark.flows.params import FlowParams
from densemark.pipeline import LAYOUT, STAGES, Stage

__all__ = [
    "LAYOUT",
    "call",
    "in_root",
    "load",
    "options",
    "paths",
    "retry_transient",
    "stage_call",
    "stage_task",
    "submit",
    "timed_call",
]


def load(
    params_path: str | os.PathLike,
    overrides: Sections | dict | None = None,
    root: str | os.PathLike | None = None,
) -> tuple[Params, Path]:
    """Params from ``params_path`` (+ overrides, validated first) and the absolute root folder of the pipeline.

    ``root`` defaults to the folder of ``params_path``. Relative paths inside the params stay
    as written (they are recorded in reports and manifests, which must not depend on who ran
    the stage): a flow runs its stages inside :func:`in_root`, as ``dvc repro`` does.
    """
    base = (Path(root) if root is not None else Path(params_path).parent).resolve()
    over = as_dict(overrides)
    if (
        over and Path(params_path).is_file()
    ):  # nested keys (sample.relax.iterations) merge into the file's, not over them
        try:
            raw = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            raw = {}  # load_params names the file's error
        if isinstance(raw, dict):
            over = {
                k: _deep_merge(raw[k], v)
                if isinstance(v, dict) and isinstance(raw.get(k), dict)
                else v
                for k, v in over.items()
            }
    return load_params(params_path, over), base


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            _deep_merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        )
    return out


@contextmanager
def in_root(root: Path) -> Iterator[Path]:
    """Work in ``root`` (relative params paths resolve there), then return to the previous folder."""
    prev = Path.cwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(prev)


def retry_transient(task, task_run, state: State) -> bool:
    """Retry transient failures only: bad input fails the same way every time."""
    return not isinstance(state.data, DensemarkError)


def call_key(stage: Stage, parameters: dict[str, Any]) -> str:
    """The cache key of one call of a stage task: its input files (from the registry), its
    parameters (paths, sections, extras) and the code parts it runs. ``runner`` (how the task
    runs, e.g. the Dask cluster of the build) is not part of it: it never changes the bytes."""
    parameters = {"extra": None, **{k: v for k, v in parameters.items() if k != "runner"}}
    ins, _ = stage.io(parameters["paths"], _params(parameters["sections"]))
    return stage_key(stage.name, {**parameters, "inputs": ins}, stage.code)


def _params(sections: dict[str, Any]) -> Params:
    return Params.model_validate(sections)


_TASKS: dict[tuple[str, str], Any] = {}


def _stage(stage: str | Stage) -> Stage:
    return STAGES[stage] if isinstance(stage, str) else stage


def stage_task(stage: str | Stage):
    """The Prefect task of a registry stage (a name, or a :class:`Stage` whose runner differs,
    as the build's on Dask); see the module docstring. Made once per stage and function."""
    stage = _stage(stage)
    name = stage.name
    if (name, stage.function) in _TASKS:
        return _TASKS[name, stage.function]

    def run(
        paths: dict[str, str],
        sections: dict[str, Any],
        extra: dict[str, Any] | None = None,
        runner: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        params = _params(sections)
        res = stage.run(
            params, paths, **(extra or {}), **({"runner": runner} if runner is not None else {})
        )
        write_stamp(
            call_key(stage, {"paths": paths, "sections": sections, "extra": extra}),
            stage.io(paths, params)[1],
        )
        return res.summary()

    run.__doc__ = f"`{stage.cmd()}` (`{stage.function}`)."
    _TASKS[name, stage.function] = task(
        run,
        name=name,
        task_run_name=name,
        cache_key_fn=lambda context, parameters: call_key(stage, parameters),
        persist_result=True,
        result_serializer="json",
        retry_condition_fn=retry_transient,
        description=run.__doc__,
    )
    return _TASKS[name, stage.function]


def stage_call(
    name: str, p: Params, base: Path, **overrides: str | os.PathLike | None
) -> dict[str, Any]:
    """The keyword arguments of a call of stage ``name``'s task: its paths as the registry lays
    them out under ``base`` (``overrides`` by key, relative to ``base``), written relative to
    ``base`` (the task runs there), and its params sections."""
    stage = STAGES[name]
    at = {k: _under(v, base) for k, v in stage.paths(p, base).items()}
    at.update({k: _under(base / v, base) for k, v in overrides.items() if v is not None})
    return {"paths": at, "sections": {s: getattr(p, s) for s in stage.sections}}


def _under(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (the task runs in ``base``, as ``dvc repro``
    does, so reports record the paths ``dvc.yaml`` gives), else absolute."""
    path = Path(os.path.abspath(path))
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else os.fspath(path)


def absolute(summary: dict[str, Any], base: Path) -> dict[str, Any]:
    """A stage summary with its output paths made absolute (read from outside ``base``)."""
    return {
        **summary,
        "outputs": {k: os.fspath(base / v) for k, v in summary.get("outputs", {}).items()},
    }


def options(name: str | Stage, fp: FlowParams, **kwargs):
    """Stage task ``name`` with the flow's retry settings, to be called with ``kwargs``.

    Its cache is refreshed (the stage runs) unless its outputs are on disk exactly as the
    cached run left them (:func:`densemark.flows.keys.stamp_matches`).
    """
    stage = _stage(name)
    outs = stage.io(kwargs["paths"], _params(kwargs["sections"]))[1]
    fresh = stamp_matches(call_key(stage, kwargs), outs)
    return stage_task(stage).with_options(
        retries=fp.retries,
        retry_delay_seconds=fp.retry_delay_s,
        refresh_cache=None if fresh else True,
    )


def call(name: str | Stage, fp: FlowParams, **kwargs) -> tuple[dict[str, Any], str]:
    """Run stage ``name``'s task now; returns (its StageResult summary, its final state's name,
    e.g. ``Cached``)."""
    res, state, _ = timed_call(name, fp, **kwargs)
    return res, state


def timed_call(name: str | Stage, fp: FlowParams, **kwargs) -> tuple[dict[str, Any], str, float]:
    """:func:`call`, also returning the wall seconds the task took (cache check included)."""
    t0 = time.perf_counter()
    state = options(name, fp, **kwargs)(**kwargs, return_state=True)
    return state.result(), state.name, time.perf_counter() - t0


def submit(name: str | Stage, fp: FlowParams, **kwargs):
    """Submit stage ``name``'s task to the flow's task runner; returns its future."""
    return options(name, fp, **kwargs).submit(**kwargs)


def paths(d: dict[str, Any]) -> dict[str, str]:
    """``{name: path}`` as strings (task parameters stay JSON-able)."""
    return {k: os.fspath(v) for k, v in d.items() if v is not None}


def run_stages(
    names: list[str] | tuple[str, ...],
    p: Params,
    base: Path,
    paths_of: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the stage tasks ``names`` in order on the registry's paths under ``base`` (inside it,
    as ``dvc repro`` runs them; ``paths_of[name]`` overrides paths of a stage).

    Returns:
        ``{stage: {"state": "Completed" | "Cached", "seconds": wall time, "result": summary}}``.
    """
    done: dict[str, dict[str, Any]] = {}
    with in_root(base):
        for name in names:
            res, state, seconds = timed_call(
                name, p.flows, **stage_call(name, p, base, **(paths_of or {}).get(name, {}))
            )
            print(f"{name}: {state} in {seconds:.1f} s")
            done[name] = {"state": state, "seconds": seconds, "result": absolute(res, base)}
    return done

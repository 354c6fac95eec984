"""What every flow shares: loading params relative to a root, stage tasks, calling them.

A stage task is a thin Prefect task over one stage function (the same function the CLI and
``dvc.yaml`` call): ``task(inputs: {name: path}, outputs: {name: path}, <sections>...) ->
JSON-able summary``. Its result is persisted as JSON and cached under the sha256 of its input
files, parameters and code (:mod:`densemark.flows.keys`); a task whose outputs are missing or
no longer those the cached run wrote is rerun even on a cache hit. Failures are retried
``flows.retries`` times, except bad input (:class:`~densemark.core.errors.DensemarkError`),
which fails at once.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import task
from prefect.states import State

from densemark.config import Params, load_params
from densemark.core.errors import DensemarkError
from densemark.flows.keys import keyed_by_inputs, stage_key, stamp_matches, write_stamp
from densemark.flows.params import FlowParams

# Where each stage writes, relative to the root (the folder of params.yaml); as in dvc.yaml.
LAYOUT = {
    "template": "data/template",
    "300wlp": "data/sources/300wlp",
    "aflw2000": "data/sources/aflw2000",
    "sampled": "data/landmarks/sampled.json",
    "chosen": "landmarks/embedded-520.json",
    "dataset": "data/dataset",
    "card": "data/card",
    "reports": "reports",
}


def load(params_path: str | os.PathLike, overrides: dict | None = None, root: str | os.PathLike | None = None) -> tuple[Params, Path]:
    """Params from ``params_path`` (+ overrides) and the absolute root folder of the pipeline.

    ``root`` defaults to the folder of ``params_path``. Relative paths inside the params stay
    as written (they are recorded in reports and manifests, which must not depend on who ran
    the stage): a flow runs its stages inside :func:`in_root`, as ``dvc repro`` does.
    """
    base = (Path(root) if root is not None else Path(params_path).parent).resolve()
    return load_params(params_path, overrides), base


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


_CODE: dict[str, tuple[str, ...]] = {}  # task name -> the package parts its cache key covers


def stage_task(name: str, *code: str):
    """Decorator: a Prefect task over a stage function (see the module docstring).

    The function must take ``inputs`` and ``outputs`` (``{name: path}``) and its sections as
    keyword arguments. After it runs, its outputs are stamped under its cache key
    (:func:`densemark.flows.keys.write_stamp`).

    Args:
        name: task name (also part of the cache key).
        code: the package parts the stage runs (their sources are part of the cache key).
    """
    _CODE[name] = code

    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            bound = sig.bind(*args, **kwargs).arguments
            res = fn(*args, **kwargs)
            write_stamp(stage_key(name, bound, code), bound["outputs"])
            return res

        return task(
            run,
            name=name,
            cache_key_fn=keyed_by_inputs(*code),
            persist_result=True,
            result_serializer="json",
            retry_condition_fn=retry_transient,
        )

    return wrap


def options(t, fp: FlowParams, **kwargs):
    """Stage task ``t`` with the flow's retry settings, to be called with ``kwargs``.

    Its cache is refreshed (the stage runs) unless its outputs are on disk exactly as the
    cached run left them (:func:`densemark.flows.keys.stamp_matches`).
    """
    key = stage_key(t.name, kwargs, _CODE[t.name])
    fresh = stamp_matches(key, kwargs.get("outputs") or {})
    return t.with_options(retries=fp.retries, retry_delay_seconds=fp.retry_delay_s, refresh_cache=None if fresh else True)


def call(t, fp: FlowParams, **kwargs) -> tuple[Any, str]:
    """Run stage task ``t`` now; returns (its result, its final state's name, e.g. ``Cached``)."""
    state = options(t, fp, **kwargs)(**kwargs, return_state=True)
    return state.result(), state.name


def paths(d: dict[str, Any]) -> dict[str, str]:
    """``{name: path}`` as strings (task parameters stay JSON-able)."""
    return {k: os.fspath(v) for k, v in d.items() if v is not None}

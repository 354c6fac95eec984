"""Stage functions of the sampling part: ``(input paths, params) -> StageResult``.

What the CLI, ``dvc.yaml`` and the flows call (through :mod:`densemark.pipeline`). Every file is written atomically; the
landmark-set JSON is byte-stable for the same inputs and parameters.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from densemark.core.atomic import write_json, write_text
from densemark.core.report import StageResult
from densemark.faces.template import FaceTemplate, load_template
from densemark.sampling.compare import compare_sets, plot_sets, report_markdown, set_stats
from densemark.sampling.landmark_set import LandmarkSet
from densemark.sampling.params import SampleParams
from densemark.sampling.sampler import sample_set
from densemark.sampling.seed_import import import_seed

PathLike = str | os.PathLike


def _template(t: PathLike | FaceTemplate) -> FaceTemplate:
    return t if isinstance(t, FaceTemplate) else load_template(t)


def run_sample(
    template_dir: PathLike | FaceTemplate,
    params: SampleParams,
    out_json: PathLike,
    report_json: PathLike | None = None,
    plot_png: PathLike | None = None,
) -> StageResult:
    """Sample a landmark set on the template and write it (plus optional report and plot).

    Returns:
        outputs ``set``, ``report``, ``plot`` (those asked for); report ``{rounds,
        counts, final, set_sha256, stats}`` (no wall times: the same inputs give the same report
        bytes); metrics :func:`sample_metrics`; the :class:`LandmarkSet` as ``value``.
    """
    tpl = _template(template_dir)
    t0 = time.perf_counter()
    ls, rep = sample_set(tpl, params)
    print(
        f"sample: {len(ls)} landmarks in {time.perf_counter() - t0:.2f} s"
    )  # wall time: logs only
    outputs = {"set": ls.save(out_json)}
    rep["set_sha256"] = ls.sha256()
    if report_json is not None or plot_png is not None:
        rep["stats"] = set_stats(tpl, ls)
    if plot_png is not None:
        plot_sets(tpl, [ls], plot_png, title=f"{ls.name}: {len(ls)} landmarks")
        outputs["plot"] = Path(plot_png)
    if report_json is not None:
        outputs["report"] = write_json(report_json, rep)
    return StageResult(outputs=outputs, report=rep, metrics=sample_metrics(rep), value=ls)


def run_compare(
    a: PathLike,
    b: PathLike,
    template_dir: PathLike | FaceTemplate,
    out_md: PathLike | None = None,
    out_png: PathLike | None = None,
    out_json: PathLike | None = None,
) -> StageResult:
    """Compare two set files on the template (both must be for it).

    Returns:
        outputs ``markdown``, ``report``, ``plot`` (those asked for); report
        :func:`compare_sets`; metrics :func:`compare_metrics`; the Markdown text as ``value``.
    """
    tpl = _template(template_dir)
    sa, sb = LandmarkSet.load(a, tpl), LandmarkSet.load(b, tpl)
    rep = compare_sets(tpl, sa, sb)
    md = report_markdown(rep)
    outputs: dict[str, Path] = {}
    if out_md is not None:
        outputs["markdown"] = write_text(out_md, md)
    if out_json is not None:
        outputs["report"] = write_json(out_json, rep)
    if out_png is not None:
        plot_sets(tpl, [sa, sb], out_png, title=f"{sa.name} vs {sb.name}")
        outputs["plot"] = Path(out_png)
    return StageResult(outputs=outputs, report=rep, metrics=compare_metrics(rep), value=md)


def run_import_seed(
    seed_dir: PathLike,
    template_dir: PathLike | FaceTemplate,
    out_json: PathLike,
    *,
    name: str = "basak2023-520",
) -> StageResult:
    """Import the paper's published set (see :mod:`densemark.sampling.seed_import`) and write it.

    Returns:
        output ``set``; report (count, sha256, mirror figures); the set as ``value``.
    """
    tpl = _template(template_dir)
    ls = import_seed(seed_dir, tpl, name=name)
    path = ls.save(out_json)
    r = ls.mirror_residual
    rep = {
        "count": len(ls),
        "sha256": ls.sha256(),
        "mirror_exact": ls.mirror_exact,
        "exact_fraction": float((r == 0).mean()),
        "residual_median": float(sorted(r)[len(r) // 2]),
        "residual_max": float(r.max()),
    }
    return StageResult(outputs={"set": path}, report=rep, value=ls)


def _set_metrics(st: dict) -> dict[str, float | int]:
    """The handful of numbers of one set a user compares between runs (from :func:`set_stats`)."""
    return {
        "count": st["count"],
        "coverage_mean": round(st["coverage"]["mean"], 4),
        "coverage_max": round(st["coverage"]["max"], 4),
        "spacing_median": round(st["spacing_geodesic_nn"]["median"], 4),
        "mirror_exact_fraction": round(st["symmetry"]["exact_fraction"], 4),
        "unpaired": st["symmetry"]["unpaired"],
    }


def sample_metrics(report: dict) -> dict[str, float | int]:
    """DVC metrics of the ``sample`` stage: counts per round and the set's quality figures."""
    m: dict[str, float | int] = {
        "final": report["final"],
        "after_delaunay": report["after_delaunay"],
    }
    if "stats" in report:
        m.update(_set_metrics(report["stats"]))
    return m


def compare_metrics(report: dict) -> dict[str, float | int]:
    """DVC metrics of the ``compare`` stage: both sets' figures and how close they are."""
    m: dict[str, float | int] = {}
    for side in ("a", "b"):
        m.update({f"{side}_{k}": v for k, v in _set_metrics(report[side]).items()})
    m["a_to_b_mean"] = round(report["a_to_b"]["mean"], 4)
    m["b_to_a_mean"] = round(report["b_to_a"]["mean"], 4)
    m["same_ids"] = report["overlap"]["same_ids"]
    return m

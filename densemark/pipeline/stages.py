"""The pipeline's stages, in the order ``dvc repro`` runs them, and where they keep their files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from densemark.core.report import StageResult
from densemark.pipeline.stage import PathLike, Runner, Stage, dep, metrics, out, plot

if TYPE_CHECKING:
    from densemark.config import Params

# Where the pipeline keeps each thing, relative to its root (the folder of params.yaml).
LAYOUT: dict[str, str] = {
    "model": "data/model",
    "template": "data/template",
    "300wlp": "data/sources/300wlp",
    "aflw2000": "data/sources/aflw2000",
    "posmap": "data/posmap/300wlp",
    "sampled": "data/landmarks/sampled.json",
    "chosen": "landmarks/embedded-520.json",
    "dataset": "data/dataset",
    "dataset_sampled": "data/dataset_sampled",
    "card": "data/card",
    "models": "models",
    "checkpoint": "models/model.pt",
    "onnx": "models/model.onnx",
    "predictions": "data/evaluate/predictions_aflw2000.npz",
    "reports": "reports",
    "metrics": "metrics",
}


# ----------------------------------------------------------------------------- stage runners
# Each maps the named paths onto its stage function's arguments; no logic of its own.


def _model(p: Params, io: dict[str, Path]) -> StageResult:
    from densemark.faces.stages import run_model

    return run_model(p.model, p.procedural, io["out"])


def _template(p: Params, io: dict[str, Path]) -> StageResult:
    from densemark.faces.stages import run_template

    return run_template(p.model, io["model_dir"], io["out"], io.get("report"))


def _synthetic(kind: str) -> Runner:
    def run(p: Params, io: dict[str, Path], n: int | None = None, start: int = 0) -> StageResult:
        from densemark.sources.synthetic import run_synthetic

        return run_synthetic(kind, io["model_dir"], p.synthetic, io["out"], n, start=start)

    return run


def _posmap(p: Params, io: dict[str, Path]) -> StageResult:
    from densemark.datasets.posmap import run_posmap

    return run_posmap(p.model, p.posmap, io["model_dir"], io["source"], io["out"], io["report"])


def _sample(p: Params, io: dict[str, Path]) -> StageResult:
    from densemark.sampling.stages import run_sample

    return run_sample(
        io["template"], p.sample, io["out"], report_json=io.get("report"), plot_png=io.get("plot")
    )


def _compare(p: Params, io: dict[str, Path]) -> StageResult:
    from densemark.sampling.stages import run_compare

    return run_compare(
        io["a"],
        io["b"],
        io["template"],
        out_md=io.get("markdown"),
        out_png=io.get("plot"),
        out_json=io.get("report"),
    )


def _build(p: Params, io: dict[str, Path], workers: int | None = None) -> StageResult:
    from densemark.datasets.build import run_build
    from densemark.datasets.plan import BuildPaths

    paths = BuildPaths(
        model_dir=io["model_dir"],
        template_dir=io["template"],
        set_path=io["set"],
        source_dir=io["source"],
        out_dir=io["out"],
    )
    return run_build(
        p.model, p.build, p.splits, paths, report_path=io.get("report"), workers=workers
    )


def _relabel(p: Params, io: dict[str, Path]) -> StageResult:
    from densemark.datasets.relabel import run_relabel

    return run_relabel(
        p.model,
        dataset_dir=io["dataset"],
        set_path=io["set"],
        model_dir=io["model_dir"],
        template_dir=io["template"],
        out_dir=io.get("out"),
    )


def _card(p: Params, io: dict[str, Path]) -> StageResult:
    from densemark.card.card import run_card

    return run_card(
        p.card,
        dataset_dir=io["dataset"],
        set_path=io["set"],
        template_dir=io["template"],
        out_dir=io["out"],
    )


def _train(p: Params, io: dict[str, Path], resume: bool = False) -> StageResult:
    from densemark.train.loop import train_from_dataset

    return train_from_dataset(
        p.train, io["data"], io["out"], io.get("metrics"), io.get("plots"), resume=resume
    )


def _export(p: Params, io: dict[str, Path]) -> StageResult:
    from densemark.train.export import export_onnx

    return export_onnx(io["checkpoint"], io["out"], io.get("report"), p.train.onnx_opset)


def _evaluate(
    p: Params,
    io: dict[str, Path],
    predictions: PathLike | None = None,
    boxes_from: str = "gt",
    detector: str = "auto",
) -> StageResult:
    from densemark.evaluate.stages import run_evaluate

    return run_evaluate(p.evaluate, io["out"], gt_dir=io.get("gt"), predictions=predictions, checkpoint=io.get("checkpoint"),
                        data_dir=io.get("data"), metrics_path=io.get("metrics"), out_predictions=io.get("out_predictions"),
                        boxes_from=boxes_from, detector=detector)  # fmt: skip


# ----------------------------------------------------------------------------- the stages

_M = "model.dir"
_MODEL_IN = dict(param=_M, cli_default=False, help="model folder (default: model.dir)")
_SOURCES = ("core", "faces", "sources")


def _synth_stage(kind: str) -> Stage:
    return Stage(
        f"synth_{kind}", f"synth-{kind}", "densemark.sources.synthetic:run_synthetic", _synthetic(kind),
        (dep("model_dir", LAYOUT["model"], "--model-dir", help="folder written by `densemark model`"),
         out("out", LAYOUT[kind], "--out", help="output folder")),
        params=("synthetic",), code=_SOURCES, cli="densemark/cli/sources.py",
    )  # fmt: skip


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage(
        "model", "model", "densemark.faces.stages:run_model", _model,
        (out("out", LAYOUT["model"], "--out", param=_M, cli_default=False, help="model folder (default: model.dir)"),
         metrics("metrics/model.json", help="metrics JSON for DVC")),
        params=("model", "procedural"), code=("core", "faces"), cli="densemark/cli/faces.py",
        checks_only=lambda p: p.model.source != "embedded",
    ),
    Stage(
        "template", "template", "densemark.faces.stages:run_template", _template,
        (dep("model_dir", LAYOUT["model"], "--model-dir", **_MODEL_IN),
         out("out", LAYOUT["template"], "--out", help="template folder (PRNet format)"),
         out("report", "reports/template.json", "--report", cli_default=False, help="run report JSON"),
         metrics("metrics/template.json", help="metrics JSON for DVC (vertex and triangle counts)")),
        params=("model",), code=("core", "faces"), cli="densemark/cli/faces.py",
    ),
    _synth_stage("300wlp"),
    _synth_stage("aflw2000"),
    Stage(
        "posmap", "posmap", "densemark.datasets.posmap:run_posmap", _posmap,
        (dep("model_dir", LAYOUT["model"], "--model-dir", **_MODEL_IN),
         dep("source", LAYOUT["300wlp"], "--source", help="folder of <id>.jpg + <id>.mat samples"),
         out("out", LAYOUT["posmap"], "--out", help="crops + position maps folder"),
         out("report", "reports/posmap.json", "--report", help="run report JSON (counts, quarantine list)"),
         metrics("metrics/posmap.json", help="metrics JSON for DVC (sample and quarantine counts)")),
        params=("model", "posmap"), code=(*_SOURCES, "datasets"), cli="densemark/cli/datasets.py",
    ),
    Stage(
        "sample", "sample", "densemark.sampling.stages:run_sample", _sample,
        (dep("template", LAYOUT["template"], "--template", help="template folder (PRNet format)"),
         out("out", LAYOUT["sampled"], "--out", help="landmark-set JSON to write"),
         out("report", "reports/sample.json", "--report", cli_default=False, help="report JSON to write"),
         metrics("metrics/sample.json", help="metrics JSON for DVC (counts, coverage, spacing, symmetry)"),
         plot("plot", "reports/sample.png", "--plot", help="PNG of the set on the template")),
        params=("sample",), code=("core", "faces", "sampling"), cli="densemark/cli/sampling.py",
    ),
    Stage(
        "compare", "landmarks compare", "densemark.sampling.stages:run_compare", _compare,
        (dep("a", LAYOUT["chosen"], help="landmark-set JSON A"),
         dep("b", LAYOUT["sampled"], help="landmark-set JSON B"),
         dep("template", LAYOUT["template"], "--template", help="template folder"),
         out("markdown", "reports/compare.md", "--out-md", cli_default=False, help="Markdown report to write"),
         out("report", "reports/compare.json", "--out-json", cli_default=False, help="JSON report to write"),
         metrics("metrics/compare.json", help="metrics JSON for DVC (both sets' figures, cross distances)"),
         plot("plot", "reports/compare.png", "--plot", help="PNG of both sets (UV and frontal views)")),
        code=("core", "faces", "sampling"), cli="densemark/cli/sampling.py",
        doc="The chosen set the dataset uses is a tracked input (landmarks/, in git): here it is checked\n"
            "against the template (hash, ids, 68 subset, mirror permutation) and compared with the\n"
            "sampler's current output.",
    ),
    Stage(
        "build", "build", "densemark.datasets.build:run_build", _build,
        (dep("model_dir", LAYOUT["model"], "--model-dir", in_cmd=False, **_MODEL_IN),
         dep("template", LAYOUT["template"], "--template", help="face template folder the landmark set indexes"),
         dep("source", LAYOUT["300wlp"], "--source", help="300W-LP-format source folder"),
         dep("set", LAYOUT["chosen"], "--set", help="landmark set JSON"),
         out("out", LAYOUT["dataset"], "--out", help="dataset folder (manifest.json, shards, report.json)"),
         out("report", "reports/build.json", "--report", cli_default=False, help="also write the run report here"),
         metrics("metrics/build.json", help="metrics JSON for DVC (row, sample and quarantine counts)")),
        params=("model", "build", "splits"), code=("core", "faces", "sampling", "sources", "datasets"),
        argv=("model_dir", "template", "set", "source", "out", "report", "metrics"),
        cli="densemark/cli/datasets.py",
        doc="The dataset: crops + labels of the chosen set in Parquet/HDF5 shards, manifest.json (counts,\n"
            "hashes) and report.json (quarantine list).",
    ),
    Stage(
        "relabel", "relabel", "densemark.datasets.relabel:run_relabel", _relabel,
        (dep("dataset", LAYOUT["dataset"], help="dataset folder"),
         dep("model_dir", LAYOUT["model"], "--model-dir", in_cmd=False, **_MODEL_IN),
         dep("template", LAYOUT["template"], "--template", help="template folder the set indexes"),
         dep("set", LAYOUT["sampled"], "--set", help="landmark set JSON"),
         out("out", LAYOUT["dataset_sampled"], "--out", cli_default=False,
             help="write a relabelled copy here (default: in place)")),
        params=("model",), code=("core", "faces", "sampling", "datasets"), cli="densemark/cli/datasets.py",
        argv=("dataset", "model_dir", "set", "template", "out"),
        doc="Labels of another set (the sampler's current output) added from the stored fits, no re-rendering.",
    ),
    Stage(
        "card", "card", "densemark.card.card:run_card", _card,
        (dep("dataset", LAYOUT["dataset"], "--dataset", help="build folder (manifest.json, report.json, shards)"),
         dep("template", LAYOUT["template"], "--template", help="template folder the set indexes"),
         dep("set", LAYOUT["chosen"], "--set", help="the build's landmark-set file"),
         out("out", LAYOUT["card"], "--out", help="card folder (README.md, card.json, PNGs)")),
        params=("card",), code=("core", "faces", "sampling", "card"), cli="densemark/cli/card.py",
        argv=("dataset", "set", "template", "out"),
        doc="The dataset card (Hugging Face-style header + Datasheets sections, JSON twin, figures),\n"
            "generated from the build's manifest, report, shards and landmark-set file.",
    ),
    Stage(
        "train", "train", "densemark.train.loop:train_from_dataset", _train,
        (dep("data", LAYOUT["dataset"], "--data", help="dataset folder (manifest.json + shards)"),
         out("out", LAYOUT["models"], "--out", files=("model.pt", "checkpoint.pt"), help="folder for checkpoint.pt and model.pt"),
         metrics("metrics/train.json", help="last epoch's metrics (JSON)"),
         plot("plots", "reports/train_history.csv", "--plots", plot={"x": "epoch", "y": "train_loss"},
              help="one row per epoch (CSV)")),
        params=("train",), code=("core", "datasets", "train"), cli="densemark/cli/train.py",
        doc="The landmark regressor (params section train; the default is a small CPU configuration,\n"
            "params.yaml names the paper's). model.pt is what evaluate, export and predict load.",
    ),
    Stage(
        "export", "export", "densemark.train.export:export_onnx", _export,
        (dep("checkpoint", LAYOUT["checkpoint"], "--checkpoint", help="the model to export"),
         out("out", LAYOUT["onnx"], "--out", help="the .onnx file"),
         out("report", "reports/export.json", "--report", cli_default=False, help="export report (JSON)")),
        params=("train.onnx_opset",), code=("core", "train"), cli="densemark/cli/train.py",
        doc="ONNX export, checked against PyTorch (densemark model-info prints params, MACs and latency).",
    ),
    Stage(
        "evaluate", "evaluate", "densemark.evaluate.stages:run_evaluate", _evaluate,
        (dep("checkpoint", LAYOUT["checkpoint"], "--checkpoint", cli_default=False, help="our model's checkpoint"),
         dep("gt", LAYOUT["aflw2000"], "--gt", cli_default=False,
             help="AFLW2000-3D folder (image*.jpg + .mat, and/or 3DDFA's arrays in gt/)"),
         dep("data", LAYOUT["dataset"], "--data", cli_default=False, help="dataset build folder: dense NME on evaluate.dense_split"),
         out("out_predictions", LAYOUT["predictions"], "--out-predictions", cli_default=False,
             help="where the model's AFLW2000-3D predictions go (default: OUT/predictions_aflw2000.npz)"),
         out("out", "reports/evaluate", "--out", help="folder for report.json, results.md, ced.png"),
         metrics("metrics/evaluate.json", help="DVC metrics JSON (default: OUT/metrics.json)")),
        params=("evaluate",), code=("core", "faces", "sources", "datasets", "train", "evaluate"), cli="densemark/cli/evaluate.py",
        argv=("checkpoint", "gt", "data", "out", "metrics", "out_predictions"),
        doc="AFLW2000-3D by 3DDFA's protocol (here the synthetic AFLW2000-3D source) and the dense NME\n"
            "on the dataset's held-out split; any other predictor: densemark evaluate --predictions FILE --gt DIR",
    ),
)}  # fmt: skip

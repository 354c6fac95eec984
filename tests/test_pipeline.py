"""The stage registry is the one place stages are wired: dvc.yaml, the CLI and the flows agree with it."""

from __future__ import annotations

import importlib
import shlex
import typing
from pathlib import Path

import pytest
import yaml

from densemark.cli import build_parser
from densemark.config import Params, load_params
from densemark.pipeline import LAYOUT, STAGES, dvc_stage, dvc_yaml, paths_from_args

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("cmd", "deps", "params", "outs", "metrics", "plots")


def _committed() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_committed_dvc_yaml_is_the_generated_one_field_by_field():
    committed, generated = _committed(), yaml.safe_load(dvc_yaml())["stages"]
    assert list(committed) == list(generated) == list(STAGES)
    for name, stage in committed.items():
        assert set(stage) <= set(FIELDS), (
            f"{name}: fields the registry does not write: {set(stage) - set(FIELDS)}"
        )
        for f in FIELDS:
            assert stage.get(f) == generated[name].get(f), (
                f"dvc.yaml: {name}.{f} differs from the registry (run `densemark dvc-yaml`)"
            )
    # and byte for byte, comments included: the file is never edited by hand
    assert (ROOT / "dvc.yaml").read_text(encoding="utf-8") == dvc_yaml()


def test_dvc_stage_reads_every_declared_path():
    d = dvc_stage(STAGES["train"])
    assert d["outs"] == [
        "models/model.pt",
        "models/checkpoint.pt",
    ]  # files of the folder, not the folder
    assert d["plots"] == [{"reports/train_history.csv": {"x": "epoch", "y": "train_loss"}}]
    assert d["metrics"] == [{"metrics/train.json": {"cache": False}}]
    b = dvc_stage(STAGES["build"])
    assert (
        "data/model" in b["deps"] and "--model-dir" not in b["cmd"]
    )  # read through model.dir, tracked all the same
    assert b["cmd"].startswith(
        "densemark build --template data/template --set landmarks/embedded-520.json"
    )


def test_the_dvc_yaml_command_writes_and_checks(tmp_path):
    from densemark.cli import main

    out = tmp_path / "dvc.yaml"
    assert main(["dvc-yaml", "--check", "--out", str(out)]) == 1  # missing
    assert main(["dvc-yaml", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == dvc_yaml()
    assert main(["dvc-yaml", "--check", "--out", str(out)]) == 0
    out.write_text(dvc_yaml().replace("data/template", "data/tpl"), encoding="utf-8")
    assert main(["dvc-yaml", "--check", "--out", str(out)]) == 1


@pytest.mark.parametrize("name", list(STAGES))
def test_each_dvc_command_parses_to_the_registry_paths(name):
    """``dvc.yaml``'s command line, parsed by the CLI, names exactly the stage's pipeline paths;
    without path options the CLI falls back to the same paths (or to the params key bound to one)."""
    stage = STAGES[name]
    params = load_params(ROOT / "params.yaml")
    argv = shlex.split(stage.cmd())[1:]
    parser = build_parser()
    want = {k: str(v) for k, v in stage.paths(params).items()}
    got = {
        k: str(v)
        for k, v in paths_from_args(stage, parser.parse_args(argv), params).items()
        if v is not None
    }
    assert got == want
    bare = paths_from_args(stage, parser.parse_args(stage.command.split()), params)
    for s in stage.slots:
        if s.cli_default or s.param:
            assert str(bare[s.key]) == s.path, (
                f"{name}: --{s.key} defaults to {bare[s.key]}, the pipeline keeps {s.path}"
            )
        else:
            assert bare[s.key] is None, f"{name}: side file {s.key} written without being asked for"


def test_the_registry_names_what_exists():
    params = Params()
    for name, stage in STAGES.items():
        for section in stage.sections:
            assert section in Params.model_fields, f"{name}: unknown params section {section}"
        for p in stage.params:
            obj = params
            for part in p.split("."):
                obj = getattr(obj, part)  # a missing key raises
        for part in stage.code:
            assert (ROOT / "densemark" / part).is_dir(), f"{name}: no package part {part}"
        assert (ROOT / stage.cli).is_file(), f"{name}: no CLI module {stage.cli}"
        assert len({s.key for s in stage.slots}) == len(stage.slots), (
            f"{name}: two paths share a key"
        )
        module, func = stage.function.split(":")
        assert callable(getattr(importlib.import_module(module), func)), stage.function
    # the params file binds the model folder where the pipeline keeps it
    assert str(load_params(ROOT / "params.yaml").model.dir) == LAYOUT["model"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_function_returns_a_stage_result(name):
    from densemark.core.report import StageResult

    module, func = STAGES[name].function.split(":")
    fn = getattr(importlib.import_module(module), func)
    ret = typing.get_type_hints(fn)["return"]
    assert isinstance(ret, type) and issubclass(ret, StageResult), STAGES[name].function


def test_flow_tasks_are_the_registry_stages_named_after_them():
    from densemark.flows.common import stage_task

    names = {n: stage_task(n).name for n in STAGES}
    assert names == {n: n for n in STAGES}
    assert stage_task("sample") is stage_task("sample")


def test_io_splits_inputs_outputs_and_a_checked_model(tmp_path):
    st = STAGES["model"]
    p = Params()
    paths = st.paths(p, tmp_path)
    assert st.io(paths, p) == (
        {},
        {"out": str(tmp_path / "data/model"), "metrics": str(tmp_path / "metrics/model.json")},
    )
    real = Params(model={"source": "bfm", "dir": "elsewhere"})
    ins, outs = st.io(st.paths(real, tmp_path), real)
    assert (
        ins["out"] == str(tmp_path / "elsewhere") and outs == {}
    )  # a real model is read, not written
    ins, outs = STAGES["train"].io(STAGES["train"].paths(p, tmp_path))
    assert set(outs) == {"out/model.pt", "out/checkpoint.pt", "metrics", "plots"} and set(ins) == {
        "data"
    }
    ins, outs = STAGES["template"].io({"model_dir": "m", "out": "t", "report": None})
    assert (ins, outs) == (
        {"model_dir": "m"},
        {"out": "t"},
    )  # side files not asked for are not stamped

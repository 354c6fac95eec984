"""ONNX export agrees with PyTorch; model facts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from densemark.core.errors import InputError
from densemark.train.export import check_onnx, export_onnx, model_info, onnx_bytes, ort_session
from densemark.train.models import create_model
from tests.conftest import CHECKPOINT_POINTS

pytestmark = pytest.mark.usefixtures("torch_one_thread")

pytest.importorskip("onnxruntime")


def test_export_writes_a_graph_that_agrees(tmp_path, checkpoint):
    res = export_onnx(checkpoint, tmp_path / "m.onnx", tmp_path / "export.json")
    rep = res.report
    assert json.loads((tmp_path / "export.json").read_text()) == rep and res.outputs == {
        "onnx": tmp_path / "m.onnx",
        "report": tmp_path / "export.json",
    }
    assert rep["max_rel_diff"] < 1e-4 and rep["n_points"] == CHECKPOINT_POINTS
    sess = ort_session(tmp_path / "m.onnx")
    out = sess.run(None, {"image": np.zeros((3, 3, 32, 32), np.float32)})[0]
    assert out.shape == (3, 3 * CHECKPOINT_POINTS)  # dynamic batch
    # deterministic: the same weights give the same bytes (graph + densemark metadata)
    export_onnx(checkpoint, tmp_path / "m2.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == (tmp_path / "m2.onnx").read_bytes()
    # the file carries what prediction needs: config and landmark set
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["densemark.config"])["n_points"] == CHECKPOINT_POINTS
    assert "kpt68" in json.loads(meta["densemark.landmark_set"])
    assert (tmp_path / "m.onnx").read_bytes() != onnx_bytes(*_model_and_size(checkpoint))


def _model_and_size(ck):
    from densemark.train.export import load_model

    m, c = load_model(ck)
    return m, c["config"]["input_size"]


def test_check_detects_a_mismatch():
    m = create_model("mobilenetv2", 10, 32, 0.25).eval()
    data = onnx_bytes(m, 32)
    with torch.no_grad():
        m.head.bias.add_(1.0)  # the graph no longer matches the module
    with pytest.raises(InputError, match="differs"):
        check_onnx(m, data, 32)


def test_model_info_fields():
    info = model_info(
        create_model("mobilenetv2", 10, 32, 0.25), 32, repeats=2, baseline=True, max_seconds=5
    )
    assert info["params"] > 0 and info["macs"] > 0 and info["torch_ms"] > 0 and info["onnx_ms"] > 0
    assert info["torch_p90_ms"] >= info["torch_ms"] and info["onnx_p90_ms"] >= info["onnx_ms"]
    # the re-implemented 3DDFA_V2 MobileNet v1 x0.5 @120: 62 outputs, about 46 MMac
    assert info["baseline_onnx_ms"] > 0 and 45e6 < info["baseline_macs"] < 48e6


def test_interleaved_latency_rotates_and_settles():
    from densemark.train.timing import interleaved_latency, mobilenet_v1_3ddfa

    calls = []
    res = interleaved_latency({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                              min_calls=20, block=5, min_rounds=4, warmup=0, max_seconds=10)  # fmt: skip
    assert (
        res["a"]["calls"] == res["b"]["calls"] >= 20 and res["a"]["p90_ms"] >= res["a"]["median_ms"]
    )
    # rounds alternate which one goes first
    firsts = [calls[i] for i in range(0, len(calls), 10)]
    assert firsts[:4] == ["a", "b", "a", "b"]
    m = mobilenet_v1_3ddfa()
    assert m(torch.zeros(1, 3, 120, 120)).shape == (1, 62)


def test_export_and_model_info_commands(tmp_path, checkpoint, capsys):
    from densemark.cli import main

    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "m.onnx"),
                "--report",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    assert (tmp_path / "m.onnx").stat().st_size > 0
    assert main(["model-info", "--checkpoint", str(checkpoint), "--repeats", "2", "--max-seconds", "2", "--no-baseline",
                 "--json", str(tmp_path / "i.json")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "params" in out and "onnx_ms" in out and "onnx_p90_ms" in out and "baseline" not in out
    assert main(["model-info", "--backbone", "resnet18", "--width", "0.25", "--input-size", "64", "--n-points", "5",
                 "--repeats", "2", "--max-seconds", "2", "--json", str(tmp_path / "r.json")]) == 0  # fmt: skip
    info = json.loads((tmp_path / "r.json").read_text())
    assert (
        info["backbone"] == "resnet18" and info["input_size"] == 64 and info["baseline_onnx_ms"] > 0
    )
    from densemark.train.models import count_params

    assert info["params"] == count_params(create_model("resnet18", 5, 64, 0.25))
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(tmp_path / "missing.pt"),
                "--out",
                str(tmp_path / "x.onnx"),
            ]
        )
        == 2
    )


def test_wrong_model_file_types_give_clear_errors(tmp_path, checkpoint, capsys):
    from densemark.cli import main

    export_onnx(checkpoint, tmp_path / "m.onnx")
    # an ONNX file where a checkpoint is needed: said so, no torch advice
    assert (
        main(
            ["export", "--checkpoint", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "x.onnx")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "ONNX model, not a PyTorch checkpoint" in err and "weights_only" not in err
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    img = tmp_path / "p.jpg"
    img.write_bytes(b"\xff\xd8")
    assert (
        main(["predict", str(img), "--checkpoint", str(other), "--out", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert "not a densemark model" in err and "notes.txt" in err and "weights_only" not in err
    npz = tmp_path / "arrays.npz"  # a zip, but not a checkpoint
    np.savez(npz, a=np.zeros(3))
    assert main(["predict", str(img), "--checkpoint", str(npz), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "arrays.npz" in err and "not a readable checkpoint" in err and "weights_only" not in err
    whole = tmp_path / "module.pt"  # a whole pickled module: torch would advise weights_only=False
    torch.save(torch.nn.Linear(2, 2), whole)
    assert (
        main(["predict", str(img), "--checkpoint", str(whole), "--out", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert "module.pt" in err and "not a densemark checkpoint" in err and "weights_only" not in err

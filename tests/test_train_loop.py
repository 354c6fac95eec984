"""Training loop: learns, writes checkpoints and metrics, resumes to the same weights."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from densemark.core.errors import ConfigError, InputError
from densemark.train.loop import load_checkpoint, run_train
from densemark.train.params import TrainParams
from tests.factories import SyntheticLandmarks

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _params(**kw) -> TrainParams:
    base = dict(width=0.25, input_size=32, epochs=2, batch_size=4, workers=0, lr=2e-3)
    return TrainParams(**{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return SyntheticLandmarks(n=12, n_points=24, res=64), SyntheticLandmarks(
        n=4, n_points=24, res=64, seed=1
    )


def test_interrupted_run_resumes_exactly(tmp_path, data, monkeypatch):
    train, val = data
    straight = tmp_path / "straight"
    run_train(_params(), train, straight, val, progress=False)

    part = tmp_path / "part"
    import densemark.train.loop as loop

    real_save = loop._save

    def save_then_stop(path, obj):
        real_save(path, obj)
        if path.name == "checkpoint.pt" and obj["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_train(_params(), train, part, val, progress=False)
    monkeypatch.setattr(loop, "_save", real_save)
    assert not (part / "model.pt").exists()
    run_train(_params(), train, part, val, progress=False, resume=True)

    a = load_checkpoint(straight / "checkpoint.pt")
    b = load_checkpoint(part / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    # and the same bytes: the pickle of a reloaded history equals that of one built in-process
    for name in ("checkpoint.pt", "model.pt"):
        assert (straight / name).read_bytes() == (part / name).read_bytes(), name


def test_checkpoint_contents_metrics_and_plots(tmp_path, data):
    train, val = data
    m, p = tmp_path / "metrics.json", tmp_path / "plots.csv"
    last = run_train(
        _params(epochs=3),
        train,
        tmp_path / "run",
        val,
        metrics_path=m,
        plots_path=p,
        progress=False,
    )
    ck = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ck["config"]["n_points"] == 24 and ck["config"]["input_size"] == 32
    assert ck["landmark_set_sha256"] == train.landmark_set["sha256"]
    assert ck["manifest_sha256"] == train.manifest_sha256
    assert ck["landmark_set"]["kpt68"] == train.landmark_set["kpt68"]
    assert "optimizer" not in ck
    assert json.loads(m.read_text())["epoch"] == 3 == last["epoch"]
    rows = list(csv.DictReader(p.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "val_loss", "val_nme_2d", "val_err3d_px", "lr"} <= set(rows[0])
    # a resume with other params is refused, naming what differs
    with pytest.raises(ConfigError, match="lr"):
        run_train(
            _params(epochs=3, lr=1e-3), train, tmp_path / "run", val, progress=False, resume=True
        )
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.slow
def test_training_reduces_validation_error(tmp_path):
    train = SyntheticLandmarks(n=48, n_points=24, res=64)
    val = SyntheticLandmarks(n=8, n_points=24, res=64, seed=1)
    p = _params(epochs=8, input_size=64, augment={"rotation_deg": 10})
    run_train(p, train, tmp_path / "run", val, progress=False)
    hist = load_checkpoint(tmp_path / "run" / "model.pt")["history"]
    assert hist[-1]["val_err3d_px"] < 0.6 * hist[0]["val_err3d_px"]


def test_train_command_on_a_built_dataset(tmp_path):
    """`densemark train` on real shards (tiny build), two loader workers, then a resume."""
    import yaml

    from densemark.cli import main
    from densemark.datasets import build as B
    from densemark.datasets.torch_data import ShardDataset
    from tests.factories import SPLITS, build_paths, make_world, small_build_params

    w = make_world(tmp_path / "world", n=6)
    B.run_build(
        w["model_params"],
        small_build_params(formats=["parquet"]),
        SPLITS,
        build_paths(w, tmp_path / "ds"),
    )
    params = tmp_path / "params.yaml"
    train = dict(width=0.25, input_size=32, epochs=1, batch_size=4, workers=2, threads=1)
    params.write_text(yaml.safe_dump({"train": train}))
    args = [
        "--params",
        str(params),
        "train",
        "--data",
        str(tmp_path / "ds"),
        "--out",
        str(tmp_path / "m"),
    ]
    assert (
        main([*args, "--metrics", str(tmp_path / "t.json"), "--plots", str(tmp_path / "t.csv")])
        == 0
    )
    ds = ShardDataset(tmp_path / "ds", split="train")
    ck = load_checkpoint(tmp_path / "m" / "model.pt")
    assert ck["manifest_sha256"] == ds.manifest_sha256
    assert (
        ck["landmark_set_sha256"] == ds.landmark_set["sha256"]
        and ck["landmark_set"] == ds.landmark_set
    )
    assert ck["config"]["n_points"] == ds[0]["landmarks"].shape[0]
    # resuming with other params is refused, naming the key
    with pytest.raises(ConfigError, match="epochs"):  # a changed schedule is not the same run
        run_train(
            TrainParams(**{**train, "epochs": 2}), ds, tmp_path / "m", resume=True, progress=False
        )
    empty = tmp_path / "params2.yaml"
    empty.write_text(yaml.safe_dump({"train": {**train, "train_split": "nope"}}))
    assert (
        main(
            [
                "--params",
                str(empty),
                "train",
                "--data",
                str(tmp_path / "ds"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )


def test_two_runs_write_the_same_bytes(tmp_path, data):
    """Same params, same data: model.pt and checkpoint.pt are byte-identical (what dvc.lock records)."""
    train, val = data
    for name in ("a", "b"):
        run_train(_params(epochs=1), train, tmp_path / name, val, progress=False)
    for f in ("model.pt", "checkpoint.pt"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f

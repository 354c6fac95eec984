"""The posmap stage end to end: outputs, quarantine of bad samples, resume, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io as sio
import yaml

from densemark.cli import main
from densemark.faces.io import save_bfm_mat, save_uv_mat
from tests.factories import grid_model, write_fit


def _setup(tmp_path):
    model = grid_model()
    mdir = tmp_path / "model"
    save_bfm_mat(model, mdir / "BFM.mat")
    save_uv_mat(model.uv, mdir / "BFM_UV.mat")
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "source": "bfm",
                    "dir": str(mdir),
                    "cache_dir": str(tmp_path / "cache"),
                    "uv_res": 64,
                },
                "posmap": {"batch": 2},
            }
        )
    )
    src = tmp_path / "src"
    for i in range(3):
        write_fit(src, f"s{i}", [0.1 * i, 0.2, 0.0, 150, 150, 0, 1e-3])
    bad = write_fit(src, "s_bad", [0, 0, 0, 150, 150, 0, 1e-3])
    m = sio.loadmat(bad)
    m["Shape_Para"][3] = np.nan
    sio.savemat(bad, {k: v for k, v in m.items() if not k.startswith("__")})
    (src / "s_trunc.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    return params, src


def _run(params, src, out, rep):
    return main(
        [
            "--params",
            str(params),
            "posmap",
            "--source",
            str(src),
            "--out",
            str(out),
            "--report",
            str(rep),
        ]
    )


def test_posmap_quarantine_resume_determinism(tmp_path):
    params, src = _setup(tmp_path)
    out, rep = tmp_path / "pm", tmp_path / "rep.json"
    assert _run(params, src, out, rep) == 0
    r = json.loads(rep.read_text())
    assert r["counts"]["written"] == 3
    bad = {q["sample"]: q["error"] for q in r["quarantine"]}
    assert len(bad) == 2
    assert any("Shape_Para" in e and "non-finite" in e for e in bad.values())
    assert any("s_trunc.mat" in k for k in bad)
    pm = np.load(out / "s1_posmap.npy")
    assert pm.shape == (64, 64, 3) and pm.dtype == np.float32
    assert pm[..., 2].max() > 0 and pm[..., 2][pm[..., 2] != 0].min() >= 0

    # resume: nothing is redone, nothing lost
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "s2_posmap.npy").unlink()
    assert _run(params, src, out, rep) == 0
    r2 = json.loads(rep.read_text())
    assert r2["counts"]["written"] == 1 and r2["counts"]["skipped_existing"] == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # byte-identical rebuild


def test_bad_fit_in_a_batch_quarantines_only_that_sample(tmp_path):
    params, src = _setup(tmp_path)
    # a scale so small the keypoint box collapses: pose_batch rejects the whole batch
    write_fit(src, "s_tiny", [0, 0, 0, 150, 150, 0, 1e-30])
    out, rep = tmp_path / "pm", tmp_path / "rep.json"
    assert _run(params, src, out, rep) == 0
    r = json.loads(rep.read_text())
    assert r["counts"]["written"] == 3
    bad = {q["sample"]: q["error"] for q in r["quarantine"]}
    assert "degenerate keypoint box" in bad["s_tiny"]
    assert sorted(p.name for p in out.glob("*_posmap.npy")) == [
        f"s{i}_posmap.npy" for i in range(3)
    ]


def test_rerun_with_other_settings_rebuilds_never_mixes(tmp_path):
    params, src = _setup(tmp_path)
    out, rep = tmp_path / "pm", tmp_path / "rep.json"
    assert _run(params, src, out, rep) == 0
    cfg = yaml.safe_load(params.read_text())
    cfg["model"]["uv_res"] = 32
    params.write_text(yaml.safe_dump(cfg))
    assert _run(params, src, out, rep) == 0
    r = json.loads(rep.read_text())
    assert r["counts"]["written"] == 3 and "skipped_existing" not in r["counts"]
    assert {np.load(p).shape for p in out.glob("*_posmap.npy")} == {(32, 32, 3)}
    # batch size is not part of the fingerprint: a rerun with another batch resumes
    cfg["posmap"]["batch"] = 1
    params.write_text(yaml.safe_dump(cfg))
    assert _run(params, src, out, rep) == 0
    assert json.loads(rep.read_text())["counts"]["skipped_existing"] == 3


def test_killed_run_leftovers_are_cleaned_and_foreign_folders_refused(tmp_path, capsys):
    params, src = _setup(tmp_path)
    out, rep = tmp_path / "pm", tmp_path / "rep.json"
    assert _run(params, src, out, rep) == 0
    tmp = out / ".s0_posmap.npy.abc123.tmp"
    tmp.write_bytes(b"half")
    assert _run(params, src, out, rep) == 0
    assert not tmp.exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    assert _run(params, src, foreign, rep) == 2
    assert "not written by the posmap stage" in capsys.readouterr().err
    assert (foreign / "holiday.jpg").exists()


def test_orphan_images_empty_and_all_bad_sources_are_reported(tmp_path, capsys):
    import cv2

    params, src = _setup(tmp_path)
    cv2.imwrite(str(src / "lonely.jpg"), np.zeros((8, 8, 3), np.uint8))
    out, rep = tmp_path / "pm", tmp_path / "rep.json"
    assert _run(params, src, out, rep) == 0
    bad = {q["sample"]: q["error"] for q in json.loads(rep.read_text())["quarantine"]}
    assert any(k.endswith("lonely.jpg") and "without its .mat" in e for k, e in bad.items())

    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(params, empty, tmp_path / "o1", rep) == 2
    assert "no samples" in capsys.readouterr().err

    allbad = tmp_path / "allbad"
    allbad.mkdir()
    (allbad / "x.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    assert _run(params, allbad, tmp_path / "o2", rep) == 1
    assert "no sample of" in capsys.readouterr().err


def test_non_finite_crop_scale_names_key(tmp_path):
    from densemark.config import load_params
    from densemark.core.errors import ConfigError

    p = tmp_path / "params.yaml"
    p.write_text("posmap:\n  crop_scale: .nan\n")
    with pytest.raises(ConfigError, match=r"posmap\.crop_scale: .*finite number"):
        load_params(p)


def _files(folder):
    """The stage's outputs by relative path, subfolders included (the folder's fingerprint stamp, a dot file, aside)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_posmap_bytes_do_not_depend_on_the_batch_size(tmp_path):
    """Batch 1, 7 and 32 write byte-identical maps (no BLAS result reaches the files)."""
    model = grid_model()
    mdir = tmp_path / "model"
    save_bfm_mat(model, mdir / "BFM.mat")
    save_uv_mat(model.uv, mdir / "BFM_UV.mat")
    src = tmp_path / "src"
    rng = np.random.default_rng(5)
    for i in range(9):
        pose = [
            rng.normal(0, 0.2),
            rng.normal(0, 0.6),
            rng.normal(0, 0.1),
            150 + rng.normal(0, 5),
            150,
            0,
            1e-3,
        ]
        write_fit(src, f"s{i}", pose, shape=rng.normal(0, 300, 199), exp=rng.normal(0, 1, 29))
    outs = {}
    for batch in (1, 7, 32):
        params = tmp_path / f"params{batch}.yaml"
        params.write_text(
            yaml.safe_dump(
                {
                    "model": {
                        "source": "bfm",
                        "dir": str(mdir),
                        "cache_dir": str(tmp_path / "cache"),
                        "uv_res": 64,
                    },
                    "posmap": {"batch": batch},
                }
            )
        )
        out = tmp_path / f"pm{batch}"
        assert _run(params, src, out, tmp_path / f"rep{batch}.json") == 0
        outs[batch] = _files(out)
    assert len(outs[1]) == 18
    assert outs[1] == outs[7] == outs[32]


def test_build_bytes_do_not_depend_on_the_openblas_kernel(build_world, tmp_path):
    """A small build in subprocesses under two OpenBLAS kernels (FMA Haswell vs SSE3 Prescott)
    writes byte-identical shards and manifests (float32 BLAS products do differ between them)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.factories import SPLITS, small_build_params

    w = build_world
    mp = w["model_params"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "model": {"source": "bfm", "dir": str(mp.dir), "cache_dir": str(tmp_path / "cache"), "uv_res": mp.uv_res},
        "build": small_build_params(chunk_size=4, batch=3).model_dump(mode="json"), "splits": SPLITS.model_dump(mode="json"),
    }))  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    outs = {}
    for core in ("Haswell", "Prescott"):
        out = tmp_path / core
        cmd = [sys.executable, "-m", "densemark", "--params", str(params), "build", "--template", str(w["template_dir"]),
               "--set", str(w["set_path"]), "--source", str(w["source_dir"]), "--out", str(out)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(root), "OPENBLAS_CORETYPE": core}
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        outs[core] = _files(out)
    assert outs["Haswell"] == outs["Prescott"]

"""Reruns after a kill leave nothing behind: no temp files, the same bytes as an unbroken run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from densemark.core.atomic import remove_stale_temps
from densemark.datasets import build as B
from densemark.datasets import relabel as R
from densemark.datasets.manifest import sidecar_name
from tests.factories import SPLITS, build_paths, small_build_params, tree_sha256

ROOT = Path(__file__).resolve().parents[1]


def test_remove_stale_temps_takes_only_atomic_temps(tmp_path):
    keep = [tmp_path / "part-00000.parquet", tmp_path / ".hidden", tmp_path / "x.tmp"]
    for p in keep:
        p.write_text("x")
    code = (
        "import os, signal, sys\nfrom densemark.core.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('{}')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a.json")],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == -signal.SIGKILL
    stale = [p for p in tmp_path.iterdir() if p.name.startswith(".a.json.")]
    assert len(stale) == 1 and stale[0].suffix == ".tmp" and not (tmp_path / "a.json").exists()
    assert remove_stale_temps(tmp_path) == stale
    assert all(p.exists() for p in keep)


@pytest.mark.slow
def test_killed_relabel_rerun_leaves_no_temp_files(build_world, tmp_path):
    w = build_world
    mp = w["model_params"]
    src = tmp_path / "built"
    B.run_build(mp, small_build_params(), SPLITS, build_paths(w, src))
    clean = tmp_path / "clean"
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "source": "bfm",
                    "dir": str(mp.dir),
                    "cache_dir": str(mp.cache_dir),
                    "uv_res": mp.uv_res,
                }
            }
        )
    )
    cmd = [sys.executable, "-m", "densemark", "--params", str(params), "relabel", str(src), "--set", str(w["set_path"]),
           "--template", str(w["template_dir"]), "--out", None]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([*cmd[:-1], str(clean)], env=env, check=True, capture_output=True)  # unbroken
    for trial, delay in enumerate((0.0, 1.5, 3.0)):
        dst = tmp_path / f"killed{trial}"
        cmd[-1] = str(dst)
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if dst.exists():  # as a killed writer leaves it, plus one sidecar temp caught mid-write
            side = dst / sidecar_name("data/train-00000-of-00001.parquet", "test-set")
            side.parent.mkdir(parents=True, exist_ok=True)
            (side.parent / f".{side.name}.abc123.tmp").write_bytes(b"half")
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert not list(dst.rglob(".*.tmp"))
        assert tree_sha256(dst) == tree_sha256(clean)


def test_no_output_names_the_folders_it_was_built_from(build_world, tmp_path):
    """Model, template, cache and source folders are given as absolute paths here; none of them
    (nor any other absolute path) may appear in a file a build or relabel writes."""
    w = build_world
    mp = w["model_params"]
    assert Path(mp.dir).is_absolute() and Path(mp.cache_dir).is_absolute()
    out = tmp_path / "ds"
    B.run_build(mp, small_build_params(), SPLITS, build_paths(w, out))
    R.relabel(
        mp,
        dataset_dir=out,
        set_path=w["set_path"],
        model_dir=mp.dir,
        template_dir=w["template_dir"],
    )
    roots = {str(Path(mp.dir).parent).encode(), str(tmp_path).encode(), str(ROOT).encode()}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "report.json" for p in files) and any(
        p.name == "manifest.json" for p in files
    )
    hits = sorted(p.name for p in files for r in roots if r in p.read_bytes())
    assert not hits, hits

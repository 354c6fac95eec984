"""Under DVC: a tiny pipeline of densemark stages is reproduced, pushed to a local remote, and a
second clone pulls the shards and card back byte-identical without running any stage."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import tree_sha256

ROOT = Path(__file__).resolve().parents[1]

PARAMS = """\
model: {source: embedded, dir: data/model, cache_dir: data/cache, uv_res: 128}
procedural: {grid: 81, n_shape: 10, n_exp: 5}
synthetic: {n_train: 5, n_test: 0, image_size: 160, scale_min: 0.00045, scale_max: 0.0005}
sample: {target_count: 100, symmetric: true}
build: {res: 64, chunk_size: 2, formats: [parquet, hdf5], workers: 1, batch: 4}
splits: {seed: 0, val: 0.2, test: 0.2}
card: {n_samples: 4, grid_cols: 2}
"""


def _dvc_yaml() -> str:
    dm = f"{shlex.quote(sys.executable)} -m densemark"
    stages = {
        "model": (f"{dm} model --out data/model", [], ["data/model"], ["model.source", "procedural"]),
        "template": (f"{dm} template --model-dir data/model --out data/template", ["data/model"], ["data/template"], ["model"]),
        "synth": (f"{dm} synth-300wlp --model-dir data/model --out data/src", ["data/model"], ["data/src"], ["synthetic"]),
        "sample": (f"{dm} sample --template data/template --out data/set.json", ["data/template"], ["data/set.json"], ["sample"]),
        "build": (f"{dm} build --template data/template --set data/set.json --source data/src --out data/dataset",
                  ["data/model", "data/template", "data/set.json", "data/src"], ["data/dataset"], ["build", "splits"]),
        "card": (f"{dm} card --dataset data/dataset --set data/set.json --template data/template --out data/card",
                 ["data/dataset", "data/set.json", "data/template"], ["data/card"], ["card"]),
    }  # fmt: skip
    doc = {
        "stages": {
            n: {"cmd": c, "deps": d, "outs": o, "params": p} for n, (c, d, o, p) in stages.items()
        }
    }
    for s in doc["stages"].values():
        if not s["deps"]:
            del s["deps"]
    return json.dumps(doc, indent=1)  # JSON is YAML


def _run(args: list[str], cwd: Path, env: dict) -> str:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.mark.slow
def test_push_then_pull_restores_the_dataset_without_rebuilding(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "site"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_GLOBAL": os.devnull}  # fmt: skip
    dvc = [sys.executable, "-m", "dvc"]
    repo, clone, remote = tmp_path / "repo", tmp_path / "clone", tmp_path / "remote"
    repo.mkdir()
    _run(["git", "init", "-q"], repo, env)
    _run([*dvc, "init", "-q"], repo, env)
    (repo / "params.yaml").write_text(PARAMS)
    (repo / ".gitignore").write_text("/data/cache/\n")  # the UV rasterization cache
    (repo / "dvc.yaml").write_text(_dvc_yaml())
    _run([*dvc, "repro", "-q"], repo, env)
    _run([*dvc, "remote", "add", "-d", "store", str(remote)], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "pipeline"], repo, env)
    assert json.loads((repo / "data/dataset/manifest.json").read_text())["rows"] > 0
    _run([*dvc, "push", "-q"], repo, env)

    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    assert sorted(p.name for p in (clone / "data").iterdir()) == [
        ".gitignore"
    ]  # the outputs are not in git
    _run([*dvc, "pull", "-q"], clone, env)
    for sub in ("dataset", "card", "model", "template", "src"):
        assert tree_sha256(clone / "data" / sub) == tree_sha256(repo / "data" / sub), sub
    assert json.loads(_run([*dvc, "status", "--json"], clone, env).strip() or "{}") == {}
    # nothing to reproduce: no stage runs, nothing changes
    before = tree_sha256(clone / "data")
    out = _run([*dvc, "repro"], clone, env)
    assert "Running stage" not in out, out
    assert tree_sha256(clone / "data") == before
    assert _run(["git", "status", "--porcelain"], clone, env).strip() == ""

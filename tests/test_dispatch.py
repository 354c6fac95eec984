"""Same bytes under every SIMD dispatch and BLAS kernel this machine can run.

Runs the ``dvc.yaml`` stages (their commands, in order, on a smaller configuration of the
embedded default) once per variant in a fresh folder and compares the hash of every file they
write. Variants: numpy's default dispatch; AVX-512, then AVX2/FMA3, then AVX switched off with
``NPY_DISABLE_CPU_FEATURES``; and two OpenBLAS kernels (``OPENBLAS_CORETYPE`` Haswell, with FMA,
and Sandybridge, without); torch's AVX2 kernels (``ATEN_CPU_CAPABILITY``) beside its default; and
one BLAS/OpenMP thread. Each variant runs in its own folder, so
the comparison also shows that no byte depends on the working directory. Only the variants the
CPU supports run: on a machine without AVX-512 the structural walk in ``test_detmath.py`` is the
guard for that kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# smaller than params.yaml, same code paths (every stage of dvc.yaml runs)
SMALL = {
    "synthetic": {"n_train": 6, "n_test": 4},
    "sample": {"relax": {"iterations": 4}},
    "card": {"n_samples": 4},
    "train": {"epochs": 2, "batch_size": 4, "workers": 0},
    "build": {"workers": 1},
}
_GROUPS = [  # cumulative: a feature can only be switched off with the ones built on it
    ("avx512-off", ["AVX512F", "AVX512CD", "AVX512_KNL", "AVX512_KNM", "AVX512_SKX", "AVX512_CLX",
                    "AVX512_CNL", "AVX512_ICL", "AVX512_SPR"]),
    ("avx2-fma-off", ["AVX2", "FMA3"]),
    ("avx-off", ["AVX", "F16C"]),
]  # fmt: skip


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def variants() -> dict[str, dict[str, str]]:
    """Environment overrides per variant, limited to what this CPU has."""
    from numpy._core._multiarray_umath import __cpu_features__ as feats

    out: dict[str, dict[str, str]] = {"default": {}}
    if platform.machine() not in ("x86_64", "AMD64"):
        return {**out, "one-thread": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}}
    off: list[str] = []
    for name, group in _GROUPS:
        have = [f for f in group if feats.get(f)]
        if not have:
            continue
        off += have
        out[name] = {"NPY_DISABLE_CPU_FEATURES": " ".join(off)}
    out["one-thread"] = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out["torch-avx2"] = {
        "ATEN_CPU_CAPABILITY": "avx2"
    }  # torch's CPU kernels (the default: the best the CPU has)
    out["openblas-haswell"] = {"OPENBLAS_CORETYPE": "Haswell"}
    out["openblas-sandybridge"] = {"OPENBLAS_CORETYPE": "Sandybridge"}
    return out


def _stage_cmds() -> list[str]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return [s["cmd"] for s in stages.values()]


def _run_pipeline(work: Path, env_over: dict[str, str]) -> dict[str, str]:
    work.mkdir()
    shutil.copytree(ROOT / "landmarks", work / "landmarks")
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SMALL)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE", "ATEN_CPU_CAPABILITY")
    }
    env.update(
        env_over,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        MPLBACKEND="Agg",
    )
    for cmd in _stage_cmds():
        r = subprocess.run(cmd, shell=True, cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{env_over}: {cmd}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    hashes = {}
    for top in ("data", "reports", "models", "metrics"):
        for p in sorted((work / top).rglob("*")):
            rel = p.relative_to(work).as_posix()
            if p.is_file() and not rel.startswith("data/cache/"):
                hashes[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return hashes


def test_numpy_reports_the_dispatch_it_uses():
    """The switch the variants rely on: numpy honours NPY_DISABLE_CPU_FEATURES."""
    v = variants()
    if len(v) == 1:
        pytest.skip(f"no dispatch variants on {platform.machine()}")
    name, env = next((k, e) for k, e in v.items() if "NPY_DISABLE_CPU_FEATURES" in e)
    code = "import json; from numpy._core._multiarray_umath import __cpu_features__ as f; print(json.dumps([k for k, x in f.items() if x]))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    off = env["NPY_DISABLE_CPU_FEATURES"].split()
    on = set(json.loads(out.stdout))
    assert on and not set(off) & on, name


def test_every_dispatch_variant_writes_the_same_bytes(tmp_path):
    v = variants()
    ref = _run_pipeline(tmp_path / "default", v.pop("default"))
    assert len(ref) > 50 and any(k.endswith(".parquet") for k in ref) and "models/model.pt" in ref
    diffs = {}
    for name, env in v.items():
        got = _run_pipeline(tmp_path / name, env)
        bad = sorted(k for k in ref.keys() | got.keys() if ref.get(k) != got.get(k))
        if bad:
            diffs[name] = bad[:10]
    assert not diffs, f"bytes differ: {diffs}"

"""Dataset build throughput: source JPEG decode -> labels -> written shards, on the embedded default.

    python bench/bench_build.py [--n 3000] [--unique 100] [--workers 2] [--work DIR] [--baseline DIR]

Sets up (once, in ``--work``) the embedded model, its template, ``--unique`` synthetic 300W-LP
samples, and a source of ``--n`` samples made of hard links to them under distinct names
(every sample is fully processed; rendering thousands of distinct synthetic images would only
slow the set-up). Each measurement runs in a fresh subprocess (clean peak RSS):

* ``serial``: one process; a one-sample-at-a-time build (chunk of 1, batch of 1) and the
  batched build of the same subset, in the same process, then the batched build of all ``--n``
  samples, and a relabel of that dataset in place (label sidecars of the same set) against it;
* ``pool``: ``--workers`` processes over chunks, on ``--n / 4`` and on ``--n`` samples (peak
  RSS must not grow with the size).

Prints rows/s (a flipped copy is a row), bytes per row, peak RSS and the ratios. The machine is
shared: compare ratios, not absolute rates, between runs; ``--baseline OTHER_CHECKOUT`` measures
another version of the package in the same run (serial and pool children alternate).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SET = ROOT / "landmarks" / "embedded-520.json"


def _setup(work: Path, n: int, unique: int) -> Path:
    from densemark.faces import procedural as fs
    from densemark.faces.params import ModelParams
    from densemark.faces.procedural.params import ProceduralParams
    from densemark.faces.stages import load_configured_model, run_template
    from densemark.sources import synthetic as ds
    from densemark.sources.params import SyntheticParams

    if not (work / "model" / "BFM.mat").is_file():
        fs.write_model(ProceduralParams(), work / "model")
    if not (work / "template" / "face_ind.txt").is_file():
        run_template(model_params(work), work / "model", work / "template")
    uniq = work / f"unique{unique}"
    if len(list(uniq.glob("*.mat"))) < unique:
        ds.generate_300wlp(
            load_configured_model(model_params(work)), SyntheticParams(), uniq, unique
        )
    src = work / f"src{n}"
    if len(list(src.glob("*.mat"))) != n:
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        mats = sorted(uniq.glob("*.mat"))
        for i in range(n):
            m = mats[i % len(mats)]
            for suf in (".mat", ".jpg"):
                os.link(m.with_suffix(suf), src / f"SYN_image_{i:05d}_0{suf}")
    _ = ModelParams
    return src


def model_params(work: Path):
    from densemark.faces.params import ModelParams

    return ModelParams(source="embedded", dir=work / "model", cache_dir=work / "cache", uv_res=256)


def build_paths(work: Path, src: Path, out: Path):
    """The build of source ``src`` into ``out`` with the model, template and set in ``work``."""
    from densemark.datasets.plan import BuildPaths

    return BuildPaths(
        model_dir=work / "model",
        template_dir=work / "template",
        set_path=SET,
        source_dir=src,
        out_dir=out,
    )


def _subset(src: Path, k: int) -> Path:
    sub = src.parent / f"{src.name}_first{k}"
    if len(list(sub.glob("*.mat"))) != k:
        shutil.rmtree(sub, ignore_errors=True)
        sub.mkdir()
        for m in sorted(src.glob("*.mat"))[:k]:
            for suf in (".mat", ".jpg"):
                os.link(m.with_suffix(suf), sub / f"{m.stem}{suf}")
    return sub


def _build(work: Path, src: Path, out: Path, **kw) -> tuple[dict, float]:
    from densemark.datasets.build import run_build
    from densemark.datasets.params import BuildParams, SplitParams

    shutil.rmtree(out, ignore_errors=True)
    bp = BuildParams(**kw)
    c0, t0 = _cpu(), time.perf_counter()
    r = run_build(model_params(work), bp, SplitParams(), build_paths(work, src, out))
    _LAST_CPU[0] = _cpu() - c0
    return r.manifest, time.perf_counter() - t0


_LAST_CPU = [0.0]


def _cpu() -> float:
    """CPU seconds of this process and its finished children (user + system)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _relabel(work: Path, out: Path) -> float:
    from densemark.datasets.relabel import relabel

    rel = work / "out-relabel"  # relabel in place, on a copy (the copy is not timed)
    shutil.rmtree(rel, ignore_errors=True)
    shutil.copytree(out, rel)
    t0 = time.perf_counter()
    relabel(
        model_params(work),
        dataset_dir=rel,
        set_path=SET,
        model_dir=work / "model",
        template_dir=work / "template",
    )
    return time.perf_counter() - t0


def _peak() -> dict:
    return {
        "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def child(mode: str, work: Path, src: Path, n_small: int, workers: int) -> dict:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    out = work / f"out-{mode}"
    if mode == "serial":
        sub = _subset(src, n_small)
        _build(work, sub, out, workers=1)  # warm: model, UV raster cache, imports
        one, t_one = _build(work, sub, out, workers=1, chunk_size=1, batch=1)
        bat, t_bat = _build(work, sub, out, workers=1)
        t_rel_small = min(
            _relabel(work, out) for _ in range(2)
        )  # relabel the small dataset, then the full one: per-sample = the difference
        full, t_full = _build(work, src, out, workers=1)
        cpu_full = _LAST_CPU[0]
        t_rel = min(_relabel(work, out) for _ in range(2))
        d_rows = full["rows"] - bat["rows"]
        return {
            "build_ms_per_row": 1e3 * (t_full - t_bat) / d_rows, "relabel_ms_per_row": 1e3 * (t_rel - t_rel_small) / d_rows,
            "one_rows_s": one["rows"] / t_one, "batched_rows_s": bat["rows"] / t_bat, "n_small": n_small,
            "serial_rows_s": full["rows"] / t_full, "rows": full["rows"], "samples": full["source_samples"],
            "serial_samples_s": full["source_samples"] / t_full, "serial_rows_cpu_s": full["rows"] / cpu_full,
            "bytes_per_row": sum(f["bytes"] for f in full["files"]) / max(full["rows"], 1),
            **_peak(),
        }  # fmt: skip
    man, t = _build(work, src, out, workers=workers)
    return {"rows_s": man["rows"] / t, "rows": man["rows"], "samples_s": man["source_samples"] / t, "rows_cpu_s": man["rows"] / _LAST_CPU[0],
            "bytes_per_row": sum(f["bytes"] for f in man["files"]) / max(man["rows"], 1), **_peak()}  # fmt: skip


def _run_child(args: argparse.Namespace, mode: str, src: Path, tree: Path = ROOT) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--work", str(args.work), "--src", str(src),
           "--n-small", str(args.n_small), "--workers", str(args.workers)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{mode} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="source samples (rows = 2 n with flips)")
    ap.add_argument("--unique", type=int, default=100, help="distinct synthetic samples rendered")
    ap.add_argument(
        "--n-small", type=int, default=200, help="samples of the one-at-a-time comparison"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "densemark-bench-build"
    )
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout of the package (e.g. `git worktree add BASE main`): measured in the same run, alternating")  # fmt: skip
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.work, args.src, args.n_small, args.workers)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    src = _setup(args.work, args.n, args.unique)
    quarter = _subset(src, max(args.n // 4, 1))
    s = _run_child(args, "serial", src)
    if args.baseline is not None:
        bs = _run_child(args, "serial", src, args.baseline)
    p4 = _run_child(args, "pool", quarter)
    p = _run_child(args, "pool", src)
    if args.baseline is not None:
        bp = _run_child(args, "pool", src, args.baseline)
    print(
        f"dataset build, embedded model, {args.n} samples ({args.unique} distinct), rows = samples + flipped copies"
    )
    print(
        f"  one sample at a time (chunk 1, batch 1), {s['n_small']} samples: {s['one_rows_s']:8.1f} rows/s"
    )
    print(
        f"  batched, same samples, same process:         {s['batched_rows_s']:8.1f} rows/s   ratio {s['batched_rows_s'] / s['one_rows_s']:.2f}x"
    )
    print(
        f"  single process, {s['samples']} samples:           {s['serial_rows_s']:8.1f} rows/s   ({s['serial_samples_s']:.1f} samples/s)   {s['serial_rows_cpu_s']:.1f} rows per CPU-second"
    )
    print(
        f"  {args.workers} workers, {p['rows'] // 2} samples:                {p['rows_s']:8.1f} rows/s   ({p['samples_s']:.1f} samples/s)   x{p['rows_s'] / s['serial_rows_s']:.2f} vs 1 process"
        f"   {p['rows_cpu_s']:.1f} rows per CPU-second (set-up of the workers included)"
    )
    print(
        f"  load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a shared machine: wall-clock rates vary)"
    )
    print(f"  bytes per row (all formats):                 {p['bytes_per_row']:8.0f}")
    print(
        f"  per row, set-up excluded (n - n_small rows): build {s['build_ms_per_row']:.3f} ms, relabel {s['relabel_ms_per_row']:.3f} ms"
        f"   relabel x{s['build_ms_per_row'] / s['relabel_ms_per_row']:.1f} faster"
    )
    print(
        f"  peak RSS, {args.workers} workers: parent {p4['self_mb']:.0f} / {p['self_mb']:.0f} MB, largest worker {p4['children_mb']:.0f} / {p['children_mb']:.0f} MB  ({p4['rows'] // 2} / {p['rows'] // 2} samples)"
    )
    print(f"  peak RSS, single process: {s['self_mb']:.0f} MB")
    if args.baseline is not None:
        print(f"baseline {args.baseline} (same run, alternating):")
        print(
            f"  single process: {bs['serial_rows_cpu_s']:.1f} rows per CPU-second ({s['serial_rows_cpu_s'] / bs['serial_rows_cpu_s']:.2f}x now)"
            f"   {bs['serial_rows_s']:.1f} rows/s   build {bs['build_ms_per_row']:.3f} ms/row, relabel {bs['relabel_ms_per_row']:.3f} ms/row"
            f" (relabel x{bs['build_ms_per_row'] / bs['relabel_ms_per_row']:.1f} faster)"
        )
        print(
            f"  {args.workers} workers: {bp['rows_s']:.1f} rows/s ({p['rows_s'] / bp['rows_s']:.2f}x now)   {bp['rows_cpu_s']:.1f} rows per CPU-second"
        )


if __name__ == "__main__":
    main()

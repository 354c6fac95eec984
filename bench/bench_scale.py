"""Dataset build at scale: does the rate hold from a few thousand samples to 300W-LP size and beyond?

    python bench/bench_scale.py [--sizes 3000,12000,full] [--plan-sizes full,1224500] [--workers 2]
                                [--dask 20000] [--anchor 3000] [--unique 100] [--work DIR] [--keep]
                                [--json FILE]

Makes a 300W-LP-layout source by hard links to ``--unique`` embedded synthetic samples:
``AFW`` 5,207, ``HELEN`` 37,676, ``IBUG`` 1,786, ``LFPW`` 16,556 samples, each with its
``_Flip`` twin (the same file names): 122,450 samples in all (``full``). A smaller size keeps
the same proportions (the first samples of every subset and their twins). Each size is built
with ``--workers`` processes (the default params: twins are not mirrored again, so one row per
sample) in a fresh subprocess, and the script prints, per size: rows/s, CPU time per row
(parent and workers, user + system), peak RSS (parent, largest worker), bytes per row, and the
ratio of its rate to the smallest size's rate, all measured in this one run.

``--plan-sizes``: the planner alone on a synthetic listing of that many samples in the same
layout (``full`` = 122,450; 1,224,500 = 10x 300W-LP): the listing is made up and the file
hashes are stand-ins (no file is read), so the figures are the planner's own time and memory
(items, splits, chunk fingerprints) plus the bytes pickled for the chunk tasks.

``--anchor N`` (default 3,000; 0: off): the small benchmark in the same run, ``bench_build.py``'s
pool build of ``N`` samples with their flipped copies, and the largest build's time scaled to
where that benchmark reaches 1,700 rows/s: the yardstick of the goal "a 300W-LP-size build in
3 minutes or less on 2 cores".

``--dask N``: the build flow (``densemark.flows.build``) on a multi-process ``LocalCluster``
at ``N`` samples, against the CLI build of the same source: rows/s of both, and whether the
two datasets are byte-identical (manifest sha256 and every file).

The machine may be shared: wall-clock rates vary between runs; CPU time per row varies less.
"""

from __future__ import annotations

import argparse
import hashlib
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_build.py, beside this script
import bench_build  # noqa: E402

SET = bench_build.SET
SUBSETS = {"AFW": 5207, "HELEN": 37676, "IBUG": 1786, "LFPW": 16556}  # each also as <name>_Flip
FULL = 2 * sum(SUBSETS.values())  # 122,450
# the yardstick of the 3-minute goal: "on 2 cores a 300W-LP-size build takes 3 minutes or less
# wherever the small benchmark (bench_build.py, 2 workers) reaches about 1,700 rows/s"
ANCHOR_RATE, FULL_GOAL_S = 1700, 180.0


def _counts(n: int) -> dict[str, int]:
    """Samples per subset (and as many in its ``_Flip`` twin) for a source of about ``n``
    samples in the 300W-LP proportions; at least one per subset."""
    f = n / FULL
    return {s: max(1, round(c * f)) for s, c in SUBSETS.items()}


def _names(n: int) -> list[str]:
    """Relative ``.mat`` paths (without suffix) of a 300W-LP-layout source of about ``n`` samples:
    ``<S>/<S>_<image>_1_<k>`` and its ``<S>_Flip`` twin, four pose variants per image."""
    out = []
    for s, c in _counts(n).items():
        stems = [f"{s}_{i // 4:06d}_1_{i % 4}" for i in range(c)]
        out += [f"{sub}/{stem}" for sub in (s, s + "_Flip") for stem in stems]
    return sorted(out)


def _setup(work: Path, unique: int) -> Path:
    """Model, template and ``unique`` synthetic samples in ``work`` (made once)."""
    bench_build._setup(work, 1, unique)
    return work / f"unique{unique}"


def make_source(work: Path, uniq: Path, n: int) -> Path:
    """The 300W-LP-layout source of about ``n`` samples, by hard links (kept for reruns)."""
    src = work / f"lp{n}"
    names = _names(n)
    if (src / ".complete").is_file() and (src / ".complete").read_text() == str(len(names)):
        return src
    shutil.rmtree(src, ignore_errors=True)
    mats = sorted(uniq.glob("*.mat"))
    for d in {x.split("/")[0] for x in names}:
        (src / d).mkdir(parents=True)
    for i, name in enumerate(names):
        m = mats[i % len(mats)]
        for suf in (".mat", ".jpg"):
            os.link(m.with_suffix(suf), src / f"{name}{suf}")
    (src / ".complete").write_text(str(len(names)))
    return src


def _cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _peaks() -> dict:
    return {"parent_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}  # fmt: skip


def child_build(work: Path, src: Path, out: Path, workers: int) -> dict:
    from densemark.datasets.build import run_build
    from densemark.datasets.params import BuildParams, SplitParams

    shutil.rmtree(out, ignore_errors=True)
    paths = bench_build.build_paths(work, src, out)
    c0, t0 = _cpu(), time.perf_counter()
    r = run_build(
        bench_build.model_params(work), BuildParams(workers=workers), SplitParams(), paths
    )
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    man = r.manifest
    return {"samples": man["source_samples"], "rows": man["rows"], "wall_s": wall, "cpu_s": cpu,
            "bytes": sum(f["bytes"] for f in man["files"]), "manifest_sha256": r.manifest_sha256,
            "mirroring": man.get("mirroring", {}), "tree": _tree_md5(out), **_peaks()}  # fmt: skip


def child_dask(work: Path, src: Path, out: Path, workers: int) -> dict:
    """The build flow on a ``LocalCluster`` of ``workers`` worker processes (one thread each)."""
    from densemark.datasets.params import BuildParams, SplitParams
    from densemark.flows.build import build_chunks_flow, task_runner
    from densemark.flows.params import FlowParams

    shutil.rmtree(out, ignore_errors=True)
    fp = FlowParams(n_workers=workers, threads_per_worker=1, processes=True)
    io = {
        "model_dir": str(work / "model"),
        "template_dir": str(work / "template"),
        "set_path": str(SET),
        "source_dir": str(src),
        "out_dir": str(out),
    }
    t0 = time.perf_counter()
    res = build_chunks_flow.with_options(task_runner=task_runner(fp))(
        bench_build.model_params(work), BuildParams(workers=workers), SplitParams(), fp, io, None
    )
    wall = time.perf_counter() - t0
    man = res["manifest"]
    return {
        "samples": man["source_samples"],
        "rows": man["rows"],
        "wall_s": wall,
        "manifest_sha256": res["manifest_sha256"],
        "tree": _tree_md5(out),
    }


def _tree_md5(d: Path) -> str:
    """md5 over the names and bytes of every file of a dataset folder."""
    h = hashlib.md5()
    for p in sorted(d.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def child_plan(work: Path, n: int) -> dict:
    """The planner on a made-up listing of ``n`` samples (hashes stand in for file reads)."""
    import pickle

    from densemark.datasets import plan as P
    from densemark.datasets.params import BuildParams, SplitParams

    src = work / "plan-only-source"
    src.mkdir(exist_ok=True)
    paths = bench_build.build_paths(work, src, work / "plan-only-out")
    P.load_context(
        bench_build.model_params(work).model_dump(mode="json"),
        paths.model_dir,
        paths.template_dir,
        paths.set_path,
    )  # not timed
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def fake_hashes(batch: list[str]) -> list[str]:
        return [hashlib.sha256(p.encode()).hexdigest() for p in batch]

    t0 = time.perf_counter()
    rels = [f"{x}.mat" for x in _names(n)]  # what list_fit_rels gives
    t_list = time.perf_counter() - t0
    plan = P.plan_build(
        bench_build.model_params(work),
        BuildParams(),
        SplitParams(),
        paths,
        rels=rels,
        pmap=lambda f, it: map(fake_hashes, it),
    )
    t_plan = time.perf_counter() - t0
    sent = sum(len(pickle.dumps(plan.for_chunk(k))) for k in range(plan.n_chunks))
    t_cut = time.perf_counter() - t0 - t_plan
    peak = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )  # before pickling the whole plan (measured for comparison only)
    whole = len(pickle.dumps(plan))
    return {"samples": len(plan.items), "chunks": plan.n_chunks, "list_s": t_list, "plan_s": t_plan, "cut_s": t_cut,
            "sent_bytes": sent, "whole_plan_bytes": whole, "peak_mb": peak, "context_mb": base_mb,
            "twins": plan.mirroring.get("twin_samples", 0)}  # fmt: skip


def _run(args: argparse.Namespace, *extra: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--work",
        str(args.work),
        "--workers",
        str(args.workers),
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if "dask" in extra:  # the flow's own Prefect home (an ephemeral API server), not the user's
        home = args.work / "prefect-home"
        env.update(
            PREFECT_HOME=str(home),
            PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        env.pop("PREFECT_API_URL", None)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"{' '.join(extra)} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _anchor(args: argparse.Namespace) -> dict:
    """bench_build.py's pool measurement (its own child process) on ``--anchor`` samples."""
    src = bench_build._setup(args.work, args.anchor, args.unique)
    cmd = [sys.executable, str(Path(bench_build.__file__)), "--child", "pool", "--work", str(args.work),
           "--src", str(src), "--workers", str(args.workers)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"small benchmark failed:\n{r.stderr[-3000:]}")
    shutil.rmtree(args.work / "out-pool", ignore_errors=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _size(s: str) -> int:
    return FULL if s == "full" else int(s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        default="3000,12000,full",
        help="source sizes to build (samples; 'full' = 122,450); '' for none",
    )
    ap.add_argument(
        "--plan-sizes",
        default="full,1224500",
        help="sizes to plan only, on a made-up listing; '' for none",
    )
    ap.add_argument("--dask", type=str, default="", help="also build this size with the build flow on a LocalCluster of --workers "
                    "processes, and the CLI build of it in the same run: rows/s of both, and whether the bytes are identical")  # fmt: skip
    ap.add_argument("--anchor", type=int, default=3000, help="also run the small benchmark (bench_build.py's pool build of this many "
                    "samples, flipped copies included) in the same run, and scale the largest build's time to where it reaches "
                    f"{ANCHOR_RATE:,} rows/s; 0: off")  # fmt: skip
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--unique", type=int, default=100, help="distinct synthetic samples the hard links point to"
    )
    ap.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "densemark-bench-scale"
    )
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the largest build (out-<n>) for bench_train.py --data",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "build":
        print(
            json.dumps(child_build(args.work, args.src, args.work / f"out-{args.n}", args.workers))
        )
        return
    if args.child == "dask":
        print(
            json.dumps(child_dask(args.work, args.src, args.work / f"dask-{args.n}", args.workers))
        )
        return
    if args.child == "plan":
        print(json.dumps(child_plan(args.work, args.n)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    uniq = _setup(args.work, args.unique)
    sizes = [_size(s) for s in args.sizes.split(",") if s]
    builds = []
    for n in sizes:
        t0 = time.perf_counter()
        src = make_source(args.work, uniq, n)
        t_src = time.perf_counter() - t0
        r = _run(args, "--child", "build", "--src", str(src), "--n", str(n))
        r.update(size=n, source_s=t_src, load=os.getloadavg()[0])
        builds.append(r)
        if not (args.keep and n == max(sizes)):
            shutil.rmtree(args.work / f"out-{n}", ignore_errors=True)
    anchor = _anchor(args) if args.anchor and builds else None
    dask = None
    if args.dask:
        n = _size(args.dask)
        src = make_source(args.work, uniq, n)
        cli = next((b for b in builds if b["size"] == n), None) or _run(
            args, "--child", "build", "--src", str(src), "--n", str(n)
        )
        if not (args.keep and n == max(sizes, default=0)):
            shutil.rmtree(args.work / f"out-{n}", ignore_errors=True)
        dask = _run(args, "--child", "dask", "--src", str(src), "--n", str(n))
        shutil.rmtree(args.work / f"dask-{n}", ignore_errors=True)
        dask["cli"] = cli
    plans = [
        {"size": _size(s), **_run(args, "--child", "plan", "--n", str(_size(s)))}
        for s in args.plan_sizes.split(",")
        if s
    ]

    print(f"dataset build at scale: 300W-LP layout (4 subsets + _Flip twins) by hard links to {args.unique} synthetic samples, "
          f"{args.workers} workers, default build params (twins not mirrored again: one row per sample)")  # fmt: skip
    if builds:
        r0 = builds[0]["rows"] / builds[0]["wall_s"]
        print(
            f"  {'samples':>8} {'rows':>8} {'wall s':>7} {'rows/s':>7} {'ratio':>6} {'CPU ms/row':>10} {'peak MB parent/worker':>22} {'bytes/row':>9}  load"
        )
        for r in builds:
            rate = r["rows"] / r["wall_s"]
            print(f"  {r['samples']:>8,} {r['rows']:>8,} {r['wall_s']:>7.1f} {rate:>7.0f} {rate / r0:>6.2f} {1e3 * r['cpu_s'] / r['rows']:>10.3f}"
                  f" {r['parent_mb']:>10.0f} / {r['worker_mb']:<9.0f} {r['bytes'] / max(r['rows'], 1):>9.0f}  {r['load']:.1f}")  # fmt: skip
        print(f"  ratio: each size's rows/s over the {builds[0]['samples']:,}-sample rate, same run; load: 1-min load average after the build "
              f"on {os.cpu_count()} CPUs")  # fmt: skip
    if anchor is not None:
        big = builds[-1]
        scaled = big["wall_s"] * anchor["rows_s"] / ANCHOR_RATE
        goal = (f" (goal at 300W-LP size: <= {FULL_GOAL_S:.0f} s: {'met' if scaled <= FULL_GOAL_S else 'NOT met'})"
                if big["samples"] >= FULL else "")  # fmt: skip
        print(f"  small benchmark, same run (bench_build.py, {args.anchor:,} samples + flipped copies, {args.workers} workers): "
              f"{anchor['rows_s']:,.0f} rows/s; the {big['samples']:,}-sample build's {big['wall_s']:.1f} s scaled to where it "
              f"reaches {ANCHOR_RATE:,} rows/s: {scaled:.0f} s{goal}")  # fmt: skip
    if dask is not None:
        c = dask["cli"]
        same = dask["manifest_sha256"] == c["manifest_sha256"] and dask["tree"] == c["tree"]
        print(f"  build flow on a LocalCluster of {args.workers} worker processes, {dask['samples']:,} samples: {dask['rows'] / dask['wall_s']:.0f} rows/s "
              f"({dask['wall_s']:.1f} s, cluster start-up and planning included); CLI build of the same source: {c['rows'] / c['wall_s']:.0f} rows/s; "
              f"byte-identical: {'yes' if same else 'NO'} (manifest {dask['manifest_sha256'][:12]})")  # fmt: skip
    for p in plans:
        print(f"  plan only, {p['samples']:,} samples ({p['chunks']:,} chunks, made-up listing, no file read): {p['plan_s']:.1f} s "
              f"({1e6 * p['plan_s'] / p['samples']:.1f} us/sample), peak RSS {p['peak_mb']:.0f} MB ({p['context_mb']:.0f} MB with the model loaded, "
              f"{1e3 * (p['peak_mb'] - p['context_mb']) / p['samples']:.2f} KB/sample); chunk tasks pickle {p['sent_bytes'] / 2**20:.1f} MB in all "
              f"({p['sent_bytes'] / p['samples']:.0f} B/sample; the whole plan is {p['whole_plan_bytes'] / 2**20:.1f} MB)")  # fmt: skip
    if args.json is not None:
        args.json.write_text(
            json.dumps({"builds": builds, "plans": plans, "dask": dask, "anchor": anchor}, indent=1)
        )


if __name__ == "__main__":
    main()

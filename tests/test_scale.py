"""The build at scale: chunk tasks carry only their chunk, `_Flip` twins are not mirrored twice,
symlinked subsets are listed, the loader keeps a bounded set of open shards, the scale benchmark runs."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from densemark.core.errors import InputError
from densemark.datasets import build as B
from densemark.datasets import chunks as C
from densemark.datasets import plan as P
from densemark.datasets.manifest import split_key
from densemark.sources.readers import list_fit_mats
from tests.factories import SPLITS, build_paths, small_build_params, tree_bytes

ROOT = Path(__file__).resolve().parents[1]


def _plan(w: dict, out: Path, source: Path | None = None, **build) -> P.BuildPlan:
    paths = build_paths(w, out)
    if source is not None:
        paths = dataclasses.replace(paths, source_dir=os.fspath(source))
    return P.plan_build(w["model_params"], small_build_params(**build), SPLITS, paths)


def _link_sample(src_mat: Path, dst_mat: Path) -> None:
    dst_mat.parent.mkdir(parents=True, exist_ok=True)
    for suf in (".mat", ".jpg"):
        os.link(src_mat.with_suffix(suf), dst_mat.with_suffix(suf))


# ----------------------------------------------------------------------------- plan distribution


def test_a_cut_plan_carries_only_its_chunk_and_writes_the_same_bytes(build_world, tmp_path):
    full = _plan(build_world, tmp_path / "full")
    assert full.n_chunks >= 3
    for k in range(full.n_chunks):
        C.write_chunk(full, k)
    cut_plan = _plan(build_world, tmp_path / "cut")
    for k in range(cut_plan.n_chunks):
        cut = cut_plan.for_chunk(k)
        assert cut.items == cut_plan.chunk_items(k) and len(cut.chunk_fingerprints) == 1
        assert cut.n_chunks == cut_plan.n_chunks and cut.chunk_fingerprint(
            k
        ) == cut_plan.chunk_fingerprint(k)
        C.write_chunk(cut, k)
    assert tree_bytes(tmp_path / "cut") == tree_bytes(tmp_path / "full")
    with pytest.raises(InputError, match="cut to chunk 1"):
        C.write_chunk(cut_plan.for_chunk(1), 0)
    with pytest.raises(InputError, match="outside"):
        cut_plan.for_chunk(cut_plan.n_chunks)


def test_the_bytes_sent_per_chunk_do_not_grow_with_the_source(build_world, tmp_path):
    """What a pool or a cluster pickles per chunk task is the cut plan: the same size for a
    source 100x larger (the whole plan sent with every chunk made a build O(samples x chunks))."""
    plan = _plan(build_world, tmp_path / "ds")
    items = tuple(
        dataclasses.replace(it, rel=f"copy{i}/{it.rel}") for i in range(100) for it in plan.items
    )  # distinct objects
    items = tuple(sorted(items, key=lambda it: split_key(it.split)))  # a plan's order: by split
    bounds, stems = P.split_chunks([it.split for it in items], plan.build["chunk_size"])
    big = dataclasses.replace(
        plan,
        items=items,
        chunk_fingerprints=tuple(f"{k:064x}" for k in range(len(bounds))),
        chunk_bounds=bounds,
        chunk_stems=stems,
    )
    small_task, big_task = len(pickle.dumps(plan.for_chunk(0))), len(pickle.dumps(big.for_chunk(0)))
    assert big.n_chunks > 50 * plan.n_chunks
    assert abs(big_task - small_task) < 64, (small_task, big_task)
    assert len(pickle.dumps(big)) > 20 * big_task


# ----------------------------------------------------------------------------- _Flip twins


def test_flip_twins_pair_a_subset_with_its_flip_folder():
    rels = [
        "AFW/a_1.mat",
        "AFW_Flip/a_1.mat",
        "AFW/b_1.mat",
        "HELEN_Flip/c_0.mat",
        "x_0.mat",
        "_Flip/y.mat",
        "AFW/sub/d.mat",
        "AFW_Flip/sub/d.mat",
    ]
    assert P.flip_twins(rels) == [True, True, False, False, False, False, True, True]


@pytest.fixture(scope="module")
def twin_tree(build_world, tmp_path_factory):
    """``AFW/`` with 3 samples, ``AFW_Flip/`` with the twins of 2 of them, ``IBUG/`` with 1."""
    mats = list_fit_mats(build_world["source_dir"])
    d = tmp_path_factory.mktemp("twins") / "src"
    for i, name in enumerate(
        [
            "AFW/AFW_1_0",
            "AFW/AFW_2_0",
            "AFW/AFW_3_0",
            "AFW_Flip/AFW_1_0",
            "AFW_Flip/AFW_2_0",
            "IBUG/IBUG_9_0",
        ]
    ):
        _link_sample(mats[i], d / f"{name}.mat")
    return d


def test_samples_with_a_flip_twin_are_not_mirrored_again(build_world, twin_tree, tmp_path):
    w = {**build_world, "source_dir": twin_tree}
    r = B.run_build(
        w["model_params"], small_build_params(), SPLITS, build_paths(w, tmp_path / "ds")
    )
    man = r.manifest
    assert man["source_samples"] == 6
    assert man["counts"]["flip"] == {"false": 6, "true": 2}  # AFW_3_0 and IBUG_9_0 only
    ids = sorted(
        i
        for f in (tmp_path / "ds").glob("part-*.json")
        for i in json.loads(f.read_text())["rows"]["id"]
    )
    assert [i for i in ids if i.endswith("/flip")] == ["AFW/AFW_3_0/flip", "IBUG/IBUG_9_0/flip"], (
        ids
    )
    mi = man["mirroring"]
    assert (
        mi["rule"] == "skip_flip_twins" and mi["twin_samples"] == 4 and mi["mirrored_samples"] == 2
    )
    assert any("_Flip twin" in n and "skip_flip_twins" in n for n in man["notes"])
    # the params switch: every sample mirrored, as before; recorded
    r2 = B.run_build(
        w["model_params"],
        small_build_params(skip_flip_twins=False),
        SPLITS,
        build_paths(w, tmp_path / "all"),
    )
    assert r2.manifest["counts"]["flip"] == {"false": 6, "true": 6}
    assert (
        r2.manifest["mirroring"]["rule"] == "all"
        and r2.manifest["params"]["build"]["skip_flip_twins"] is False
    )
    assert r2.manifest["fingerprint"] != man["fingerprint"]


def test_the_card_says_which_rows_are_mirrored():
    from densemark.card.card import _mirrored

    assert "2 of them each also as a mirrored copy; 4 are not mirrored again" in _mirrored(
        {"flip": True, "mirroring": {"mirrored_samples": 2, "twin_samples": 4}}
    )
    assert "none mirrored again" in _mirrored(
        {"flip": True, "mirroring": {"mirrored_samples": 0, "twin_samples": 6}}
    )
    assert (
        _mirrored({"flip": True, "mirroring": {"mirrored_samples": 6, "twin_samples": 0}})
        == ", each also as a mirrored copy"
    )
    assert _mirrored({"flip": False, "mirroring": {}}) == ""


def test_a_source_without_twins_is_flipped_as_before(build_world, tmp_path):
    r = B.run_build(
        build_world["model_params"],
        small_build_params(),
        SPLITS,
        build_paths(build_world, tmp_path / "ds"),
    )
    assert r.manifest["counts"]["flip"] == {"false": 8, "true": 8}
    assert r.manifest["mirroring"]["rule"] == "all" and not any(
        "_Flip twin" in n for n in r.manifest["notes"]
    )


def test_a_twin_removed_in_another_chunk_changes_this_chunks_fingerprint(
    build_world, twin_tree, tmp_path
):
    """Resume must not keep a chunk whose rows changed because a twin elsewhere went away."""
    src = tmp_path / "src"
    shutil.copytree(twin_tree, src, copy_function=os.link)
    before = _plan(build_world, tmp_path / "a", source=src, chunk_size=3)
    for suf in (".mat", ".jpg"):
        (src / "AFW_Flip" / f"AFW_1_0{suf}").unlink()
    after = _plan(build_world, tmp_path / "b", source=src, chunk_size=3)
    rel = "AFW/AFW_1_0.mat"
    kb, ka = (
        next(k for k in range(p.n_chunks) if any(it.rel == rel for it in p.chunk_items(k)))
        for p in (before, after)
    )
    ib, ia = (
        next(it for it in p.chunk_items(k) if it.rel == rel) for p, k in ((before, kb), (after, ka))
    )
    assert ib.twin and not ia.twin
    assert before.chunk_fingerprint(kb) != after.chunk_fingerprint(ka)


@pytest.mark.real
def test_real_300wlp_names_pair_with_their_flip_twin(real_dir, tmp_path):
    """The real 300W-LP file name (``IBUG_image_008_1_0``) in ``IBUG/`` and ``IBUG_Flip/``:
    twins, one source group (one split), and listed by the build's lister."""
    mat = real_dir / "300wlp" / "IBUG_image_008_1_0.mat"
    for sub in ("IBUG", "IBUG_Flip"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / mat.name).symlink_to(mat)
    rels = [p.relative_to(tmp_path).as_posix() for p in list_fit_mats(tmp_path)]
    assert rels == ["IBUG/IBUG_image_008_1_0.mat", "IBUG_Flip/IBUG_image_008_1_0.mat"]
    assert P.flip_twins(rels) == [True, True]
    assert (
        P.source_group("IBUG", "IBUG_image_008_1_0")
        == P.source_group("IBUG_Flip", "IBUG_image_008_1_0")
        == "IBUG/IBUG_image_008_1"
    )


# ----------------------------------------------------------------------------- symlinks


def test_symlinked_subset_folders_are_followed(build_world, twin_tree, tmp_path):
    """A source whose subset folders are symlinks builds the same bytes as one with real
    folders (it used to give 0 rows); a link back up the tree (a cycle) is skipped."""
    linked = tmp_path / "linked"
    linked.mkdir()
    for sub in sorted(twin_tree.iterdir()):
        (linked / sub.name).symlink_to(sub, target_is_directory=True)
    (twin_tree / "AFW" / "loop").symlink_to(twin_tree, target_is_directory=True)
    try:
        assert [p.relative_to(linked).as_posix() for p in list_fit_mats(linked)] == [
            p.relative_to(twin_tree).as_posix() for p in list_fit_mats(twin_tree)
        ]
        w = build_world
        real = B.run_build(
            w["model_params"],
            small_build_params(),
            SPLITS,
            dataclasses.replace(build_paths(w, tmp_path / "r"), source_dir=os.fspath(twin_tree)),
        )
        via = B.run_build(
            w["model_params"],
            small_build_params(),
            SPLITS,
            dataclasses.replace(build_paths(w, tmp_path / "l"), source_dir=os.fspath(linked)),
        )
    finally:
        (twin_tree / "AFW" / "loop").unlink()
    assert via.manifest["rows"] == real.manifest["rows"] == 8
    assert tree_bytes(tmp_path / "l") == tree_bytes(tmp_path / "r")


# ----------------------------------------------------------------------------- loader


def test_the_loader_keeps_a_bounded_set_of_shards_open(world_dataset):
    """A process's open shards (each with a decoded row group) stay at ``max_open`` however
    many shards it reads: its memory does not grow with the dataset. Items are unchanged."""
    from densemark.datasets.torch_data import ShardDataset

    ref = ShardDataset(world_dataset[0])
    n_files = len(ref.files)
    want = [
        (ref[i]["id"], ref[i]["landmarks"].tobytes(), ref[i]["image"].tobytes())
        for i in range(len(ref))
    ]
    assert len(ref._readers) == n_files >= 3  # the default bound is not reached here
    ds = ShardDataset(world_dataset[0])
    ds.max_open = 2
    order = [i for k in range(3) for i in range(len(ds))[k::3]]  # jumps between shards
    got = {}
    for i in order:
        it = ds[i]
        got[i] = (it["id"], it["landmarks"].tobytes(), it["image"].tobytes())
        assert len(ds._readers) <= 2
    assert [got[i] for i in range(len(ds))] == want


def test_blocks_are_computed_once_per_dataset(world_dataset, monkeypatch):
    from densemark.datasets import shards
    from densemark.datasets.torch_data import ShardDataset

    ds = ShardDataset(world_dataset[0])
    calls = []
    orig = shards.ShardReader.group_sizes
    monkeypatch.setattr(
        shards.ShardReader, "group_sizes", lambda self: calls.append(self.path) or orig(self)
    )
    first = ds.blocks()
    assert len(calls) == len(ds.files)
    second = ds.blocks()
    assert len(calls) == len(ds.files) and [b.tolist() for b in first] == [
        b.tolist() for b in second
    ]
    second.pop()
    assert len(ds.blocks()) == len(first)  # callers get their own list


def test_bench_train_repeat_keeps_the_block_shuffle(world_dataset):
    """``bench_train.py`` measures the loader as training shuffles (blocks), for any size."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_train
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from densemark.datasets.torch_data import ShardDataset

    ds = ShardDataset(world_dataset[0])
    for n in (5, len(ds), 2 * len(ds) + 3):
        blocks = bench_train._Repeat(ds, n).blocks()
        assert sorted(i for b in blocks for i in b.tolist()) == list(range(n))


# ----------------------------------------------------------------------------- benchmark


@pytest.mark.slow
def test_bench_scale_runs_at_tiny_sizes(tmp_path):
    """The scale benchmark end to end at tiny sizes: its table and the planner line."""
    out = tmp_path / "figures.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_scale.py"), "--sizes", "40,120", "--plan-sizes", "100", "--unique", "3", "--anchor", "30",
         "--work", str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "rows/s" in r.stdout and "plan only, 100 samples" in r.stdout, r.stdout
    assert "small benchmark, same run (bench_build.py, 30 samples" in r.stdout, r.stdout
    fig = json.loads(out.read_text())
    assert [b["samples"] for b in fig["builds"]] == [
        40,
        120,
    ]  # 300W-LP proportions, each subset with its twin
    assert all(
        b["rows"] == b["samples"] and b["mirroring"]["rule"] == "skip_flip_twins"
        for b in fig["builds"]
    )  # every sample has its twin
    assert fig["anchor"]["rows"] == 60  # 30 samples and their flipped copies
    assert fig["plans"][0]["twins"] == 100 and not (tmp_path / "work" / "out-120").exists()


# ----------------------------------------------------------------------------- worker threads

_THREADS_PROBE = r"""
import json, multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
import cv2, numpy as np
from threadpoolctl import threadpool_limits
from densemark.core.threads import blas_threads, one_thread
from densemark.datasets import build as B

def probe():
    np.ones((300, 300)) @ np.ones((300, 300))  # a product large enough for BLAS to use its threads
    return blas_threads(), cv2.getNumThreads()

if __name__ == "__main__":
    threadpool_limits(3)  # more than one thread, whatever the machine's cores
    out = {"parent": probe()}
    cv2.setNumThreads(1)  # as run_build does before forking
    for method in ("fork", "spawn"):
        ctx = mp.get_context(method)
        with ProcessPoolExecutor(1, mp_context=ctx, initializer=B._init_worker) as ex:
            out[method] = ex.submit(probe).result()
    cv2.setNumThreads(3)
    with one_thread():
        out["inside"] = probe()
    out["after"] = probe()
    print(json.dumps(out))
"""


def test_build_workers_run_one_blas_and_one_opencv_thread(tmp_path):
    """A pool worker computes with one BLAS and one OpenCV thread, forked or spawned, whatever
    thread count its parent's BLAS started with (a forked worker inherits it; the environment
    cannot change it after numpy is loaded). ``one_thread`` limits a block and restores after."""
    probe = tmp_path / "probe.py"  # a file: spawned workers import the probe from it
    probe.write_text(_THREADS_PROBE)
    r = subprocess.run(
        [sys.executable, str(probe)], capture_output=True, text=True, cwd=ROOT,
        timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["parent"][0] == 3  # the probe sees the parent's count
    assert got["fork"] == [1, 1] and got["spawn"] == [1, 1]
    assert got["inside"] == [1, 1] and got["after"] == [3, 3]

"""The dataset build: labels, flips, splits, shards, quarantine, resume, relabel, torch dataset."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io as sio
import yaml

from densemark.core.errors import InputError
from densemark.core.images import decode_jpeg
from densemark.datasets import build as B
from densemark.datasets import chunks as C
from densemark.datasets import plan as P
from densemark.datasets import relabel as R
from densemark.datasets.labels import LabelGeometry, flip_image, flip_points, mirror_sources
from densemark.datasets.manifest import sidecar_name
from densemark.datasets.params import SplitParams
from densemark.faces.geometry import pose_batch
from densemark.faces.model import KPT68_MIRROR
from densemark.faces.uvmap import UVMap
from densemark.sampling.landmark_set import make_set
from densemark.sources.readers import read_fit_mat
from tests.factories import (
    SPLITS,
    build_argv,
    build_params_file,
    build_paths,
    small_build_params,
    tree_bytes,
)

ROOT = Path(__file__).resolve().parents[1]


def _df(table) -> dict[str, list]:
    """Columns as Python lists (pyarrow alone; pandas is not a dependency)."""
    return table.to_pydict()


TRAIN0 = "train-00000-of-00001"  # the test world's chunks: train (3 samples), val (1), test (3 + 1)
CHUNK_STEMS = [TRAIN0, "val-00000-of-00001", "test-00000-of-00002", "test-00001-of-00002"]


def _geo(w):
    uvm = UVMap.for_model(w["model"], w["model_params"].uv_res)
    return LabelGeometry(
        w["model"], uvm, w["template"], w["set"].ids, mirror_perm=w["set"].mirror_perm
    ), uvm


# ----------------------------------------------------------------------------- shards and labels


def test_shards_open_with_pyarrow_and_h5py_alone(world_dataset, build_world):
    out, res = world_dataset
    man = json.loads((out / "manifest.json").read_text())
    k = len(build_world["set"])
    assert man["rows"] == 16 and man["counts"]["flip"] == {"false": 8, "true": 8}
    assert (
        man["landmark_set"]["sha256"] == build_world["set"].sha256()
        and man["landmark_set"]["n_points"] == k
    )
    assert sum(man["counts"]["split"].values()) == man["rows"]
    for e in man["files"]:
        assert hashlib.sha256((out / e["path"]).read_bytes()).hexdigest() == e["sha256"]
    t = pq.read_table(out / f"data/{TRAIN0}.parquet")
    lt = t.schema.field("landmarks").type  # (K, 3): nested fixed-size lists
    assert (
        t.num_rows == 6
        and lt.list_size == k
        and lt.value_type.list_size == 3
        and str(lt.value_type.value_type) == "float"
    )
    assert (
        t.schema.field("kpt68").type.list_size == 68
        and t.schema.field("kpt68").type.value_type.list_size == 3
    )
    assert b"densemark" in t.schema.metadata and b"huggingface" in t.schema.metadata
    df = _df(t)
    assert list(df["flip"]) == [False, True] * 3 and set(df["split"]) == {"train"}
    assert np.asarray(df["landmarks"][0]).shape == (k, 3)
    assert all(x["path"] is None for x in df["image"])  # the image struct {bytes, path}
    df["image"] = [x["bytes"] for x in df["image"]]
    img = decode_jpeg(df["image"][0])
    assert img.shape == (64, 64, 3)
    lm = np.array(df["landmarks"], np.float32).reshape(-1, k, 3)
    with h5py.File(out / f"hdf5/{TRAIN0}.h5", "r") as f:
        assert f["landmarks"].shape == (6, k, 3)
        np.testing.assert_array_equal(f["landmarks"][()], lm)
        assert [x.decode() for x in f["id"][()]] == list(df["id"])
        off = f["image_offsets"][()]  # JPEG bytes: one flat uint8 array + (n + 1,) offsets
        assert [f["image"][a:b].tobytes() for a, b in zip(off[:-1], off[1:], strict=True)] == df[
            "image"
        ]
        np.testing.assert_array_equal(
            f["shape_para"][()], np.stack(df["shape_para"])
        )  # (n, 199)-like float64
        # nothing in HDF5's global heap (variable-length data): no bytes that HDF5 might leave uninitialised
        assert all(d.dtype.kind != "O" for d in f.values())
    assert b"GCOL" not in (out / f"hdf5/{TRAIN0}.h5").read_bytes()
    # pose of a flipped row mirrors yaw and roll
    p = np.array(df["pose"], np.float32)
    np.testing.assert_array_equal(p[1], p[0] * np.array([1, -1, -1], np.float32))


def test_shard_reader_round_trips_both_formats(tmp_path):
    """read_columns / ShardReader read back what write_hdf5 and write_parquet wrote, alike for
    both formats: ragged lists (HDF5: flat + offsets), non-ASCII strings (fixed-width UTF-8),
    empty images, rows in any order and repeated, one row at a time across Parquet row groups."""
    from densemark.datasets import shards

    rng = np.random.default_rng(3)
    cols = {
        "id": ["a", "żółw/flip", "c" * 40],
        "split": ["train", "val", "test"],
        "image": [b"\xff\xd8xyz", b"", bytes(range(256))],
        "shape_para": [rng.normal(size=4), rng.normal(size=2), rng.normal(size=0)],  # ragged
        "exp_para": [rng.normal(size=3) for _ in range(3)],  # uniform: (n, 3)
        "landmarks": rng.normal(size=(3, 12)).astype(np.float32),
        "flip": np.array([False, True, False]),
    }
    h5 = shards.write_hdf5(tmp_path / "s.h5", cols, {"k": "é"}, 4)
    pa_ = shards.write_parquet(tmp_path / "s.parquet", shards.to_table(cols, {"k": "é"}), 2)
    with h5py.File(h5, "r") as f:
        assert (
            f["exp_para"].shape == (3, 3)
            and "shape_para_offsets" in f
            and f["landmarks"].shape == (3, 4, 3)
        )
    assert b"GCOL" not in h5.read_bytes()
    for p in (h5, pa_):
        assert shards.read_meta(p) == {"k": "é"}
        got = shards.read_columns(p, list(cols))
        assert (
            got["id"] == cols["id"]
            and got["split"] == cols["split"]
            and got["image"] == cols["image"]
        )
        for g, want in zip(got["shape_para"], cols["shape_para"], strict=True):
            assert g.dtype == np.float64
            np.testing.assert_array_equal(g, want)
        np.testing.assert_array_equal(got["exp_para"], np.stack(cols["exp_para"]))
        np.testing.assert_array_equal(
            got["landmarks"], cols["landmarks"]
        )  # (n, 3K) in both formats
        np.testing.assert_array_equal(got["flip"], cols["flip"])
        sub = shards.read_columns(p, ["split", "image", "landmarks", "exp_para"], [2, 0, 2])
        assert sub["split"] == ["test", "train", "test"] and sub["image"] == [
            cols["image"][i] for i in (2, 0, 2)
        ]
        np.testing.assert_array_equal(sub["landmarks"], cols["landmarks"][[2, 0, 2]])
        np.testing.assert_array_equal(sub["exp_para"], np.stack(cols["exp_para"])[[2, 0, 2]])
        with shards.ShardReader(p) as r:
            assert r.group_sizes() == ([2, 1] if p.suffix == ".parquet" else [3])
            for i in (2, 0, 1, 1):
                row = r.row(i, ["id", "image", "landmarks"])
                assert row["id"] == cols["id"][i] and row["image"] == cols["image"][i]
                np.testing.assert_array_equal(row["landmarks"], cols["landmarks"][i])
            with pytest.raises(IndexError):
                r.row(3, ["id"])


def test_hdf5_bytes_do_not_depend_on_when_datasets_close(tmp_path, monkeypatch):
    """h5py may close a dataset late (while another thread holds its lock, as in a threaded Dask
    build); HDF5 then allocates that dataset's chunks later and lays the file out differently.
    write_hdf5 allocates every dataset as it writes it, so the bytes are the same."""
    from densemark.datasets import shards

    rng = np.random.default_rng(0)
    n = 6
    cols = {"id": [f"AFW/x_{i}" for i in range(n)], "image": [bytes(rng.integers(0, 255, 50 + i, dtype=np.uint8)) for i in range(n)],
            "landmarks": rng.normal(size=(n, 30)).astype(np.float32), "source_size": np.full((n, 2), 450, np.int32),
            "valid": np.ones(n, bool), "n_outside": np.zeros(n, np.int16)}  # fmt: skip
    a = shards.write_hdf5(tmp_path / "a.h5", cols, {}, 4).read_bytes()
    kept, create = [], h5py.Group.create_dataset
    monkeypatch.setattr(
        h5py.Group,
        "create_dataset",
        lambda self, *x, **k: kept.append(create(self, *x, **k)) or kept[-1],
    )
    b = shards.write_hdf5(tmp_path / "b.h5", cols, {}, 4).read_bytes()
    assert len(kept) == len(cols) + 1  # every dataset stayed open until the file closed
    kept.clear()
    assert a == b


def test_labels_equal_the_position_map_at_the_set_pixels(world_dataset, build_world):
    """Reference: render full position maps (pose_batch + UV render) and read the set's pixels;
    the keypoints and crops (z shift included) are bit-identical to pose_batch's."""
    out, _ = world_dataset
    w = build_world
    uvm = UVMap.for_model(w["model"], w["model_params"].uv_res)
    pix = w["template"].face_ind[w["set"].ids]
    n = 0
    for part in sorted(out.glob("data/*.parquet")):
        t = pq.read_table(part)
        df = _df(t.filter(np.logical_not(t.column("flip").to_numpy())))
        fits = [read_fit_mat(w["source_dir"] / f) for f in df["source_file"]]
        g = pose_batch(w["model"], np.stack([f.shape_para for f in fits]), np.stack([f.exp_para for f in fits]),
                       np.stack([f.pose_para for f in fits]), 200, res=64)  # fmt: skip
        maps = uvm.render(g.vertices, vertex_major=True).reshape(len(fits), -1, 3)
        lm = np.array(df["landmarks"], np.float32).reshape(len(fits), -1, 3)
        np.testing.assert_allclose(
            lm, maps[:, pix], atol=2e-4, rtol=0
        )  # interpolated before vs after the pose
        np.testing.assert_array_equal(
            np.array(df["kpt68"], np.float32).reshape(-1, 68, 3),
            g.vertices[w["model"].kpt_ind].transpose(1, 0, 2),
        )
        np.testing.assert_array_equal(
            np.array(df["crop"]), np.array([c.as_vector() for c in g.crops])
        )
        n += len(fits)
    assert n == 8


def test_flip_is_an_involution(world_dataset, build_world):
    out, _ = world_dataset
    df = _df(pq.read_table(out / "data/test-00000-of-00002.parquet"))
    df["image"] = [x["bytes"] for x in df["image"]]
    k = len(build_world["set"])
    lm = np.array(df["landmarks"], np.float32).reshape(-1, k, 3)
    perm = build_world["set"].mirror_perm
    u = build_world["template"].pixel_uv[build_world["set"].ids, 0]
    side = (
        np.abs(2 * u - (build_world["template"].res - 1)) > 1
    )  # off the two centre UV columns the flip is the permutation
    idx, extra = mirror_sources(build_world["template"], build_world["set"].ids, perm)
    assert len(extra) == 0 and (idx[idx] == np.arange(k)).all() and (idx[side] == perm[side]).all()
    for i in range(0, len(df["id"]), 2):
        a, b = decode_jpeg(df["image"][i]), decode_jpeg(df["image"][i + 1])
        assert (
            np.abs(flip_image(a).astype(int) - b).mean() < 3
        )  # the mirrored crop, up to JPEG noise
        np.testing.assert_array_equal(
            flip_points(lm[i], idx, 64), lm[i + 1]
        )  # the set holds both centre columns
        np.testing.assert_allclose(flip_points(lm[i + 1], idx, 64), lm[i], atol=2e-5, rtol=0)
        np.testing.assert_allclose(
            flip_points(flip_points(lm[i], perm, 64), perm, 64), lm[i], atol=2e-5, rtol=0
        )
        kp = np.array(df["kpt68"], np.float32).reshape(-1, 68, 3)
        np.testing.assert_allclose(
            flip_points(flip_points(kp[i], KPT68_MIRROR, 64), KPT68_MIRROR, 64),
            kp[i],
            atol=2e-5,
            rtol=0,
        )
    img = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    np.testing.assert_array_equal(flip_image(flip_image(img)), img)
    assert not np.array_equal(flip_image(img), img)


@pytest.mark.parametrize(
    "pose", [(0.1, 0.5, 0.2, 90.0, 110.0, 5.0, 8e-4), (-0.2, -1.1, -0.3, 120.0, 95.0, 0.0, 7e-4)]
)
def test_flipped_labels_equal_labels_of_the_mirrored_pose(build_world, pose):
    """On the symmetric embedded mean shape: flip(labels(pose)) == labels(mirrored pose) with the mirrored crop."""
    w = build_world
    m = w["model"]
    assert np.allclose(
        m.mean[:, 0], -m.mean[_mirror_vertices(m), 0], atol=1e-2
    )  # the model is symmetric
    geo, _ = _geo(w)
    h, wd, res = 200, 200, 64
    pose = np.array([pose])
    lab = geo.compute(None, None, pose, np.array([h]), res=res)
    mp = pose.copy()
    mp[0, 1:3] *= -1
    mp[0, 3] = wd - 1 - pose[0, 3]
    tf = lab.crops[0]
    crop_m = np.array([[tf.scale, res - 1 - tf.tx - tf.scale * (wd - 1), tf.ty, tf.tz, res]])
    c = geo.rows.coefficients(None, None, 1)
    mirrored = geo.relabel(c, mp, np.array([h]), crop_m).landmarks[0]
    flipped = lab.flipped[0]
    assert np.abs(flipped - lab.landmarks[0]).max() > 1  # not trivially equal
    np.testing.assert_allclose(
        flipped, mirrored, atol=1e-3, rtol=0
    )  # every point, the centre columns included
    # the permutation alone pairs the two centre UV columns with themselves (the map has no centre
    # column): a pure reordering is a column off there, which the mirrored pixels fix
    u = w["template"].pixel_uv[w["set"].ids, 0]
    mid = np.abs(2 * u - (w["template"].res - 1)) <= 1
    by_perm = flip_points(lab.landmarks[0], w["set"].mirror_perm, res)
    assert mid.sum() >= 4 and np.abs(by_perm[mid] - mirrored[mid]).max() > 0.1
    np.testing.assert_array_equal(by_perm[~mid], flipped[~mid])
    # a set with one centre column only: its mirror pixels are labelled as extra points
    tpl = w["template"]
    one = w["set"].ids[~mid | (u < tpl.res / 2)]
    perm1 = make_set(tpl, one, name="one").mirror_perm
    _, extra1 = mirror_sources(tpl, one, perm1)
    assert len(extra1) == (mid & (u < tpl.res / 2)).sum() > 0
    g1 = LabelGeometry(m, UVMap.for_model(m, w["model_params"].uv_res), tpl, one, mirror_perm=perm1)
    assert g1.rows.n_rows == 3 * (len(one) + len(extra1))
    l1 = g1.compute(None, None, pose, np.array([h]), res=res)
    m1 = g1.relabel(c, mp, np.array([h]), crop_m).landmarks[0]
    np.testing.assert_allclose(l1.flipped[0], m1, atol=1e-3, rtol=0)
    # and the flip of the mirrored pose gives the original back
    back = geo.relabel(c, pose, np.array([h]), np.array([tf.as_vector()]))
    np.testing.assert_array_equal(back.landmarks[0], lab.landmarks[0])
    np.testing.assert_allclose(
        geo.relabel(c, mp, np.array([h]), crop_m).flipped[0], lab.landmarks[0], atol=1e-3, rtol=0
    )
    # the mesh minimum is mirror-invariant, and the mirrored pose's own crop is the mirrored one up to truncation
    lab_m = geo.compute(None, None, mp, np.array([h]), res=res)
    assert lab_m.crops[0].tz / lab_m.crops[0].scale == pytest.approx(tf.tz / tf.scale, rel=1e-5)
    assert lab_m.crops[0].scale == pytest.approx(tf.scale, rel=0.02)


def _mirror_vertices(m):
    from densemark.faces.procedural import uv_grid
    from tests.factories import GRID

    return uv_grid(GRID)[2]


# ----------------------------------------------------------------------------- reproducibility, resume


def test_same_params_byte_identical_and_chunk_order_free(world_dataset, build_world, tmp_path):
    out, res = world_dataset
    w = build_world
    out2 = tmp_path / "again"
    plan = P.plan_build(w["model_params"], small_build_params(), SPLITS, build_paths(w, out2))
    results = [C.write_chunk(plan, k) for k in reversed(range(plan.n_chunks))]  # any order
    r2 = B.finish_build(plan, results)
    assert tree_bytes(out2) == tree_bytes(out)
    assert r2.manifest_sha256 == res.manifest_sha256
    # a rerun skips every chunk and changes nothing
    plan = P.plan_build(w["model_params"], small_build_params(), SPLITS, build_paths(w, out2))
    assert all(C.write_chunk(plan, k).skipped for k in range(plan.n_chunks))
    # and the 2-process pool gives the same bytes
    out3 = tmp_path / "pool"
    B.run_build(w["model_params"], small_build_params(workers=2), SPLITS, build_paths(w, out3))
    assert tree_bytes(out3) == tree_bytes(out)


def _cli_build(w, params: Path, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "densemark", "--params", str(params), "build", "--template", str(w["template_dir"]),
           "--set", str(w["set_path"]), "--source", str(w["source_dir"]), "--out", str(out)]  # fmt: skip
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300)


def test_sigkill_then_rerun_is_byte_identical(world_dataset, build_world, tmp_path):
    out, _ = world_dataset
    params = build_params_file(build_world, tmp_path / "params.yaml")
    dst = tmp_path / "killed"
    w = build_world
    script = (  # a build killed (SIGKILL) while it writes the second chunk's first shard
        "import sys\n"
        "from densemark.config import load_params\n"
        "from densemark.datasets.build import run_build\n"
        "from densemark.datasets.plan import BuildPaths\n"
        "from tests.factories import KillAtChunk\n"
        "p = load_params(sys.argv[1])\n"
        "run_build(p.model, p.build, p.splits, BuildPaths(*sys.argv[2:]), hook=KillAtChunk(1))\n"
    )
    argv = build_argv(params, w, dst)
    r = subprocess.run(
        [sys.executable, "-c", script, *argv],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == -9, r.stderr
    assert list(dst.glob("*/.*.tmp")), "a stale temp file is left by the kill"
    assert not (dst / "manifest.json").exists()
    assert (dst / "part-00000.json").exists() and not (dst / "part-00001.json").exists()
    r = _cli_build(build_world, params, dst)
    assert r.returncode == 0, r.stderr
    assert not list(dst.rglob(".*.tmp"))
    assert tree_bytes(dst) == tree_bytes(out)


def test_changed_params_rebuild_never_mix(world_dataset, build_world, tmp_path):
    w = build_world
    dst = tmp_path / "ds"
    shutil.copytree(world_dataset[0], dst)
    r = B.run_build(
        w["model_params"],
        small_build_params(jpeg_quality=70, chunk_size=5),
        SPLITS,
        build_paths(w, dst),
    )
    names = sorted(
        p.relative_to(dst).as_posix()
        for p in [*dst.glob("part-*"), *dst.glob("data/*"), *dst.glob("hdf5/*")]
    )
    stems = [
        "train-00000-of-00001",
        "val-00000-of-00001",
        "test-00000-of-00001",
    ]  # chunks of 5 never cross a split
    assert names == sorted(
        [f"part-{k:05d}.json" for k in range(3)]
        + [f"{d}/{s}{x}" for s in stems for d, x in (("data", ".parquet"), ("hdf5", ".h5"))]
    )
    fps = {pq.read_schema(p).metadata[b"densemark"] for p in dst.glob("data/*.parquet")}
    assert all(json.loads(f)["dataset_fingerprint"] == r.manifest["fingerprint"] for f in fps)
    assert (
        r.manifest["fingerprint"]
        != json.loads((world_dataset[0] / "manifest.json").read_text())["fingerprint"]
    )
    fresh = tmp_path / "fresh"
    B.run_build(
        w["model_params"],
        small_build_params(jpeg_quality=70, chunk_size=5),
        SPLITS,
        build_paths(w, fresh),
    )
    assert tree_bytes(fresh) == tree_bytes(dst)


def test_resume_rule_is_by_content_not_size(world_dataset, build_world, tmp_path):
    """chunk_done (the one resume rule, used by run_build and the build flow alike) rejects a
    shard whose bytes changed at the same size, a record of another fingerprint, a missing shard."""
    w = build_world
    dst = tmp_path / "ds"
    shutil.copytree(world_dataset[0], dst)
    plan = P.plan_build(w["model_params"], small_build_params(), SPLITS, build_paths(w, dst))
    assert all(C.chunk_done(plan, k) is not None for k in range(plan.n_chunks))
    shard = plan.shard_paths(1)["parquet"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    shard.write_bytes(bytes(data))
    plan.shard_paths(2)["hdf5"].unlink()
    rec = json.loads(plan.record_path(0).read_text())
    plan.record_path(0).write_text(json.dumps({**rec, "fingerprint": "0" * 64}))
    assert [k for k in range(plan.n_chunks) if C.chunk_done(plan, k) is None] == [0, 1, 2]
    r = B.finish_build(plan, [C.write_chunk(plan, k) for k in range(plan.n_chunks)])
    assert [k for k in range(plan.n_chunks) if C.chunk_done(plan, k) is None] == []
    assert (
        tree_bytes(dst) == tree_bytes(world_dataset[0])
        and r.manifest_sha256 == world_dataset[1].manifest_sha256
    )


def test_manifest_is_typed_and_refuses_what_it_cannot_read(world_dataset, tmp_path):
    from densemark.datasets.manifest import VERSION, Manifest

    out, res = world_dataset
    m = Manifest.load(out)
    assert (
        m == res.value
        and m.sha256
        == res.manifest_sha256
        == hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    )
    assert m.to_dict() == json.loads(
        (out / "manifest.json").read_text()
    )  # every field, nothing else
    assert [e["path"] for e in m.shards()] == [
        f"data/{s}.parquet" for s in CHUNK_STEMS
    ] and m.read_format == "parquet"
    assert [e["split"] for e in m.shards()] == ["train", "val", "test", "test"]
    assert res.metrics == B.build_metrics(m.to_dict()) and res.metrics["rows"] == 16
    assert set(res.outputs) == {"dataset", "manifest", "report", "card", "licence"}
    d = m.to_dict()
    for bad, field_ in (({**d, "version": VERSION - 1}, "version"), ({**d, "format": "other"}, "format"),
                        ({k: v for k, v in d.items() if k != "files"}, "files")):  # fmt: skip
        (tmp_path / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(InputError) as e:
            Manifest.load(tmp_path)
        assert e.value.field == field_
    with pytest.raises(InputError, match="no column"):
        m.label_set("landmarks__nothing")
    # an extra set whose sidecars do not cover every shard is refused, not read from the shards
    partial = m.with_extra_set(
        {"name": "x"}, "landmarks__x", [{"shard": f"data/{TRAIN0}.parquet", "path": "p.parquet"}]
    )
    assert (
        partial.columns[-1] == "landmarks__x" and partial.label_set("landmarks__x")["name"] == "x"
    )
    with pytest.raises(InputError, match="no parquet sidecar for data/val-00000-of-00001.parquet"):
        partial.sidecars("landmarks__x")


# ----------------------------------------------------------------------------- quarantine, splits, sets


def test_bad_samples_are_quarantined_and_the_build_goes_on(build_world, tmp_path):
    w = dict(build_world)
    src = tmp_path / "src"
    shutil.copytree(w["source_dir"], src)
    mats = sorted(src.glob("*.mat"))
    m = sio.loadmat(mats[1])
    m["Shape_Para"][3] = np.nan
    sio.savemat(mats[1], {k: v for k, v in m.items() if not k.startswith("__")})
    mats[2].with_suffix(".jpg").write_bytes(b"\xff\xd8 not a jpeg")
    w["source_dir"] = src
    r = B.run_build(
        w["model_params"], small_build_params(), SPLITS, build_paths(w, tmp_path / "ds")
    )
    q = {e["file"]: e for e in r.report.quarantine}
    img = mats[2].with_suffix(".jpg").name  # an image's fault is filed under the image
    assert set(q) == {mats[1].name, img}
    assert q[mats[1].name]["field"] == "Shape_Para" and "non-finite" in q[mats[1].name]["error"]
    assert q[img]["field"] == "image"
    assert r.manifest["rows"] == 12 and r.manifest["quarantined"] == 2


def test_splits_follow_source_image_groups(tmp_path):
    assert P.source_group("AFW", "AFW_1051618982_1_3") == "AFW/AFW_1051618982_1"
    assert P.source_group("AFW_Flip", "AFW_1051618982_1_0") == "AFW/AFW_1051618982_1"
    assert P.source_group("synthetic", "SYN_image_00003_0") == "synthetic/SYN_image_00003"
    sp = SplitParams(seed=3, val=0.3, test=0.3)
    groups = [f"HELEN/HELEN_{i}_1" for i in range(400)]
    got = [P.split_of(g, sp) for g in groups]
    frac = {s: got.count(s) / len(got) for s in ("train", "val", "test")}
    assert abs(frac["test"] - 0.3) < 0.08 and abs(frac["val"] - 0.3) < 0.08
    assert got != [P.split_of(g, SplitParams(seed=4, val=0.3, test=0.3)) for g in groups]  # seeded
    # a 300W-LP-like tree: subsets from the top folders, variants and _Flip twins share a split
    for sub in ("AFW", "AFW_Flip", "IBUG"):
        for j in range(3):
            for k in range(2):
                d = tmp_path / sub
                d.mkdir(exist_ok=True)
                (d / f"{sub[:4].rstrip('_')}_{j}_1_{k}.mat").write_bytes(f"{sub}{j}{k}".encode())
    items = P.list_items(tmp_path, "synthetic", sp)
    assert {it.subset for it in items} == {"AFW", "AFW_Flip", "IBUG"}
    by_group: dict[str, set] = {}
    for it in items:
        by_group.setdefault(it.source_id, set()).add(it.split)
    assert len(by_group) == 6 and all(len(v) == 1 for v in by_group.values())
    assert (
        sum(1 for it in items if it.source_id == "AFW/AFW_0_1") == 4
    )  # 2 variants x (AFW + AFW_Flip)


def test_inexact_set_is_not_flipped_and_says_so(build_world, tmp_path):
    w = dict(build_world)
    tpl = w["template"]
    ids = np.flatnonzero(tpl.pixel_uv[:, 0] < tpl.res // 2 - 3)[::97]  # left side only: no partners
    lset = make_set(tpl, ids, name="one-sided")
    assert not lset.mirror_exact
    w["set_path"] = lset.save(tmp_path / "one.json")
    r = B.run_build(
        w["model_params"], small_build_params(), SPLITS, build_paths(w, tmp_path / "ds")
    )
    assert r.manifest["flip"] is False and r.manifest["counts"]["flip"] == {"false": 8}
    assert any("no exact mirror permutation" in n for n in r.manifest["notes"])


# ----------------------------------------------------------------------------- relabel


def test_relabel_adds_sidecars_without_touching_shards(world_dataset, build_world, tmp_path):
    w = dict(build_world)
    tpl = w["template"]
    dst = tmp_path / "ds"
    shutil.copytree(world_dataset[0], dst)
    shards_before = {k: v for k, v in tree_bytes(dst).items() if k.startswith(("data/", "hdf5/"))}
    # 1. the build's own set under another name: the new column equals the built labels bit for bit
    same = make_set(tpl, w["set"].ids, name="same", kpt68=w["set"].kpt68)
    p_same = same.save(tmp_path / "same.json")
    mp = w["model_params"]
    rr = R.run_relabel(
        mp, dataset_dir=dst, set_path=p_same, model_dir=mp.dir, template_dir=w["template_dir"]
    )
    man = rr.value.to_dict()
    assert rr.outputs == {
        "dataset": dst,
        "manifest": dst / "manifest.json",
        "card": dst / "README.md",
        "licence": dst / "LICENSE.md",
    }
    assert rr.metrics == {"rows": 16, "sidecars": 8}
    assert rr.value.sha256 == hashlib.sha256((dst / "manifest.json").read_bytes()).hexdigest()
    assert "landmarks__same" in man["columns"] and man["extra_sets"]["same"]["n_points"] == len(
        same
    )
    assert {
        k: v for k, v in tree_bytes(dst).items() if k in shards_before
    } == shards_before  # shards untouched
    side = {f["shard"]: f for f in man["extra_sets"]["same"]["files"]}
    assert sorted(side) == sorted(e["path"] for e in man["files"])
    for e in man["files"]:
        f = side[e["path"]]
        assert (
            f["path"] == sidecar_name(e["path"], "same")
            and hashlib.sha256((dst / f["path"]).read_bytes()).hexdigest() == f["sha256"]
        )
    assert sorted(f["path"] for f in man["extra_sets"]["same"]["files"]) == sorted(
        f"labels/same/{s}{x}" for s in CHUNK_STEMS for x in (".parquet", ".h5")
    )
    for part in sorted(dst.glob("data/*.parquet")):
        t = pq.read_table(part)
        lab = pq.read_table(
            dst / sidecar_name(part.name, "same")
        )  # pyarrow alone: the two tables align row by row
        assert lab.column("id").to_pylist() == t.column("id").to_pylist()
        joined = t.append_column("landmarks__same", lab.column("landmarks__same"))
        np.testing.assert_array_equal(np.array(joined.column("landmarks__same").to_pylist(), np.float32),
                                      np.array(t.column("landmarks").to_pylist(), np.float32))  # fmt: skip
    with (
        h5py.File(dst / f"hdf5/{TRAIN0}.h5", "r") as f,
        h5py.File(dst / sidecar_name(f"hdf5/{TRAIN0}.h5", "same"), "r") as g,
    ):
        np.testing.assert_array_equal(g["landmarks__same"][()], f["landmarks"][()])
        assert list(g["id"][()]) == list(f["id"][()])
    # a rerun of relabel is idempotent; a rerun of the same build keeps the sidecars and their record
    before = tree_bytes(dst)
    R.relabel(
        mp, dataset_dir=dst, set_path=p_same, model_dir=mp.dir, template_dir=w["template_dir"]
    )
    assert tree_bytes(dst) == before
    B.run_build(mp, small_build_params(), SPLITS, build_paths(w, dst))
    assert tree_bytes(dst) == before
    # the torch dataset reads the sidecar column transparently
    from densemark.datasets.torch_data import ShardDataset

    ds, dss = (
        ShardDataset(dst, with_image=False),
        ShardDataset(dst, column="landmarks__same", with_image=False),
    )
    assert dss.landmark_set["name"] == "same" and len(dss) == len(ds)
    for i in (0, 5, len(ds) - 1):
        np.testing.assert_array_equal(dss[i]["landmarks"], ds[i]["landmarks"])
        assert dss[i]["id"] == ds[i]["id"]
    # 2. a denser set: equals a full build with that set (flipped rows included)
    mir = tpl.mirror_ids
    pick = np.flatnonzero(mir >= 0)[::40]
    dense = make_set(tpl, np.unique(np.concatenate([pick, mir[pick]])), name="dense")
    assert dense.mirror_exact and len(dense) > len(w["set"])
    p_dense = dense.save(tmp_path / "dense.json")
    out_copy = tmp_path / "relabelled"
    R.relabel(
        mp,
        dataset_dir=dst,
        set_path=p_dense,
        model_dir=mp.dir,
        template_dir=w["template_dir"],
        out_dir=out_copy,
    )
    man2 = json.loads((out_copy / "manifest.json").read_text())
    assert sorted(man2["extra_sets"]) == ["dense", "same"] and tree_bytes(dst) == before
    w["set_path"] = p_dense
    full = tmp_path / "full"
    B.run_build(mp, small_build_params(kpt68_tol=1.0), SPLITS, build_paths(w, full))
    for part in sorted(full.glob("data/*.parquet")):
        a = pq.read_table(part).column("landmarks").to_pylist()
        b = (
            pq.read_table(out_copy / sidecar_name(part.name, "dense"))
            .column("landmarks__dense")
            .to_pylist()
        )
        np.testing.assert_array_equal(np.array(a, np.float32), np.array(b, np.float32))
    h5only = tmp_path / "h5only"  # the HDF5 sidecars, read the same way
    shutil.copytree(out_copy, h5only)
    m5 = json.loads((h5only / "manifest.json").read_text())
    m5["formats"] = ["hdf5"]
    (h5only / "manifest.json").write_text(json.dumps(m5))
    d5, dp = (
        ShardDataset(h5only, column="landmarks__dense", with_image=False),
        ShardDataset(out_copy, column="landmarks__dense", with_image=False),
    )
    assert d5.format == "hdf5" and len(d5) == len(dp)
    for i in (1, 6):
        np.testing.assert_array_equal(d5[i]["landmarks"], dp[i]["landmarks"])
        assert d5[i]["landmarks"].shape == (len(dense), 3)
    # a sidecar whose rows do not match its shard is refused
    bad = pq.read_table(out_copy / sidecar_name(f"data/{TRAIN0}.parquet", "dense"))
    pq.write_table(bad.slice(1), out_copy / sidecar_name(f"data/{TRAIN0}.parquet", "dense"))
    with pytest.raises(InputError, match="rows do not match"):
        ShardDataset(out_copy, column="landmarks__dense")


# ----------------------------------------------------------------------------- torch


def test_shard_dataset_with_dataloader_workers(world_dataset):
    import torch

    from densemark.datasets.torch_data import ShardDataset

    out, res = world_dataset
    ds = ShardDataset(out)
    assert len(ds) == 16 and ds.manifest_sha256 == res.manifest_sha256
    k = ds.landmark_set["n_points"]
    item = ds[3]
    assert item["image"].shape == (64, 64, 3) and item["image"].dtype == np.uint8
    assert item["landmarks"].shape == (k, 3) and item["kpt68"].shape == (68, 3)
    assert item["flip"] is True and item["id"].endswith("/flip")
    tr = ShardDataset(out, split="train", with_image=False)
    assert 0 < len(tr) < len(ds) and "image" not in tr[0]
    ids = [ds[i]["id"] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(
        ds, batch_size=4, num_workers=2, collate_fn=list, shuffle=False
    )
    got = [x["id"] for b in loader for x in b]
    assert got == ids
    df = _df(pq.read_table(out / "data/test-00001-of-00002.parquet"))  # rows 14, 15: the last chunk
    np.testing.assert_array_equal(ds[14]["landmarks"], np.asarray(df["landmarks"][0], np.float32))


@pytest.mark.parametrize("err_scale, matmul_ratio", [(1.0, 1e9), (1e30, 1e9), (1.0, 0)])
def test_mesh_minimum_search_is_exact(build_world, err_scale, matmul_ratio):
    """The patch-bounded z minimum equals pose_batch's full-mesh minimum bit for bit, over varied
    fits; also when every candidate goes through the left-to-right fallback (err_scale), and
    with the products of the candidate pairs instead of one matrix product (matmul_ratio)."""
    from tests.factories import grid_model

    rng = np.random.default_rng(11)
    for model, scale in ((build_world["model"], 3e4), (grid_model(), 300.0)):
        uvm = UVMap.for_model(model, 64)
        from densemark.faces.uvmap import derive_template

        tpl = derive_template(model, uvm)
        geo = LabelGeometry(
            model,
            uvm,
            tpl,
            np.arange(0, tpl.n_vertices, 17),
            err_scale=err_scale,
            matmul_ratio=matmul_ratio,
        )
        b = 40
        sp = rng.normal(0, scale, (b, model.n_shape))
        ep = rng.normal(0, 1, (b, model.n_exp))
        pose = np.column_stack([rng.uniform(-0.6, 0.6, b), rng.uniform(-1.6, 1.6, b), rng.uniform(-0.5, 0.5, b),
                                rng.uniform(80, 120, b), rng.uniform(80, 120, b), rng.normal(0, 10, b), rng.uniform(5e-4, 1e-3, b)])  # fmt: skip
        lab = geo.compute(sp, ep, pose, np.full(b, 200), res=64)
        g = pose_batch(model, sp, ep, pose, 200, res=64)
        assert [c.tz for c in lab.crops] == [c.tz for c in g.crops]


def test_cached_mesh_patches_give_the_same_labels(build_world, tmp_path):
    """Patch bounds loaded from the cache file equal the computed ones; a corrupt cache is rebuilt."""
    w = build_world
    uvm = UVMap.for_model(w["model"], w["model_params"].uv_res)
    cache = tmp_path / "patches.npz"
    fresh = LabelGeometry(w["model"], uvm, w["template"], w["set"].ids)
    saved = LabelGeometry(w["model"], uvm, w["template"], w["set"].ids, patches_cache=cache)
    assert cache.is_file()
    loaded = LabelGeometry(w["model"], uvm, w["template"], w["set"].ids, patches_cache=cache)
    for f in ("rho", "centre", "order", "starts", "ends", "mean_sorted"):
        np.testing.assert_array_equal(getattr(loaded._patches, f), getattr(fresh._patches, f))
    assert (loaded._patches.amax, loaded._patches.rsum, loaded._patches.n_shape) == (
        fresh._patches.amax,
        fresh._patches.rsum,
        fresh._patches.n_shape,
    )
    rng = np.random.default_rng(3)
    b = 12
    args = (rng.normal(0, 3e4, (b, w["model"].n_shape)), rng.normal(0, 1, (b, w["model"].n_exp)),
            np.column_stack([rng.uniform(-0.5, 0.5, (b, 3)), rng.uniform(80, 120, (b, 2)), np.zeros(b), np.full(b, 8e-4)]), np.full(b, 200))  # fmt: skip
    ref = fresh.compute(*args, res=64)
    for geo in (saved, loaded):
        got = geo.compute(*args, res=64)
        np.testing.assert_array_equal(got.landmarks, ref.landmarks)
        assert [c.tz for c in got.crops] == [c.tz for c in ref.crops]
    cache.write_bytes(b"not a zip")
    again = LabelGeometry(w["model"], uvm, w["template"], w["set"].ids, patches_cache=cache)
    np.testing.assert_array_equal(again._patches.rho, fresh._patches.rho)
    np.testing.assert_array_equal(again.compute(*args, res=64).landmarks, ref.landmarks)


def test_model_hash_and_pose_affine_forms(build_world):
    """The block-wise model hash equals the plain one; pose_affine takes crop vectors or transforms alike."""
    import hashlib

    from densemark.faces.crop import CropTransform
    from densemark.faces.geometry import pose_affine

    m = build_world["model"]
    h = hashlib.sha256()
    for a in (
        m.mean,
        np.asfortranarray(m.shape_basis),
        m.exp_basis,
        m.triangles,
        m.kpt_ind,
        m.uv if m.uv is not None else np.zeros(0),
    ):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    fm = dataclasses.replace(
        m, shape_basis=np.asfortranarray(m.shape_basis), exp_basis=np.asfortranarray(m.exp_basis)
    )
    assert fm.content_hash() == m.content_hash() == h.hexdigest()
    rng = np.random.default_rng(5)
    pose = np.column_stack(
        [rng.uniform(-1, 1, (6, 3)), rng.uniform(50, 150, (6, 3)), rng.uniform(5e-4, 1e-3, 6)]
    )
    vec = np.column_stack([rng.uniform(0.2, 2, 6), rng.normal(0, 30, (6, 3)), np.full(6, 64)])
    tfs = [CropTransform(float(s), float(x), float(y), float(z), int(n)) for s, x, y, z, n in vec]
    a1, o1 = pose_affine(pose, np.full(6, 200.0), vec)
    a2, o2 = pose_affine(pose, np.full(6, 200.0), tfs)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(o1, o2)
    for i, tf in enumerate(tfs):  # the per-sample definition
        flip = np.array([tf.scale, -tf.scale, tf.scale])
        from densemark.faces.geometry import rotation_exact

        np.testing.assert_array_equal(
            a1[i], (flip * pose[i, 6])[:, None] * rotation_exact(pose[i, :3])[0]
        )
        np.testing.assert_array_equal(
            o1[i], flip * pose[i, 3:6] + np.array([tf.tx, tf.scale * 199.0 + tf.ty, 0.0])
        )


def test_hdf5_only_posmaps_and_kpt68_check(build_world, tmp_path):
    """HDF5-only build read by ShardDataset; optional position maps; a set whose 68 subset is wrong is quarantined."""
    from densemark.datasets.torch_data import ShardDataset

    w = dict(build_world)
    out = tmp_path / "h5"
    r = B.run_build(
        w["model_params"],
        small_build_params(formats=["hdf5"], posmaps=True),
        SPLITS,
        build_paths(w, out),
    )
    assert not list(out.rglob("*.parquet")) and r.manifest["rows"] == 16
    assert "configs" not in yaml.safe_load(
        (out / "README.md").read_text().split("---\n")[1]
    )  # nothing datasets can load
    ds = ShardDataset(out)
    assert len(ds) == 16 and ds[1]["flip"] and ds[1]["image"].shape == (64, 64, 3)
    tpl = w["template"]
    with h5py.File(out / f"hdf5/{TRAIN0}.h5", "r") as f:
        pm = f["posmap"][0].astype(np.float32)  # (V, 3) float16 face pixels
        src = f["source_file"][0].decode()
        lm = f["landmarks"][0]
    assert pm.shape == (tpl.n_vertices, 3)
    fit = read_fit_mat(w["source_dir"] / src)
    g = pose_batch(
        w["model"], fit.shape_para[None], fit.exp_para[None], fit.pose_para[None], 200, res=64
    )
    ref = (
        UVMap.for_model(w["model"], tpl.res)
        .render(g.vertices, vertex_major=True)
        .reshape(-1, 3)[tpl.face_ind]
    )
    np.testing.assert_allclose(pm, ref, atol=0.05, rtol=1e-3)
    np.testing.assert_allclose(pm[w["set"].ids], lm, atol=0.05, rtol=1e-3)
    # a set whose kpt68 positions point at the wrong landmarks
    bad = make_set(tpl, w["set"].ids, name="shuffled", kpt68=np.roll(w["set"].kpt68, 5))
    w["set_path"] = bad.save(tmp_path / "bad.json")
    r = B.run_build(
        w["model_params"], small_build_params(), SPLITS, build_paths(w, tmp_path / "bad")
    )
    assert r.manifest["rows"] == 0 and r.manifest["quarantined"] == 8
    assert {q["field"] for q in r.report.quarantine} == {"kpt68"}


def test_blocks_follow_row_groups_and_the_block_shuffle_keeps_them_together(world_dataset):
    import pyarrow.parquet as pq

    from densemark.datasets.torch_data import ShardDataset
    from densemark.train.data import BlockShuffleSampler, loader_generator

    out, _ = world_dataset
    for split in (None, "train"):
        ds = ShardDataset(out, split=split, with_image=False)
        blocks = ds.blocks()
        assert np.array_equal(np.concatenate(blocks), np.arange(len(ds)))  # a partition, in order
        # naive reference: the (file, row group) of every index, read from the Parquet metadata
        unit = []
        for fi, row in ds.index.tolist():
            md = pq.ParquetFile(ds.files[fi]).metadata
            ends = np.cumsum([md.row_group(g).num_rows for g in range(md.num_row_groups)])
            unit.append((fi, int(np.searchsorted(ends, row, side="right"))))
        for b in blocks:
            assert len({unit[i] for i in b}) == 1
        assert len(blocks) == len(set(unit))
    s = list(BlockShuffleSampler(blocks, loader_generator(0, 1)))
    assert sorted(s) == list(range(len(ds)))
    block_of = {i: k for k, b in enumerate(blocks) for i in b.tolist()}
    runs = [block_of[i] for i in s]
    assert (
        sum(a != b for a, b in zip(runs, runs[1:], strict=False)) == len(blocks) - 1
    )  # each block contiguous
    assert s == list(BlockShuffleSampler(blocks, loader_generator(0, 1)))  # seeded
    assert s != list(BlockShuffleSampler(blocks, loader_generator(0, 2))) or len(ds) < 3


def test_source_item_record_is_asdict():
    """The chunk fingerprints hash ``record()``: it must stay what ``asdict`` gives."""
    it = P.SourceItem("AFW/a_1.mat", "AFW", "AFW/a", "train", "0" * 64)
    assert it.record() == dataclasses.asdict(it)


def test_chunk_result_to_dict_is_asdict():
    """The chunk record is written from ``to_dict()``: it must stay ``asdict`` less ``skipped``."""
    r = C.ChunkResult(3, "f" * 64, {"parquet": {"name": "p", "rows": 2}}, {"rows": 2}, [{"sample": "a", "error": "e"}],
                      {"id": ["a", "b"], "flip": [False, True], "yaw": [1.5, -1.5]}, skipped=True)  # fmt: skip
    d = dataclasses.asdict(r)
    d.pop("skipped")
    got = r.to_dict()
    assert got == d and list(got) == list(d)
    got["rows"]["id"].append("c")
    got["files"]["parquet"]["rows"] = 9
    assert r.rows["id"] == ["a", "b"] and r.files["parquet"]["rows"] == 2  # copies, not views


def test_source_hashes_in_other_processes_equal_the_serial_ones(tmp_path):
    """``list_items(pmap=...)`` (the build's workers hash the source) gives the serial items; each
    hash is sha256(mat bytes + '|' + first image's bytes), with '|' alone when there is no image."""
    from concurrent.futures import ProcessPoolExecutor

    for i in range(70):  # more than one hashing batch
        (tmp_path / f"S_{i:03d}_0.mat").write_bytes(f"mat{i}".encode())
        if i % 7:
            (tmp_path / f"S_{i:03d}_0{'.png' if i % 5 == 0 else '.jpg'}").write_bytes(
                f"img{i}".encode() * 3
            )
    (tmp_path / "S_003_0.jpeg").mkdir()  # not a file: skipped for the next suffix
    serial = P.list_items(tmp_path, "synthetic", SPLITS)
    with ProcessPoolExecutor(2) as ex:
        assert P.list_items(tmp_path, "synthetic", SPLITS, pmap=ex.map) == serial
    assert len(serial) == 70
    for it in serial:
        i = int(it.stem.split("_")[1])
        img = b"" if i % 7 == 0 else f"img{i}".encode() * 3
        assert it.sha256 == hashlib.sha256(f"mat{i}".encode() + b"|" + img).hexdigest()


def test_a_build_after_a_progress_bar_still_forks_its_workers():
    """tqdm leaves a monitor thread running after a bar; the build stops it (tqdm starts a new
    one with its next bar) instead of taking the slower spawn path."""
    import threading

    from tqdm import tqdm
    from tqdm._monitor import TMonitor

    old = tqdm.monitor_interval
    tqdm.monitor_interval = 10
    try:
        for _ in tqdm(range(2), disable=True):
            pass
        if not any(isinstance(t, TMonitor) for t in threading.enumerate()):
            pytest.skip("tqdm started no monitor thread here")
        others = [
            t
            for t in threading.enumerate()
            if t is not threading.main_thread() and not isinstance(t, TMonitor)
        ]
        if others:
            pytest.skip(f"other threads are running: {others}")
        assert B._single_threaded()
        assert not any(isinstance(t, TMonitor) for t in threading.enumerate())
        for _ in tqdm(range(2), disable=True):
            pass
        assert any(
            isinstance(t, TMonitor) and t.is_alive() for t in threading.enumerate()
        )  # tqdm restarts it
    finally:
        tqdm.monitor_interval = old

"""A build folder is a Hugging Face dataset repository: checked with the real ``datasets`` and
``huggingface_hub`` libraries, offline (no Hub is reachable; HF_HUB_OFFLINE / HF_DATASETS_OFFLINE
are set and every cache lives in a temporary folder), and with pyarrow / pandas / DuckDB / h5py
and no densemark code."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from densemark.datasets import build as B
from densemark.datasets import relabel as R
from densemark.datasets.hub import swap_pairs
from densemark.datasets.manifest import Manifest
from densemark.datasets.torch_data import ShardDataset
from densemark.sampling.landmark_set import make_set
from tests.factories import SPLITS, build_paths, make_world, small_build_params

K = 520  # the paper's set size
RES = 256


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """The ``datasets`` module, imported with the Hub unreachable by configuration and its caches
    in a temporary folder."""
    pytest.importorskip(
        "datasets", reason="the datasets library is a dev dependency (pip install -e .[dev])"
    )
    cache = tmp_path_factory.mktemp("hf")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets"),
                     "HF_HUB_DISABLE_TELEMETRY": "1"}.items():  # fmt: skip
            mp.setenv(k, v)
        import datasets

        datasets.disable_progress_bars()
        yield datasets


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubworld")
    w = make_world(root, n=8, n_points=K)
    w["set"], w["set_path"] = _set_of(w, K, root / "set520.json")
    assert len(w["set"]) == K and w["set"].mirror_exact and w["set"].kpt68 is not None
    out = root / "ds"
    res = B.run_build(w["model_params"], small_build_params(res=RES), SPLITS, build_paths(w, out))
    return w, out, res.value


def _set_of(w: dict, k: int, path: Path):
    """A mirror-exact set of exactly ``k`` points: the world set's 68 keypoints with their
    mirrors, then its other points pair by pair."""
    tpl, ws = w["template"], w["set"]
    mir = tpl.mirror_ids
    kpt = ws.ids[ws.kpt68]
    ids = list(dict.fromkeys([*kpt.tolist(), *mir[kpt].tolist()]))
    for v in ws.ids.tolist():
        if len(ids) >= k:
            break
        new = [x for x in dict.fromkeys([v, int(mir[v])]) if x not in ids]
        if len(ids) + len(new) <= k:
            ids += new
    assert len(ids) == k
    pos = {v: i for i, v in enumerate(ids)}
    lset = make_set(tpl, ids, name="dense-520", kpt68=[pos[v] for v in kpt.tolist()])
    return lset, lset.save(path)


def _splits(man: Manifest) -> dict[str, int]:
    order = ("train", "val", "test")
    return {s: man.counts["split"][s] for s in order if s in man.counts["split"]}


def _head(folder: Path) -> dict:
    return yaml.safe_load((folder / "README.md").read_text(encoding="utf-8").split("---\n")[1])


def test_load_dataset_gives_splits_images_and_point_arrays(hf, world, tmp_path):
    w, out, man = world
    assert set(_splits(man)) == {"train", "val", "test"}, (
        "the test world must have all three splits"
    )
    ds = hf.load_dataset(str(out), cache_dir=str(tmp_path / "c"))
    assert list(ds) == list(_splits(man)) and {s: d.num_rows for s, d in ds.items()} == _splits(man)
    row = ds["train"][0]
    img = row["image"]
    assert type(img).__module__.startswith("PIL.") and img.size == (RES, RES) and img.mode == "RGB"
    assert np.asarray(row["landmarks"]).shape == (K, 3) and np.asarray(row["kpt68"]).shape == (
        68,
        3,
    )
    assert (
        np.asarray(row["pose"]).shape == (3,)
        and np.asarray(row["crop"]).shape == (5,)
        and row["split"] == "train"
    )
    # the same row as ShardDataset gives it: labels bit for bit, image pixels alike
    ref = ShardDataset(out, split="train")[0]
    assert ref["id"] == row["id"]
    np.testing.assert_array_equal(np.asarray(row["landmarks"], np.float32), ref["landmarks"])
    np.testing.assert_array_equal(np.asarray(row["kpt68"], np.float32), ref["kpt68"])
    np.testing.assert_array_equal(np.asarray(img), ref["image"])
    # every row of every split in its split, ids as the manifest's records list them
    for s, d in ds.items():
        assert set(d["split"]) == {s}
    num = ds["val"].with_format("numpy")[0]
    assert num["landmarks"].shape == (K, 3) and num["landmarks"].dtype == np.float32


def test_streaming_gives_the_same_rows(hf, world, tmp_path):
    w, out, man = world
    full = hf.load_dataset(str(out), cache_dir=str(tmp_path / "c"))
    st = hf.load_dataset(str(out), streaming=True, cache_dir=str(tmp_path / "c"))
    assert list(st) == list(_splits(man))
    for s, n in _splits(man).items():
        rows = list(st[s])
        assert len(rows) == n and [r["id"] for r in rows] == full[s]["id"]
        r = rows[0]
        assert r["image"].size == (RES, RES) and np.asarray(r["landmarks"]).shape == (K, 3)
        np.testing.assert_array_equal(
            np.asarray(r["landmarks"], np.float32), np.asarray(full[s][0]["landmarks"], np.float32)
        )


def test_a_lone_parquet_file_decodes_too(hf, world, tmp_path):
    """The features travel in each shard's metadata: loading the files directly (no card) gives
    images and (K, 3) arrays, not binary and flat lists."""
    w, out, man = world
    d = hf.load_dataset(
        "parquet", data_files=str(out / "data" / "train-*.parquet"), cache_dir=str(tmp_path / "c")
    )["train"]
    assert d.num_rows == man.counts["split"]["train"]
    assert isinstance(d.features["image"], hf.Image)
    assert np.asarray(d[0]["landmarks"]).shape == (K, 3)
    want = hf.Features._from_yaml_list(_head(out)["dataset_info"][0]["features"])
    assert (
        d.features
        == want
        == hf.Features.from_arrow_schema(pq.read_schema(out / man.shards()[0]["path"]))
    )


def test_card_metadata_is_valid_offline(hf, world):
    """What is checked without the Hub (``DatasetCard.validate`` posts to the Hub): the card parses
    with huggingface_hub (``DatasetCard.load`` / ``metadata_load`` / ``DatasetCardData``); the
    licence fields the Hub requires for ``license: other`` (``license_name``, ``license_link``
    naming a file of the folder); the size category; ``configs`` and ``dataset_info`` parse as
    ``datasets`` parses them on load; each split's pattern matches exactly its shards, and no
    metadata, record, HDF5 or sidecar file matches any pattern; the citations, bias section and
    swap tables are in the body."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData
    from huggingface_hub.repocard import metadata_load

    w, out, man = world
    card = DatasetCard.load(out / "README.md")
    assert isinstance(card.data, DatasetCardData)
    meta = card.data.to_dict()
    assert meta == metadata_load(out / "README.md") == _head(out)
    assert DatasetCardData(**meta).to_dict() == meta
    assert (
        meta["license"] == "other"
        and meta["license_name"]
        and (out / meta["license_link"]).is_file()
    )
    assert "Terms:" in (out / meta["license_link"]).read_text()
    assert meta["size_categories"] == ["n<1K"] and meta["task_categories"] == ["keypoint-detection"]
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert list(configs) == ["default"]
    infos = DatasetInfosDict.from_dataset_card_data(card.data)
    info = infos["default"]
    assert {s: v.num_examples for s, v in info.splits.items()} == _splits(man)
    assert info.features["landmarks"] == hf.List(hf.List(hf.Value("float32"), length=3), length=K)
    assert info.features["kpt68"] == hf.List(hf.List(hf.Value("float32"), length=3), length=68)
    assert isinstance(info.features["image"], hf.Image) and info.features["shape_para"] == hf.List(
        hf.Value("float64")
    )
    files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    pats = {f["split"]: f["path"] for f in meta["configs"][0]["data_files"]}
    for s, pat in pats.items():
        assert sorted(f for f in files if fnmatch.fnmatch(f, pat)) == sorted(
            e["path"] for e in man.shards() if e["split"] == s
        )
    others = [f for f in files if not f.startswith("data/")]
    assert {"README.md", "LICENSE.md", "manifest.json", "report.json"} <= set(others) and any(
        f.startswith("hdf5/") for f in others
    )
    assert not [f for f in others if any(fnmatch.fnmatch(f, p) for p in pats.values())]
    body = card.text
    for key in (
        "basak2023lightweight",
        "paysan2009bfm",
        "zhu2016face",
        "koestinger2011aflw",
        "## Bias, risks and limitations",
        "push_to_hub",
        "load_dataset(",
    ):
        assert key in body
    # the swap tables: the flip_pairs JSON rebuilds the mirror permutations
    tables = re.findall(r"`flip_pairs`\): `(\[.*?\])`", body)
    assert len(tables) == 2
    for got, perm in zip(tables, (man.landmark_set["mirror_perm"], None), strict=True):
        pairs = [tuple(p) for p in json.loads(got)]
        if perm is not None:
            assert (
                pairs == swap_pairs(perm)[0]
                and len(pairs) == (np.asarray(perm) != np.arange(K)).sum() // 2
            )
            rebuilt = np.arange(K)
            for i, j in pairs:
                rebuilt[i], rebuilt[j] = j, i
            np.testing.assert_array_equal(rebuilt, perm)
        else:
            assert len(pairs) == 29  # iBUG 68: 68 points, 10 on the mirror plane


def test_relabelled_set_loads_as_its_own_config(hf, world, tmp_path):
    w, out, man = world
    other = make_set(w["template"], w["set"].ids[::7], name="sparse set")
    p = other.save(tmp_path / "sparse.json")
    dst = tmp_path / "relabelled"
    mp = w["model_params"]
    R.run_relabel(
        mp,
        dataset_dir=out,
        set_path=p,
        model_dir=mp.dir,
        template_dir=w["template_dir"],
        out_dir=dst,
    )
    head = _head(dst)
    assert [c["config_name"] for c in head["configs"]] == ["default", "sparse_set"]
    ds = hf.load_dataset(str(dst), cache_dir=str(tmp_path / "c"))
    assert {s: d.num_rows for s, d in ds.items()} == _splits(
        man
    ) and "landmarks__sparse set" not in ds["train"].features
    lab = hf.load_dataset(str(dst), "sparse_set", cache_dir=str(tmp_path / "c"))
    assert {s: d.num_rows for s, d in lab.items()} == _splits(man)
    assert list(lab["train"].features) == ["id", "landmarks__sparse set"]
    for s in lab:
        assert (
            lab[s]["id"] == ds[s]["id"]
        )  # row-aligned with the default config: join by position or id
    sd = ShardDataset(dst, split="test", column="landmarks__sparse set", with_image=False)
    np.testing.assert_array_equal(
        np.asarray(lab["test"][1]["landmarks__sparse set"], np.float32), sd[1]["landmarks"]
    )
    assert sd[1]["landmarks"].shape == (len(other), 3)


def test_other_readers_need_no_densemark_code(world):
    """pyarrow, pandas, DuckDB and h5py read the same rows alone."""
    w, out, man = world
    import pyarrow.dataset as pads

    t = pads.dataset(out / "data", format="parquet").to_table()
    assert t.num_rows == man.rows and t.schema.field("image").type.names == ["bytes", "path"]
    pd = pytest.importorskip("pandas")
    df = pd.read_parquet(out / "data" / f"{man.shards()[0]['path'].split('/')[-1]}")
    assert np.stack([np.stack(r) for r in df["landmarks"]]).shape == (len(df), K, 3)
    assert df["image"][0]["bytes"][:2] == b"\xff\xd8"  # JPEG
    e = man.shards("hdf5")[0]
    with h5py.File(out / e["path"], "r") as f:
        assert f["landmarks"].shape == (e["rows"], K, 3)
        np.testing.assert_array_equal(
            f["landmarks"][()], np.stack([np.stack(r) for r in df["landmarks"]])
        )
    import duckdb  # a dev dependency: the SQL reader people point at a Hub dataset's files

    ((n,),) = duckdb.sql(
        f"select count(*) from read_parquet('{out.as_posix()}/data/*.parquet')"
    ).fetchall()
    assert n == man.rows


def test_rebuild_into_an_older_layout_leaves_nothing_loadable_behind(world, tmp_path):
    """Files of an earlier layout (version 2 shards at the folder's root) and shards outside the
    plan are removed by a rebuild, so no stale file is left for a pattern or a reader."""
    w, out, man = world
    dst = tmp_path / "ds"
    shutil.copytree(out, dst)
    (dst / "part-00000.parquet").write_bytes(b"old")
    (dst / "data" / "train-00009-of-00010.parquet").write_bytes(b"stale")
    B.run_build(w["model_params"], small_build_params(res=RES), SPLITS, build_paths(w, dst))
    assert (
        not (dst / "part-00000.parquet").exists()
        and not (dst / "data" / "train-00009-of-00010.parquet").exists()
    )
    assert Manifest.load(dst) == man


def test_licence_fields_follow_the_licence_chain(world):
    """``license: other`` with ``license_name`` for inherited terms (BFM here); an all-densemark
    build (embedded model, synthetic source) is ``mit``; ``license_link`` always names LICENSE.md."""
    import dataclasses

    from densemark.datasets.hub import card_metadata

    w, out, man = world
    head = card_metadata(man, out)
    assert (head["license"], head["license_name"], head["license_link"]) == (
        "other",
        "densemark-licence-chain",
        "LICENSE.md",
    )
    own = dataclasses.replace(
        man,
        model={**man.model, "source": "embedded"},
        counts={**man.counts, "subset": {"synthetic": man.rows}},
    )
    head = card_metadata(own, out)
    assert (
        head["license"] == "mit"
        and "license_name" not in head
        and head["license_link"] == "LICENSE.md"
    )
    assert "synthetic" in head["tags"]

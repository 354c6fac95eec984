"""The dataset card: generated from a tiny build's files, complete, byte-stable, checked inputs."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from densemark.card import card as cd
from densemark.card.params import CardParams
from densemark.core.errors import InputError
from densemark.core.report import StageResult
from densemark.datasets.build import run_build
from tests.factories import SPLITS, build_paths, make_world, small_build_params

SECTIONS = (
    "Motivation",
    "Composition",
    "Collection Process",
    "Preprocessing/cleaning/labeling",
    "Uses",
    "Distribution",
    "Maintenance",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cardbuild")
    w = make_world(root, n=6, n_points=40)
    res = run_build(w["model_params"], small_build_params(), SPLITS, build_paths(w, root / "ds"))
    return w, root / "ds", res


def _card(built, out: Path, **kw) -> StageResult:
    w, ds, _ = built
    return cd.run_card(
        CardParams(n_samples=6, grid_cols=3, **kw),
        dataset_dir=ds,
        set_path=w["set_path"],
        template_dir=w["template_dir"],
        out_dir=out,
    )


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(data):
        n = struct.unpack(">I", data[i : i + 4])[0]
        out.append(data[i + 4 : i + 8])
        i += 12 + n
    return out


def test_card_contents_follow_the_build(built, tmp_path):
    w, ds, res = built
    r = _card(built, tmp_path / "card")
    man = json.loads((ds / "manifest.json").read_text())
    md = (tmp_path / "card" / "README.md").read_text()
    # Hugging Face-style header
    head = yaml.safe_load(md.split("---\n")[1])
    assert head["license"] == "other"
    assert head["pretty_name"] == CardParams().pretty_name
    assert head["size_categories"] == ["n<1K"]
    assert "keypoint-detection" in head["task_categories"] and "facial-landmarks" in head["tags"]
    assert ("synthetic" in head["tags"]) == (man["model"]["source"] == "embedded")
    # the build folder's own Hub metadata: loadable splits, licence link
    assert head == yaml.safe_load((ds / "README.md").read_text().split("---\n")[1]) | {
        "pretty_name": CardParams().pretty_name
    }
    assert [f["path"] for f in head["configs"][0]["data_files"]] == [
        f"data/{s}-*.parquet" for s in man["counts"]["split"] if s == "train"
    ] + [f"data/{s}-*.parquet" for s in ("val", "test") if s in man["counts"]["split"]]
    assert head["license_link"] == "LICENSE.md" and (ds / "LICENSE.md").is_file()
    for s in (*SECTIONS, "Bias, risks and limitations", "Citation"):
        assert f"\n## {s}\n" in md
    for key in ("basak2023lightweight", "paysan2009bfm", "zhu2016face", "koestinger2011aflw"):
        assert key in md
    # JSON twin, every number from the build
    c = json.loads((tmp_path / "card" / "card.json").read_text())
    assert c == json.loads(json.dumps(r.report))
    assert (
        r.metrics == {"rows": man["rows"], "quarantined": c["quarantine"]["count"]}
        and r.value == md
    )
    assert (
        c["dataset"]["rows"]
        == man["rows"]
        == sum(t["original"] + t["flipped"] for t in c["counts_table"])
    )
    assert c["counts"] == man["counts"]
    for split, n in man["counts"]["split"].items():
        assert (
            sum(t["original"] + t["flipped"] for t in c["counts_table"] if t["split"] == split) == n
        )
        assert sum(c["pose"]["yaw_counts"][split]) == n
    assert c["dataset"]["manifest_sha256"] == res.manifest_sha256
    assert c["landmark_set"]["sha256"] == w["set"].sha256() and c["landmark_set"][
        "n_points"
    ] == len(w["set"])
    assert c["conventions"] == man["conventions"] and c["conventions"]["landmarks"] in md
    assert c["quarantine"]["count"] == man["quarantined"]
    lic = c["licence"]
    assert [
        e["used"] for e in lic["chain"] if "Basel" in e["name"] or "300W-LP (Zhu" in e["name"]
    ] == [True, False]
    # make_world's model is read as "bfm": the BFM terms reach the overall terms
    assert "non-commercial" in lic["overall"]
    assert len(c["grid"]) == 6 and set(c["grid"]) <= set(
        sum((json.loads(p.read_text())["rows"]["id"] for p in ds.glob("part-*.json")), [])
    )
    for name in cd.FIGURES.values():
        data = (tmp_path / "card" / name).read_bytes()
        chunks = _png_chunks(data)
        assert b"tIME" not in chunks and b"tEXt" not in chunks and b"iTXt" not in chunks, name
        assert f"]({name})" in md


def test_card_is_byte_stable(built, tmp_path):
    _card(built, tmp_path / "a")
    _card(built, tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    _card(built, tmp_path / "c", pretty_name="other name")
    assert (tmp_path / "c" / "README.md").read_bytes() != (
        tmp_path / "a" / "README.md"
    ).read_bytes()


def test_card_refuses_inputs_that_do_not_match(built, tmp_path):
    w, ds, _ = built
    bad = tmp_path / "ds"
    shutil.copytree(ds, bad)
    shard = next(iter(sorted(bad.glob("data/*.parquet"))))
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(InputError, match=shard.name):
        cd.run_card(
            CardParams(),
            dataset_dir=bad,
            set_path=w["set_path"],
            template_dir=w["template_dir"],
            out_dir=tmp_path / "o",
        )
    other = w["set"].to_dict()
    other["name"] = "renamed"
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(InputError, match="other.json"):
        cd.run_card(
            CardParams(),
            dataset_dir=ds,
            set_path=tmp_path / "other.json",
            template_dir=w["template_dir"],
            out_dir=tmp_path / "o",
        )
    with pytest.raises(InputError, match="manifest"):
        cd.run_card(
            CardParams(),
            dataset_dir=tmp_path / "nothing",
            set_path=w["set_path"],
            template_dir=w["template_dir"],
            out_dir=tmp_path / "o",
        )


def test_hdf5_only_build_reads_the_same(built, tmp_path):
    w, ds, _ = built
    parts = sorted(ds.glob("data/*.parquet"))
    assert parts
    for p in parts:
        a = cd.read_columns(p, ["id", "pose", "landmarks", "image"])
        b = cd.read_columns(ds / "hdf5" / f"{p.stem}.h5", ["id", "pose", "landmarks", "image"])
        assert a["id"] == b["id"] and a["image"] == b["image"]
        np.testing.assert_array_equal(a["landmarks"], b["landmarks"])
        np.testing.assert_array_equal(a["pose"], b["pose"])


def test_inline_images_embeds_the_figures_as_data_uris(built, tmp_path):
    """The Prefect artifact's markdown: every figure a base64 PNG data URI that decodes to the
    file's bytes; links to missing files and non-PNG links left as they are."""
    import base64
    import re

    r = _card(built, tmp_path / "card")
    md = r.value + "\n![gone](missing.png) [text](card.json)\n"
    out = cd.inline_images(md, tmp_path / "card")
    uris = dict(re.findall(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", out))
    assert len(uris) == len(cd.FIGURES)
    assert sorted(base64.b64decode(v) for v in uris.values()) == sorted(
        (tmp_path / "card" / n).read_bytes() for n in cd.FIGURES.values()
    )
    assert "![gone](missing.png)" in out and "[text](card.json)" in out
    assert all(f"]({n})" not in out for n in cd.FIGURES.values())


def test_licence_chain():
    entries, overall = cd.licence_chain(
        "embedded", ["synthetic"], {"sampler": {"method": "delaunay"}}
    )
    assert "MIT" in overall and "own" in overall
    assert all(
        not e["used"] for e in entries if "Basel" in e["name"] or "300W-LP (Zhu" in e["name"]
    )
    entries, overall = cd.licence_chain(
        "bfm", ["AFW", "HELEN_Flip"], {"sampler": {"method": "import", "source": "x"}}
    )
    used = {e["name"] for e in entries if e["used"]}
    assert any("Basel" in n for n in used) and any("300W-LP (Zhu" in n for n in used)
    assert "non-commercial" in overall and "300W-LP" in overall


def test_quarantine_summary_and_grid_rows():
    rep = {
        "quarantine": [
            {"sample": f"s{i}", "field": "kpt68" if i % 2 else "Pose_Para", "error": "x"}
            for i in range(5)
        ]
    }
    q = cd.quarantine_summary(rep, 2)
    assert (
        q["count"] == 5
        and q["by_field"] == {"Pose_Para": 3, "kpt68": 2}
        and [e["sample"] for e in q["entries"]] == ["s0", "s1"]
    )
    yaw = np.array([10.0, -80.0, 45.0, 0.0, 80.0, 30.0])
    valid = np.array([True, True, True, True, False, True])
    pick = cd.grid_rows(yaw, [f"r{i}" for i in range(6)], valid, 3)
    assert valid[pick].all()
    assert yaw[pick].tolist() == [-80.0, 10.0, 45.0]  # lowest, middle and highest valid yaw
    assert cd.size_category(999) == "n<1K" and cd.size_category(1000) == "1K<n<10K"


def test_cli(built, tmp_path):
    from densemark.cli import main

    w, ds, _ = built
    (tmp_path / "none.yaml").write_text("")  # an empty params file: the defaults
    argv = ["--params", str(tmp_path / "none.yaml"), "card", "--dataset", str(ds), "--set", str(w["set_path"]),
            "--template", str(w["template_dir"]), "--out", str(tmp_path / "card")]  # fmt: skip
    assert main(argv) == 0
    assert (tmp_path / "card" / "README.md").is_file()

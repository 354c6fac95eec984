"""A build folder as a Hugging Face dataset repository: ``README.md`` card and ``LICENSE.md``.

Written from the manifest (by the build and by relabel), so the folder loads as it is::

    datasets.load_dataset("data/dataset")                 # train / val / test, images, (K, 3) labels
    datasets.load_dataset("data/dataset", "<set name>")   # an extra label set of relabel

and ``push_to_hub`` publishes it unchanged. The card's YAML metadata holds ``license`` with
``license_name`` / ``license_link``, ``configs`` (one per label set, ``data_files`` per split:
``data/<split>-*.parquet``, ``labels/<set>/<split>-*.parquet``) and ``dataset_info`` (features
taken from the shards' own ``huggingface`` metadata record, split sizes from the manifest). Its
body: how to load, the columns and their conventions, the mirror permutations as swap tables,
bias / risks / limitations, the licence chain and BibTeX citations. Commit records, manifest,
report, licence and HDF5 files match no ``data_files`` pattern.

HDF5-only builds get a card without ``configs`` (the ``datasets`` library reads the Parquet
shards only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from densemark.core.atomic import write_text
from densemark.datasets.manifest import SHARD_DIR, Manifest, set_dir, split_key
from densemark.datasets.shards import HF_KEY

CARD = "README.md"
LICENSE = "LICENSE.md"
DEFAULT_CONFIG = "default"
REAL_300WLP = {"AFW", "HELEN", "IBUG", "LFPW"}
DESCRIPTIONS = {  # columns the manifest's conventions do not describe
    "id": "row id: `<subset>/<sample stem>`, `/flip` appended on mirrored copies",
    "source_id": "source image group (all pose variants of one image and its `_Flip` twin; they share a split)",
    "subset": "the source's top folder (300W-LP: AFW, HELEN, IBUG, LFPW and their `_Flip`)",
    "split": "train / val / test (also the file the row is in)",
    "source_file": "the sample's `.mat` file, relative to the source folder",
    "shape_para": "3DMM shape coefficients of the fit (300W-LP Shape_Para)",
    "exp_para": "3DMM expression coefficients of the fit (300W-LP Exp_Para)",
    "source_size": "[height, width] of the source image in pixels",
    "n_outside": "landmarks outside the crop",
    "posmap": "the full position map's face pixels (float16), same space as landmarks",
}

CITATION = """\
@article{basak2023lightweight,
  title   = {A lightweight 3D dense facial landmark estimation model from position map data},
  author  = {Basak, Shubhajit and Mangapuram, Sathish and Costache, Gabriel and McDonnell, Rachel and Schukat, Michael},
  journal = {arXiv preprint arXiv:2308.15170},
  year    = {2023}
}

@inproceedings{paysan2009bfm,
  title     = {A 3D Face Model for Pose and Illumination Invariant Face Recognition},
  author    = {Paysan, Pascal and Knothe, Reinhard and Amberg, Brian and Romdhani, Sami and Vetter, Thomas},
  booktitle = {Sixth IEEE International Conference on Advanced Video and Signal Based Surveillance (AVSS)},
  pages     = {296--301},
  year      = {2009}
}

@inproceedings{zhu2016face,
  title     = {Face Alignment Across Large Poses: A 3D Solution},
  author    = {Zhu, Xiangyu and Lei, Zhen and Liu, Xiaoming and Shi, Hailin and Li, Stan Z.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {146--155},
  year      = {2016},
  note      = {300W-LP, 3DDFA and AFLW2000-3D}
}

@inproceedings{koestinger2011aflw,
  title     = {Annotated Facial Landmarks in the Wild: A large-scale, real-world database for facial landmark localization},
  author    = {Koestinger, Martin and Wohlhart, Paul and Roth, Peter M. and Bischof, Horst},
  booktitle = {IEEE International Conference on Computer Vision Workshops (ICCVW)},
  year      = {2011},
  note      = {AFLW, the images of AFLW2000-3D}
}
"""

BIAS = (
    "- **Who is in it.** A synthetic build (the embedded default) holds procedurally generated faces: their "
    "range of identities, skin tones, ages and expressions is what the procedural model's parameters draw, not a "
    "sample of any population. A build from 300W-LP inherits 300-W's photographs (AFW, HELEN, IBUG, LFPW): "
    "mostly frontal-to-profile faces of adults from web images, with the demographic skew of those collections; "
    "its large poses are synthesised by 3DDFA's face profiling, not photographed.\n"
    "- **What the labels are.** Landmarks are read from a 3D morphable model fitted to each image, not annotated "
    "by people: they are as right as the fit (Zhu et al. 2016 report fitting errors, largest at extreme yaw and "
    "under occlusion) and as the model's topology (BFM 2009: 200 scanned faces of European descent). Mirrored "
    "copies are exact mirrors of those labels. Rows whose landmarks leave the crop are kept and marked "
    "(`valid` false, `n_outside`).\n"
    "- **What it is not for.** Not for identifying or verifying people, inferring sensitive attributes, or "
    "surveillance. A regressor trained here should be measured on real data of the population it will meet "
    "(e.g. AFLW2000-3D by 3DDFA's protocol) before use; synthetic faces differ from photographs.\n"
    "- **Licences.** The terms are the most restrictive of the inputs (see Licence): builds with BFM 2009 or "
    "300W-LP are for non-commercial research only and may not be redistributable.\n"
)


# ----------------------------------------------------------------------------- licence


def _source_kind(subset: str, model_source: str) -> str:
    base = subset.upper().removesuffix("_FLIP")
    if base in REAL_300WLP:
        return "300wlp"
    return "synthetic" if model_source == "embedded" else "user"


def licence_chain(model_source: str, subsets: list[str], set_prov: dict) -> tuple[list[dict], str]:
    """What each input of the build is licensed under, and the terms the dataset inherits.

    Args:
        model_source: the manifest's ``model.source`` (``embedded``: the procedural model).
        subsets: the source subsets (top folders) the rows come from.
        set_prov: the landmark set's provenance (``sampler.method`` ``import``: indices taken
            from a publication's files).

    Returns:
        (entries ``{component, name, used, terms}``, the overall terms).
    """
    kinds = {_source_kind(s, model_source) for s in subsets}
    own = "generated by densemark's own code from params.yaml; no third-party data; the project's licence (MIT)"
    entries = [
        {"component": "face model", "name": "densemark procedural morphable model (embedded default)",
         "used": model_source == "embedded", "terms": own},
        {"component": "face model", "name": "Basel Face Model 2009 (Paysan et al. 2009), via face3d / 3DDFA files",
         "used": model_source != "embedded",
         "terms": "non-commercial research and education only, under the University of Basel's licence agreement; not redistributable"},
        {"component": "images + 3DMM fits", "name": "densemark synthetic 300W-LP-style source (embedded default)",
         "used": "synthetic" in kinds, "terms": own},
        {"component": "images + 3DMM fits", "name": "300W-LP (Zhu et al. 2016) from 300-W: AFW, HELEN, IBUG, LFPW",
         "used": "300wlp" in kinds,
         "terms": "research use only; the images keep the terms of their original collections"},
        {"component": "images + 3DMM fits", "name": "another 300W-LP-format source (user-provided)",
         "used": "user" in kinds, "terms": "the terms of that source"},
        {"component": "evaluation set (not part of this dataset)", "name": "AFLW2000-3D (Zhu et al. 2016), from AFLW",
         "used": False, "terms": "research use only; AFLW itself needs a non-commercial licence agreement"},
    ]  # fmt: skip
    sampler = set_prov.get("sampler") or {}
    if sampler.get("method") == "import":
        entries.append({"component": "landmark set", "name": f"imported indices ({sampler.get('source', 'external file')})",
                        "used": True, "terms": "the terms of the publication's released files (Basak et al. 2023)"})  # fmt: skip
    else:
        entries.append({"component": "landmark set", "name": "densemark landmark set (sampled on the template, hand edits recorded)",
                        "used": True, "terms": "the project's licence (MIT); the template it indexes follows the face model"})  # fmt: skip
    restricted = [
        e["name"]
        for e in entries
        if e["used"] and "own code" not in e["terms"] and "MIT" not in e["terms"]
    ]
    overall = (
        "non-commercial research use only (inherited from: " + "; ".join(restricted) + ")"
        if restricted
        else "the project's own licence (MIT): every input of this build was generated by densemark"
    )
    return entries, overall


def table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (cells with ``|`` escaped, newlines flattened)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |"
        for r in rows
    ]
    return "\n".join(lines)


def licence_markdown(man: Manifest) -> str:
    """``LICENSE.md``: the terms the build inherits and the chain they come from."""
    entries, overall = _licence(man)
    rows = [[e["component"], e["name"], "yes" if e["used"] else "no", e["terms"]] for e in entries]
    return (
        "# Licence of this dataset build\n\n"
        f"Terms: **{overall}**.\n\n"
        "Each input and its terms (the dataset inherits the most restrictive of those used):\n\n"
        + table(["component", "name", "used in this build", "terms"], rows)
        + "\n"
    )


def _licence(man: Manifest) -> tuple[list[dict], str]:
    subsets = sorted(man.counts.get("subset", {}))
    return licence_chain(man.model.get("source", "unknown"), subsets, man.landmark_set)


# ----------------------------------------------------------------------------- metadata


def size_category(n: int) -> str:
    """The Hugging Face ``size_categories`` bucket of ``n`` rows."""
    for hi, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                     (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):  # fmt: skip
        if n < hi:
            return name
    return "n>100M"


def yaml_feature(f: dict) -> dict:
    """A ``datasets`` feature's JSON form (``{"_type": ...}``) in the card's YAML form
    (``dtype`` / ``list`` + ``length``; key order matters to the reader: the type key first)."""
    t = f["_type"]
    if t == "Value":
        return {"dtype": f["dtype"]}
    if t == "Image":
        return {"dtype": "image"}
    if t == "List":
        inner = yaml_feature(f["feature"])
        out: dict[str, Any] = {"list": inner["dtype"] if list(inner) == ["dtype"] else inner}
        if f.get("length", -1) != -1:
            out["length"] = f["length"]
        return out
    raise ValueError(f"no YAML form for feature type {t!r}")


def shard_features(path: str | os.PathLike) -> dict:
    """The ``datasets`` features recorded in a Parquet shard's ``huggingface`` metadata."""
    import pyarrow.parquet as pq

    md = pq.read_schema(path).metadata or {}
    return json.loads(md[HF_KEY.encode()])["info"]["features"]


def configs(man: Manifest, folder: str | os.PathLike) -> list[dict]:
    """One ``{config_name, pattern_dir, features, splits}`` per loadable label set: ``default``
    (the shards under ``data/``), then each extra set of relabel (its sidecars). Empty for a
    build without Parquet shards."""
    if "parquet" not in man.formats:
        return []
    d = Path(folder)
    shards = man.shards("parquet")
    splits = _split_rows(shards)

    def config(name: str, sub: str, files: list[dict]) -> dict:
        return {"config_name": name, "dir": sub, "features": shard_features(d / files[0]["path"]) if files else {},
                "splits": {s: {"num_examples": n, "num_bytes": _data_bytes(d, files, s)} for s, n in splits.items()}}  # fmt: skip

    out = [config(DEFAULT_CONFIG, SHARD_DIR["parquet"], shards)]
    for name, s in man.extra_sets.items():
        files = [f for f in s.get("files", []) if f["format"] == "parquet"]
        if len(files) == len(shards):
            out.append(config(_config_name(name), set_dir(name), files))
    return out


def _data_bytes(d: Path, files: list[dict], split: str) -> int:
    """Uncompressed bytes of a split's row groups (Parquet metadata; what ``datasets`` records
    as a split's ``num_bytes`` is its Arrow size, which this approximates)."""
    import pyarrow.parquet as pq

    total = 0
    for f in files:
        if Path(f["path"]).name.startswith(f"{split}-"):
            md = pq.ParquetFile(d / f["path"]).metadata
            total += sum(md.row_group(g).total_byte_size for g in range(md.num_row_groups))
    return total


def _config_name(set_name: str) -> str:
    name = set_dir(set_name).split("/", 1)[1]
    return f"set-{name}" if name == DEFAULT_CONFIG else name


def _split_rows(shards: list[dict]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for e in shards:
        split = e.get("split") or Path(e["path"]).name.split("-", 1)[0]
        rows[split] = rows.get(split, 0) + int(e["rows"])
    return dict(sorted(rows.items(), key=lambda kv: split_key(kv[0])))


def card_metadata(man: Manifest, folder: str | os.PathLike, pretty_name: str | None = None) -> dict:
    """The card's YAML metadata (a dict in the order it is written)."""
    synthetic = man.model.get("source") == "embedded"
    ls = man.landmark_set
    tags = ["face", "facial-landmarks", "dense-landmarks", "3d", "3dmm", "uv-position-map"] + (
        ["synthetic"] if synthetic else []
    )
    own = _licence(man)[1].startswith(
        "the project's own licence"
    )  # every input generated by densemark
    head: dict[str, Any] = {
        "license": "mit" if own else "other",
        **({} if own else {"license_name": "densemark-licence-chain"}),
        "license_link": LICENSE,
        "pretty_name": pretty_name
        or f"densemark dense 3D facial landmarks ({ls['name']}, {ls['n_points']} points)",
        "task_categories": ["keypoint-detection"],
        "tags": tags,
        "size_categories": [size_category(man.rows)],
    }
    cfgs = configs(man, folder)
    if cfgs:
        head["configs"] = [
            {"config_name": c["config_name"], **({"default": True} if c["config_name"] == DEFAULT_CONFIG else {}),
             "data_files": [{"split": s, "path": f"{c['dir']}/{s}-*.parquet"} for s in c["splits"]]}
            for c in cfgs
        ]  # fmt: skip
        head["dataset_info"] = [
            {"config_name": c["config_name"],
             "features": [{"name": k, **yaml_feature(v)} for k, v in c["features"].items()],
             "splits": [{"name": s, **v} for s, v in c["splits"].items()]}
            for c in cfgs
        ]  # fmt: skip
    return head


def yaml_header(head: dict) -> str:
    """The card's front matter (``---`` fenced YAML, keys in the given order)."""
    return "---\n" + yaml.safe_dump(head, sort_keys=False, allow_unicode=True, width=1000) + "---\n"


# ----------------------------------------------------------------------------- body


def swap_pairs(perm: list[int] | np.ndarray) -> tuple[list[tuple[int, int]], list[int]]:
    """A mirror permutation as swap pairs ``(i, j)``, ``i < j`` (mmpose's ``flip_pairs``), and
    the self-paired indices.

    >>> swap_pairs([1, 0, 2, 4, 3])
    ([(0, 1), (3, 4)], [2])
    """
    p = np.asarray(perm, np.int64)
    pairs = [(int(i), int(j)) for i, j in enumerate(p) if i < j]
    return pairs, [int(i) for i in np.flatnonzero(p == np.arange(len(p)))]


def swap_markdown(title: str, perm: list[int] | np.ndarray) -> str:
    """A collapsed swap table: on a mirrored image, label ``i`` and label ``j`` trade places."""
    pairs, selfs = swap_pairs(perm)
    body = table(["i", "j"], [list(p) for p in pairs]) if pairs else "(no pairs)"
    return (
        f"<details><summary>{title}: {len(pairs)} swap pairs, {len(selfs)} self-paired</summary>\n\n"
        + body
        + "\n\n"
        + f"Self-paired (on the mirror plane): {', '.join(map(str, selfs)) or 'none'}.\n\n"
        + "As JSON (`flip_pairs`): `"
        + json.dumps([list(p) for p in pairs], separators=(",", ":"))
        + "`\n\n</details>\n"
    )


def _feature_text(f: dict) -> str:
    """A feature in a few characters: ``float32 (520, 3)``, ``image``, ``string``, ``float64 list``."""
    shape = []
    while f["_type"] == "List":
        shape.append(f.get("length", -1))
        f = f["feature"]
    base = "image" if f["_type"] == "Image" else f["dtype"]
    if not shape:
        return base
    if -1 in shape:
        return f"{base} list"
    return f"{base} ({', '.join(map(str, shape))})" if len(shape) > 1 else f"{base} ({shape[0]},)"


def card_markdown(man: Manifest, folder: str | os.PathLike) -> str:
    """The build folder's ``README.md`` (YAML metadata + body), from its manifest."""
    from densemark.faces.model import KPT68_MIRROR

    head = card_metadata(man, folder)
    ls = man.landmark_set
    splits = _split_rows(man.shards())
    cfgs = [c["config_name"] for c in configs(man, folder)]
    k = ls["n_points"]
    load = (
        "```python\nimport numpy as np\nfrom datasets import load_dataset\n\n"
        'ds = load_dataset("path/to/this/folder")  # or the Hub repository id after push_to_hub\n'
        'row = ds["train"][0]\n'
        'row["image"]                          # PIL image, ' + f"{man.res}x{man.res} RGB\n"
        'np.asarray(row["landmarks"]).shape    # ' + f"({k}, 3)\n"
        'ds_np = ds.with_format("numpy")      # labels as arrays\n'
        'stream = load_dataset("path/to/this/folder", streaming=True)\n'
        + "".join(
            f'load_dataset("path/to/this/folder", "{c}")  # label set {c}: id + its landmark column\n'
            for c in cfgs[1:]
        )
        + "```\n"
    )
    if not cfgs:
        load = "This build has HDF5 shards only (`hdf5/`), which the `datasets` library does not load: build with `formats: [parquet, hdf5]`.\n"
    push = (
        '```python\nfrom datasets import load_dataset\nload_dataset("path/to/this/folder").push_to_hub("user/name")  # data only\n'
        "# or the folder as it is (card, licence, manifest, shards):\n"
        'from huggingface_hub import HfApi\nHfApi().upload_folder(folder_path="path/to/this/folder", repo_id="user/name", repo_type="dataset")\n```\n'
    )
    feats = {k: v for c in configs(man, folder) for k, v in c["features"].items()}
    cols = [[f"`{c}`", _feature_text(feats[c]) if c in feats else "", man.conventions.get(c.split("__")[0] if c.startswith("landmarks__") else c, DESCRIPTIONS.get(c, ""))]
            for c in man.columns]  # fmt: skip
    parts = [
        yaml_header(head),
        f"# {head['pretty_name']}\n",
        "*Written by densemark from `manifest.json`; do not edit by hand. The full datasheet (figures, pose "
        "histograms, quarantine) is the `card` stage's output.*\n",
        f"{man.rows} rows ({man.source_samples} source samples"
        + (", each also as a mirrored copy" if man.flip else "")
        + f") of {man.res}x{man.res} face crops, each labelled with {k} dense 3D landmarks (set `{ls['name']}`, "
        f"sha256 `{ls['sha256'][:16]}`), the 68 keypoints and the head pose. Splits: "
        + ", ".join(f"{s} {n}" for s, n in splits.items())
        + f". Dataset identity: manifest fingerprint `{man.fingerprint[:16]}`.\n",
        "## Loading\n",
        load,
        "Without `datasets`: the Parquet files under `data/` open with pyarrow, pandas or DuckDB alone (`image` is a "
        "struct `{bytes, path}` of JPEG bytes; label columns are (K, 3) nested fixed-size lists); the same rows are in "
        "`hdf5/` for h5py. `manifest.json` lists every file with its sha256.\n",
        "## Publishing\n",
        push,
        "## Columns\n",
        table(["column", "feature", "meaning"], cols) + "\n",
        "## Mirror permutations\n",
        "Flipped rows (`flip` true) are the mirrored crop with mirrored labels. To mirror a row yourself "
        "(augmentation), flip x (`x -> res - 1 - x`) and swap the labels of each pair below.\n",
        swap_markdown(f"`landmarks` ({ls['name']})", ls["mirror_perm"]),
        swap_markdown("`kpt68` (iBUG 68-point)", KPT68_MIRROR),
        "## Bias, risks and limitations\n",
        BIAS,
        "## Licence\n",
        f"Terms: **{_licence(man)[1]}**. The licence chain is in [`{LICENSE}`]({LICENSE}).\n",
        "## Citation\n",
        "```bibtex\n" + CITATION + "```\n",
        "## Files\n",
        table(
            ["path", "what"],
            [
                [
                    "`data/<split>-NNNNN-of-NNNNN.parquet`",
                    "the rows of one split (one build chunk per file)",
                ],
                [
                    "`labels/<set>/<split>-NNNNN-of-NNNNN.parquet`",
                    "an extra label set of `densemark relabel`, row-aligned with `data/`",
                ],
                ["`hdf5/...h5`", "the same rows as HDF5 (when built)"],
                [
                    "`manifest.json`, `report.json`, `part-NNNNN.json`",
                    "file list with sha256, run report, per-chunk commit records",
                ],
            ],
        )
        + "\n",  # fmt: skip
    ]
    return "\n".join(parts)


def write_card(man: Manifest, folder: str | os.PathLike) -> dict[str, Path]:
    """Write ``README.md`` and ``LICENSE.md`` into a dataset folder (atomically)."""
    d = Path(folder)
    return {
        "card": write_text(d / CARD, card_markdown(man, d)),
        "licence": write_text(d / LICENSE, licence_markdown(man)),
    }


def read_metadata(folder: str | os.PathLike) -> dict:
    """The YAML metadata of a folder's ``README.md`` (an empty dict without front matter)."""
    text = (Path(folder) / CARD).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    return yaml.safe_load(text.split("---\n", 2)[1]) or {}

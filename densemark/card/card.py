"""``densemark card``: the dataset card of a build, generated from its files, never by hand.

Reads the build folder (``manifest.json``, ``report.json``, the shards it lists, each checked
against the manifest's sha256), the landmark-set file (checked against the manifest's hash)
and the template it indexes, and writes into ``out_dir``:

* ``README.md``: a Hugging Face-style YAML header (``license: other``, task categories, tags,
  size category, pretty name, ``configs`` with ``data_files``) and the sections of
  *Datasheets for Datasets* (Gebru et al. 2021): Motivation, Composition, Collection Process,
  Preprocessing/cleaning/labeling, Uses, Distribution, Maintenance;
* ``card.json``: the same facts as data (counts, pose histograms, set provenance, conventions,
  quarantine summary, licence chain, figures);
* ``pose.png`` (rows per yaw bin by split, pitch, roll), ``layout.png`` (the set on the
  template), ``samples.png`` (crops with their landmarks, read from the shards).

Every output is byte-stable for the same inputs (sorted JSON, PNGs without timestamps).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from densemark.card.params import CardParams
from densemark.card.plots import layout_figure, pose_figure, samples_figure
from densemark.core.atomic import write_json, write_text
from densemark.core.errors import InputError
from densemark.core.outdir import sha256_file
from densemark.core.report import StageResult
from densemark.datasets import shards
from densemark.faces.template import load_template
from densemark.sampling.landmark_set import LandmarkSet

FORMAT = "densemark-card"
VERSION = 1
DATASET_FORMAT = "densemark-dataset"
REAL_300WLP = {"AFW", "HELEN", "IBUG", "LFPW"}
FIGURES = {"pose": "pose.png", "layout": "layout.png", "samples": "samples.png"}

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------- reading


def _json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(path, None, f"{what} not found")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, None, f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise InputError(path, None, f"{what}: expected a JSON object")
    return obj


def load_build(dataset_dir: PathLike) -> tuple[dict, dict, list[Path]]:
    """The manifest, the run report and the shard paths of one format (Parquet when built).

    Raises:
        InputError: a missing or foreign manifest, or a report / shard whose bytes differ from
            the sha256 the manifest records.
    """
    d = Path(dataset_dir)
    man_path = d / "manifest.json"
    man = _json(man_path, "dataset manifest")
    if man.get("format") != DATASET_FORMAT:
        raise InputError(man_path, "format", f"expected {DATASET_FORMAT!r}, got {man.get('format')!r}")
    for key in ("rows", "counts", "landmark_set", "files", "report", "formats"):
        if key not in man:
            raise InputError(man_path, key, "missing")
    rep_path = d / man["report"]["path"]
    if not rep_path.is_file() or sha256_file(rep_path) != man["report"]["sha256"]:
        raise InputError(rep_path, None, "run report missing or not the one the manifest records")
    report = _json(rep_path, "run report")
    fmt = "parquet" if "parquet" in man["formats"] else man["formats"][0]
    shards = []
    for e in man["files"]:
        if e["format"] != fmt:
            continue
        p = d / e["path"]
        if not p.is_file() or sha256_file(p) != e["sha256"]:
            raise InputError(p, None, "shard missing or not the one the manifest records")
        shards.append(p)
    return man, report, shards


def read_columns(path: Path, columns: list[str], rows: np.ndarray | None = None) -> dict[str, object]:
    """Columns of one shard (Parquet with pyarrow alone; HDF5 through :func:`densemark.datasets.shards.h5_column`).

    Label arrays come back as (n, K, 3) float32; ``image`` as a list of JPEG bytes; strings as
    lists; ``rows`` (indices) selects rows.
    """
    out: dict[str, object] = {}
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        t = pq.read_table(path, columns=columns)
        if rows is not None:
            t = t.take(pa.array(rows, pa.int64()))
        for name in columns:
            col = t.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(col.type):
                v = col.values.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
                out[name] = v.reshape(len(col), -1, 3) if name in ("landmarks", "kpt68") else v
            elif pa.types.is_binary(col.type) or pa.types.is_string(col.type):
                out[name] = col.to_pylist()
            else:
                out[name] = col.to_numpy(zero_copy_only=False)
        return out
    import h5py

    with h5py.File(path, "r") as f:
        for name in columns:
            v = shards.h5_column(f, name, rows)
            out[name] = np.asarray(v).reshape(len(v), -1, 3) if name in ("landmarks", "kpt68") else v
    return out


def _decode(jpeg: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("undecodable JPEG")
    return img[:, :, ::-1]


# ----------------------------------------------------------------------------- facts


def size_category(n: int) -> str:
    """The Hugging Face ``size_categories`` bucket of ``n`` rows."""
    for hi, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                     (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):  # fmt: skip
        if n < hi:
            return name
    return "n>100M"


def _source_kind(subset: str, model_source: str) -> str:
    base = subset.upper().removesuffix("_FLIP")
    if base in REAL_300WLP:
        return "300wlp"
    return "synthetic" if model_source == "embedded" else "user"


def licence_chain(model_source: str, subsets: list[str], set_prov: dict) -> tuple[list[dict], str]:
    """What each input of the build is licensed under, and the terms the dataset inherits.

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
    restricted = [e["name"] for e in entries if e["used"] and "own code" not in e["terms"] and "MIT" not in e["terms"]]
    overall = (
        "non-commercial research use only (inherited from: " + "; ".join(restricted) + ")"
        if restricted
        else "the project's own licence (MIT): every input of this build was generated by densemark"
    )
    return entries, overall


def set_provenance(ls: LandmarkSet) -> dict:
    """The set's provenance as the card shows it: parent, sampler parameters, hand edits."""
    prov = ls.provenance
    sampler = prov.get("sampler") or {}
    edits = [
        {"op": e["op"], "n_ids": len(e["ids"]), "source": e.get("source", ""), "note": e.get("note", "")}
        for e in prov.get("edits", [])
    ]
    return {
        "name": ls.name,
        "sha256": ls.sha256(),
        "n_points": len(ls),
        "kpt68": ls.kpt68 is not None,
        "mirror_exact": bool(ls.mirror_exact),
        "mirror_pairs": int((ls.mirror_perm != np.arange(len(ls))).sum() // 2),
        "template_sha256": ls.template_sha256,
        "n_template_vertices": int(ls.n_template),
        "parent": prov.get("parent"),
        "sampler": {k: sampler[k] for k in ("method", "params", "counts", "final", "filled", "thinned", "source") if k in sampler},
        "edits": edits,
        "created_by": prov.get("created_by"),
    }


def quarantine_summary(report: dict, limit: int) -> dict:
    """Counts of the quarantined samples by field, and the first ``limit`` entries."""
    q = sorted(report.get("quarantine", []), key=lambda e: str(e.get("sample", "")))
    by_field = Counter(str(e.get("field") or "-") for e in q)
    return {"count": len(q), "by_field": dict(sorted(by_field.items())), "entries": q[:limit], "listed": min(limit, len(q))}


def counts_table(subset: list[str], split: np.ndarray, flip: np.ndarray) -> list[dict]:
    """Rows per (subset, split), original and flipped, sorted by subset then train/val/test."""
    order = {"train": 0, "val": 1, "test": 2}
    keys = Counter(zip(subset, split.tolist(), flip.tolist(), strict=True))
    groups = sorted({(a, b) for a, b, _ in keys}, key=lambda g: (g[0], order.get(g[1], 9), g[1]))
    return [{"subset": a, "split": b, "original": keys[(a, b, False)], "flipped": keys[(a, b, True)]} for a, b in groups]


def grid_rows(yaw: np.ndarray, ids: list[str], valid: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` valid rows spread evenly over the yaw range (ties broken by id)."""
    cand = np.flatnonzero(valid) if valid.any() else np.arange(len(yaw))
    order = cand[np.lexsort((np.array(ids, dtype=object)[cand].astype(str), yaw[cand]))]
    pick = np.unique(np.round(np.linspace(0, len(order) - 1, min(n, len(order)))).astype(np.int64))
    return order[pick]


# ----------------------------------------------------------------------------- stage


def run_card(
    card: CardParams, *, dataset_dir: PathLike, set_path: PathLike, template_dir: PathLike, out_dir: PathLike
) -> StageResult:
    """Write the dataset card of the build in ``dataset_dir`` into ``out_dir`` (see module docstring).

    Raises:
        InputError: missing / mismatched manifest, report, shard, set or template (file named).

    Returns:
        outputs ``card`` (README.md), ``json`` (card.json) and the figures; the card.json
        object as ``report``; metrics ``rows`` and ``quarantined``; the Markdown text as ``value``.
    """
    d, out = Path(dataset_dir), Path(out_dir)
    man, report, shards = load_build(d)
    tpl = load_template(template_dir)
    ls = LandmarkSet.load(set_path, tpl)
    if ls.sha256() != man["landmark_set"].get("sha256"):
        raise InputError(set_path, "sha256", f"set {ls.sha256()[:12]}... is not the build's ({str(man['landmark_set'].get('sha256'))[:12]}...)")
    out.mkdir(parents=True, exist_ok=True)

    cols = ["id", "split", "flip", "subset", "pose", "valid"]
    per = [read_columns(p, cols) for p in shards]
    shard_of = np.concatenate([np.full(len(c["id"]), i) for i, c in enumerate(per)]) if per else np.zeros(0, int)
    row_in = np.concatenate([np.arange(len(c["id"])) for c in per]) if per else np.zeros(0, int)
    ids = [x for c in per for x in c["id"]]
    split = np.array([x for c in per for x in c["split"]], dtype=object)
    pose = np.concatenate([np.asarray(c["pose"], np.float64).reshape(-1, 3) for c in per]) if per else np.zeros((0, 3))
    valid = np.concatenate([np.asarray(c["valid"], bool) for c in per]) if per else np.zeros(0, bool)
    flip = np.concatenate([np.asarray(c["flip"], bool) for c in per]) if per else np.zeros(0, bool)
    if len(ids) != man["rows"]:
        raise InputError(d / "manifest.json", "rows", f"manifest says {man['rows']} rows, the shards hold {len(ids)}")

    pose_stats = pose_figure(pose, split.astype(str), card.yaw_bin_deg, out / FIGURES["pose"], card.dpi)
    layout_figure(
        tpl.vertices, tpl.pixel_uv, ls.ids, ls.kpt68_ids,
        f"{ls.name}: {len(ls)} landmarks on the {tpl.n_vertices}-vertex template" + (" (exact mirror pairs)" if ls.mirror_exact else ""),
        out / FIGURES["layout"], card.dpi,
    )  # fmt: skip
    pick = grid_rows(pose[:, 1], ids, valid, card.n_samples)
    samples = []
    for i in pick:
        c = read_columns(shards[shard_of[i]], ["image", "landmarks", "kpt68"], np.array([row_in[i]]))
        samples.append({
            "image": _decode(c["image"][0]), "landmarks": c["landmarks"][0], "kpt68": c["kpt68"][0],
            "label": f"{ids[i]}\n{split[i]}  yaw {pose[i, 1]:+.0f}°" + ("  flipped" if flip[i] else ""),
        })  # fmt: skip
    samples_figure(samples, card.grid_cols, out / FIGURES["samples"], card.dpi)

    model_source = man.get("model", {}).get("source", "unknown")
    subsets = sorted(man["counts"].get("subset", {}))
    entries, overall = licence_chain(model_source, subsets, ls.provenance)
    obj = {
        "format": FORMAT,
        "version": VERSION,
        "pretty_name": card.pretty_name,
        "dataset": {
            "manifest_sha256": sha256_file(d / "manifest.json"),
            "fingerprint": man.get("fingerprint"),
            "rows": man["rows"],
            "source_samples": man.get("source_samples"),
            "res": man.get("res"),
            "formats": man["formats"],
            "columns": man.get("columns", []),
            "files": len(man["files"]),
            "bytes": int(sum(e.get("bytes", 0) for e in man["files"])),
            "flip": man.get("flip"),
            "model": man.get("model", {}),
            "params": man.get("params", {}),
            "notes": man.get("notes", []),
            "extra_sets": man.get("extra_sets", {}),
        },
        "counts": man["counts"],
        "counts_table": counts_table([x for c in per for x in c["subset"]], split.astype(str), flip),
        "pose": {**pose_stats, **{k: _stats(pose[:, i]) for i, k in enumerate(("pitch", "yaw", "roll"))}},
        "landmark_set": set_provenance(ls),
        "conventions": man.get("conventions", {}),
        "quarantine": quarantine_summary(report, card.max_quarantine),
        "licence": {"chain": entries, "overall": overall},
        "figures": dict(FIGURES),
        "grid": [ids[i] for i in pick],
    }
    md = markdown(obj, sorted({str(e["path"]) for e in man["files"]}))
    outputs = {"card": write_text(out / "README.md", md), "json": write_json(out / "card.json", obj)}
    outputs.update({k: out / v for k, v in FIGURES.items()})
    metrics = {"rows": obj["dataset"]["rows"], "quarantined": obj["quarantine"]["count"]}
    return StageResult(outputs=outputs, report=obj, metrics=metrics, value=md)


def _stats(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {}
    return {"min": round(float(x.min()), 3), "mean": round(float(x.mean()), 3), "max": round(float(x.max()), 3)}


# ----------------------------------------------------------------------------- markdown


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _header(c: dict, files: list[str]) -> str:
    ds = c["dataset"]
    synthetic = ds["model"].get("source") == "embedded"
    tags = ["face", "facial-landmarks", "dense-landmarks", "3d", "3dmm", "uv-position-map"] + (["synthetic"] if synthetic else [])
    fmt = "parquet" if "parquet" in ds["formats"] else ds["formats"][0]
    pattern = "part-*.parquet" if fmt == "parquet" else "part-*.h5"
    head = {
        "license": "other",
        "license_name": "densemark-licence-chain",
        "pretty_name": c["pretty_name"],
        "task_categories": ["keypoint-detection"],
        "tags": tags,
        "size_categories": [size_category(ds["rows"])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": pattern}]}],
    }
    return "---\n" + yaml.safe_dump(head, sort_keys=False, allow_unicode=True) + "---\n"


def markdown(c: dict, files: list[str]) -> str:
    """The card's Markdown (YAML header + Datasheets sections) from the card.json object."""
    ds, counts, ls, q, lic = c["dataset"], c["counts"], c["landmark_set"], c["quarantine"], c["licence"]
    model = ds["model"]
    synthetic = model.get("source") == "embedded"
    sampler = ls["sampler"]
    sp = sampler.get("params", {})
    parts = [
        _header(c, files),
        f"# {c['pretty_name']}\n",
        "*Generated by `densemark card` from the build's `manifest.json`, `report.json`, shards and landmark-set file; "
        "do not edit by hand. Facts as data: `card.json`.*\n",
        f"{ds['rows']} rows ({ds['source_samples']} source samples"
        + (", each also as a mirrored copy" if ds.get("flip") else "")
        + f") of {ds['res']}x{ds['res']} face crops labelled with {ls['n_points']} dense 3D landmarks "
        f"(set `{ls['name']}`, sha256 `{ls['sha256'][:16]}`) and the 68 keypoints. Dataset identity: "
        f"manifest sha256 `{ds['manifest_sha256']}`.\n",
        "## Motivation\n",
        "Built to train and evaluate dense 3D facial-landmark regressors in the manner of Basak et al. 2023 "
        "(*A lightweight 3D dense facial landmark estimation model from position map data*): landmarks are "
        "taken straight from posed 3D morphable-model geometry, so any landmark set (any density, or one edited "
        "by hand) can label the same images without re-rendering. "
        + ("This build is the embedded default: a procedural face model and synthetic sources, so the whole pipeline "
           "can be run, tested and shared without licensed data. It is not a substitute for real faces."
           if synthetic else "This build uses the configured real face model and source."),
        "\n## Composition\n",
        "Each row is one face crop with its labels. Rows per subset, split and flip (mirrored copy):\n",
        _table(["subset", "split", "original", "flipped", "total"],
               [[r["subset"], r["split"], r["original"], r["flipped"], r["original"] + r["flipped"]] for r in c["counts_table"]]) + "\n",
        _table(["valid (all landmarks inside the crop)", "rows"], [[k, v] for k, v in counts.get("valid", {}).items()]) + "\n",
        ("Extra label columns (`densemark relabel`, same images): "
         + ", ".join(f"`{v.get('column', 'landmarks__' + k)}` ({k}, {v.get('n_points')} points)" for k, v in sorted(ds["extra_sets"].items())) + "\n") if ds["extra_sets"] else "",
        "Pose (degrees): " + "; ".join(f"{k} {c['pose'][k]['min']:+.1f} .. {c['pose'][k]['max']:+.1f} (mean {c['pose'][k]['mean']:+.1f})"
                                       for k in ("yaw", "pitch", "roll") if c["pose"].get(k)) + "\n",  # fmt: skip
        f"![rows per yaw bin by split, pitch and roll]({c['figures']['pose']})\n",
        f"Columns: {', '.join('`' + x + '`' for x in ds['columns'])}. Shards: {ds['files']} files, "
        f"{ds['bytes'] / 1e6:.1f} MB, format(s) {', '.join(ds['formats'])}; readable with pyarrow / pandas / h5py alone.\n",
        "Samples spread over yaw, with their landmarks (cyan) and 68 keypoints (red), read from the shards:\n",
        f"![samples]({c['figures']['samples']})\n",
        "### Coordinate conventions\n",
        _table(["field", "convention"], [[f"`{k}`", v] for k, v in sorted(c["conventions"].items())]) + "\n",
        "## Collection Process\n",
        ("Images and 3DMM fits come from the synthetic 300W-LP-style source rendered by densemark from the procedural model "
         "(random identity, expression, pose, lighting, background, JPEG quality; every draw seeded)."
         if synthetic else "Images and 3DMM fits come from a 300W-LP-format source (image + Shape_Para, Exp_Para, Pose_Para per sample).")
        + f" Face model: `{model.get('source')}` (sha256 `{str(model.get('sha256', ''))[:16]}`, UV map {model.get('uv_res')} px). "
        "Splits are drawn per source image group (all pose variants of one image and its `_Flip` twin share a split), seeded; "
        "the split of each row is in the `split` column.\n",
        "## Preprocessing/cleaning/labeling\n",
        "Per sample: the model posed with the sample's fit, the crop taken around the 68 keypoints "
        "(square of `crop_scale` x the mean side), the landmarks read from the posed mesh through the set's precomputed "
        "barycentric rows, mirrored copies made by flipping the image and reading each landmark at its mirrored UV pixel "
        "(the set's mirror partner; on the two centre UV columns, which the permutation pairs with themselves, the neighbouring column). "
        "Samples that fail checks (non-finite values, landmarks outside the crop, 68 subset inconsistent with the set, unreadable "
        "files) are quarantined and listed, the build goes on.\n",
        f"### Landmark set `{ls['name']}`\n",
        _table(["property", "value"], [
            ["points", ls["n_points"]], ["sha256", f"`{ls['sha256']}`"], ["68 keypoints included", ls["kpt68"]],
            ["exact mirror permutation", ls["mirror_exact"]], ["mirror pairs", ls["mirror_pairs"]],
            ["template", f"{ls['n_template_vertices']} vertices, sha256 `{ls['template_sha256'][:16]}`"],
            ["parent", "none" if not ls["parent"] else f"{ls['parent'].get('name')} (`{str(ls['parent'].get('sha256', ''))[:16]}`)"],
            ["method", sampler.get("method", "?")], ["created by", ls["created_by"]],
        ]) + "\n",  # fmt: skip
        ("Sampler parameters: " + ", ".join(f"`{k}`={json.dumps(v)}" for k, v in sorted(sp.items())) + "\n") if sp else "",
        ("Hand edits (Blender round trip):\n\n" + _table(["op", "ids", "source", "note"], [[e["op"], e["n_ids"], e["source"], e["note"]] for e in ls["edits"]]) + "\n")
        if ls["edits"] else "Hand edits: none.\n",
        f"![landmark layout on the template]({c['figures']['layout']})\n",
        f"### Quarantine\n\n{q['count']} sample(s) quarantined"
        + (": " + ", ".join(f"{k}: {v}" for k, v in q["by_field"].items()) if q["count"] else ".") + "\n",
        (_table(["sample", "file", "field", "error"], [[e.get("sample", ""), e.get("file", ""), e.get("field", ""), e.get("error", "")]
                                                       for e in q["entries"]]) + "\n") if q["entries"] else "",  # fmt: skip
        ("" if q["listed"] >= q["count"] else f"(first {q['listed']} listed; all in `card.json` / `report.json`)\n"),
        "## Uses\n",
        "Training and evaluating dense 3D facial-landmark regressors (e.g. `densemark train`, NME on AFLW2000-3D with "
        "`densemark evaluate`); relabelling with other landmark sets (`densemark relabel`). "
        + ("Synthetic faces differ from real photographs: measure on real data before relying on a model trained here. " if synthetic else "")
        + "Not for identifying people, and not for any use the licence chain below excludes.\n",
        "## Distribution\n",
        f"Terms: **{lic['overall']}**. Licence chain:\n",
        _table(["component", "name", "used in this build", "terms"], [[e["component"], e["name"], "yes" if e["used"] else "no", e["terms"]] for e in lic["chain"]]) + "\n",
        "Shared as DVC outputs (`dvc pull` restores them byte-identical from a remote) or as a Hugging Face dataset with this "
        "file as its README beside the shards" + (f" ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})" if files else "") + ".\n",
        "## Maintenance\n",
        "The card is rebuilt by the `card` stage of `dvc.yaml` whenever the build changes; the dataset is identified by its "
        f"manifest sha256 and rebuilt bit-for-bit from `params.yaml` (build fingerprint `{str(ds['fingerprint'])[:16]}`). "
        "Report problems on the project's issue tracker with that hash.\n",
    ]
    if ds["notes"]:
        parts.append("Build notes: " + " ".join(ds["notes"]) + "\n")
    return "\n".join(p for p in parts if p != "")

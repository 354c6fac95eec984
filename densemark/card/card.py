"""``densemark card``: the dataset card of a build, generated from its files, never by hand.

Reads the build folder (``manifest.json``, ``report.json``, the shards it lists, each checked
against the manifest's sha256), the landmark-set file (checked against the manifest's hash)
and the template it indexes, and writes into ``out_dir``:

* ``README.md``: the build folder's Hugging Face metadata (:func:`densemark.datasets.hub.card_metadata`:
  licence with ``license_link``, ``configs``, ``dataset_info``, ...; the build folder carries
  its own loadable card, this is the full datasheet beside it) and the sections of
  *Datasheets for Datasets* (Gebru et al. 2021): Motivation, Composition, Collection Process,
  Preprocessing/cleaning/labeling, Uses, Distribution, Maintenance, then Bias, risks and
  limitations, and Citation;
* ``card.json``: the same facts as data (counts, pose histograms, set provenance, conventions,
  quarantine summary, licence chain, figures);
* ``pose.png`` (rows per yaw bin by split, pitch, roll), ``layout.png`` (the set on the
  template), ``samples.png`` (crops with their landmarks, read from the shards).

Every output is byte-stable for the same inputs (sorted JSON, PNGs without timestamps). Figures
are linked relatively (as the Hub shows them); :func:`inline_images` embeds them as data URIs
for viewers without the folder (the Prefect artifact).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from densemark.card.markdown import (  # noqa: F401 - re-exported
    FIGURES,
    _mirrored,
    inline_images,
    markdown,
)
from densemark.card.params import CardParams
from densemark.card.plots import layout_figure, pose_figure, samples_figure
from densemark.core.atomic import write_json, write_text
from densemark.core.errors import InputError
from densemark.core.hashing import sha256_file
from densemark.core.report import StageResult
from densemark.datasets import shards
from densemark.datasets.hub import (
    card_metadata,
    licence_chain,
    size_category,
)
from densemark.datasets.manifest import Manifest
from densemark.faces.template import load_template
from densemark.sampling.landmark_set import LandmarkSet

FORMAT = "densemark-card"
VERSION = 1

PathLike = str | os.PathLike
__all__ = [
    "licence_chain",
    "size_category",
    "run_card",
    "markdown",
    "inline_images",
]  # the first two: datasets.hub


# ----------------------------------------------------------------------------- reading


def load_build(dataset_dir: PathLike) -> tuple[Manifest, dict, list[Path]]:
    """The manifest, the run report and the shard paths of one format (Parquet when built).

    Raises:
        InputError: a missing or foreign manifest, or a report / shard whose bytes differ from
            the sha256 the manifest records.
    """
    d = Path(dataset_dir)
    man = Manifest.load(d)
    rep_path = d / man.report["path"]
    if not rep_path.is_file() or sha256_file(rep_path) != man.report["sha256"]:
        raise InputError(rep_path, None, "run report missing or not the one the manifest records")
    try:
        report = json.loads(rep_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(rep_path, None, f"run report is not valid JSON ({exc})") from exc
    paths = []
    for e in man.shards():
        p = d / e["path"]
        if not p.is_file() or sha256_file(p) != e["sha256"]:
            raise InputError(p, None, "shard missing or not the one the manifest records")
        paths.append(p)
    return man, report, paths


def read_columns(
    path: Path, columns: list[str], rows: np.ndarray | None = None
) -> dict[str, object]:
    """Columns of one shard (:func:`densemark.datasets.shards.read_columns`), the label arrays
    ``landmarks`` and ``kpt68`` as (n, K, 3)."""
    out = shards.read_columns(path, columns, rows)
    for name in ("landmarks", "kpt68"):
        if name in out:
            v = out[name]
            out[name] = v.reshape(len(v), -1, 3)
    return out


def _decode(jpeg: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("undecodable JPEG")
    return img[:, :, ::-1]


# ----------------------------------------------------------------------------- facts


def set_provenance(ls: LandmarkSet) -> dict:
    """The set's provenance as the card shows it: parent, sampler parameters, hand edits."""
    prov = ls.provenance
    sampler = prov.get("sampler") or {}
    edits = [
        {
            "op": e["op"],
            "n_ids": len(e["ids"]),
            "source": e.get("source", ""),
            "note": e.get("note", ""),
        }
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
        "sampler": {
            k: sampler[k]
            for k in ("method", "params", "counts", "final", "filled", "thinned", "source")
            if k in sampler
        },
        "edits": edits,
        "created_by": prov.get("created_by"),
    }


def quarantine_summary(report: dict, limit: int) -> dict:
    """Counts of the quarantined samples by field, and the first ``limit`` entries."""
    q = sorted(report.get("quarantine", []), key=lambda e: str(e.get("sample", "")))
    by_field = Counter(str(e.get("field") or "-") for e in q)
    return {
        "count": len(q),
        "by_field": dict(sorted(by_field.items())),
        "entries": q[:limit],
        "listed": min(limit, len(q)),
    }


def counts_table(subset: list[str], split: np.ndarray, flip: np.ndarray) -> list[dict]:
    """Rows per (subset, split), original and flipped, sorted by subset then train/val/test."""
    order = {"train": 0, "val": 1, "test": 2}
    keys = Counter(zip(subset, split.tolist(), flip.tolist(), strict=True))
    groups = sorted({(a, b) for a, b, _ in keys}, key=lambda g: (g[0], order.get(g[1], 9), g[1]))
    return [
        {"subset": a, "split": b, "original": keys[(a, b, False)], "flipped": keys[(a, b, True)]}
        for a, b in groups
    ]


def grid_rows(yaw: np.ndarray, ids: list[str], valid: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` valid rows spread evenly over the yaw range (ties broken by id)."""
    cand = np.flatnonzero(valid) if valid.any() else np.arange(len(yaw))
    order = cand[np.lexsort((np.array(ids, dtype=object)[cand].astype(str), yaw[cand]))]
    pick = np.unique(np.round(np.linspace(0, len(order) - 1, min(n, len(order)))).astype(np.int64))
    return order[pick]


# ----------------------------------------------------------------------------- stage


def run_card(
    card: CardParams,
    *,
    dataset_dir: PathLike,
    set_path: PathLike,
    template_dir: PathLike,
    out_dir: PathLike,
) -> StageResult:
    """Write the dataset card of the build in ``dataset_dir`` into ``out_dir`` (see module docstring).

    Raises:
        InputError: missing / mismatched manifest, report, shard, set or template (file named).

    Returns:
        outputs ``card`` (README.md), ``json`` (card.json) and the figures; the card.json
        object as ``report``; metrics ``rows`` and ``quarantined``; the Markdown text as ``value``.
    """
    d, out = Path(dataset_dir), Path(out_dir)
    manifest, report, shard_paths = load_build(d)
    man = manifest.to_dict()
    tpl = load_template(template_dir)
    ls = LandmarkSet.load(set_path, tpl)
    if ls.sha256() != man["landmark_set"].get("sha256"):
        raise InputError(
            set_path,
            "sha256",
            f"set {ls.sha256()[:12]}... is not the build's ({str(man['landmark_set'].get('sha256'))[:12]}...)",
        )
    out.mkdir(parents=True, exist_ok=True)

    cols = ["id", "split", "flip", "subset", "pose", "valid"]
    per = [read_columns(p, cols) for p in shard_paths]
    shard_of = (
        np.concatenate([np.full(len(c["id"]), i) for i, c in enumerate(per)])
        if per
        else np.zeros(0, int)
    )
    row_in = np.concatenate([np.arange(len(c["id"])) for c in per]) if per else np.zeros(0, int)
    ids = [x for c in per for x in c["id"]]
    split = np.array([x for c in per for x in c["split"]], dtype=object)
    pose = (
        np.concatenate([np.asarray(c["pose"], np.float64).reshape(-1, 3) for c in per])
        if per
        else np.zeros((0, 3))
    )
    valid = (
        np.concatenate([np.asarray(c["valid"], bool) for c in per]) if per else np.zeros(0, bool)
    )
    flip = np.concatenate([np.asarray(c["flip"], bool) for c in per]) if per else np.zeros(0, bool)
    if len(ids) != man["rows"]:
        raise InputError(
            d / "manifest.json",
            "rows",
            f"manifest says {man['rows']} rows, the shards hold {len(ids)}",
        )

    pose_stats = pose_figure(
        pose, split.astype(str), card.yaw_bin_deg, out / FIGURES["pose"], card.dpi
    )
    layout_figure(
        tpl.vertices, tpl.pixel_uv, ls.ids, ls.kpt68_ids,
        f"{ls.name}: {len(ls)} landmarks on the {tpl.n_vertices}-vertex template" + (" (exact mirror pairs)" if ls.mirror_exact else ""),
        out / FIGURES["layout"], card.dpi,
    )  # fmt: skip
    pick = grid_rows(pose[:, 1], ids, valid, card.n_samples)
    samples = []
    for i in pick:
        c = read_columns(
            shard_paths[shard_of[i]], ["image", "landmarks", "kpt68"], np.array([row_in[i]])
        )
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
            "manifest_sha256": manifest.sha256,
            "fingerprint": man.get("fingerprint"),
            "rows": man["rows"],
            "source_samples": man.get("source_samples"),
            "res": man.get("res"),
            "formats": man["formats"],
            "columns": man.get("columns", []),
            "files": len(man["files"]),
            "bytes": int(sum(e.get("bytes", 0) for e in man["files"])),
            "flip": man.get("flip"),
            "mirroring": man.get("mirroring", {}),
            "model": man.get("model", {}),
            "params": man.get("params", {}),
            "notes": man.get("notes", []),
            "extra_sets": man.get("extra_sets", {}),
        },
        "counts": man["counts"],
        "counts_table": counts_table(
            [x for c in per for x in c["subset"]], split.astype(str), flip
        ),
        "pose": {
            **pose_stats,
            **{k: _stats(pose[:, i]) for i, k in enumerate(("pitch", "yaw", "roll"))},
        },
        "landmark_set": set_provenance(ls),
        "conventions": man.get("conventions", {}),
        "quarantine": quarantine_summary(report, card.max_quarantine),
        "licence": {"chain": entries, "overall": overall},
        "figures": dict(FIGURES),
        "grid": [ids[i] for i in pick],
        "hub": card_metadata(manifest, d, card.pretty_name),
    }
    md = markdown(obj, sorted({str(e["path"]) for e in man["files"]}))
    outputs = {
        "card": write_text(out / "README.md", md),
        "json": write_json(out / "card.json", obj),
    }
    outputs.update({k: out / v for k, v in FIGURES.items()})
    metrics = {"rows": obj["dataset"]["rows"], "quarantined": obj["quarantine"]["count"]}
    return StageResult(outputs=outputs, report=obj, metrics=metrics, value=md)


def _stats(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {}
    return {
        "min": round(float(x.min()), 3),
        "mean": round(float(x.mean()), 3),
        "max": round(float(x.max()), 3),
    }


# ----------------------------------------------------------------------------- markdown

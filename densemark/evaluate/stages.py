"""The ``evaluate`` stage: run a model (or read any predictor's file), score, write the reports.

A model is anything with the Predictor interface of :mod:`densemark.train.predict`:
``predict(images, boxes, box_kind) -> (N, K, 3)`` image-pixel landmarks (0-based pixels) and
``landmark_set`` (``kpt68``: positions of the 68 keypoints among the K, ``sha256``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from densemark.core.atomic import write_json
from densemark.core.errors import DensemarkError, InputError
from densemark.core.images import read_image
from densemark.core.report import RunReport, StageResult
from densemark.evaluate.groundtruth import AFLW2000Truth, load_truth
from densemark.evaluate.params import EvaluateParams
from densemark.evaluate.predictions import Predictions, read_predictions, write_predictions
from densemark.evaluate.report import full_report, markdown_table, metrics, plot_ced, write_markdown
from densemark.evaluate.score import AFLW2000Score, DenseScore, score_aflw2000, score_dense

log = logging.getLogger(__name__)


class PredictorLike(Protocol):
    landmark_set: dict

    def predict(
        self, images: list[np.ndarray], boxes: np.ndarray, box_kind: str = "landmarks"
    ) -> np.ndarray: ...


def landmark_box(pts: np.ndarray) -> np.ndarray:
    """(N, 4) ``[x0, y0, x1, y1]`` tight boxes of (N, P, >=2) points."""
    p = np.asarray(pts, np.float64)[..., :2]
    return np.concatenate([p.min(axis=1), p.max(axis=1)], axis=1)


def kpt68_positions(
    predictor: PredictorLike, source: str | os.PathLike | None = None
) -> np.ndarray:
    """(68,) int positions of the 68 keypoints among the predictor's K landmarks."""
    k = np.asarray(predictor.landmark_set.get("kpt68", ()), np.int64).reshape(-1)
    if k.size != 68:
        raise InputError(
            source, "landmark_set.kpt68", f"expected 68 keypoint positions, got {k.size}"
        )
    return k


def predict_aflw2000(
    predictor: PredictorLike,
    truth: AFLW2000Truth,
    batch_size: int = 16,
    report: RunReport | None = None,
) -> Predictions:
    """Our model's 68 points on every AFLW2000-3D image found beside the ground truth.

    Each image is cropped by its ground-truth 68-point box (``box_kind="landmarks"``: the
    training crop rule), as 3DDFA and PRNet do on this benchmark. Images without a file are
    quarantined in ``report`` and left out.

    Returns:
        0-based :class:`Predictions` (N, 68, 3) in image pixels.
    """
    kpt = kpt68_positions(predictor)
    gt0 = truth.pts68[..., :2] - float(
        truth.one_based
    )  # box in 0-based pixels, the predictor's frame
    names, points = [], []
    todo = []
    for i, n in enumerate(truth.names.tolist()):
        p = truth.image_path(n)
        if p is None:
            if report is not None:
                report.quarantined(n, "image file not found")
            continue
        todo.append((i, n, p))
    for s in tqdm(
        range(0, len(todo), batch_size), desc="predict AFLW2000-3D", unit="batch", disable=None
    ):
        chunk = todo[s : s + batch_size]
        imgs, keep = [], []
        for i, n, p in chunk:
            try:
                imgs.append(read_image(p))
                keep.append((i, n))
            except InputError as exc:
                if report is None:
                    raise
                report.quarantined(n, exc)
        if not keep:
            continue
        rows = np.array([i for i, _ in keep])
        out = np.asarray(
            predictor.predict(imgs, landmark_box(gt0[rows]), box_kind="landmarks"), np.float64
        )
        points.append(out[:, kpt])
        names += [n for _, n in keep]
    if report is not None:
        report.count("aflw2000_predicted", len(names))
    pts = np.concatenate(points) if points else np.zeros((0, 68, 3))
    return Predictions(np.array(names, dtype=str), pts, False)


def predict_aflw2000_detected(
    predictor: PredictorLike,
    truth: AFLW2000Truth,
    detector: str = "auto",
    report: RunReport | None = None,
) -> tuple[Predictions, dict[str, object]]:
    """Like :func:`predict_aflw2000`, but each crop comes from the face detector (as ``densemark
    predict`` gets it on a user's photo) instead of the ground-truth box.

    A detection miss is an image where the detector finds no face, or whose best face's box
    centre lies outside the ground-truth 68-point box (another face or a false alarm); misses
    are left out of the scores and counted.

    Returns:
        (0-based :class:`Predictions` of the detected images, ``{"detector", "n_images",
        "detected", "misses", "miss_rate", "missed": [names]}``).
    """
    from densemark.train.detect import detect_faces

    kpt = kpt68_positions(predictor)
    gt0 = truth.pts68[..., :2] - float(truth.one_based)
    gt_box = landmark_box(gt0)
    names, points, missed = [], [], []
    for i, n in enumerate(
        tqdm(truth.names.tolist(), desc="detect + predict AFLW2000-3D", unit="img", disable=None)
    ):
        p = truth.image_path(n)
        if p is None:
            if report is not None:
                report.quarantined(n, "image file not found")
            continue
        try:
            img = read_image(p)
        except InputError as exc:
            if report is None:
                raise
            report.quarantined(n, exc)
            continue
        faces = detect_faces(img, detector)
        c = (faces[0].box[:2] + faces[0].box[2:]) / 2 if faces else None
        if c is None or not ((gt_box[i, :2] <= c).all() and (c <= gt_box[i, 2:]).all()):
            missed.append(n)
            continue
        out = np.asarray(
            predictor.predict([img], faces[0].box[None], box_kind="landmarks"), np.float64
        )
        points.append(out[:, kpt])
        names.append(n)
    total = len(names) + len(missed)
    det = {"detector": detector, "n_images": total, "detected": len(names), "misses": len(missed),
           "miss_rate": len(missed) / total if total else None, "missed": missed}  # fmt: skip
    if report is not None:
        report.count("aflw2000_predicted", len(names))
        report.count("detector_misses", len(missed))
    pts = np.concatenate(points) if points else np.zeros((0, 68, 3))
    return Predictions(np.array(names, dtype=str), pts, False), det


def predict_dense(
    predictor: PredictorLike, dataset: Any, batch_size: int = 16, max_samples: int | None = None
) -> DenseScore | None:
    """Dense NME of the predictor on a held-out dataset (ShardDataset-like: ``len``, ``ds[i]``
    with ``image`` (H, W, 3) uint8 crop, ``landmarks`` (K, 3), ``kpt68`` (68, 3), ``id``,
    ``yaw``; attribute ``landmark_set``). Each crop is re-cropped by its 68-point box, as in
    training. None when the dataset is empty.

    Raises:
        DensemarkError: the model's landmark set differs from the data's.
    """
    want, have = dataset.landmark_set.get("sha256"), predictor.landmark_set.get("sha256")
    if want != have:
        raise DensemarkError(
            f"refusing to evaluate: the model's landmark set ({have}) differs from the data's ({want})"
        )
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    if n == 0:
        return None
    ids, yaws, preds, gts, kpts = [], [], [], [], []
    for s in tqdm(range(0, n, batch_size), desc="dense NME", unit="batch", disable=None):
        rows = [dataset[i] for i in range(s, min(s + batch_size, n))]
        k68 = np.stack([np.asarray(r["kpt68"], np.float64) for r in rows])
        out = predictor.predict([r["image"] for r in rows], landmark_box(k68), box_kind="landmarks")
        preds.append(np.asarray(out, np.float64))
        gts.append(np.stack([np.asarray(r["landmarks"], np.float64) for r in rows]))
        kpts.append(k68)
        ids += [str(r["id"]) for r in rows]
        yaws += [float(r["yaw"]) for r in rows]
    return score_dense(
        ids, np.concatenate(preds), np.concatenate(gts), np.concatenate(kpts), np.array(yaws)
    )


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Scores:
    """The scores :func:`run_evaluate` computed (its ``StageResult.value``); None: not scored."""

    aflw: AFLW2000Score | None = None
    dense: DenseScore | None = None


def run_evaluate(
    params: EvaluateParams,
    out_dir: str | os.PathLike,
    *,
    gt_dir: str | os.PathLike | None = None,
    predictions: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    metrics_path: str | os.PathLike | None = None,
    out_predictions: str | os.PathLike | None = None,
    predictor: PredictorLike | None = None,
    dataset: Any = None,
    boxes_from: str = "gt",
    detector: str = "auto",
) -> StageResult:
    """Score a predictions file or a model on AFLW2000-3D and/or the held-out shards.

    Args:
        params: the ``evaluate`` section.
        out_dir: receives ``report.json`` (full report + run report), ``results.md`` (table
            beside the published rows) and ``ced.png``.
        gt_dir: AFLW2000-3D folder (see :func:`load_truth`); with ``predictions`` (a file in the
            :mod:`~densemark.evaluate.predictions` format) or a model.
        checkpoint: the model (:func:`densemark.train.predict.load_predictor`); or pass a
            ready ``predictor``.
        data_dir: dataset build folder (``manifest.json`` + shards): dense NME on
            ``params.dense_split`` (needs a model).
        metrics_path: DVC metrics JSON (default ``out_dir/metrics.json``).
        out_predictions: where the model's AFLW2000-3D predictions go (default
            ``out_dir/predictions_aflw2000.npz``).
        predictor, dataset: ready objects instead of ``checkpoint`` / ``data_dir``.
        boxes_from: ``"gt"`` (the benchmark protocol: crops from the ground-truth 68-point
            boxes) or ``"detector"`` (crops from the face ``detector``, as a user gets them;
            misses are counted in ``report.json`` / ``metrics.json`` under ``detection``).

    Returns:
        outputs ``predictions`` (when a model predicted), ``metrics``, ``report``, ``table``,
        ``ced``; the run report; the metrics; :class:`Scores` as ``value``.

    Raises:
        DensemarkError / InputError: bad inputs, naming the file and field.
    """
    out = Path(out_dir)
    if predictions is not None and (checkpoint is not None or predictor is not None):
        raise DensemarkError("give either a predictions file or a model, not both")
    if predictions is not None and gt_dir is None:
        raise DensemarkError("a predictions file is scored against --gt (the AFLW2000-3D folder)")
    if gt_dir is None and data_dir is None and dataset is None:
        raise DensemarkError("nothing to evaluate: give --gt and/or --data")
    if boxes_from not in ("gt", "detector"):
        raise DensemarkError(f"boxes_from must be 'gt' or 'detector', got {boxes_from!r}")
    if boxes_from == "detector" and (predictions is not None or gt_dir is None):
        raise DensemarkError("scoring through the detector needs a model (--checkpoint) and --gt")
    rep = RunReport("evaluate", params=params.model_dump(mode="json"))
    if predictor is None and checkpoint is not None:
        from densemark.train.predict import load_predictor

        predictor = load_predictor(
            checkpoint, device=_device(params.device), threads=params.threads
        )
    info: dict[str, object] = {"inputs": {"gt": str(gt_dir) if gt_dir else None,
                                          "predictions": str(predictions) if predictions else None,
                                          "checkpoint": str(checkpoint) if checkpoint else None,
                                          "data": str(data_dir) if data_dir else None}}  # fmt: skip
    files: dict[str, Path] = {}
    aflw = dense = None
    if gt_dir is not None:
        truth = load_truth(gt_dir, params.gt_source, params.reannotated, params.gt_one_based)
        info["ground_truth"] = {"source": truth.source, "one_based": truth.one_based, "n_images": len(truth),
                                "depth": truth.has_depth, "aflw21": truth.pts21 is not None}  # fmt: skip
        if predictions is not None:
            pred = read_predictions(predictions)
        else:
            if predictor is None:
                raise DensemarkError("nothing to score on --gt: give --predictions or --checkpoint")
            if boxes_from == "detector":
                pred, info["detection"] = predict_aflw2000_detected(predictor, truth, detector, rep)
            else:
                pred = predict_aflw2000(predictor, truth, params.batch_size, rep)
            if len(pred.names) == 0 and boxes_from == "detector":
                raise InputError(
                    gt_dir,
                    None,
                    f"the detector found no face on the {info['detection']['n_images']} images",
                )
            if len(pred.names) == 0:
                raise InputError(gt_dir, None, "no AFLW2000-3D image could be read to predict on")
            truth = truth.subset(pred.names)
            dst = Path(out_predictions) if out_predictions else out / "predictions_aflw2000.npz"
            files["predictions"] = write_predictions(dst, pred.names, pred.points, pred.one_based)
        info["predictions"] = {
            "one_based": pred.one_based,
            "n": len(pred.names),
            "dims": int(pred.points.shape[-1]),
        }
        aflw = score_aflw2000(pred, truth)
        rep.count("aflw2000_scored", len(aflw.names))
    if data_dir is not None or dataset is not None:
        if predictor is None:
            raise DensemarkError("the dense NME on --data needs a model (--checkpoint)")
        if dataset is None:
            from densemark.datasets.torch_data import ShardDataset

            ds = ShardDataset(data_dir, split=params.dense_split, with_image=True)
        else:
            ds = dataset
        dense = predict_dense(predictor, ds, params.batch_size, params.dense_max_samples)
        info["dense"] = {"split": params.dense_split, "manifest_sha256": getattr(ds, "manifest_sha256", None),
                         "landmark_set": ds.landmark_set.get("name"), "n_points": ds.landmark_set.get("n_points")}  # fmt: skip
        if dense is None:
            log.warning("split %r of %s is empty: no dense NME", params.dense_split, data_dir)
        else:
            rep.count("dense_scored", len(dense.ids))
    m = metrics(aflw, dense)
    if "detection" in info:
        det = info["detection"]
        m = {
            **m,
            "detection": {
                k: det[k] for k in ("detector", "n_images", "detected", "misses", "miss_rate")
            },
        }
    files["metrics"] = write_json(metrics_path or out / "metrics.json", m)
    rep.extra = full_report(aflw, dense, info)
    files["report"] = rep.write(out / "report.json")
    table = markdown_table(aflw, dense, params.method_name)
    if "detection" in info:
        d = info["detection"]
        table += (
            f"\nCrops from the face detector ({d['detector']!r}), not the ground-truth boxes: {d['detected']} of "
            f"{d['n_images']} images detected, {d['misses']} detection misses (left out of the scores).\n"
        )
    files["table"] = write_markdown(out / "results.md", table)
    curves: dict[str, np.ndarray] = {}
    if aflw is not None:
        curves["AFLW2000-3D 68 pts"] = aflw.nme68
        for k, label in enumerate(("[0, 30]", "(30, 60]", "(60, 90]")):
            curves[f"68 pts, |yaw| {label}"] = aflw.nme68[aflw.bins == k]
        if aflw.nme21 is not None:
            curves["AFLW 21 pts"] = aflw.nme21
    if dense is not None:
        curves["dense 2D (held-out)"] = dense.nme2d
    files["ced"] = plot_ced(out / "ced.png", curves, params.ced_max_pct)
    return StageResult(outputs=files, report=rep, metrics=m, value=Scores(aflw, dense))

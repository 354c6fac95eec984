"""The training stage: seeded, resumable, with per-epoch metrics for DVC.

``run_train`` trains on any dataset with ``ShardDataset``'s item format and writes, in
``out_dir``: ``checkpoint.pt`` after every epoch (model, optimizer, scheduler, AMP scaler,
epoch, RNG states, history, resolved config, landmark set and its hash, dataset manifest hash)
and ``model.pt`` at the end (the same without the optimizer state: what prediction and export
load). Files are plain dicts of tensors and Python values: ``torch.load(..., weights_only=True)``.

Resuming restores every state and continues with the next epoch; every epoch re-seeds torch
and the shuffling generator from ``(seed, epoch)`` and draws augmentation from
``rng_for(seed, epoch, index)``, so a resumed run ends with the same weights as an
uninterrupted one (on the same device and thread count).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from densemark.core.atomic import atomic_path, write_json, write_text
from densemark.core.errors import ConfigError, InputError
from densemark.core.report import StageResult
from densemark.core.seeding import rng_for
from densemark.train.data import LandmarkSamples, make_loader, to_input
from densemark.train.loss import WingMSELoss
from densemark.train.models import LandmarkRegressor, count_params, create_model
from densemark.train.params import TrainParams

CHECKPOINT_FORMAT = "densemark-landmark-regressor"
CHECKPOINT_VERSION = 1


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but torch.cuda.is_available() is False")
    return torch.device(name)


def model_config(params: TrainParams, n_points: int) -> dict[str, Any]:
    """The resolved configuration saved with every checkpoint (params + landmark count)."""
    return {**params.model_dump(mode="json"), "n_points": int(n_points)}


def build_model(config: dict[str, Any]) -> LandmarkRegressor:
    """The model a saved ``config`` describes."""
    return create_model(
        config["backbone"],
        config["n_points"],
        config["input_size"],
        config["width"],
        config["dropout"],
    )


def _optimizer(params: TrainParams, model: torch.nn.Module) -> torch.optim.Optimizer:
    if params.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=params.lr, momentum=0.9, weight_decay=params.weight_decay
        )
    cls = torch.optim.AdamW if params.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)


def _scheduler(
    params: TrainParams, opt: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    if params.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=params.epochs, eta_min=params.lr * 0.01
        )
    if params.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            opt, step_size=params.step_epochs, gamma=params.gamma
        )
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint or model file (``weights_only=True``); errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, None, "checkpoint not found")
    try:
        ck = torch.load(p, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise InputError(
            p, None, f"not a readable checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise InputError(p, "format", f"not a {CHECKPOINT_FORMAT} checkpoint")
    for key in ("model", "config", "landmark_set", "landmark_set_sha256", "manifest_sha256"):
        if key not in ck:
            raise InputError(p, key, "missing")
    return ck


def _canonical(obj: Any) -> Any:
    """A fresh copy of the Python structure around the tensors, every string interned.

    Pickle writes a back-reference for an object it has already written, so the bytes depend on
    which equal strings and containers are *the same object*, e.g. a history reloaded from a
    checkpoint versus one built in this process. Rebuilt this way, the sharing depends only on
    the values, and a resumed run writes the same bytes as an uninterrupted one.
    """
    if isinstance(obj, str):
        return sys.intern(str(obj))
    if isinstance(obj, dict):
        return type(obj)((_canonical(k), _canonical(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_canonical(v) for v in obj)
    return obj


def _save(path: Path, obj: dict[str, Any]) -> None:
    """``torch.save`` atomically and byte-stably: torch names the archive's folder after the file
    it writes, so it writes to memory first (fixed folder name), then the bytes go to a temp file;
    the object is :func:`_canonical` so its pickle does not depend on its history."""
    buf = io.BytesIO()
    torch.save(_canonical(obj), buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


@torch.no_grad()
def evaluate_samples(
    model: torch.nn.Module, loader: Any, criterion: WingMSELoss, device: torch.device
) -> dict[str, float]:
    """Validation loss, 2D NME (mean point error / sqrt(w h) of the label box) and mean 3D
    point error in pixels of a ``criterion.scale`` crop, averaged over samples."""
    model.eval()
    losses, nme, e3 = [], [], []
    for b in loader:
        y = b["target"].to(device)
        pred = model(to_input(b["image"], device)).float()
        losses.append(criterion(pred, y).item() * len(y))
        p3, y3 = pred.view(len(y), -1, 3), y.view(len(y), -1, 3)
        d2 = (p3[..., :2] - y3[..., :2]).norm(dim=-1).mean(1)
        wh = (y3[..., :2].amax(1) - y3[..., :2].amin(1)).clamp_min(1e-6)
        nme.append((d2 / wh.prod(-1).sqrt()).cpu())
        e3.append(((p3 - y3).norm(dim=-1).mean(1) * criterion.scale).cpu())
    n = sum(len(x) for x in nme)
    return {
        "val_loss": float(sum(losses) / n),
        "val_nme_2d": float(torch.cat(nme).mean()),
        "val_err3d_px": float(torch.cat(e3).mean()),
    }


def run_train(
    params: TrainParams,
    train_set: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    val_set: Sequence[dict[str, Any]] | None = None,
    metrics_path: str | os.PathLike | None = None,
    plots_path: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``params.backbone`` on ``train_set``; returns the final metrics row.

    ``train_set`` / ``val_set``: ``ShardDataset``-like, with attributes ``landmark_set``
    (dict with ``sha256``, ``n_points``) and ``manifest_sha256``. ``metrics_path`` gets the
    last epoch's metrics (JSON), ``plots_path`` one CSV row per epoch.
    """
    out = Path(out_dir)
    lset = dict(getattr(train_set, "landmark_set", {}) or {})
    first = train_set[0]
    k = int(np.asarray(first["landmarks"]).shape[0])
    if lset.get("n_points", k) != k:
        raise InputError(
            None, params.column, f"labels have {k} points, the landmark set {lset.get('n_points')}"
        )
    config = model_config(params, k)
    manifest = str(getattr(train_set, "manifest_sha256", ""))
    device = resolve_device(params.device)
    amp = _amp_dtype(device, params.amp)
    if params.threads:
        torch.set_num_threads(params.threads)

    torch.manual_seed(params.seed)
    model = build_model(config).to(device)
    opt = _optimizer(params, model)
    sched = _scheduler(params, opt)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    criterion = WingMSELoss(
        params.w1, params.w2, params.wing_w, params.wing_epsilon, params.loss_scale
    )
    start, history = 0, []

    ck_path = out / "checkpoint.pt"
    if resume and ck_path.exists():
        ck = load_checkpoint(ck_path, device)
        if ck["config"] != config:
            diff = sorted(
                key
                for key in set(config) | set(ck["config"])
                if config.get(key) != ck["config"].get(key)
            )
            raise ConfigError(f"{ck_path}: cannot resume, train params differ: {', '.join(diff)}")
        if ck["landmark_set_sha256"] != lset.get("sha256") or ck["manifest_sha256"] != manifest:
            raise InputError(
                ck_path, "manifest_sha256", "cannot resume on a different dataset or landmark set"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck["rng"])
        start, history = int(ck["epoch"]), list(ck["history"])

    train_samples = LandmarkSamples(
        train_set, params.input_size, params.augment, params.seed, device_colour=True
    )
    val_samples = (
        LandmarkSamples(val_set, params.input_size)
        if val_set is not None and len(val_set)
        else None
    )
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config,
        "landmark_set": lset,
        "landmark_set_sha256": str(lset.get("sha256", "")),
        "manifest_sha256": manifest,
        "n_params": count_params(model),
    }
    for epoch in range(start, params.epochs):
        torch.manual_seed(int(rng_for(params.seed, "torch", epoch).integers(2**62)))
        model.train()
        loader = make_loader(
            train_samples,
            params.batch_size,
            True,
            params.seed,
            epoch,
            params.workers,
            drop_last=True,
        )
        t0, total, n = time.perf_counter(), 0.0, 0
        bar = tqdm(
            loader, desc=f"train {epoch + 1}/{params.epochs}", disable=not progress, leave=False
        )
        for b in bar:
            x, y = to_input(b["image"], device, b.get("colour")), b["target"].to(device)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                pred = model(x)
            loss = criterion(pred.float(), y)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"epoch {epoch + 1}: loss is {loss.item()}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += loss.item() * len(y)
            n += len(y)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        sched.step()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": total / max(n, 1),
            "lr": opt.param_groups[0]["lr"],
        }
        seconds = (
            time.perf_counter() - t0
        )  # logged, never stored: the same run gives the same bytes
        if val_samples is not None:
            row.update(
                evaluate_samples(
                    model,
                    make_loader(val_samples, params.batch_size, False, workers=params.workers),
                    criterion,
                    device,
                )
            )
        history.append(row)
        state = {
            **meta,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch + 1,
            "rng": _rng_state(),
            "history": history,
        }
        _save(ck_path, state)
        _write_metrics(history, metrics_path, plots_path)
        if progress:
            tqdm.write(
                " ".join(
                    f"{k_}={v:.4g}" if isinstance(v, float) else f"{k_}={v}"
                    for k_, v in row.items()
                )
                + f" ({seconds:.1f} s)"
            )
    final = {**meta, "model": model.state_dict(), "epoch": len(history), "history": history}
    _save(out / "model.pt", final)
    _write_metrics(history, metrics_path, plots_path)
    return history[-1] if history else {}


def _write_metrics(
    history: list[dict[str, Any]],
    metrics_path: str | os.PathLike | None,
    plots_path: str | os.PathLike | None,
) -> None:
    if not history:
        return
    if metrics_path is not None:
        write_json(metrics_path, history[-1])
    if plots_path is not None:
        keys = list(dict.fromkeys(k for row in history for k in row))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(history)
        write_text(plots_path, buf.getvalue())


def open_dataset(root: str | os.PathLike, split: str, column: str) -> Any:
    """The ``ShardDataset`` of ``split`` under ``root`` (None when the split is empty)."""
    from densemark.datasets.torch_data import ShardDataset

    ds = ShardDataset(root, split=split, column=column, with_image=True)
    return ds if len(ds) else None


def train_from_dataset(
    params: TrainParams,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    metrics_path: str | os.PathLike | None = None,
    plots_path: str | os.PathLike | None = None,
    resume: bool = False,
) -> StageResult:
    """``densemark train``: :func:`run_train` on the dataset folder's train and val splits.

    Returns:
        outputs ``model`` (``model.pt``), ``checkpoint`` and the ``metrics`` / ``plots`` files
        asked for; the last epoch's row as ``metrics``.
    """
    train = open_dataset(data_dir, params.train_split, params.column)
    if train is None:
        raise InputError(data_dir, "split", f"no rows in split {params.train_split!r}")
    val = open_dataset(data_dir, params.val_split, params.column)
    row = run_train(params, train, out_dir, val, metrics_path, plots_path, resume)
    out = Path(out_dir)
    outputs = {"model": out / "model.pt", "checkpoint": out / "checkpoint.pt"}
    outputs.update(
        {k: Path(v) for k, v in (("metrics", metrics_path), ("plots", plots_path)) if v is not None}
    )
    return StageResult(outputs=outputs, metrics=row)

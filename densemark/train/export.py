"""ONNX export (checked against PyTorch) and model facts: parameters, MACs, CPU latency.

The export uses torch's TorchScript-based exporter (``dynamo=False``): it runs offline, needs
no ``onnxscript`` and gives the same bytes for the same weights. Input ``image``:
(N, 3, S, S) float32 RGB in [0, 1]; output ``landmarks``: (N, 3 K) in units of the input side.
"""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densemark.core.atomic import atomic_path, write_json
from densemark.core.errors import InputError
from densemark.core.report import StageResult
from densemark.train.infer import META_CONFIG, META_LANDMARK_SET, model_file_kind, ort_session
from densemark.train.loop import build_model, load_checkpoint
from densemark.train.macs import count_macs
from densemark.train.models import LandmarkRegressor, count_params


def load_model(
    checkpoint: str | os.PathLike, device: str = "cpu"
) -> tuple[LandmarkRegressor, dict[str, Any]]:
    """The eval-mode model of a checkpoint and the checkpoint dict (``weights_only=True``).

    Raises:
        InputError: not a checkpoint (an ONNX file, or another kind of file), naming the file.
    """
    if model_file_kind(checkpoint) == "onnx":
        raise InputError(checkpoint, None, "this is an ONNX model, not a PyTorch checkpoint: `densemark predict` "
                                           "takes it as it is; this command needs the model.pt it was exported from")  # fmt: skip
    try:
        ck = load_checkpoint(checkpoint, device)
    except InputError as exc:
        if "weights_only" not in exc.message:
            raise
        # torch's advice to retry unsafely does not apply: say what the file should be
        raise InputError(checkpoint, None, "not a densemark checkpoint (a zip archive torch cannot read as plain "
                                           "tensors and values; expected model.pt / checkpoint.pt from `densemark train`)") from None  # fmt: skip
    model = build_model(ck["config"])
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), ck


def onnx_bytes(model: torch.nn.Module, input_size: int, opset: int = 17) -> bytes:
    """The serialised ONNX graph of ``model`` (dynamic batch)."""
    model = model.eval().cpu()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, input_size, input_size),),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["landmarks"],
            dynamic_axes={"image": {0: "batch"}, "landmarks": {0: "batch"}},
            do_constant_folding=True,
        )
    return buf.getvalue()


def check_onnx(
    model: torch.nn.Module, onnx_model: bytes, input_size: int, batch: int = 2, seed: int = 0
) -> dict[str, float]:
    """Run PyTorch and ONNX Runtime on the same random batch; max abs/rel difference.

    Raises:
        InputError: when they differ by more than 1e-4 of the output range.
    """
    import onnx

    onnx.checker.check_model(onnx.load_from_string(onnx_model))
    x = torch.rand(batch, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model.eval().cpu()(x).numpy()
    got = ort_session(onnx_model).run(None, {"image": x.numpy()})[0]
    diff = float(np.abs(got - ref).max())
    rel = diff / max(float(np.abs(ref).max()), 1e-12)
    if got.shape != ref.shape or rel > 1e-4:
        raise InputError(
            None, "onnx", f"ONNX Runtime differs from PyTorch: max abs {diff:.3g}, rel {rel:.3g}"
        )
    return {"max_abs_diff": diff, "max_rel_diff": rel}


def with_metadata(onnx_model: bytes, meta: dict[str, Any]) -> bytes:
    """``onnx_model`` with ``meta`` (key -> JSON-able value) in its ``metadata_props`` (sorted
    keys, canonical JSON: the same inputs give the same bytes)."""
    import onnx

    m = onnx.load_from_string(onnx_model)
    del m.metadata_props[:]
    for k in sorted(meta):
        m.metadata_props.add(
            key=k, value=json.dumps(meta[k], sort_keys=True, separators=(",", ":"))
        )
    return m.SerializeToString()


def model_metadata(ck: dict[str, Any]) -> dict[str, Any]:
    """What the ONNX file carries so it predicts on its own: config and landmark set."""
    return {META_CONFIG: dict(ck["config"]), META_LANDMARK_SET: dict(ck["landmark_set"])}


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    report: str | os.PathLike | None = None,
    opset: int = 17,
) -> StageResult:
    """``densemark export``: write ``out`` (.onnx) from a checkpoint after checking it agrees.

    Returns:
        outputs ``onnx`` and ``report`` (when asked for); the report (sizes, hashes, ONNX Runtime
        vs PyTorch differences) as ``report``.
    """
    model, ck = load_model(checkpoint)
    size = int(ck["config"]["input_size"])
    data = onnx_bytes(model, size, opset)
    check = check_onnx(model, data, size)
    data = with_metadata(data, model_metadata(ck))
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(data)
    rep = {
        "onnx": str(out),
        "opset": opset,
        "input_size": size,
        "n_points": int(ck["config"]["n_points"]),
        "bytes": len(data),
        "landmark_set_sha256": ck["landmark_set_sha256"],
        "manifest_sha256": ck["manifest_sha256"],
        **check,
    }
    outputs = {"onnx": Path(out)}
    if report is not None:
        outputs["report"] = write_json(report, rep)
    return StageResult(outputs=outputs, report=rep)


def latency_ms(fn: Any, repeats: int = 30, warmup: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def model_info(
    model: torch.nn.Module,
    input_size: int,
    repeats: int = 200,
    onnx: bool = True,
    baseline: bool = False,
    max_seconds: float = 60.0,
) -> dict[str, Any]:
    """Params, MACs and batch-1 CPU latency on one thread (PyTorch eager and ONNX Runtime).

    Timed by :func:`densemark.train.timing.interleaved_latency` (at least ``repeats`` calls
    each, until the medians settle): ``torch_ms`` / ``onnx_ms`` are medians, ``*_p90_ms`` the
    90th percentiles, ``*_p10_ms`` the 10th (steadiest under load from other work). With ``baseline``, 3DDFA_V2's MobileNet v1 x0.5 at 120 px (62 outputs)
    is timed in the same interleaved loop (keys ``baseline_*``).
    """
    from densemark.train.timing import mobilenet_v1_3ddfa, time_models

    model = model.eval().cpu()
    info: dict[str, Any] = {
        "input_size": input_size,
        "params": count_params(model),
        "macs": count_macs(model, input_size),
    }
    models = {"model": (model, input_size)}
    if baseline:
        base = mobilenet_v1_3ddfa()
        models["baseline"] = (base, 120)
        info.update(baseline_name="3DDFA_V2 MobileNet v1 x0.5 @120, 62 outputs", baseline_params=count_params(base),
                    baseline_macs=count_macs(base, 120))  # fmt: skip
    t = time_models(models, onnx=onnx, min_calls=repeats, max_seconds=max_seconds)
    for name, prefix in (("model", ""), ("baseline", "baseline_")):
        for rt in ("torch", "onnx"):
            if f"{name}.{rt}" in t:
                info[f"{prefix}{rt}_ms"] = t[f"{name}.{rt}"]["median_ms"]
                info[f"{prefix}{rt}_p90_ms"] = t[f"{name}.{rt}"]["p90_ms"]
                info[f"{prefix}{rt}_p10_ms"] = t[f"{name}.{rt}"]["p10_ms"]
    first = next(iter(t.values()))
    info["timed_calls"], info["timings_settled"] = (
        int(first["calls"]),
        bool(all(v["settled"] for v in t.values())),
    )
    if baseline and onnx:
        info["onnx_vs_baseline"] = info["onnx_ms"] / info["baseline_onnx_ms"]
    return info

"""Stable CPU latency: interleaved, repeated until the medians settle, median and p90.

One loop for ``densemark model-info`` and ``bench/``. Timing one variant after another lets
a change of machine load land on one of them; here every round times each variant in turn (the
order rotates), and rounds go on until every variant's running median moved by less than
``rel_tol`` over the last round (at least ``min_rounds``, at most ``max_seconds``). A machine
shared with other work still shifts the numbers; compare variants timed in the same call.

The baseline for the landmark regressor is 3DDFA_V2's MobileNet v1 (x0.5, 120 x 120 input,
62 outputs: 12 pose + 40 shape/expression parameters), re-implemented in plain PyTorch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from densemark.train.models import torch_threads


def mobilenet_v1_3ddfa(widen: float = 0.5, n_out: int = 62) -> nn.Module:
    """3DDFA(_V2)'s MobileNet v1: conv 3x3/2, 13 depthwise-separable blocks (BN + ReLU), average
    pool, fully connected; input (N, 3, 120, 120) -> (N, ``n_out``)."""

    def dw(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        ]  # fmt: skip

    c = [
        int(v * widen)
        for v in (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    ]
    strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    layers: list[nn.Module] = [
        nn.Conv2d(3, c[0], 3, 2, 1, bias=False),
        nn.BatchNorm2d(c[0]),
        nn.ReLU(inplace=True),
    ]
    for i, s in enumerate(strides):
        layers += dw(c[i], c[i + 1], s)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[-1], n_out)]
    return nn.Sequential(*layers).eval()


def interleaved_latency(
    fns: dict[str, Callable[[], Any]],
    min_calls: int = 100,
    block: int = 10,
    rel_tol: float = 0.01,
    min_rounds: int = 5,
    max_seconds: float = 30.0,
    warmup: int = 10,
) -> dict[str, dict[str, float]]:
    """Per name: ``median_ms``, ``p90_ms``, ``p10_ms`` (the least disturbed calls: the steadiest
    figure on a machine shared with other work), ``calls`` and ``settled`` (medians stable in time).

    Each round runs ``block`` timed calls of every function, in a rotating order. Stops when
    each has at least ``min_calls`` calls, ``min_rounds`` rounds passed and no running median
    moved by more than ``rel_tol`` (relative) in the last two rounds; or after ``max_seconds``.
    """
    names = list(fns)
    for n in names:
        for _ in range(warmup):
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    prev: dict[str, float] = {}
    calm = 0  # consecutive rounds in which no median moved by more than rel_tol
    settled = False
    start = time.perf_counter()
    rnd = 0
    while True:
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for n in order:
            f, ts = fns[n], times[n]
            for _ in range(block):
                t = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t)
        rnd += 1
        med = {n: float(np.median(times[n])) for n in names}
        stable = bool(prev) and all(abs(med[n] - prev[n]) <= rel_tol * prev[n] for n in names)
        calm = calm + 1 if stable else 0
        prev = med
        if rnd >= min_rounds and len(times[names[0]]) >= min_calls and calm >= 2:
            settled = True
            break
        if time.perf_counter() - start > max_seconds:
            break
    return {n: {"median_ms": float(np.median(t) * 1e3), "p90_ms": float(np.percentile(t, 90) * 1e3),
                "p10_ms": float(np.percentile(t, 10) * 1e3), "calls": len(t), "settled": settled}
            for n, t in times.items()}  # fmt: skip


def latency_fns(
    model: nn.Module, input_size: int, onnx: bool = True, prefix: str = ""
) -> dict[str, Callable[[], Any]]:
    """Batch-1 forward passes of ``model`` to time: PyTorch eager (``torch``) and ONNX Runtime
    (``onnx``, one intra-op thread), on a fixed random (1, 3, S, S) input."""
    from densemark.train.export import onnx_bytes, ort_session

    model = model.eval().cpu()
    x = torch.rand(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))

    def run_torch() -> Any:
        with torch.inference_mode():
            return model(x)

    out: dict[str, Callable[[], Any]] = {f"{prefix}torch": run_torch}
    if onnx:
        sess = ort_session(onnx_bytes(model, input_size), threads=1)
        xn = x.numpy()
        out[f"{prefix}onnx"] = lambda: sess.run(None, {"image": xn})
    return out


def time_models(
    models: dict[str, tuple[nn.Module, int]], onnx: bool = True, threads: int = 1, **kw: Any
) -> dict[str, dict[str, float]]:
    """Interleaved latency of several ``name -> (model, input_size)``; keys ``<name>.torch`` and
    ``<name>.onnx``. PyTorch runs on ``threads`` intra-op threads (restored afterwards)."""
    fns: dict[str, Callable[[], Any]] = {}
    for name, (m, size) in models.items():
        fns.update(latency_fns(m, size, onnx, prefix=f"{name}."))
    with torch_threads(threads):
        return interleaved_latency(fns, **kw)

"""Where the time goes: per-layer ONNX Runtime profile of the default model against the baseline,
and what a 520-point head costs in other forms. Measures only; the paper's model is unchanged.

    python bench/bench_profile.py [--runs 300] [--seconds 20]

1. Per-layer profile (ONNX Runtime's profiler, batch 1, one thread): the default model
   (MobileNetV2 x0.5 at 128 px, 520 x 3 outputs) and 3DDFA_V2's MobileNet v1 x0.5 at 120 px
   (62 outputs), each node's kernel time summed into regions (input normalisation, stem conv,
   inverted-residual / depthwise-separable blocks, the last 1x1 conv to 1280, pool, head).
2. Head variants, timed interleaved (densemark.train.timing) with the default model and the
   baseline, same backbone weights (random; the time does not depend on the values):
   the paper's Linear(1280, 1560); low-rank heads Linear(1280, r) -> Linear(r, 1560); a conv
   head (1x1 conv 1280 -> 1560 on the 4x4 map, then pooled); the head straight on the 160-d
   block output (no 1280 expansion); and the heads alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from densemark.train.export import onnx_bytes  # noqa: E402
from densemark.train.macs import count_macs  # noqa: E402
from densemark.train.models import count_params, create_model  # noqa: E402
from densemark.train.timing import mobilenet_v1_3ddfa, time_models  # noqa: E402

K = 520


def profile_regions(model: nn.Module, size: int, region_of, runs: int) -> dict[str, float]:
    """Mean kernel time per region (ms per inference) from ONNX Runtime's profiler."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "prof")
        sess = ort.InferenceSession(onnx_bytes(model, size), so, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).random((1, 3, size, size), np.float32)
        for _ in range(20):
            sess.run(None, {"image": x})
        path = sess.end_profiling()  # warm-up profile discarded
        so.profile_file_prefix = os.path.join(tmp, "prof2")
        sess = ort.InferenceSession(onnx_bytes(model, size), so, providers=["CPUExecutionProvider"])
        for _ in range(20):
            sess.run(None, {"image": x})
        for _ in range(runs):
            sess.run(None, {"image": x})
        path = sess.end_profiling()
        events = json.loads(Path(path).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"][: -len("_kernel_time")]].append(e["dur"] / 1e3)
    out: dict[str, float] = defaultdict(float)
    for node, ds in per_node.items():
        d = np.asarray(ds)
        out[region_of(node)] += float(np.median(d[-runs:]))  # steady state, median per node
    return dict(out)


def region_default(node: str) -> str:
    m = re.search(r"features\.(\d+)", node)
    if "head" in node or "Gemm" in node:
        return "head Linear(1280, 1560)"
    if "pool" in node or "GlobalAveragePool" in node or "Flatten" in node:
        return "pool + flatten"
    if m is None:
        return "input normalisation"
    i = int(m.group(1))
    return (
        "stem conv 3x3/2"
        if i == 0
        else "last 1x1 conv 160->1280"
        if i == 18
        else "inverted residual blocks 1-17"
    )


def region_baseline(node: str) -> str:
    m = re.match(r"/(\d+)/", node)
    i = int(m.group(1)) if m else -1
    if "Gemm" in node or "MatMul" in node:
        return "head Linear(512, 62)"
    if "GlobalAveragePool" in node or "Flatten" in node or "AveragePool" in node:
        return "pool + flatten"
    return "stem conv 3x3/2" if 0 <= i <= 2 else "depthwise-separable blocks 1-13"


class Variant(nn.Module):
    """The default backbone with another head (same input normalisation)."""

    def __init__(self, base: nn.Module, head: str, rank: int = 0):
        super().__init__()
        self.kind = head
        self.register_buffer("mean", base.mean.clone(), persistent=False)
        self.register_buffer("std", base.std.clone(), persistent=False)
        feats = base.backbone.features
        if head == "no_expansion":
            self.body = feats[:-1]  # up to the 160-d block output
            self.head = nn.Linear(feats[-1][0].in_channels, 3 * K)
        else:
            self.body = feats
            if head == "low_rank":
                self.head = nn.Sequential(nn.Linear(1280, rank, bias=False), nn.Linear(rank, 3 * K))
            elif head == "conv":
                self.head = nn.Conv2d(1280, 3 * K, 1)
            else:
                self.head = base.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        f = self.body(x)
        if self.kind == "conv":
            return self.head(f).mean((2, 3))
        return self.head(f.mean((2, 3)))


class HeadOnly(nn.Module):
    """A head alone on a (1, 3, S, S) dummy image: the first C values of the flattened input."""

    def __init__(self, head: nn.Module, c: int):
        super().__init__()
        self.head, self.c = head, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1)[:, : self.c])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300, help="profiled inferences per model")
    ap.add_argument(
        "--seconds", type=float, default=20.0, help="time budget of each interleaved timing"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = create_model("mobilenetv2", K, 128, 0.5).eval()
    base = mobilenet_v1_3ddfa()

    print(
        "1. per-layer profile, ONNX Runtime, batch 1, one thread (median kernel time per node, summed per region; ms)"
    )
    for name, m, size, fn in (("default MobileNetV2 x0.5 @128, 1560 outputs", model, 128, region_default),
                              ("baseline 3DDFA_V2 MobileNet v1 x0.5 @120, 62 outputs", base, 120, region_baseline)):  # fmt: skip
        reg = profile_regions(m, size, fn, args.runs)
        tot = sum(reg.values())
        print(
            f"  {name}: {count_macs(m, size) / 1e6:.1f} MMac, {count_params(m) / 1e6:.2f}M params, kernels {tot:.3f} ms"
        )
        for r, v in sorted(reg.items(), key=lambda kv: -kv[1]):
            print(f"    {r:<34}{v:>8.3f} ms {100 * v / tot:>5.1f} %")
    hw = model.head.weight
    print(
        f"  the head's weights: {hw.numel() / 1e6:.2f}M floats = {hw.numel() * 4 / 2**20:.1f} MiB, read once per image "
        f"(the whole baseline holds {count_params(base) * 4 / 2**20:.1f} MiB)"
    )

    print(
        "2. head variants (interleaved with the default and the baseline; ONNX Runtime median / p90 ms)"
    )
    variants = {
        "default (paper): Linear(1280, 1560)": (model, 128),
        "low-rank r=128: 1280->128->1560": (Variant(model, "low_rank", 128).eval(), 128),
        "low-rank r=64: 1280->64->1560": (Variant(model, "low_rank", 64).eval(), 128),
        "conv head 1x1 1280->1560, pooled": (Variant(model, "conv").eval(), 128),
        "no 1280 expansion: Linear(160, 1560)": (Variant(model, "no_expansion").eval(), 128),
        "baseline 3DDFA_V2 x0.5 @120": (base, 120),
        "head alone: Linear(1280, 1560)": (HeadOnly(model.head, 1280).eval(), 32),
        "head alone: low-rank r=128": (
            HeadOnly(Variant(model, "low_rank", 128).head, 1280).eval(),
            32,
        ),
        "head alone: baseline Linear(512, 62)": (HeadOnly(base[-1], 512).eval(), 32),
    }
    t = time_models(variants, onnx=True, min_calls=200, max_seconds=args.seconds)
    print(f"  {'variant':<40}{'params':>9}{'MMac':>8}{'ORT ms':>9}{'p90':>8}{'torch ms':>10}")
    for name, (m, size) in variants.items():
        o, pt = t[f"{name}.onnx"], t[f"{name}.torch"]
        print(
            f"  {name:<40}{count_params(m) / 1e6:>8.2f}M{count_macs(m, size) / 1e6:>8.1f}{o['median_ms']:>9.3f}{o['p90_ms']:>8.3f}{pt['median_ms']:>10.3f}"
        )
    print(
        f"  timings settled: {all(v['settled'] for v in t.values())}; calls per variant: {next(iter(t.values()))['calls']}"
    )


if __name__ == "__main__":
    main()

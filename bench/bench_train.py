"""Training and inference performance of the landmark regressor, in one run.

    python bench/bench_train.py [--data DATASET_DIR] [--workers 2] [--input-size 256] [--quick]

Prints:
- loader throughput: samples/s decoded (JPEG) and augmented through the DataLoader with
  ``--workers`` worker processes, against the same loader in the main process (ratio);
  goal: >= 1,000 samples/s on 2 cores (the loader never starves a GPU step);
- train-step time (forward + backward + AdamW) of the paper's model on this CPU;
- params and MACs (goal: MobileNetV2 width 1.0 at 256x256 <= 4.2M params and 0.4 GMac);
- batch-1 CPU latency, one thread, PyTorch eager and ONNX Runtime, over input sizes and widths,
  each timed interleaved with a baseline (:mod:`densemark.train.timing`, median and p90):
  3DDFA_V2's 62-parameter MobileNet (v1, x0.5, 120x120), re-implemented in plain PyTorch (the
  released one runs in 0.8-1.3 ms in ONNX Runtime on one thread); says at which input size the
  520-point model comes within 2x of it;
- predict on one photo with a given box: the PyTorch checkpoint against the exported ONNX file
  (the torch-free path), and the face detectors' time.

The loader reads ``--data`` (default: ``data/dataset``, the embedded build of ``dvc repro``);
with ``--data none`` or no build, an in-memory set of 256x256 JPEG point renders with 520 labels
(decoded per item like the shards, but about 2x larger JPEGs than face crops, so slower). The
colour change runs on the batch (``to_input``), as training runs it; the rate is the steady one
(from the first batch on) and, in brackets, the epoch's with worker start-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test fixtures (tests/factories.py)

from densemark.train.augment import apply_augment, draw_augment  # noqa: E402
from densemark.train.data import LandmarkSamples, make_loader, to_input  # noqa: E402
from densemark.train.export import model_info  # noqa: E402
from densemark.train.loss import WingMSELoss  # noqa: E402
from densemark.train.macs import count_macs  # noqa: E402
from densemark.train.models import count_params, create_model  # noqa: E402
from densemark.train.params import AugmentParams  # noqa: E402
from densemark.train.timing import mobilenet_v1_3ddfa, time_models  # noqa: E402
from tests.factories import SyntheticLandmarks  # noqa: E402


class _Repeat:
    """``base`` repeated to ``n`` items (a long epoch over a small dataset), cut to ``n`` items
    (the first rows of a large one). When ``base`` tells its storage blocks (a built dataset's
    row groups), so does this (the blocks repeated and cut the same way): the loader then
    shuffles as training does (``make_loader``: blocks in random order, rows within a block),
    on a small dataset and on a large one alike."""

    def __init__(self, base, n: int):
        self.base, self.n = base, n
        if callable(getattr(base, "blocks", None)):
            self.blocks = self._blocks

    def _blocks(self) -> list[np.ndarray]:
        out, m = [], len(self.base)
        for r in range(-(-self.n // m)):
            out += [
                c for b in self.base.blocks() for c in [b[b + r * m < self.n] + r * m] if len(c)
            ]
        return out

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.base[i % len(self.base)]


def loader_rate(base, size: int, workers: int, batch: int, n: int) -> tuple[float, float, float]:
    """Samples/s over one shuffled epoch of ``n`` samples: (overall, worker start-up included;
    steady, from the first batch on: what a long epoch sees; CPU ms per sample, this process
    and its loader workers, start-up included: less sensitive to a shared machine's load)."""
    samples = LandmarkSamples(
        _Repeat(base, n), size, AugmentParams(), seed=0, device_colour=True
    )  # as training runs it
    c0 = _cpu()
    t = time.perf_counter()
    count, t_first, n_first = 0, None, 0
    for b in make_loader(samples, batch, True, seed=0, epoch=0, workers=workers):
        count += len(b["index"])
        if t_first is None:
            t_first, n_first = time.perf_counter(), count
    end = time.perf_counter()
    return (
        count / (end - t),
        (count - n_first) / max(end - t_first, 1e-9),
        1e3 * (_cpu() - c0) / max(count, 1),
    )


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the loader's workers, once joined)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "dataset"),
                    help="a built dataset folder (split train; default: the embedded build of `dvc repro`); "
                         "'none' or a missing folder: in-memory synthetic crops (point renders, JPEGs about 2x larger than face crops)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--input-size", type=int, default=256)
    ap.add_argument("--n-points", type=int, default=520)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = ap.parse_args()
    k, s = args.n_points, args.input_size

    # ---------------------------------------------------------------- loader
    if args.data and args.data != "none" and (Path(args.data) / "manifest.json").is_file():
        from densemark.datasets.torch_data import ShardDataset

        base = ShardDataset(args.data, split="train")
        print(
            f"data: {args.data} (train split, {len(base)} rows, {base[0]['image'].shape[0]}px crops)"
        )
    else:
        base = SyntheticLandmarks(n=256, n_points=k, res=256)
        print(f"data: {len(base)} in-memory 256px JPEG crops, {k} labels")
    torch.set_num_threads(1)
    item = base[0]
    rng = np.random.default_rng(0)
    ap_ = AugmentParams()
    t = time.perf_counter()
    for i in range(200):
        base[i % len(base)]
    t_dec = (time.perf_counter() - t) / 200 * 1e3
    t = time.perf_counter()
    for _ in range(200):
        apply_augment(item["image"], item["landmarks"], draw_augment(rng, ap_), s)
    t_aug = (time.perf_counter() - t) / 200 * 1e3
    print(f"per sample, one process: read+decode {t_dec:.2f} ms, augment to {s}px {t_aug:.2f} ms")
    n = 1024 if args.quick else 4096
    r0, _, _ = loader_rate(base, s, 0, 64, n)
    rw_all, rw, cpu_ms = loader_rate(base, s, args.workers, 64, n)
    print(
        f"loader: {rw:,.0f} samples/s steady with {args.workers} workers ({rw_all:,.0f} over the epoch with worker start-up) "
        f"vs {r0:,.0f} in-process (x{rw / r0:.2f}); goal >= 1,000: {'met' if rw >= 1000 else 'NOT met'}; "
        f"CPU {cpu_ms:.2f} ms/sample (workers included; {args.workers} free cores would give about {args.workers * 1e3 / cpu_ms:,.0f} samples/s)"
    )

    # ---------------------------------------------------------------- train step
    torch.set_num_threads(
        1
    )  # the train.threads default: one intra-op thread is fastest on a small shared CPU
    k_data = int(item["landmarks"].shape[0])
    model = create_model("mobilenetv2", k_data, s, 1.0).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    crit = WingMSELoss()
    batch = next(iter(make_loader(LandmarkSamples(base, s), args.batch, False)))
    x, y = to_input(batch["image"]), batch["target"]
    times = []
    for _ in range(2 if args.quick else 5):
        t = time.perf_counter()
        loss = crit(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    step = float(np.median(times[1:]))
    print(
        f"train step (MobileNetV2 x1.0, K={k_data}, {s}px, batch {len(y)}, CPU {torch.get_num_threads()} threads): "
        f"{step * 1e3:.0f} ms = {len(y) / step:.1f} samples/s (loader/step ratio x{rw / (len(y) / step):.1f})"
    )

    # ---------------------------------------------------------------- size
    m = create_model("mobilenetv2", k, 256, 1.0)
    p, macs = count_params(m), count_macs(m, 256)
    print(
        f"MobileNetV2 x1.0 @256, {3 * k} outputs: {p / 1e6:.3f}M params (goal <= 4.2M: {'met' if p <= 4.2e6 else 'NOT met'}; "
        f"paper 4.18M), {macs / 1e9:.3f} GMac (goal <= 0.4: {'met' if macs <= 0.4e9 else 'NOT met'}; paper 0.39)"
    )
    w = sum(q.numel() for q in m.parameters() if q.ndim > 1)
    print(
        f"  of which kernels (conv + linear weights; no biases, no batch-norm scales/shifts): {w / 1e6:.4f}M "
        f"(the paper's 4.18M matches this count, truncated); the 1280 -> {3 * k} head alone: {(1280 + 1) * 3 * k / 1e6:.3f}M"
    )
    r = create_model("resnet18", k, 256, 1.0)
    print(
        f"ResNet-18 @256: {count_params(r) / 1e6:.2f}M params, {count_macs(r, 256) / 1e9:.2f} GMac"
    )

    # ---------------------------------------------------------------- latency
    # every size is timed interleaved with the baseline (densemark.train.timing), median and p90
    secs = 5.0 if args.quick else 20.0
    base = mobilenet_v1_3ddfa()
    print(
        f"baseline 3DDFA_V2 MobileNet v1 x0.5 @120, 62 outputs: {count_params(base) / 1e6:.2f}M params, "
        f"{count_macs(base, 120) / 1e6:.1f} MMac (timed beside each model below)"
    )
    print(
        f"{'model':<22}{'size':>6}{'params':>10}{'MMac':>9}{'torch ms':>10}{'ORT ms':>9}{'ORT p90':>9}{'base ORT':>10}{'ORT / base':>12}"
    )
    sizes = (256, 192, 128, 96) if args.quick else (256, 224, 192, 160, 128, 120, 96, 64)
    within = {}
    for width in (1.0, 0.5):
        for size in sizes:
            m = create_model("mobilenetv2", k, size, width)
            t = time_models(
                {"m": (m, size), "b": (base, 120)},
                min_calls=50 if args.quick else 200,
                max_seconds=secs,
            )
            ratio = t["m.onnx"]["median_ms"] / t["b.onnx"]["median_ms"]
            if ratio <= 2.0:
                within[width] = max(within.get(width, 0), size)
            print(
                f"{f'MobileNetV2 x{width} K={k}':<22}{size:>6}{count_params(m) / 1e6:>9.2f}M{count_macs(m, size) / 1e6:>9.1f}"
                f"{t['m.torch']['median_ms']:>10.2f}{t['m.onnx']['median_ms']:>9.2f}{t['m.onnx']['p90_ms']:>9.2f}"
                f"{t['b.onnx']['median_ms']:>10.2f}{ratio:>11.2f}x"
            )
    for width in (1.0, 0.5):
        if width in within:
            print(
                f"MobileNetV2 x{width}, {k} points: within 2x of the baseline's ONNX Runtime latency at input <= {within[width]}px"
            )
        else:
            print(
                f"MobileNetV2 x{width}, {k} points: not within 2x of the baseline at any size tried"
            )
    info = model_info(
        create_model("mobilenetv2", k, 128, 0.5),
        128,
        50 if args.quick else 200,
        baseline=True,
        max_seconds=secs,
    )
    print(
        f"model-info of the default model (x0.5 @128): ONNX Runtime {info['onnx_ms']:.3f} ms (p90 {info['onnx_p90_ms']:.3f}) "
        f"vs baseline {info['baseline_onnx_ms']:.3f} ms (p90 {info['baseline_onnx_p90_ms']:.3f}): x{info['onnx_vs_baseline']:.2f}"
    )

    # ---------------------------------------------------------------- predict on a photo
    predict_paths(k, quick=args.quick)


def predict_paths(k: int, quick: bool = False) -> None:
    """End-to-end predict on one photo (a real AFLW2000-3D image when the real data is there) with a given box: PyTorch checkpoint vs the
    exported ONNX file (the torch-free path), interleaved; and the face detector alone."""
    import tempfile

    from densemark.train.detect import detect_faces
    from densemark.train.export import export_onnx
    from densemark.train.loop import run_train
    from densemark.train.params import TrainParams
    from densemark.train.predict import load_predictor
    from densemark.train.timing import interleaved_latency

    with tempfile.TemporaryDirectory() as tmp:
        run_train(TrainParams(width=0.5, input_size=128, epochs=1, batch_size=4, workers=0, augment={"enabled": False}),
                  SyntheticLandmarks(8, k, 128), tmp, progress=False)  # fmt: skip
        export_onnx(Path(tmp) / "model.pt", Path(tmp) / "model.onnx")
        tp, op = load_predictor(Path(tmp) / "model.pt"), load_predictor(Path(tmp) / "model.onnx")
    from densemark.config import real_data_dir
    from densemark.core.images import read_image

    real = real_data_dir(default=ROOT.parent / "shared" / "real", base=ROOT)
    photos = sorted((real / "aflw2000").glob("*.jpg")) if real is not None else []
    img = (
        read_image(photos[0])
        if photos
        else np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    )
    what = (
        f"{photos[0].name} ({img.shape[1]}x{img.shape[0]})"
        if photos
        else "640x480 noise (no real data found)"
    )
    box = np.array([[150.0, 140, 300, 320]])
    torch.set_num_threads(1)
    t = interleaved_latency({"torch": lambda: tp.predict([img], box), "onnx": lambda: op.predict([img], box)},
                            min_calls=30 if quick else 100, max_seconds=5 if quick else 20)  # fmt: skip
    print(
        f"predict one face (crop + model + back to pixels), MobileNetV2 x0.5 @128, K={k}: "
        f"PyTorch {t['torch']['median_ms']:.2f} ms (p90 {t['torch']['p90_ms']:.2f}), "
        f"ONNX file {t['onnx']['median_ms']:.2f} ms (p90 {t['onnx']['p90_ms']:.2f})"
    )
    for method in ("haar-frontal", "haar", "auto"):
        d = interleaved_latency({method: lambda m=method: detect_faces(img, m)}, min_calls=3, block=1, min_rounds=3,
                                warmup=1, max_seconds=10)[method]  # fmt: skip
        print(
            f"face detector {method!r} on {what}: {d['median_ms']:.0f} ms (p90 {d['p90_ms']:.0f})"
        )


if __name__ == "__main__":
    main()

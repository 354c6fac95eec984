"""Position maps: the fast path (UV rasterization once, then a sparse product per batch)
against the naive per-triangle reference rasterizer, in one process, on one core.

    python bench/bench_posmap.py [--batch 64] [--repeats 3]

Uses the real BFM mean mesh (53,215 vertices, 105,954 triangles) when DENSEMARK_REAL_DATA
points at the reference data, else the embedded model (``densemark model`` writes it).
Prints ms per 256x256 map and the ratios against the baseline.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from densemark.config import load_params, real_data_dir  # noqa: E402
from densemark.faces.uvmap import UVMap, rasterize_uv, uv_to_pixels  # noqa: E402
from densemark.reference.faces import render_gather, render_naive  # noqa: E402


def _model():
    real = real_data_dir()
    if real is not None:
        from densemark.faces.io import load_bfm_mean_model

        return load_bfm_mean_model(real / "bfm")
    from densemark.faces.stages import load_configured_model

    return load_configured_model(load_params().model)


def _time(f, repeats: int) -> float:
    f()
    t0 = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    model = _model()
    res = 256
    uv_px = uv_to_pixels(model.uv, res)
    rng = np.random.default_rng(0)
    batch = model.mean[None] + rng.normal(0, 100, (args.batch, model.n_vertices, 3)).astype(
        np.float32
    )
    print(
        f"mesh: {model.name}, {model.n_vertices} vertices, {model.triangles.shape[0]} triangles; batch {args.batch}"
    )

    t0 = time.perf_counter()
    naive_map = render_naive(uv_px, model.triangles, res, batch[0].astype(np.float64))
    t_naive = time.perf_counter() - t0

    t_raster = _time(lambda: rasterize_uv(uv_px, model.triangles, res, model.n_vertices), 1)
    uvm = UVMap(rasterize_uv(uv_px, model.triangles, res, model.n_vertices))
    out = np.empty((args.batch, res, res, 3), np.float32)
    vm = np.ascontiguousarray(batch.transpose(1, 0, 2))
    rows = [
        ("naive per-triangle rasterizer (baseline), per map", t_naive),
        ("vectorised rasterization, once per model", t_raster),
        (
            "fast: render (B, N, 3), per map",
            _time(lambda: uvm.render(batch, out=out), args.repeats) / args.batch,
        ),
        (
            "fast: render vertex-major (N, B, 3), per map",
            _time(lambda: uvm.render(vm, out=out, vertex_major=True), args.repeats) / args.batch,
        ),
        ("fast: single map, per map", _time(lambda: uvm.render(batch[0]), args.repeats * 8)),
        ("gather reference path, per map", _time(lambda: render_gather(uvm, batch[:8]), 1) / 8),
    ]
    err = float(np.abs(uvm.render(batch[0]) - naive_map).max() / np.abs(naive_map).max())
    print(f"{'path':55s} {'ms/map':>10s} {'speed-up':>10s}")
    for name, t in rows:
        print(f"{name:55s} {t * 1e3:10.3f} {t_naive / t:10.0f}x")
    print(f"max relative difference fast vs naive: {err:.2e}")


if __name__ == "__main__":
    main()

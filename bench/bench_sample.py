"""Sampler run time: the default (rounds + fill + Lloyd relaxation) against the paper-literal
baseline (rounds + symmetric geodesic farthest-point fill, ``relax.iterations: 0``), in one
process, on one core.

    python bench/bench_sample.py [--repeats 3]

Uses the real template (43,867 vertices) when DENSEMARK_REAL_DATA points at the reference
data, else a synthetic disc template of similar size. Prints seconds per set, the relaxation's
iterations and the ratio against the baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # the test fixtures (tests/factories.py)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from densemark.config import real_data_dir  # noqa: E402
from densemark.faces.template import load_template  # noqa: E402
from densemark.sampling.params import RelaxParams, SampleParams  # noqa: E402
from densemark.sampling.sampler import sample_set  # noqa: E402
from tests.factories import disc_template  # noqa: E402


def _time(params: SampleParams, template, repeats: int) -> tuple[float, dict]:
    sample_set(template, params)  # warm the per-template caches (mirror, graph, rim distance)
    best, rep = float("inf"), {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, rep = sample_set(template, params)
        best = min(best, time.perf_counter() - t0)
    return best, rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    real = real_data_dir()
    tpl = (
        load_template(real / "template")
        if real is not None
        else disc_template(256, rx=0.4, ry=0.44)
    )
    print(
        f"template: {'real' if real is not None else 'synthetic disc'}, {tpl.n_vertices} vertices"
    )
    base, _ = _time(SampleParams(relax=RelaxParams(iterations=0)), tpl, args.repeats)
    new, rep = _time(SampleParams(), tpl, args.repeats)
    print(f"baseline rounds + fill: {base:.2f} s")
    print(f"default (+ relaxation, {rep['relax']['iterations']} Lloyd iterations): {new:.2f} s")
    print(f"ratio default / baseline: {new / base:.2f}; relaxation alone: {new - base:.2f} s")


if __name__ == "__main__":
    main()

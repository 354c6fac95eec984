"""Shared fixtures.

Real reference data is found through one setting, ``DENSEMARK_REAL_DATA`` (CI sets it to
``../shared/real``; when unset, ``../shared/real`` beside the repository is tried). Tests that
need it skip with a reason when it is absent, and carry the ``real`` marker (collection fails
for one that uses ``real_dir`` without it), so ``-m "not real"`` deselects exactly them.

Every test runs inside :func:`_restore_global_state`: process-wide settings a test (or the code
it calls, e.g. ``run_train`` setting torch's thread count) changes are put back afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from densemark.config import REAL_DATA_ENV, real_data_dir

ROOT = Path(__file__).resolve().parents[1]

CHECKPOINT_POINTS = (
    68  # landmarks of the shared checkpoint (68: the evaluation protocol's keypoints)
)


def pytest_collection_modifyitems(config, items):
    """Refuse a test that reads the real reference data without the ``real`` marker."""
    unmarked = [
        it.nodeid
        for it in items
        if "real_dir" in getattr(it, "fixturenames", ()) and it.get_closest_marker("real") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests that use real_dir need @pytest.mark.real:\n  " + "\n  ".join(unmarked)
        )


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Put back what a test changed process-wide: environment variables, the working directory,
    ``sys.path``, numpy's print options and floating-point error handling, and (once torch is
    loaded, as collecting the torch test modules does) torch's thread count and global RNG."""
    env, cwd, path = dict(os.environ), os.getcwd(), list(sys.path)
    printopts, errs = np.get_printoptions(), np.geterr()
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    torch_rng = torch.get_rng_state() if torch is not None else None
    yield
    now = dict(os.environ)
    for k in now.keys() - env.keys() - {"PYTEST_CURRENT_TEST"}:  # pytest's own, set per phase
        del os.environ[k]
    for k, v in env.items():
        if now.get(k) != v and k != "PYTEST_CURRENT_TEST":
            os.environ[k] = v
    if os.getcwd() != cwd:
        os.chdir(cwd)
    if sys.path != path:
        sys.path[:] = path
    np.set_printoptions(**printopts)
    np.seterr(**errs)
    if torch is not None:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.set_rng_state(torch_rng)


def _real_dir() -> Path | None:
    return real_data_dir(default=ROOT.parent / "shared" / "real", base=ROOT)


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The real reference data folder; skips the test when it is absent."""
    p = _real_dir()
    if p is None:
        pytest.skip(
            f"real reference data not found (set {REAL_DATA_ENV} to the folder holding bfm/, template/, ...)"
        )
    return p


@pytest.fixture(scope="session")
def real_template(real_dir):
    from densemark.faces.template import load_template

    return load_template(real_dir / "template")


@pytest.fixture(scope="session")
def build_world(tmp_path_factory):
    """A small embedded world for dataset builds: procedural model, template, mirror-exact set, 8 synthetic samples."""
    from tests.factories import make_world

    return make_world(tmp_path_factory.mktemp("build_world"))


@pytest.fixture(scope="session")
def world_dataset(build_world, tmp_path_factory):
    """``build_world`` built at the small test params: (dataset folder, BuildResult). Shared by
    the test modules: copy the folder before changing it."""
    from densemark.datasets.build import run_build
    from tests.factories import SPLITS, build_paths, small_build_params

    out = tmp_path_factory.mktemp("world_dataset") / "ds"
    res = run_build(
        build_world["model_params"], small_build_params(), SPLITS, build_paths(build_world, out)
    )
    return out, res


@pytest.fixture
def torch_one_thread():
    """Run a torch test on one intra-op thread (fast and stable on a small shared machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """``model.pt`` of one tiny training run shared by the tests that only read a checkpoint:
    MobileNetV2 x0.25 on 32 px crops, one epoch over 8 synthetic samples of
    :data:`CHECKPOINT_POINTS` landmarks on 64 px images (``tests.factories.SyntheticLandmarks``)."""
    import torch

    from densemark.train.loop import run_train
    from densemark.train.params import TrainParams
    from tests.factories import SyntheticLandmarks

    out = tmp_path_factory.mktemp("checkpoint")
    n, rng = torch.get_num_threads(), torch.get_rng_state()
    try:
        params = TrainParams(
            width=0.25, input_size=32, epochs=1, batch_size=4, workers=0, threads=1
        )
        run_train(params, SyntheticLandmarks(8, CHECKPOINT_POINTS, 64), out, progress=False)
    finally:  # run_train sets its own thread count and seeds torch's global RNG
        torch.set_num_threads(n)
        torch.set_rng_state(rng)
    return out / "model.pt"

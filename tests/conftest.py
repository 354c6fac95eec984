"""Shared fixtures.

Real reference data is found through one setting, ``DENSEMARK_REAL_DATA`` (CI sets it to
``../shared/real``; when unset, ``../shared/real`` beside the repository is tried). Tests that
need it skip with a reason when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from densemark.config import REAL_DATA_ENV, real_data_dir

ROOT = Path(__file__).resolve().parents[1]


def _real_dir() -> Path | None:
    return real_data_dir(default=ROOT.parent / "shared" / "real", base=ROOT)


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The real reference data folder; skips the test when it is absent."""
    p = _real_dir()
    if p is None:
        pytest.skip(f"real reference data not found (set {REAL_DATA_ENV} to the folder holding bfm/, template/, ...)")
    return p


@pytest.fixture(scope="session")
def real_template(real_dir):
    from densemark.faces.template import load_template

    return load_template(real_dir / "template")


@pytest.fixture(scope="session")
def build_world(tmp_path_factory):
    """A small embedded world for dataset builds: procedural model, template, mirror-exact set, 8 synthetic samples."""
    from tests._build import make_world

    return make_world(tmp_path_factory.mktemp("build_world"))

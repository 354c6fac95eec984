"""The shared test set-up itself: state a test changes process-wide does not reach the next test,
and a test reading the real reference data must carry the ``real`` marker."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch  # noqa: F401 - loaded here: pytester unloads what an inner session loads first, and torch cannot load twice

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parent / "conftest.py").read_text(encoding="utf-8")

LEAKY = """
import os, sys
import numpy as np
import torch

CWD, THREADS = os.getcwd(), torch.get_num_threads()

def test_a_changes_global_state(tmp_path):
    os.environ["DENSEMARK_TEST_LEAK"] = "1"
    os.chdir(tmp_path)
    sys.path.append("/densemark-test-leak")
    np.set_printoptions(precision=2)
    np.seterr(all="raise")
    torch.set_num_threads(THREADS + 1)

def test_b_sees_it_undone():
    assert "DENSEMARK_TEST_LEAK" not in os.environ and os.getcwd() == CWD
    assert "/densemark-test-leak" not in sys.path
    assert np.get_printoptions()["precision"] == 8 and np.geterr()["divide"] != "raise"
    assert torch.get_num_threads() == THREADS
"""


def test_state_a_test_changes_is_undone_before_the_next(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_leaky=LEAKY)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    # without the shared conftest the second test sees the first one's changes
    pytester.runpytest_inprocess("-p", "no:cacheprovider", "--noconftest").assert_outcomes(
        passed=1, failed=1
    )


def test_real_data_needs_the_marker(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_real="def test_unmarked(real_dir):\n    pass\n")
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only")
    assert (
        res.ret == pytest.ExitCode.USAGE_ERROR and "test_real.py::test_unmarked" in res.stderr.str()
    )
    pytester.makepyfile(
        test_real="import pytest\n\n@pytest.mark.real\ndef test_marked(real_dir):\n    pass\n"
    )
    assert (
        pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only").ret
        == pytest.ExitCode.OK
    )

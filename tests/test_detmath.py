"""The reproducible elementary functions (``core.detmath``) and the guard that every
byte-producing module uses them.

Two checks: accuracy against a 200-bit reference (a few ulp: the functions are reproducible,
not correctly rounded), and a structural walk of ``densemark/`` that refuses numpy's and libm's
transcendental functions and non-square powers outside ``core/detmath.py``. numpy dispatches
those to CPU-specific kernels (AVX-512 SVML, NEON) whose last bits differ, so on a machine
without AVX-512 this walk is what keeps the committed ``dvc.lock`` valid on one that has it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from densemark.core import detmath as dm

mp = pytest.importorskip("mpmath")
PKG = Path(__file__).resolve().parents[1] / "densemark"

# numpy ufuncs / libm functions whose results are not the same bits on every CPU
TRANSCENDENTAL = {
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "asin", "acos", "atan", "atan2",
    "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "asinh", "acosh", "atanh",
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "logaddexp", "logaddexp2",
    "power", "float_power", "pow", "cbrt", "hypot", "sinc", "erf", "erfc", "gamma", "lgamma",
}  # fmt: skip
# modules allowed to use them: the guarded module itself, and the slow references for tests
EXEMPT = {"core/detmath.py"}
EXEMPT_DIRS = {"reference"}


def _ulps(got: np.ndarray, ref: list) -> float:
    want = np.array([float(r) for r in ref])
    sp = np.spacing(np.abs(want))
    return float(np.max(np.abs(got - want) / sp))


@pytest.fixture(autouse=True)
def _prec():
    old = mp.mp.prec
    mp.mp.prec = 200
    yield
    mp.mp.prec = old


RNG = np.random.default_rng(7)


@pytest.mark.parametrize(
    ("name", "x", "ref", "max_ulp"),
    [
        ("exp", RNG.uniform(-700, 700, 400), mp.exp, 1),
        ("exp", RNG.uniform(-2, 2, 400), mp.exp, 1),
        ("log", np.exp(RNG.uniform(-700, 700, 400)), mp.log, 1),
        ("log", RNG.uniform(0.5, 2.0, 400), mp.log, 1),
        ("sin", RNG.uniform(-200, 200, 400), mp.sin, 1),
        ("cos", RNG.uniform(-200, 200, 400), mp.cos, 1),
        ("asin", RNG.uniform(-1, 1, 400), mp.asin, 2),
        ("atan", RNG.normal(size=400) * 10.0 ** RNG.integers(-3, 4, 400), mp.atan, 1),
    ],
)
def test_unary_accuracy(name, x, ref, max_ulp):
    got = getattr(dm, name)(x)
    assert _ulps(got, [ref(mp.mpf(float(v))) for v in x]) <= max_ulp


def test_binary_accuracy():
    y = RNG.normal(size=400) * 10.0 ** RNG.integers(-3, 4, 400)
    x = RNG.normal(size=400)
    assert (
        _ulps(
            dm.atan2(y, x),
            [mp.atan2(mp.mpf(float(a)), mp.mpf(float(b))) for a, b in zip(y, x, strict=True)],
        )
        <= 1
    )
    b, e = RNG.uniform(0, 3, 400), RNG.uniform(-3, 3, 400)
    assert (
        _ulps(
            dm.power(b, e),
            [mp.power(mp.mpf(float(u)), mp.mpf(float(v))) for u, v in zip(b, e, strict=True)],
        )
        <= 16
    )


def test_special_values():
    with np.errstate(all="raise"):  # no warnings leak out of the guarded functions
        assert np.array_equal(
            dm.exp(np.array([np.nan, np.inf, -np.inf, 0.0])),
            [np.nan, np.inf, 0.0, 1.0],
            equal_nan=True,
        )
        assert np.array_equal(
            dm.log(np.array([0.0, -1.0, np.inf, 1.0])),
            [-np.inf, np.nan, np.inf, 0.0],
            equal_nan=True,
        )
        s, c = dm.sincos(np.array([0.0, np.inf]))
        assert s[0] == 0.0 and c[0] == 1.0 and np.isnan(s[1]) and np.isnan(c[1])
        assert dm.atan2(0.0, -1.0) == dm.atan2(1.0, 0.0) * 2 == np.pi
        assert list(dm.power(np.array([0.0, 0.0, 4.0]), np.array([2.0, 0.0, 0.5]))) == [
            0.0,
            1.0,
            2.0,
        ]
        assert list(dm.cbrt(np.array([-8.0, 27.0]))) == [-2.0, 3.0]
    with pytest.raises(ValueError, match="2\\*\\*19"):
        dm.sin(np.array([1e7]))


def test_results_do_not_depend_on_the_array_layout():
    """Same bits for a value whatever array it sits in (no size-dependent kernel)."""
    x = RNG.uniform(-50, 50, 1001)
    for f in (dm.exp, dm.sin, dm.cos, dm.atan):
        whole = f(x)
        assert all(f(x[i : i + 1])[0] == whole[i] for i in range(0, 1001, 97))
        assert np.array_equal(f(x[::-1].copy())[::-1], whole)


def _violations(path: Path, root: Path = PKG) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in TRANSCENDENTAL:
            base = node.value
            name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            if name in {"np", "numpy", "math", "cmath", "emath"}:
                out.append(f"{path.relative_to(root)}:{node.lineno}: {name}.{node.attr}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            e, b = node.right, node.left
            square = isinstance(e, ast.Constant) and e.value == 2
            two = (
                isinstance(b, ast.Constant)
                and b.value in (2, 2.0)
                and isinstance(e, ast.Constant | ast.UnaryOp)
            )
            if not (square or two):
                out.append(f"{path.relative_to(root)}:{node.lineno}: ** {ast.unparse(e)}")
    return out


def test_no_transcendental_outside_detmath():
    """Only ``x ** 2`` (an exact square), powers of two of literal exponents, and detmath."""
    files = [
        p for p in sorted(PKG.rglob("*.py"))
        if str(p.relative_to(PKG)) not in EXEMPT and not EXEMPT_DIRS & set(p.relative_to(PKG).parts)
    ]  # fmt: skip
    assert len(files) > 50
    bad = [v for p in files for v in _violations(p)]
    assert not bad, "use densemark.core.detmath instead:\n" + "\n".join(bad)


def test_walk_catches_a_violation(tmp_path):
    p = tmp_path / "probe.py"
    p.write_text(
        "import numpy as np\nimport math\ny = np.exp(1.0) + math.sin(2.0) + 3.0 ** 1.5\nz = 2.0**-53 + y**2\n"
    )
    assert sorted(v.split(": ")[1] for v in _violations(p, tmp_path)) == [
        "** 1.5",
        "math.sin",
        "np.exp",
    ]

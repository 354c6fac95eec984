"""Elementary functions whose float64 results are the same bits on every CPU.

Contract: every function here is composed only of operations that IEEE 754 defines exactly
(``+ - * /``, ``sqrt``, ``rint``/``floor``, ``frexp``/``ldexp``, comparisons), each applied as its
own numpy ufunc. Such an operation has one correct result, so no SIMD path (SSE, AVX2, AVX-512,
NEON), no libm variant and no compiler contraction can change a bit. numpy's own ``np.sin``,
``np.exp``, ``np.arctan2``, ``np.power``, ... do not have that property: numpy dispatches them
to vendor kernels (AVX-512 SVML, NEON) whose last bits differ from the scalar libm.

Every module whose results reach a written byte (model files, sources, position maps, labels,
training data) takes its transcendental functions from here; ``tests/test_detmath.py`` walks
those modules and refuses any other, and checks every function here against a 200-bit
reference (errors of a few ulp at most: these functions are reproducible, not correctly rounded).

Domains: ``sin``/``cos`` take ``|x| <= 2**19`` (larger arguments raise); everything else takes
the whole float64 range, with numpy's special values (``log(0) = -inf``, ``log(-1) = nan``).

>>> abs(float(exp(1.0)) - 2.718281828459045) <= 2 ** -51  # within an ulp of e
True
>>> float(log(1.0)), float(cos(0.0)), float(cbrt(-8.0))
(0.0, 1.0, -2.0)
>>> [float(v) for v in atan2(np.array([1.0, -1.0]), np.array([-1.0, -1.0]))]
[2.356194490192345, -2.356194490192345]
"""

from __future__ import annotations

import numpy as np

ArrayLike = np.ndarray | float

# Cody-Waite splits: the high parts have trailing zero bits, so ``k * HI`` is exact for |k| < 2**20.
_LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
_LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
_INV_LN2 = float.fromhex("0x1.71547652b82fep+0")
_PIO2_1 = float.fromhex("0x1.921fb54400000p+0")
_PIO2_2 = float.fromhex("0x1.0b4611a600000p-34")
_PIO2_3 = float.fromhex("0x1.3198a2e037073p-69")
_TWO_OVER_PI = float.fromhex("0x1.45f306dc9c883p-1")
_PI_HI = float.fromhex("0x1.921fb54442d18p+1")
_PI_LO = float.fromhex("0x1.1a62633145c07p-53")
_PIO2_HI = float.fromhex("0x1.921fb54442d18p+0")
_PIO2_LO = float.fromhex("0x1.1a62633145c07p-54")
# atan(i / 8), i = 0..8, correctly rounded (200-bit reference)
_ATAN_EIGHTHS = np.array(
    [
        0.0,
        float.fromhex("0x1.fd5ba9aac2f6ep-4"),
        float.fromhex("0x1.f5b75f92c80ddp-3"),
        float.fromhex("0x1.6f61941e4def1p-2"),
        float.fromhex("0x1.dac670561bb4fp-2"),
        float.fromhex("0x1.1e00babdefeb4p-1"),
        float.fromhex("0x1.4978fa3269ee1p-1"),
        float.fromhex("0x1.700a7c5784634p-1"),
        float.fromhex("0x1.921fb54442d18p-1"),
    ]
)
_SIN_MAX = float(2**19)
_INV_SQRT2 = float.fromhex("0x1.6a09e667f3bcdp-1")
_TWO_OVER_SQRTPI = float.fromhex("0x1.20dd750429b6dp+0")

# Taylor coefficients as exact rationals rounded once: 1/k! and the odd series below.
_EXP_C = [1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(14)]
_SIN_C = [
    (-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 2, dtype=np.float64))) for k in range(10)
]
_COS_C = [
    (-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 1, dtype=np.float64))) for k in range(10)
]
_LOG_C = [
    2.0 / (2 * k + 3) for k in range(12)
]  # log1p(f) = 2s + s * z * (2/3 + z (2/5 + ...)), z = s^2
_ATAN_C = [(-1.0) ** k / (2 * k + 1) for k in range(9)]


_quiet = np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")


def _f64(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _horner(z: np.ndarray, coeffs: list[float]) -> np.ndarray:
    """``c0 + z (c1 + z (c2 + ...))``, one rounding per step, highest degree first."""
    acc = np.full_like(z, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = acc * z + c
    return acc


@_quiet
def exp(x: ArrayLike) -> np.ndarray:
    """Elementwise ``e**x`` (float64, same shape as ``x``)."""
    x = _f64(x)
    xc = np.clip(x, -746.0, 710.0)  # beyond: 0 or inf after the scaling below
    k = np.rint(xc * _INV_LN2)
    k = np.where(np.isnan(k), 0.0, k)
    r = (xc - k * _LN2_HI) - k * _LN2_LO  # |r| <= ln2 / 2 (plus rounding)
    p = _horner(r, _EXP_C)
    # two exact scalings keep 2**k representable for k down to -1076
    k1 = np.floor(k * 0.5)
    out = np.ldexp(np.ldexp(p, k1.astype(np.int32)), (k - k1).astype(np.int32))
    return np.where(np.isnan(x), x, out)


@_quiet
def log(x: ArrayLike) -> np.ndarray:
    """Elementwise natural logarithm (``-inf`` at 0, ``nan`` below 0)."""
    x = _f64(x)
    m, e = np.frexp(x)  # x = m 2**e, m in [0.5, 1)
    low = m < 0.7071067811865476
    m = np.where(low, m * 2.0, m)  # now in [sqrt(1/2), sqrt(2)): f = m - 1 is exact
    k = (e - low).astype(np.float64)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    hfsq = 0.5 * f * f
    r = z * _horner(z, _LOG_C)
    out = k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)
    out = np.where(x == 0, -np.inf, out)
    out = np.where(np.isposinf(x), np.inf, out)
    return np.where((x < 0) | np.isnan(x), np.nan, out)


@_quiet
def log1p(x: ArrayLike) -> np.ndarray:
    """Elementwise ``log(1 + x)``, accurate for small ``x`` (``log(u) * x / (u - 1)``, ``u = 1 + x``)."""
    x = _f64(x)
    u = 1.0 + x
    d = u - 1.0
    return np.where(d == 0, x, log(u) * (x / np.where(d == 0, 1.0, d)))


def powi(x: ArrayLike, n: int) -> np.ndarray:
    """Elementwise ``x**n`` for an integer ``n >= 1`` as the left-to-right product ``x * x * ...``."""
    if int(n) != n or n < 1:
        raise ValueError(f"detmath.powi: n must be a positive integer, got {n}")
    x = _f64(x)
    out = x.copy()
    for _ in range(int(n) - 1):
        out = out * x
    return out


def _reduce_pio2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x = n pi/2 + r`` with ``|r| <~ pi/4``: (r, n mod 4 as int64)."""
    big = np.abs(x) > _SIN_MAX
    if np.any(big & np.isfinite(x)):
        raise ValueError(
            f"detmath: sin/cos argument beyond +-2**19 ({float(np.max(np.abs(x[big]))):g})"
        )
    n = np.rint(x * _TWO_OVER_PI)
    n = np.where(np.isfinite(n), n, 0.0)
    r = ((x - n * _PIO2_1) - n * _PIO2_2) - n * _PIO2_3
    return r, np.mod(n.astype(np.int64), 4)


def _sin_cos_kernels(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = r * r
    return r + r * (z * _horner(z, _SIN_C[1:])), 1.0 + z * _horner(z, _COS_C[1:])


@_quiet
def sincos(x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise ``(sin x, cos x)`` for ``|x| <= 2**19`` (``nan`` for inf and nan)."""
    x = _f64(x)
    r, q = _reduce_pio2(x)
    s, c = _sin_cos_kernels(r)
    sin = np.choose(q, [s, c, -s, -c])
    cos = np.choose(q, [c, -s, -c, s])
    bad = ~np.isfinite(x)
    return np.where(bad, np.nan, sin), np.where(bad, np.nan, cos)


def sin(x: ArrayLike) -> np.ndarray:
    """Elementwise sine, ``|x| <= 2**19``."""
    return sincos(x)[0]


def cos(x: ArrayLike) -> np.ndarray:
    """Elementwise cosine, ``|x| <= 2**19``."""
    return sincos(x)[1]


def _atan01(t: np.ndarray) -> np.ndarray:
    """atan on ``[0, 1]``: ``atan(c) + atan((t - c) / (1 + t c))`` with ``c`` the nearest eighth."""
    i = np.rint(t * 8.0)
    c = i * 0.125
    u = (t - c) / (1.0 + t * c)  # |u| <= 1/16
    z = u * u
    return _ATAN_EIGHTHS[i.astype(np.int64)] + u * _horner(z, _ATAN_C)


@_quiet
def atan2(y: ArrayLike, x: ArrayLike) -> np.ndarray:
    """Elementwise ``atan2(y, x)`` in ``[-pi, pi]`` (broadcast shapes)."""
    y, x = np.broadcast_arrays(_f64(y), _f64(x))
    ay, ax = np.abs(y), np.abs(x)
    swap = ay > ax
    num, den = np.where(swap, ax, ay), np.where(swap, ay, ax)
    t = np.where(den == 0, 0.0, num / np.where(den == 0, 1.0, den))
    t = np.where(np.isinf(num) & np.isinf(den), 1.0, t)
    a = _atan01(np.where(np.isnan(t), 0.0, t))
    a = np.where(swap, (_PIO2_HI - a) + _PIO2_LO, a)
    a = np.where(np.signbit(x), (_PI_HI - a) + _PI_LO, a)
    a = np.where(np.signbit(y), -a, a)
    return np.where(np.isnan(x) | np.isnan(y), np.nan, a)


def atan(x: ArrayLike) -> np.ndarray:
    """Elementwise arctangent."""
    return atan2(x, np.ones_like(_f64(x)))


def asin(x: ArrayLike) -> np.ndarray:
    """Elementwise arcsine on ``[-1, 1]`` (``nan`` outside)."""
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        out = atan2(x, np.sqrt((1.0 - x) * (1.0 + x)))
    return np.where(np.abs(x) > 1, np.nan, out)


@_quiet
def power(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """Elementwise ``x**y`` for ``x >= 0`` (``exp(y log x)``; ``0**y`` is 0 for y > 0, 1 for y = 0).

    Integer powers are better written as products (``a * a * a``), which are exact operations.
    """
    x, y = np.broadcast_arrays(_f64(x), _f64(y))
    if np.any(x < 0):
        raise ValueError("detmath.power: negative base")
    out = exp(y * log(np.where(x == 0, 1.0, x)))
    out = np.where((x == 0) & (y > 0), 0.0, out)
    return np.where((x == 0) & (y < 0), np.inf, out)


def cbrt(x: ArrayLike) -> np.ndarray:
    """Elementwise real cube root (odd: ``cbrt(-8) = -2``)."""
    x = _f64(x)
    a = np.abs(x)
    y = power(a, 1.0 / 3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where((y > 0) & np.isfinite(y), y - (y - a / (y * y)) / 3.0, y)  # one Newton step
    return np.copysign(y, x)


@_quiet
def ndtr(x: ArrayLike) -> np.ndarray:
    """Elementwise standard normal CDF ``Phi(x)`` (absolute error ~1e-16; ``x`` clipped to +-9).

    ``erf(t) = 2/sqrt(pi) exp(-t^2) sum_n 2^n t^(2n+1) / (1 3 5 ... (2n+1))``: positive terms,
    no cancellation; once they stop changing the sum, further terms add nothing.
    """
    x = np.clip(_f64(x), -9.0, 9.0)
    t = np.abs(x) * _INV_SQRT2
    tt = 2.0 * t * t
    term, acc = t.copy(), t.copy()
    for n in range(1, 200):
        term = term * (tt / (2 * n + 1))
        acc = acc + term
    erf = np.minimum(_TWO_OVER_SQRTPI * exp(-t * t) * acc, 1.0)
    return np.where(np.isnan(x), np.nan, np.where(x < 0, 0.5 - 0.5 * erf, 0.5 + 0.5 * erf))


def hypot(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Elementwise ``sqrt(a*a + b*b)`` (no overflow guard: meant for geometry-sized values)."""
    a, b = _f64(a), _f64(b)
    return np.sqrt(a * a + b * b)


def norm(v: ArrayLike, axis: int = -1) -> np.ndarray:
    """Euclidean norm along ``axis`` as ``sqrt`` of a left-to-right sum of squares (no BLAS)."""
    v = _f64(v)
    sq = np.moveaxis(v * v, axis, 0)
    acc = sq[0].copy()
    for row in sq[1:]:
        acc += row
    return np.sqrt(acc)

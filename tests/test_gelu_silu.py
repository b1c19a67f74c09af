"""gelu (exact, erf form) and silu: every kernel against mpmath, and the check catching wrong derivatives.

References are mpmath at ``DIGITS`` digits on the float64 inputs converted
exactly. Tolerances are in units of ``U = 2**-53``, a small margin above
the worst error measured on these grids (noted next to each).

Both activations have a minimum (gelu at -0.7518, silu at -1.2785) where
``f'`` has a root, so a change ``f(z + d) - f(z)`` or a coefficient can be
exactly 0 with nonzero inputs: no formula is relatively accurate there. Errors
are therefore measured against the *size of the terms* the exact result is
made of (the sum of their absolute values, computed exactly), which is the
result itself wherever nothing cancels (the tails, the positive side) and
the honest scale where the cancellation is inherent (near the minimum); the
tests also assert that the cancellation factor (size / |result|) is large
only near the minimum, so the scale is not hiding avoidable losses.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import reference as ref
from exact import mpmath, needs_mpmath

import fastgrad
from fastgrad._kernels import activations
from fastgrad._kernels.activations import SERIES_MAX, act_delta, cact
from fastgrad._kernels.activations import gelu as gelu_module

DIGITS = 60
U = 2.0**-53
#: Results in float64's subnormal range keep only an absolute accuracy of a few 2^-1074.
ABS_FLOOR = 1e-318
GELU = activations.CODES["gelu"]
SILU = activations.CODES["silu"]
CODES = {"gelu": GELU, "silu": SILU}

_Z_MAGNITUDES = (0.0, 5e-324, 1e-300, 1e-8, 0.3, 0.7, 0.75179152469356445, 0.8, 1.0, 1.2, 1.2784645427610738, 1.4,
                 2.0, 2.4, 5.0, 8.0, 20.0, 30.0, 37.0, 38.0, 40.0, 100.0, 1e3)
Z_GRID = sorted({s * z for z in _Z_MAGNITUDES for s in (1.0, -1.0)})
_D_MAGNITUDES = (1e-300, 1e-12, 1e-8, 3e-6, SERIES_MAX, math.nextafter(SERIES_MAX, 1.0), 1.01e-4, 1e-3, 1e-2,
                 0.1, 0.3, 0.5, 0.75, 1.0, 1.3, 2.0, 3.0, 8.0, 10.0, 40.0, 100.0, 1e3)
D_GRID = [s * d for d in _D_MAGNITUDES for s in (1.0, -1.0)]


@pytest.fixture(autouse=True)
def _digits():
    if mpmath is None:
        yield
        return
    with mpmath.workdps(DIGITS):
        yield


def _mp(x: float):
    return mpmath.mpf(float(x))


def _g(name, x):
    """The factor ``g`` of ``f(x) = x g(x)``: Phi or sigmoid (mpmath; real or complex)."""
    if name == "gelu":
        return mpmath.erfc(-x / mpmath.sqrt(2)) / 2
    return 1 / (1 + mpmath.exp(-x))


def _g_prime(name, x):
    if name == "gelu":
        return mpmath.npdf(x)
    return 1 / ((1 + mpmath.exp(-x)) * (1 + mpmath.exp(x)))


def _f(name, x):
    return x * _g(name, x)


def _derivative_size(name, x):
    """``g(x) + |x| g'(x)``: the size of ``f' = g + x g'``'s two terms."""
    return _g(name, x) + abs(x) * _g_prime(name, x)


def _forward(code, z):
    a = np.empty(1)
    activations.activate(np.array([z]), a, 0, 1, code)
    return float(a[0])


def _random_z(rng, n):
    return (rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-3.0, math.log10(40.0), n)).tolist()


# --------------------------------------------------------------------------
# value, derivative, Taylor coefficients
# --------------------------------------------------------------------------


@needs_mpmath
@pytest.mark.parametrize("name", CODES)
def test_value_and_derivative_match_mpmath(name, rng):
    code = CODES[name]
    worst_value = worst_derivative = 0.0
    for z in Z_GRID + _random_z(rng, 200):
        Z = _mp(z)
        got = _forward(code, z)
        want = _f(name, Z)
        worst_value = max(worst_value, float(max(abs(got - want) - ABS_FLOOR, 0) / abs(want)) / U if want else 0.0)
        dgot = activations.derivative(z, got, code)
        dwant = _g(name, Z) + Z * _g_prime(name, Z)
        size = _derivative_size(name, Z)
        if size > ABS_FLOOR:
            worst_derivative = max(worst_derivative, float(max(abs(dgot - dwant) - ABS_FLOOR, 0) / size) / U)
    assert worst_value <= 6.0, worst_value  # measured 2.8 U (gelu), 2.3 U (silu): relative, the tails included
    assert worst_derivative <= 4.0, worst_derivative  # measured 1.7 U of g + |z| g'


@pytest.mark.parametrize("name", CODES)
def test_huge_arguments_saturate_without_overflow_or_nan(name):
    code = CODES[name]
    for z in (800.0, 1e5, 1e154, 1e300, 1.7976931348623157e308):
        assert _forward(code, z) == z
        assert _forward(code, -z) == 0.0
        for x in (z, -z):
            a = _forward(code, x)
            assert activations.derivative(x, a, code) in (0.0, 1.0)
            assert all(math.isfinite(c) for c in activations.taylor(code, x, a))
            assert cact(x, 1e-20, code) == (a, 1e-20 if x > 0 else 0.0)
    assert math.isnan(_forward(code, math.nan))


def _coefficient_terms(name, Z):
    """Exact ``c_m = f^(m)(z) / m!``, m = 1..4, and the size of the terms each is made of."""
    if name == "gelu":
        p, P = mpmath.npdf(Z), mpmath.ncdf(Z)
        c = [P + Z * p, p * (2 - Z**2) / 2, p * (Z**3 - 4 * Z) / 6, p * (-Z**4 + 7 * Z**2 - 4) / 24]
        a = abs(Z)
        size = [P + a * p, p * (2 + a**2) / 2, p * (a**3 + 4 * a) / 6, p * (a**4 + 7 * a**2 + 4) / 24]
        return c, size
    # silu: c_m = z s_m + s_(m-1), and sigmoid's own s_m carry errors of a few ulps of s' = s(z) s(-z)
    c = mpmath.taylor(lambda x: _f(name, x), Z, 4)[1:]
    s1 = _g_prime(name, Z)
    size = [_derivative_size(name, Z)] + [abs(c[m]) + (abs(Z) + 1) * s1 for m in (1, 2, 3)]
    return c, size


@needs_mpmath
@pytest.mark.parametrize("name", CODES)
def test_taylor_coefficients_match_mpmath(name, rng):
    code = CODES[name]
    worst_scaled = worst_rel = 0.0
    for z in Z_GRID + _random_z(rng, 150):
        got = activations.taylor(code, z, _forward(code, z))
        want, size = _coefficient_terms(name, _mp(z))
        for m in range(4):
            err = max(abs(got[m] - want[m]) - ABS_FLOOR, 0)  # |z| ~ 38: phi is subnormal
            if size[m] > ABS_FLOOR:
                worst_scaled = max(worst_scaled, float(err / size[m]) / U)
            if abs(want[m]) > max(0.5 * size[m], ABS_FLOOR):  # nothing cancels: relative
                worst_rel = max(worst_rel, float(err / abs(want[m])) / U)
    assert worst_scaled <= 6.0, worst_scaled  # measured 4.2 U (gelu), 3.1 U (silu)
    assert worst_rel <= 6.0, worst_rel  # measured 4.2 U, 3.8 U


# --------------------------------------------------------------------------
# f(z + d) - f(z)
# --------------------------------------------------------------------------

#: act_delta, Taylor and closed branches: measured 4.7 U of the terms' size (silu), 4.0 U (gelu).
TOL_CHANGE = 8.0


def _change_terms(name, z, d):
    """Exact change, the size of its terms ``|d g(far)| + |near (g(y) - g(z))|``, and the rounding allowance.

    The allowance: the kernels evaluate ``g`` at ``fl(z + d)``; its rounding
    ``r`` moves the result by up to ``r (g(y) + |y| g'(y))`` (tests/test_deltas.py's ``ARGUMENT_GAIN``).
    """
    Z, D = _mp(z), _mp(d)
    Y = Z + D
    exact = _f(name, Y) - _f(name, Z)
    near, far = (Z, Y) if abs(Z) <= abs(Y) else (Y, Z)
    if (Z > 0) != (Y > 0) or Z == 0 or Y == 0:
        size = abs(_f(name, Y)) + abs(_f(name, Z))
    else:
        size = abs(D * _g(name, far)) + abs(near * (_g(name, Y) - _g(name, Z)))
    r = abs(float(Fraction(z) + Fraction(d) - Fraction(z + d)))
    yf = _mp(z + d)
    allowance = r * _derivative_size(name, yf)
    return exact, size, allowance


def _change_points(rng):
    points = [(z, d) for z in Z_GRID for d in D_GRID]
    n = 1500
    z = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-3.0, math.log10(40.0), n)
    d = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-12.0, 2.0, n)
    return points + list(zip(z.tolist(), d.tolist()))


@pytest.mark.nojit
@needs_mpmath
@pytest.mark.parametrize("name", CODES)
def test_change_matches_mpmath_on_a_hostile_grid(name, rng):
    code = CODES[name]
    worst = (0.0, None)
    worst_cancel_away = 0.0  # the cancellation factor away from the minimum
    minimum = -0.75179152469356445 if name == "gelu" else -1.2784645427610738
    for z, d in _change_points(rng):
        a = _forward(code, z)
        got = act_delta(code, z, d, *activations.taylor(code, z, a))
        assert math.isfinite(got), (z, d, got)
        exact, size, allowance = _change_terms(name, z, d)
        if size <= ABS_FLOOR:
            assert abs(got) <= 1e-300, (z, d, got)
            continue
        ratio = float((abs(got - exact) - allowance - ABS_FLOOR) / (size * U)) / TOL_CHANGE
        if ratio > worst[0]:
            worst = (ratio, (z, d, got, float(exact)))
        # both ends on one side of the minimum and 0.5 away from it: the size is the result to a small factor
        away = min(abs(z - minimum), abs(z + d - minimum)) > 0.5 and (z < minimum) == (z + d < minimum)
        if away and exact != 0:
            worst_cancel_away = max(worst_cancel_away, float(size / abs(exact)))
    assert worst[0] <= 1.0, f"{name}: (z, d, got, exact) = {worst[1]}, {worst[0]:.3g} x the tolerance"
    # measured 9.1 (gelu), 5.7 (silu): (|z| + 1) / (|z| - 1)-like factors in the left tail
    assert worst_cancel_away <= 12.0, worst_cancel_away


@needs_mpmath
def test_gelu_cdf_change_is_relatively_accurate():
    # Phi(z + d) - Phi(z): the quadrature (short spans), tail differences and erf across 0; all relative
    worst = 0.0
    for z in Z_GRID:
        if abs(z) > 37.0:  # Phi and its changes are subnormal or 0 there
            continue
        for d in D_GRID:
            zd = z + d
            got = gelu_module.cdf_change(z, d, zd)
            want = _g("gelu", _mp(z) + _mp(d)) - _g("gelu", _mp(z))
            allowance = abs(float(Fraction(z) + Fraction(d) - Fraction(zd))) * mpmath.npdf(_mp(zd))
            if abs(want) > 1e-290:
                worst = max(worst, float((abs(got - want) - allowance) / abs(want)) / U)
    assert worst <= 8.0, worst  # measured 4.6 U


@needs_mpmath
@pytest.mark.parametrize("name", CODES)
def test_naive_difference_cancels_the_kernel_does_not(name):
    code = CODES[name]
    for z, d in [(-20.0, 1e-3), (3.0, 2e-4), (-5.0, -0.01)]:
        exact = _f(name, _mp(z) + _mp(d)) - _f(name, _mp(z))
        a = _forward(code, z)
        good = act_delta(code, z, d, *activations.taylor(code, z, a))
        naive = _forward(code, z + d) - a
        assert float(abs((good - exact) / exact)) <= 8 * U
        assert float(abs((naive - exact) / exact)) > 1e-14  # measured 1e-13 .. 1e-11


# --------------------------------------------------------------------------
# complex values
# --------------------------------------------------------------------------


@needs_mpmath
@pytest.mark.parametrize("name", CODES)
def test_complex_value_matches_mpmath(name):
    # gelu's is its Taylor series to y^4 (Numba has no complex erf): exact to rounding for the complex step's
    # tiny imaginary parts; silu's is exact, from sigmoid's complex value
    code = CODES[name]
    worst_re = worst_im = 0.0
    mpmath.mp.dps = 400  # mpmath's complex erfc needs the digits for Im at y = 1e-300 (it gave 0 at 60)
    for x in Z_GRID:
        if abs(x) > 100.0:
            continue
        X = _mp(x)
        a = _forward(code, x)
        assert cact(x, 0.0, code) == (a, 0.0)
        _, size = _coefficient_terms(name, X)
        for y in (1e-300, 1e-20, -1e-20, 1e-10, -1e-8, 1e-6, 1e-5):
            re, im = cact(x, y, code)
            want = _f(name, mpmath.mpc(X, _mp(y)))
            re_scale = abs(want.real) + y * y * size[1]
            im_scale = abs(y) * size[0]
            if re_scale > ABS_FLOOR:
                worst_re = max(worst_re, float(max(abs(re - want.real) - ABS_FLOOR, 0) / re_scale) / U)
            if im_scale > ABS_FLOOR:
                worst_im = max(worst_im, float(max(abs(im - want.imag) - ABS_FLOOR, 0) / im_scale) / U)
    assert worst_re <= 8.0, worst_re  # measured 3.6 U (gelu), 4.3 U (silu)
    assert worst_im <= 8.0, worst_im  # measured 4.0 U


# --------------------------------------------------------------------------
# SLACK: what a textbook backprop's derivative loses
# --------------------------------------------------------------------------


@needs_mpmath
@pytest.mark.parametrize("name", CODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_slack_covers_a_textbook_backprop_derivative(name, dtype):
    # PyTorch's backward formulas: gelu Phi + z phi with Phi = (1 + erf(z / sqrt 2)) / 2; silu s (1 + z (1 - s)).
    # Their absolute error must be within (L + 2 + sqrt(N)) (|f'| + SLACK) roundoffs for the smallest factor, 4.
    u = float(np.finfo(dtype).eps) / 2.0
    z = np.linspace(-45.0, 45.0, 1801).astype(dtype)
    with np.errstate(all="ignore"):
        if name == "gelu":
            erf = np.vectorize(math.erf, otypes=[np.float64])(z.astype(np.float64) * 0.7071067811865476)
            cdf = dtype(0.5) * (dtype(1.0) + erf.astype(dtype))
            got = cdf + z * (np.exp(dtype(-0.5) * z * z) * dtype(0.3989422804014327))
        else:
            s = dtype(1.0) / (dtype(1.0) + np.exp(-z))
            got = s * (dtype(1.0) + z * (dtype(1.0) - s))
    slack = activations.SLACK[CODES[name]]
    worst = 0.0
    for zi, gi in zip(z.tolist(), got.tolist()):
        Z = _mp(zi)
        exact = _g(name, Z) + Z * _g_prime(name, Z)
        worst = max(worst, float(abs(gi - exact) / (abs(exact) + slack)) / u)
    assert worst <= 4.0, worst  # measured 1.7 (gelu), silu: 36 / (1 + 8) = 4.0 at z ~ 36.7 (float64)


# --------------------------------------------------------------------------
# fastgrad.check: a wrong derivative fails, the exact one passes
# --------------------------------------------------------------------------


def _gelu_tanh_derivative(z):
    """The derivative of gelu's tanh approximation (off by up to ~1e-3 from the exact one)."""
    k = math.sqrt(2.0 / math.pi)
    t = np.tanh(k * (z + 0.044715 * z**3))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * z * z)


WRONG = {"gelu": _gelu_tanh_derivative, "silu": ref.sigmoid}
ROUTES = [("incremental", "central"), ("incremental", "richardson"), ("incremental", "complex"),
          ("full", "central"), ("full", "richardson"), ("full", "complex"), ("unit", "central")]


def _case(name, where, seed=5):
    sizes = [3, 6, 2]
    hidden, output = (name, "identity") if where == "hidden" else ("tanh", name)
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss="mse")
    rng = np.random.default_rng(seed)
    params = net.init(seed=seed)
    X = 1.5 * rng.standard_normal((12, sizes[0]))  # pre-activations on both sides of the minimum
    Y = rng.standard_normal((12, sizes[-1]))
    return net, params, X, Y, hidden, output


@pytest.mark.parametrize("where", ["hidden", "output"])
@pytest.mark.parametrize("name", CODES)
def test_check_fails_a_wrong_derivative_and_passes_the_exact_one(name, where, monkeypatch):
    net, params, X, Y, hidden, output = _case(name, where)
    exact = ref.backprop(params, X, Y, hidden, output, "mse")
    real_derivative = ref.activation_derivative

    def wrong_derivative(act, z):
        return WRONG[name](z) if act == name else real_derivative(act, z)

    monkeypatch.setattr(ref, "activation_derivative", wrong_derivative)
    wrong = ref.backprop(params, X, Y, hidden, output, "mse")
    monkeypatch.setattr(ref, "activation_derivative", real_derivative)
    gap = max(float(np.max(np.abs(w - e))) for w, e in zip(wrong, exact))
    assert gap > 1e-6, gap  # the wrong derivative changes the gradient well beyond any tolerance
    for engine, method in ROUTES:
        good = fastgrad.check(net, params, X, Y, exact, engine=engine, method=method)
        assert good.passed, f"{name} {where} {engine}/{method}:\n{good}"
        bad = fastgrad.check(net, params, X, Y, wrong, engine=engine, method=method)
        assert not bad.passed, f"{name} {where} {engine}/{method}: the wrong derivative passed"

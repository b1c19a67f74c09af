"""The cancellation-free helpers of ``fastgrad._kernels.deltas`` against exact references.

Every reference takes the float64 inputs converted exactly and is computed
with mpmath at ``DIGITS`` significant digits (sigmoid, tanh, softplus,
``expm1``, ``log1p``, the softmax shift) or with :class:`fractions.Fraction`
(relu, leaky_relu, identity, the squared-loss change). Tolerances are in
units of ``U = 2**-53``, a small margin above the worst error measured on
these grids; the measured worst case is noted next to each one.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from exact import mpmath, needs_mpmath

from fastgrad._kernels import codes
from fastgrad._kernels.activations import N_COEF, SERIES_MAX, act_delta, activate
from fastgrad._kernels.activations.sigmoid import value as sigmoid
from fastgrad._kernels.activations.softplus import value as softplus
from fastgrad._kernels.incremental import taylor_coefficients
from fastgrad._kernels.losses.cross_entropy import expm1_small, log_softmax_shift
from fastgrad._kernels.losses.squared_error import squared_delta

DIGITS = 60
U = 2.0**-53

SMOOTH = {"sigmoid": codes.SIGMOID, "tanh": codes.TANH, "softplus": codes.SOFTPLUS}
PIECEWISE = {"relu": codes.RELU, "leaky_relu": codes.LEAKY_RELU, "identity": codes.IDENTITY}

#: Taylor branch (|d| <= SERIES_MAX): measured worst 4.6 U.
TOL_TAYLOR = 9 * U
#: Closed-form branch: measured worst 4.1 U once the rounding of ``z + d`` is
#: accounted for (see ``ARGUMENT_GAIN``).
TOL_CLOSED = 9 * U
#: The closed forms of sigmoid and tanh evaluate ``sigmoid(z + d)`` and
#: ``sigmoid(2 (z + d))`` at the *rounded* sum ``fl(z + d)``; a rounding error
#: ``r = (z + d) - fl(z + d)`` changes the result by up to ``gain * |r|``,
#: relatively (for |z| = 30, |r| is up to 1.8e-15: 16 U for sigmoid, 32 U for
#: tanh). Softplus forms ``z + d`` only for large negative steps, where the
#: change is at least ``min(log 2, |d| / 2)``: ``|r| sigmoid(z + d)`` is then
#: below ``1.5 |r|`` of it.
ARGUMENT_GAIN = {codes.SIGMOID: 1.0, codes.TANH: 2.0, codes.SOFTPLUS: 1.5}

Z_GRID = [0.0] + [s * z for z in (1e-3, 0.3, 0.6584789484624084, 1.0, 2.5, 5.0, 20.0, 30.0) for s in (1.0, -1.0)]
D_TAYLOR = [s * d for d in (1e-12, 1e-8, 3e-6, 9.9e-5, SERIES_MAX) for s in (1.0, -1.0)]
D_CLOSED = [s * d for d in (math.nextafter(SERIES_MAX, 1.0), 1.01e-4, 1e-2, 0.3, 1.0) for s in (1.0, -1.0)]
D_CLOSED += [s * d for d in (3.0, 8.0, 10.0, 25.0, 40.0) for s in (1.0, -1.0)]


@pytest.fixture(autouse=True)
def _digits():
    if mpmath is None:  # the tests that use it are marked needs_mpmath and skip
        yield
        return
    with mpmath.workdps(DIGITS):
        yield


def _mp(x: float) -> mpmath.mpf:
    return mpmath.mpf(float(x))  # exact: a float64 has 53 bits


def _ref_act(code: int, x: mpmath.mpf) -> mpmath.mpf:
    if code == codes.SIGMOID:
        return 1 / (1 + mpmath.exp(-x))
    if code == codes.TANH:
        return mpmath.tanh(x)
    assert code == codes.SOFTPLUS
    return mpmath.log1p(mpmath.exp(x))


def _forward(code: int, z: float) -> float:
    """``f(z)`` as the forward pass computes it (the ``a`` the coefficients get)."""
    zz = np.array([z])
    a = np.empty(1)
    activate(zz, a, 0, 1, code)
    return float(a[0])


def _coefficients(code: int, z: float) -> np.ndarray:
    out = np.full((N_COEF, 1, 1), np.nan)
    taylor_coefficients(code, z, _forward(code, z), out, 0, 0)
    return out[:, 0, 0].copy()


def _rounding_of_sum(z: float, d: float) -> float:
    return abs(float(Fraction(z) + Fraction(d) - Fraction(z + d)))


def _random_points(rng, n, taylor):
    """``n`` pairs (z, d): |z| log-uniform in [1e-4, 30], d in one branch, random signs."""
    z = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-4.0, math.log10(30.0), n)
    lo, hi = (-13.0, math.log10(SERIES_MAX)) if taylor else (math.log10(SERIES_MAX) + 1e-9, math.log10(50.0))
    d = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(lo, hi, n)
    return list(zip(z.tolist(), d.tolist()))


def _worst_delta_excess(code, points, tol_of):
    """Largest ``rel_error / tol`` of act_delta over ``points``, and where."""
    worst = (0.0, None)
    for z, d in points:
        got = act_delta(code, z, d, *_coefficients(code, z))
        ref = _ref_act(code, _mp(z) + _mp(d)) - _ref_act(code, _mp(z))
        rel = float(abs((_mp(got) - ref) / ref))
        ratio = rel / tol_of(z, d)
        if ratio > worst[0]:
            worst = (ratio, (z, d, got, float(ref), rel / U))
    return worst


# --------------------------------------------------------------------------
# sigmoid, tanh, softplus: f(z + d) - f(z) on both branches
# --------------------------------------------------------------------------


@pytest.mark.nojit
@needs_mpmath
@pytest.mark.parametrize("name", SMOOTH)
def test_smooth_delta_taylor_branch_to_a_few_ulps(name, rng):
    code = SMOOTH[name]
    points = [(z, d) for z in Z_GRID for d in D_TAYLOR] + _random_points(rng, 300, taylor=True)
    assert all(abs(d) <= SERIES_MAX for _, d in points)
    ratio, where = _worst_delta_excess(code, points, lambda z, d: TOL_TAYLOR)
    assert ratio <= 1.0, f"{name}: (z, d, got, exact, rel/U) = {where}"


@pytest.mark.nojit
@needs_mpmath
@pytest.mark.parametrize("name", SMOOTH)
def test_smooth_delta_closed_branch_to_a_few_ulps(name, rng):
    code = SMOOTH[name]
    points = [(z, d) for z in Z_GRID for d in D_CLOSED] + _random_points(rng, 400, taylor=False)
    assert all(abs(d) > SERIES_MAX for _, d in points)
    gain = ARGUMENT_GAIN[code]
    ratio, where = _worst_delta_excess(code, points, lambda z, d: TOL_CLOSED + gain * _rounding_of_sum(z, d))
    assert ratio <= 1.0, f"{name}: (z, d, got, exact, rel/U) = {where}"


@needs_mpmath
@pytest.mark.parametrize("z,d", [(5.0, -8.0), (30.0, -10.0), (30.0, -30.0), (2.0, -1.5)])
def test_softplus_delta_large_negative_step(z, d):
    # log1p(sigmoid(z) expm1(d)) alone cancels inside log1p here, where
    # 1 + x = sigmoid(-z) + sigmoid(z) exp(d) is formed as 1 - ...: it was off
    # by 44 U at (5, -8), 1.9e-13 at (30, -10), 1.5e-5 at (30, -30).
    gain = ARGUMENT_GAIN[codes.SOFTPLUS]
    ratio, where = _worst_delta_excess(
        codes.SOFTPLUS, [(z, d)], lambda z, d: TOL_CLOSED + gain * _rounding_of_sum(z, d)
    )
    assert ratio <= 1.0, where


@pytest.mark.parametrize("name", SMOOTH)
def test_smooth_delta_of_zero_step_is_zero(name):
    code = SMOOTH[name]
    for z in Z_GRID:
        assert act_delta(code, z, 0.0, *_coefficients(code, z)) == 0.0


@needs_mpmath
@pytest.mark.parametrize("z", [0.5, -2.0, 3.0])
@pytest.mark.parametrize("name", SMOOTH)
def test_naive_difference_cancels_act_delta_does_not(name, z):
    code = SMOOTH[name]
    f = {codes.SIGMOID: sigmoid, codes.TANH: math.tanh, codes.SOFTPLUS: softplus}[code]
    d = 1e-10
    ref = _ref_act(code, _mp(z) + _mp(d)) - _ref_act(code, _mp(z))
    naive = f(z + d) - f(z)
    good = act_delta(code, z, d, *_coefficients(code, z))
    naive_rel = float(abs((_mp(naive) - ref) / ref))
    good_rel = float(abs((_mp(good) - ref) / ref))
    assert naive_rel > 1e-8  # measured 2e-7 .. 6e-5: ~7 digits lost
    assert good_rel <= TOL_TAYLOR  # measured <= 3 U


# --------------------------------------------------------------------------
# Taylor coefficients
# --------------------------------------------------------------------------


@pytest.mark.nojit
@needs_mpmath
@pytest.mark.parametrize("name", SMOOTH)
def test_taylor_coefficients_match_mpmath_derivatives(name, rng):
    code = SMOOTH[name]
    zs = Z_GRID + rng.uniform(-30.0, 30.0, 40).tolist()
    worst_scaled = worst_rel = 0.0
    for z in zs:
        got = _coefficients(code, z)
        # f^(m)(z) / m!, m = 1..4, by mpmath's own (numerical, high-precision) differentiation
        ref = mpmath.taylor(lambda x: _ref_act(code, x), _mp(z), N_COEF)[1:]
        for m in range(N_COEF):
            err = abs(_mp(got[m]) - ref[m])
            # against c1: what an error in c_m does to act_delta's leading term
            worst_scaled = max(worst_scaled, float(err / abs(ref[0])))
            if abs(ref[m]) >= 0.1 * abs(ref[0]):  # away from the coefficient's zeros
                worst_rel = max(worst_rel, float(err / abs(ref[m])))
    assert worst_scaled <= 9 * U, worst_scaled / U  # measured 5.1 U
    assert worst_rel <= 16 * U, worst_rel / U  # measured 6.9 U


@pytest.mark.parametrize("code", list(SMOOTH.values()) + list(PIECEWISE.values()))
def test_taylor_coefficients_write_only_their_slot(code):
    out = np.full((N_COEF, 2, 3), np.nan)
    taylor_coefficients(code, 0.7, _forward(code, 0.7), out, 1, 2)
    assert np.all(np.isfinite(out[:, 1, 2]))
    out[:, 1, 2] = np.nan
    assert np.all(np.isnan(out))


@pytest.mark.parametrize(
    "name,z,slope",
    [
        ("relu", 0.5, 1.0),
        ("relu", 0.0, 0.0),
        ("relu", -0.5, 0.0),
        ("leaky_relu", 0.5, 1.0),
        ("leaky_relu", 0.0, codes.LEAKY_SLOPE),
        ("leaky_relu", -0.5, codes.LEAKY_SLOPE),
        ("identity", -3.0, 1.0),
        ("identity", 0.0, 1.0),
    ],
)
def test_piecewise_linear_coefficients_are_the_slope(name, z, slope):
    assert _coefficients(PIECEWISE[name], z).tolist() == [slope, 0.0, 0.0, 0.0]


# --------------------------------------------------------------------------
# relu, leaky_relu, identity: exact
# --------------------------------------------------------------------------


def _exact_piecewise(code: int, z: float, d: float) -> Fraction:
    slope = Fraction(codes.LEAKY_SLOPE) if code == codes.LEAKY_RELU else Fraction(0)

    def f(x: Fraction) -> Fraction:
        if code == codes.IDENTITY or x > 0:
            return x
        return slope * x

    return f(Fraction(z) + Fraction(d)) - f(Fraction(z))


# (z, d): both sides of the kink, crossing it both ways, landing on it, z = 0;
# every exact change here is a float64 or one rounding away from one.
PIECEWISE_GRID = [
    (0.75, 0.5),
    (0.75, -0.5),
    (-0.75, 0.5),
    (-0.75, -0.5),
    (-0.5, 1.5),  # crosses upwards
    (0.5, -1.0),  # crosses downwards
    (-0.25, 0.25),  # lands on 0 from below
    (0.25, -0.25),  # lands on 0 from above
    (0.0, 1e-10),  # from 0 up
    (0.0, -1e-10),  # from 0 down
    (0.0, 3.0),
    (0.0, -3.0),
    (0.0, 0.0),
    (2.0**-1000, -(2.0**-999)),
    (-(2.0**-1000), 2.0**-999),
    (5e-324, -5e-324),
    (3.0, 0.0),
    (-3.0, 0.0),
    (1e20, -1e-20),
    (-1e20, 1e-20),
]


@pytest.mark.nojit
@pytest.mark.parametrize("name", PIECEWISE)
def test_piecewise_delta_exact_on_grid(name):
    code = PIECEWISE[name]
    for z, d in PIECEWISE_GRID:
        got = act_delta(code, z, d, 0.0, 0.0, 0.0, 0.0)
        assert got == float(_exact_piecewise(code, z, d)), (name, z, d, got)


@pytest.mark.parametrize("name", PIECEWISE)
def test_piecewise_delta_correctly_rounded_at_random(name, rng):
    # The exact change, rounded once. The one exception: leaky_relu across the
    # kink computes fl(z + d) - fl(0.01 z) upwards and fl(0.01 fl(z + d)) - z
    # downwards, two or three roundings (measured over 29,000 crossings: 21%
    # off the correctly rounded value, by at most 1 ulp upwards, 2 downwards).
    code = PIECEWISE[name]
    n = 3000
    z = rng.standard_normal(n) * 10.0 ** rng.uniform(-5, 2, n)
    d = rng.standard_normal(n) * 10.0 ** rng.uniform(-10, 2, n)
    crossings = 0
    for zi, di in zip(z.tolist(), d.tolist()):
        got = act_delta(code, zi, di, 0.0, 0.0, 0.0, 0.0)
        exact = float(_exact_piecewise(code, zi, di))
        crosses = (zi > 0) != (Fraction(zi) + Fraction(di) > 0)
        crossings += crosses
        if code == codes.LEAKY_RELU and crosses:
            assert abs(got - exact) <= 2 * math.ulp(exact), (zi, di, got, exact)
        else:
            assert got == exact, (zi, di, got, exact)
    assert crossings >= 100  # the kink is crossed often enough to mean something


# --------------------------------------------------------------------------
# expm1_small
# --------------------------------------------------------------------------

SMALL_ARGS = (
    [s * x for x in (5e-324, 1e-300, 1e-15, 1e-8, 3e-6, 9.9e-5, SERIES_MAX) for s in (1.0, -1.0)],
    [s * x for x in (math.nextafter(SERIES_MAX, 1.0), 1.01e-4, 1e-3, 0.1, 0.5) for s in (1.0, -1.0)] + [3.0, 30.0],
)


@needs_mpmath
@pytest.mark.parametrize("branch", ["taylor", "closed"])
def test_expm1_small_to_a_few_ulps(branch, rng):
    fn, ref_fn = expm1_small, mpmath.expm1
    taylor = branch == "taylor"
    xs = list(SMALL_ARGS[0 if taylor else 1])
    lo, hi = (-15.0, math.log10(SERIES_MAX)) if taylor else (math.log10(SERIES_MAX) + 1e-9, -0.5)
    xs += (rng.choice([-1.0, 1.0], 500) * 10.0 ** rng.uniform(lo, hi, 500)).tolist()
    assert all((abs(x) <= SERIES_MAX) == taylor for x in xs)
    worst = 0.0
    for x in xs:
        got = fn(x)
        ref = ref_fn(_mp(x))
        worst = max(worst, float(abs((_mp(got) - ref) / ref)))
    assert worst <= 4 * U, worst / U  # measured 2.0 U (Taylor), 1.2 U (expm1/log1p)
    assert fn(0.0) == 0.0


# --------------------------------------------------------------------------
# squared_delta
# --------------------------------------------------------------------------


def _exact_squared_delta(dx_plus, dx_minus, residual):
    r = Fraction(residual)
    return (r - Fraction(dx_plus)) ** 2 - (r - Fraction(dx_minus)) ** 2


def test_squared_delta_exact_for_dyadic_values():
    for dp, dm, r in [(0.5, -0.25, 1.0), (2.0**-30, -(2.0**-30), 0.75), (0.0, 0.0, 3.0), (0.125, 0.125, -2.0)]:
        assert squared_delta(dp, dm, r) == float(_exact_squared_delta(dp, dm, r)), (dp, dm, r)


def test_squared_delta_matches_fractions(rng):
    # central-difference shape: x+ - x and x- - x of opposite signs, O(h)
    worst = 0.0
    for _ in range(1000):
        h = 10.0 ** rng.uniform(-10, -2)
        r = float(rng.standard_normal())
        dp = float(h * rng.standard_normal())
        dm = float(-dp * (1.0 + 1e-3 * rng.standard_normal()))
        exact = _exact_squared_delta(dp, dm, r)
        got = squared_delta(dp, dm, r)
        worst = max(worst, abs(float((Fraction(got) - exact) / exact)))
    assert worst <= 6 * U, worst / U  # measured 3.3 U


# --------------------------------------------------------------------------
# log_softmax_shift
# --------------------------------------------------------------------------


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _exact_softmax_shift(p, dz):
    P = [_mp(x) for x in p]
    return mpmath.log(sum(pk * mpmath.exp(_mp(d)) for pk, d in zip(P, dz))) - mpmath.log(sum(P))


@pytest.mark.nojit
@needs_mpmath
@pytest.mark.parametrize("signs", ["same", "mixed"])
def test_log_softmax_shift_matches_mpmath(signs, rng):
    # Same-sign shifts: relative error. Mixed signs: the terms p_k expm1(dz_k)
    # cancel, so the error is measured against their magnitude sum_k p_k |expm1(dz_k)|.
    # Summing K <= 11 terms allows about (K + 3) U (large shifts: next test).
    worst = 0.0
    for _ in range(400):
        K = int(rng.integers(1, 12))
        start = int(rng.integers(0, 4))
        # entries outside [start, start + K) must never be read
        logits = 3.0 * rng.standard_normal(K)
        z = np.concatenate([np.full(start, np.nan), logits, [np.nan]])
        p = np.concatenate([np.full(start, np.nan), _softmax(logits), [np.nan]])
        h = 10.0 ** rng.uniform(-12, 0)
        if signs == "same":
            dz = rng.choice([-1.0, 1.0]) * h * rng.uniform(0.0, 1.0, K)
        else:
            dz = h * rng.uniform(-1.0, 1.0, K)
        dz[rng.random(K) < 0.2] = 0.0
        got = log_softmax_shift(z, p, dz, start, K)
        pk = p[start : start + K]
        ref = _exact_softmax_shift(pk, dz)
        if not np.any(dz):
            assert got == 0.0
            continue
        if signs == "same":
            scale = abs(ref)
        else:
            scale = sum(_mp(a) * abs(mpmath.expm1(_mp(b))) for a, b in zip(pk, dz))
        worst = max(worst, float(abs(_mp(got) - ref) / scale))
    assert worst <= 16 * U, worst / U  # measured 5.0 U (same), 6.8 U (mixed)


@needs_mpmath
@pytest.mark.parametrize("shift", [-0.6, -1.0, -3.0, -20.0, -40.0, -700.0])
def test_log_softmax_shift_large_negative_shifts(shift, rng):
    # sum_k p_k expm1(dz_k) near -1: log1p of it alone cancels (it gave -inf
    # for p = [1] or [0.5, 0.5] and dz = -40, and -20.00000002 for dz = -20).
    cases = [(np.array([0.0]), np.array([shift])), (np.array([0.0, 0.0]), np.full(2, shift))]
    for _ in range(60):
        K = int(rng.integers(1, 12))
        cases.append((3.0 * rng.standard_normal(K), shift * rng.uniform(0.5, 1.5, K)))
    worst = 0.0
    for z, dz in cases:
        p = _softmax(z)
        got = log_softmax_shift(z, p, dz, 0, p.size)
        ref = _exact_softmax_shift(p, dz)
        worst = max(worst, float(abs((_mp(got) - ref) / ref)))
    assert worst <= 16 * U, worst / U  # measured 6.2 U (at -0.6, where both forms are used)

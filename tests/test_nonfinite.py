"""No non-finite numerical value where the loss is finite (issue 12, item 2).

Large steps on saturated units used to make the incremental engine's
cancellation-free activation changes evaluate ``inf * 0`` (sigmoid:
``-expm1(-d) * s(-z) * s(z + d)`` once ``-d > 709``; tanh alike; softplus's
``log1p(s(z) expm1(d))`` once ``d > 709``; softmax's shift from
probabilities that had underflowed), and the check then reported a false
FAIL "at inf x budget" where ``engine="full"`` passed.

* The kernel twins: every activation change and the softmax shift over a
  grid of ``z`` and ``d`` in [-1e300, 1e300] (with 0 and the tiniest
  subnormal), against references computed in a numerically safe way (exact
  rational arithmetic, and ``np.longdouble`` in log space).
* The triggers from the issue, through the public API, for every hidden
  and output activation and both real-step methods: every numerical value
  is finite wherever the float64 loss at the points it uses is, and equals
  the central difference computed in ``np.longdouble`` to within its
  rounding budget.
* Where a perturbed loss really does overflow, the engine says so
  (``Numerical.status``) instead of returning a number.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest

import fastgrad
from fastgrad import engines
from fastgrad._kernels import codes
from fastgrad._kernels.activations import N_COEF, SERIES_MAX, act_delta, activate
from fastgrad._kernels.incremental import taylor_coefficients
from fastgrad._kernels.losses.cross_entropy import log_softmax_shift, log_softmax_shift_one
from fastgrad.checking import default_eps

LD = np.longdouble
U = 2.0**-53
#: Results below this are in float64's subnormal range, where a product of
#: factors keeps only an absolute accuracy of a few 2^-1074.
ABS_FLOOR = 1e-321

pytestmark = pytest.mark.skipif(np.finfo(LD).nmant < 60, reason="needs an extended-precision np.longdouble")

_MAGNITUDES = (5e-324, 2.2250738585072014e-308, 1e-300, 1e-20, 1e-8, SERIES_MAX, math.nextafter(SERIES_MAX, 1.0),
               0.5, 1.0, 10.0, 30.0, 700.0, 709.5, 710.0, 800.0, 1e3, 1e5, 7e10, 1e100, 1e300)
#: z and d: 0 and +-each magnitude, from the smallest subnormal to 1e300.
GRID = [0.0] + [s * m for m in _MAGNITUDES for s in (1.0, -1.0)]

ACTIVATIONS = ("sigmoid", "tanh", "softplus", "relu", "leaky_relu", "identity", "elu")
CODE = {"sigmoid": codes.SIGMOID, "tanh": codes.TANH, "softplus": codes.SOFTPLUS, "relu": codes.RELU,
        "leaky_relu": codes.LEAKY_RELU, "identity": codes.IDENTITY, "elu": codes.ELU}


# --------------------------------------------------------------------------
# Safe references
# --------------------------------------------------------------------------


def _ld(x: Fraction) -> np.longdouble:
    """Round a rational number to long double (via 40 decimal digits)."""
    if x == 0:
        return LD(0)
    with localcontext() as ctx:
        ctx.prec = 40
        return LD(str(Decimal(x.numerator) / Decimal(x.denominator)))


def _sigmoid_change_ref(z: Fraction, d: Fraction) -> np.longdouble:
    """``s(z + d) - s(z)`` from ``sinh(d/2) / (2 cosh(z/2) cosh((z+d)/2))``, in log space.

    The linear parts of the three logarithms, ``(|d| - |z| - |z + d|) / 2``,
    are combined exactly (they can be 1e300 each and cancel); the rest is
    long double. A different formula from the kernel's.
    """
    if d == 0:
        return LD(0)
    zd = z + d
    linear = (abs(d) - abs(z) - abs(zd)) / 2  # <= 0
    if linear < -20000:
        return LD(0)
    ad, az, azd = _ld(abs(d)), _ld(abs(z)), _ld(abs(zd))
    log_size = (_ld(linear) + np.log(-np.expm1(-ad)) - np.log1p(np.exp(-az)) - np.log1p(np.exp(-azd)))
    return LD(np.sign(float(d))) * np.exp(log_size)


def _softplus_change_ref(z: Fraction, d: Fraction) -> np.longdouble:
    """``softplus(z + d) - softplus(z)``, ``softplus(x) = max(x, 0) + log1p(exp(-|x|))``.

    The ``max`` parts exactly; the ``log1p`` parts as
    ``log1p((a - b) / (1 + b))`` with ``a - b`` = ``exp(-|z+d|) - exp(-|z|)``
    formed from the exact exponent difference, so nothing cancels.
    """
    zd = z + d
    exact = max(zd, Fraction(0)) - max(z, Fraction(0))
    a = np.exp(-_ld(abs(zd)))
    b = np.exp(-_ld(abs(z)))
    gap = abs(z) - abs(zd)
    diff = a * -np.expm1(-_ld(gap)) if gap >= 0 else b * np.expm1(_ld(gap))
    return _ld(exact) + np.log1p(diff / (1 + b))


def _elu_change_ref(z: Fraction, d: Fraction) -> np.longdouble:
    """``elu(z + d) - elu(z)``: exact above 0; ``e^hi (1 - e^(lo - hi))`` below, the exponent gap exact."""
    zd = z + d
    if z > 0 and zd > 0:
        return _ld(d)
    if z <= 0 and zd <= 0:
        hi, lo = max(z, zd), min(z, zd)
        return LD(np.sign(float(d))) * np.exp(_ld(hi)) * -np.expm1(_ld(lo - hi))

    def elu(x: Fraction) -> np.longdouble:
        return _ld(x) if x > 0 else np.expm1(_ld(x))

    return elu(zd) - elu(z)


def _piecewise(code: int, x: Fraction) -> Fraction:
    if code == codes.IDENTITY or x > 0:
        return x
    return Fraction(codes.LEAKY_SLOPE) * x if code == codes.LEAKY_RELU else Fraction(0)


def _change_ref(code: int, z: float, d: float):
    Z, D = Fraction(z), Fraction(d)
    if code == codes.SIGMOID:
        return _sigmoid_change_ref(Z, D)
    if code == codes.TANH:  # tanh(x) = 2 s(2x) - 1
        return 2 * _sigmoid_change_ref(2 * Z, 2 * D)
    if code == codes.SOFTPLUS:
        return _softplus_change_ref(Z, D)
    if code == codes.ELU:
        return _elu_change_ref(Z, D)
    return _ld(_piecewise(code, Z + D) - _piecewise(code, Z))


def _coefficients(code: int, z: float) -> np.ndarray:
    a = np.empty(1)
    activate(np.array([z]), a, 0, 1, code)
    out = np.full((N_COEF, 1, 1), np.nan)
    taylor_coefficients(code, z, float(a[0]), out, 0, 0)
    return out[:, 0, 0].copy()


# --------------------------------------------------------------------------
# Kernel twins: activation changes
# --------------------------------------------------------------------------

#: Allowed relative error: the closed forms' and the Taylor branch's few
#: ulps (``tests/test_deltas.py``: measured at most 4.6 U), the reference's
#: own long-double rounding of logarithms up to ~1500 in size (~1 U), and
#: the kernels' use of the rounded argument ``fl(z + d)`` (``GAIN`` times
#: its rounding error, as in ``tests/test_deltas.py``).
TOL = 11 * U
GAIN = {codes.SIGMOID: 1.0, codes.TANH: 2.0, codes.SOFTPLUS: 1.5, codes.ELU: 1.0}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_change_finite_and_accurate_over_the_whole_range(name):
    code = CODE[name]
    worst = (0.0, None)
    for z in GRID:
        c = _coefficients(code, z)
        assert np.all(np.isfinite(c)), (name, z, c)
        for d in GRID:
            got = act_delta(code, z, d, *c)
            assert math.isfinite(got), (name, z, d, got)
            ref = _change_ref(code, z, d)
            assert abs(ref) < np.finfo(np.float64).max  # no exact change on this grid overflows
            if d == 0.0:
                assert got == 0.0
                continue
            rounding = abs(float(Fraction(z) + Fraction(d) - Fraction(z + d)))
            tol = (TOL + GAIN.get(code, 0.0) * rounding) * abs(ref) + ABS_FLOOR
            ratio = float(abs(LD(got) - ref) / LD(tol))
            if ratio > worst[0]:
                worst = (ratio, (z, d, got, float(ref)))
    assert worst[0] <= 1.0, f"{name}: (z, d, got, reference) = {worst[1]}, {worst[0]:.3g} x the tolerance"


def test_the_old_sigmoid_form_overflowed_on_this_grid():
    # the grid has teeth: the formula the kernels used before is inf * 0 = nan here
    z, d = 0.0, -800.0
    with np.errstate(all="ignore"):
        old = -np.expm1(-d) * (1.0 / (1.0 + np.exp(z))) * (np.exp(z + d) / (1.0 + np.exp(z + d)))
        assert not np.isfinite(old)
        old = -np.expm1(-np.float64(-1e5)) * 0.5 * 0.0
    assert not np.isfinite(old)
    assert math.isfinite(act_delta(codes.SIGMOID, z, d, *_coefficients(codes.SIGMOID, z)))


# --------------------------------------------------------------------------
# Kernel twins: the softmax shift log(sum_k p_k exp(dz_k))
# --------------------------------------------------------------------------

LOGITS = [np.zeros(3), np.array([0.0, -800.0, -1500.0])] + [s * np.array([1.0, -2.0, 0.5])
                                                               for s in (1.0, 30.0, 1e3, 1e100, 1e300)]


def _softmax64(z: np.ndarray) -> np.ndarray:
    p = np.empty(z.size)
    activate(z.copy(), p, 0, z.size, codes.SOFTMAX)
    return p


def _shift_ref(z: np.ndarray, dz: list[float]) -> tuple[np.ndarray, float]:
    """``log(sum_k softmax(z)_k exp(dz_k))`` and the weights ``softmax(z + dz)``, in long double.

    The log-probabilities come from exact differences of the logits; small
    changes go through ``log1p(sum_k p_k expm1(dz_k))``, others through
    the max-shifted sum.
    """
    zs = [Fraction(float(v)) for v in z]
    top = max(zs)
    shifted = np.array([_ld(v - top) for v in zs])
    logp = shifted - np.log(np.sum(np.exp(shifted)))
    p = np.exp(logp)
    ldz = np.array([LD(v) for v in dz])
    e = logp + ldz
    m = np.max(e)
    weights = np.exp(e - m) / np.sum(np.exp(e - m))
    terms = np.where(ldz > 11000, np.exp(np.minimum(e, 11000)) - p, p * np.expm1(np.minimum(ldz, 11000)))
    s = np.sum(terms)
    if np.isfinite(s) and s > -0.5:
        return np.log1p(s), weights, float(np.sum(np.abs(terms)))
    return m + np.log(np.sum(np.exp(e - m))), weights, 0.0


def _shift_tolerance(z, dz, ref, weights, size):
    """Return the allowed error of a softmax shift.

    16 U of the result (or of the summed terms' size: mixed signs cancel)
    when every change is at most 1; beyond, also the rounding of each
    exponent ``z_k - lse + dz_k``, weighted by ``d result / d dz_k =
    softmax(z + dz)_k``.
    """
    tol = 16 * U * (abs(float(ref)) + size) + ABS_FLOOR
    if max(abs(v) for v in dz) > 1.0:
        zmax = float(np.max(z))
        tol += 4 * U * sum(float(w) * (abs(float(zk) - zmax) + abs(d) + 1.0) for w, zk, d in zip(weights, z, dz))
    return tol


@pytest.mark.parametrize("mixed", [False, True], ids=["one-logit", "all-logits"])
def test_softmax_shift_finite_and_accurate_over_the_whole_range(mixed):
    worst = (0.0, None)
    for z in LOGITS:
        p = _softmax64(z)
        for t in GRID:
            for j in range(3):
                dz = [t * c for c in (1.0, -0.5, 0.25)] if mixed else [t if k == j else 0.0 for k in range(3)]
                if mixed:
                    got = log_softmax_shift(z, p, np.array(dz), 0, 3)
                else:
                    got = log_softmax_shift_one(z, p, 0, 3, j, t)
                    assert got == log_softmax_shift(z, p, np.array(dz), 0, 3) or abs(
                        got - log_softmax_shift(z, p, np.array(dz), 0, 3)) <= 1e-15 * abs(got) + ABS_FLOOR
                assert math.isfinite(got), (z, dz, got)
                ref, weights, size = _shift_ref(z, dz)
                if t == 0.0:
                    assert got == 0.0
                    continue
                ratio = float(abs(LD(got) - ref)) / _shift_tolerance(z, dz, ref, weights, size)
                if ratio > worst[0]:
                    worst = (ratio, (z.tolist(), dz, got, float(ref)))
                if mixed:
                    break  # the same dz for every j
    assert worst[0] <= 1.0, f"(z, dz, got, reference) = {worst[1]}, {worst[0]:.3g} x the tolerance"


def test_softmax_shift_does_not_trust_underflowed_probabilities():
    # p_1 = p_2 = 0 in float64, yet moving logit 2 up by 2000 makes it the
    # largest: the shift is about 500, not log(p_0) + 0 = 0.
    z = np.array([0.0, -800.0, -1500.0])
    p = _softmax64(z)
    assert p[1] == 0.0 and p[2] == 0.0
    got = log_softmax_shift_one(z, p, 0, 3, 2, 2000.0)
    assert abs(got - 500.0) <= 1e-13 * 500.0, got


# --------------------------------------------------------------------------
# The triggers, end to end, every activation, both real-step methods
# --------------------------------------------------------------------------


def _act_ld(name, z):
    if name == "sigmoid":
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.where(z > 0, z, LD(0))
    if name == "leaky_relu":
        return np.where(z > 0, z, LD(codes.LEAKY_SLOPE) * z)
    if name == "softplus":
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    assert name == "identity"
    return z


def _loss(params, X, Y, hidden, output, loss, dtype):
    """Return the loss in ``dtype`` (long double for the reference, float64 to see whether it overflows)."""
    a = np.asarray(X, dtype=dtype)
    L = len(params) // 2
    with np.errstate(all="ignore"):
        for layer in range(L):
            z = a @ np.asarray(params[2 * layer], dtype=dtype) + np.asarray(params[2 * layer + 1], dtype=dtype)
            if layer == L - 1 and output == "softmax":
                m = z.max(axis=1, keepdims=True)
                lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
                return (np.asarray(Y, dtype) * (lse - z)).sum() / X.shape[0]
            if layer == L - 1 and loss == "bce":  # (1 - y) softplus(z) + y softplus(-z): no cancellation
                y = np.asarray(Y, dtype)
                return ((1 - y) * _act_ld("softplus", z) + y * _act_ld("softplus", -z)).sum() / X.shape[0]
            a = _act_ld(output if layer == L - 1 else hidden, z)
        r = np.asarray(Y, dtype) - a
        total = (r * r).sum()
        return {"mse": total / X.shape[0], "sse": total, "half_sse": total / 2}[loss]


def _reference(params, X, Y, hidden, output, loss, steps, method):
    """Return, per flat entry, a long-double difference, its rounding bound and whether the loss is finite.

    The central (or Richardson) difference at ``steps`` in long double, a
    bound on its own rounding, and whether the float64 loss is finite at
    every point it uses.
    """
    flat = [np.asarray(p, dtype=np.float64) for p in params]
    P = sum(p.size for p in flat)
    value, err, finite = np.empty(P), np.zeros(P), np.ones(P, dtype=bool)
    multiples = (1, 2) if method == "richardson" else (1,)
    weights = (4 / 3, 1 / 3) if method == "richardson" else (1.0,)
    q = 0
    for t, tensor in enumerate(flat):
        for i in range(tensor.size):
            h = steps[q]
            diffs = []
            for m, wt in zip(multiples, weights):
                e = []
                for sign in (1, -1):
                    pl = [x.astype(LD) for x in flat]
                    pl[t].flat[i] = LD(tensor.flat[i]) + LD(sign * m) * LD(h)
                    e.append(_loss(pl, X, Y, hidden, output, loss, LD))
                    pf = [x.copy() for x in flat]
                    pf[t].flat[i] = tensor.flat[i] + sign * m * h  # exact: h = fl(w + h) - w
                    finite[q] &= bool(np.isfinite(_loss(pf, X, Y, hidden, output, loss, np.float64)))
                diffs.append((e[0] - e[1]) / (2 * LD(m) * LD(h)))
                err[q] += wt * float(16 * np.finfo(LD).eps * (abs(e[0]) + abs(e[1])) / (2 * m * h))
            value[q] = diffs[0] if len(diffs) == 1 else (4 * diffs[0] - diffs[1]) / 3
            q += 1
    return value, err, finite


#: name -> (X scale, eps or None for the default, int64 params near 2**62)
TRIGGERS = {
    "X~1e5,eps=1e-2": (1e5, 1e-2, False),
    "X~1e3,eps=1": (1e3, 1.0, False),
    "X~7e10": (7e10, None, False),
    "int64~2**62": (1.0, None, True),
    "X~1e12": (1e12, None, False),
    "X~1e200": (1e200, None, False),
}
PAIRS = [(out, "mse") for out in ACTIVATIONS] + [("softmax", "cross_entropy"), ("sigmoid", "bce")]


def _case(hidden, output, loss, scale, int64, seed=3):
    sizes = [3, 4, 2]
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    rng = np.random.default_rng(seed)
    params = [p + 0.3 * rng.standard_normal(p.shape) for p in net.init(seed=seed)]
    if int64:
        top = max(float(np.max(np.abs(p))) for p in params)
        params = [np.round(p / top * 2.0**62).astype(np.int64) for p in params]
    X = scale * rng.standard_normal((5, sizes[0]))
    Y = rng.uniform(size=(5, sizes[-1]))
    if loss == "cross_entropy":
        Y /= Y.sum(axis=1, keepdims=True)
    return net, params, X, Y


@pytest.mark.parametrize("method", ["central", "richardson"])
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_no_nonfinite_value_where_the_loss_is_finite(trigger, method):
    scale, eps, int64 = TRIGGERS[trigger]
    checked = 0
    for hidden in ACTIVATIONS:
        for output, loss in PAIRS:
            net, params, X, Y = _case(hidden, output, loss, scale, int64)
            theta = net.flatten(params)
            Xa, Ya = net.batch(X, Y)
            Z, A = net._forward(theta, Xa)
            base = float(_loss(params, X, Y, hidden, output, loss, np.float64))
            if not np.isfinite(base):  # the forward pass itself overflows: a clear error instead
                with pytest.raises(ValueError, match="forward pass overflows"):
                    fastgrad.numerical_gradient(net, params, X, Y, eps=eps, method=method)
                continue
            got = np.concatenate([g.ravel() for g in fastgrad.numerical_gradient(net, params, X, Y, eps=eps,
                                                                                method=method)])
            step = default_eps("incremental", method) if eps is None else eps
            details = engines.numerical_details(net, theta, Xa, Ya, step, "incremental", method, Z=Z, A=A,
                                                scaled=eps is None)
            assert np.array_equal(details.values, got, equal_nan=True)
            ref, ref_err, finite = _reference(params, X, Y, hidden, output, loss, details.steps, method)
            where = f"{trigger}, {method}, {hidden}/{output}"
            bad = finite & ~np.isfinite(got)
            assert not bad.any(), f"{where}: non-finite values at {np.flatnonzero(bad)} where the loss is finite"
            assert np.all(details.status[finite] == engines.STATUS_OK), where
            assert np.all(np.isfinite(details.absum)) and np.all(np.isfinite(details.trunc)), where
            own = details.trunc + 4 * (net.n_layers + 2) * U * details.absum
            err = np.abs(got - ref)
            tol = 10 * own + 4 * ref_err + 1e-300
            worst = int(np.argmax(np.where(finite, err / tol, 0.0)))
            assert not finite[worst] or err[worst] <= tol[worst], (
                f"{where}: entry {worst}: {got[worst]!r} against {ref[worst]!r} (tolerance {tol[worst]:.3g})")
            checked += int(finite.sum())
    assert checked > 0


@pytest.mark.parametrize("trigger", ["X~1e5,eps=1e-2", "X~7e10", "int64~2**62", "X~1e12"])
def test_correct_backprop_passes_where_the_full_engine_does(trigger):
    # What the user saw: "FAILED at inf x budget" from the default engine.
    scale, eps, int64 = TRIGGERS[trigger]
    for method in ("central", "richardson"):
        for hidden in ("sigmoid", "tanh", "softplus"):
            for output, loss in PAIRS:
                net, params, X, Y = _case(hidden, output, loss, scale, int64)
                result = fastgrad.check(net, params, X, Y, eps=eps, method=method)
                assert all(np.isfinite(n).all() for n in result.numerical), (trigger, method, hidden, output)
                full = fastgrad.check(net, params, X, Y, eps=eps, method=method, engine="full")
                if full.passed:
                    assert result.passed, f"{trigger}, {method}, {hidden}/{output}:\n{result}"


# --------------------------------------------------------------------------
# A perturbed loss that does overflow: said so, not returned as a number
# --------------------------------------------------------------------------


def _overflow_case(x0):
    # E = (y - w x)^2 / N, w = 1, N = 1: at w + 1 the output doubles, at w + 2 it triples
    net = fastgrad.MLP([1, 1], hidden="identity", output="identity", loss="mse")
    params = [np.ones((1, 1)), np.zeros(1)]
    return net, params, np.array([[x0]]), np.zeros((1, 1))


@pytest.mark.parametrize("engine", ["incremental", "full"])
def test_loss_overflow_at_the_step_gives_nan_and_a_status(engine):
    net, params, X, Y = _overflow_case(1e154)  # E = 1e308; E(w + 1) = 4e308 overflows
    theta = net.flatten(params)
    d = engines.numerical_details(net, theta, X, Y, 1.0, engine)
    assert d.status[0] == engines.STATUS_LOSS_NONFINITE
    assert not np.isfinite(d.values[0])
    assert d.status[1] == engines.STATUS_OK and np.isfinite(d.values[1])  # the bias' step is 1, not 1e154
    assert engines.STATUS_REASONS[engines.STATUS_LOSS_NONFINITE].startswith("the loss at w +- h is not finite")
    if engine == "incremental":
        assert np.isnan(d.values[0])
        assert np.isnan(fastgrad.numerical_gradient(net, params, X, Y, eps=1.0)[0][0, 0])


@pytest.mark.parametrize("engine", ["incremental", "full"])
def test_loss_overflow_only_at_the_estimates_step_keeps_the_value(engine):
    net, params, X, Y = _overflow_case(0.6e154)  # E(w + 1) = 1.44e308, E(w + 2) = 3.24e308 overflows
    theta = net.flatten(params)
    d = engines.numerical_details(net, theta, X, Y, 1.0, engine)
    assert d.status[0] == engines.STATUS_ESTIMATE_NONFINITE
    exact = float((Fraction(4) * Fraction(0.6e154) ** 2) / 2)  # ((2x)^2 - 0) / 2: w - 1 gives output 0
    assert d.values[0] == pytest.approx(exact, rel=1e-14)
    assert np.isfinite(d.trunc[0])

"""Cancellation-free changes of activations and losses.

The incremental engine never subtracts two O(1) values to get an O(h)
change. Each function here returns ``f(z + d) - f(z)`` (or a loss change)
computed from the change ``d`` itself:

* relu, leaky_relu and identity: exactly, piece by piece (leaky_relu
  within 2 ulp when the step crosses its kink: the two pieces are rounded
  separately);
* sigmoid, tanh and softplus: a closed form built on ``expm1`` and
  ``log1p`` that has no subtraction of nearly equal numbers, or, when
  ``|d| <= SERIES_MAX``, the Taylor polynomial to ``d**4`` with coefficients
  precomputed once per unit and sample (:func:`taylor_coefficients`). The
  fifth-order remainder is below ``2e-17`` of the first-order term there,
  under float64 rounding. The closed forms evaluate the activation at the
  rounded ``z + d``, which costs about ``|z|`` ulps for sigmoid and tanh
  (measured: at most 16 and 31 ulps for ``|z| <= 30``, see
  ``tests/test_deltas.py``); softplus switches to ``d + softplus(-(z + d))
  - softplus(-z)`` where ``log1p`` would cancel.

Every closed form is finite for every finite ``z`` and ``d`` whose exact
result is in float64's range (see ``tests/test_nonfinite.py``): the
``expm1`` factor is always taken of ``-|d|`` (a forward and a backward form
of sigmoid's and tanh's change, chosen by the sign of ``d``), so it never
overflows and is never multiplied by a vanishing factor, and steps where
``exp`` would overflow (``d > EXP_MAX``) go through logarithms.
"""

import math

from ._jit import jit
from .activations import sigmoid, softplus
from .codes import IDENTITY, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, SOFTPLUS, TANH

#: Largest ``|d|`` for which the Taylor polynomial is used.
SERIES_MAX = 1e-4
#: Number of Taylor coefficients kept per unit and sample.
N_COEF = 4
#: Largest argument for which ``exp``/``expm1`` are used as they are
#: (``exp(709.78...)`` overflows float64).
EXP_MAX = 709.0


@jit()
def taylor_coefficients(code, z, a, out, n, u):
    """Write ``f^(m)(z) / m!`` for m = 1..4 into ``out[m - 1, n, u]``.

    Parameters
    ----------
    code : int
        Activation code.
    z, a : float
        Pre-activation and activation ``f(z)``.
    out : ndarray of float64, shape (N_COEF, N, U)
        Written at ``[:, n, u]``.
    n, u : int
        Sample and unit.

    Notes
    -----
    Derivatives are written in terms of ``s = sigmoid(z)`` and
    ``q = sigmoid(-z)``, each computed directly, so that ``s * q`` keeps its
    relative accuracy in saturation, where ``1 - s`` would not.
    """
    if code == SIGMOID:
        s = a
        q = sigmoid(-z)
        s1 = s * q
        out[0, n, u] = s1
        out[1, n, u] = s1 * (q - s) / 2.0
        out[2, n, u] = s1 * (1.0 - 6.0 * s1) / 6.0
        out[3, n, u] = s1 * (q - s) * (1.0 - 12.0 * s1) / 24.0
    elif code == TANH:
        t = a
        t1 = 4.0 * sigmoid(2.0 * z) * sigmoid(-2.0 * z)  # 1 - tanh^2, accurately
        out[0, n, u] = t1
        out[1, n, u] = -t * t1
        out[2, n, u] = t1 * (6.0 * t * t - 2.0) / 6.0
        out[3, n, u] = t * t1 * (16.0 - 24.0 * t * t) / 24.0
    elif code == SOFTPLUS:
        s = sigmoid(z)
        q = sigmoid(-z)
        s1 = s * q
        out[0, n, u] = s
        out[1, n, u] = s1 / 2.0
        out[2, n, u] = s1 * (q - s) / 6.0
        out[3, n, u] = s1 * (1.0 - 6.0 * s1) / 24.0
    else:
        if code == IDENTITY:
            slope = 1.0
        elif code == RELU:
            slope = 1.0 if z > 0.0 else 0.0
        else:
            slope = 1.0 if z > 0.0 else LEAKY_SLOPE
        out[0, n, u] = slope
        out[1, n, u] = 0.0
        out[2, n, u] = 0.0
        out[3, n, u] = 0.0


@jit()
def act_delta(code, z, d, c1, c2, c3, c4):
    """``f(z + d) - f(z)`` for activation ``code``, without cancellation.

    ``c1..c4`` are the Taylor coefficients of ``f`` at ``z``
    (from :func:`taylor_coefficients`); only smooth activations use them.
    """
    if d == 0.0:
        return 0.0
    if code == IDENTITY:
        return d
    if code == RELU or code == LEAKY_RELU:
        zn = z + d
        neg = 0.0 if code == RELU else LEAKY_SLOPE
        if z > 0.0 and zn > 0.0:
            return d
        if z <= 0.0 and zn <= 0.0:
            return neg * d
        # the step crosses the kink: each side's piece exactly
        new = zn if zn > 0.0 else neg * zn
        old = z if z > 0.0 else neg * z
        return new - old
    if abs(d) <= SERIES_MAX:
        return d * (c1 + d * (c2 + d * (c3 + d * c4)))
    if code == SIGMOID:
        return sigmoid_delta(z, d)
    if code == TANH:
        # tanh(x) = 2 s(2x) - 1 (2z and 2d may overflow to inf: s(+-inf) is 1 or 0, the limit)
        return 2.0 * sigmoid_delta(2.0 * z, 2.0 * d, 2.0 * (z + d))
    return softplus_delta(z, d)


@jit()
def sigmoid_delta(z, d, zd=math.nan):
    """``s(z + d) - s(z)`` for ``|d| > SERIES_MAX`` (or any ``d``), finite for any finite ``z``, ``d``.

    ``s(z+d) - s(z) = -expm1(-d) s(-z) s(z+d) = expm1(d) s(z) s(-(z+d))``:
    the first form for ``d > 0``, the second for ``d < 0``, so that the
    ``expm1`` factor is in (-1, 0) and every factor is at most 1 in size
    (the other choice overflows for ``|d| > 709``, giving inf * 0, and loses
    digits to a subnormal ``s`` long before). Each factor has a small
    relative error. ``zd``: ``z + d`` as the caller rounded it (NaN:
    ``fl(z + d)``).
    """
    if math.isnan(zd):
        zd = z + d
    if d > 0.0:
        return -math.expm1(-d) * sigmoid(-z) * sigmoid(zd)
    return math.expm1(d) * sigmoid(z) * sigmoid(-zd)


@jit()
def softplus_delta(z, d):
    """``softplus(z + d) - softplus(z)`` for ``|d| > SERIES_MAX``, without cancellation or overflow."""
    if d > EXP_MAX or (d > 0.0 and z < -EXP_MAX):
        # expm1(d) overflows, or s(z) has underflowed (to a subnormal or 0,
        # although s(z) expm1(d) may be large). Then either the change is
        # d plus at most log 2 in size (z > 0), or the old value is below
        # log 2 and e^(z + d) / e^z-fold smaller than the new one: no
        # cancellation either way.
        if z > 0.0:
            return d + (math.log1p(math.exp(-(z + d))) - math.log1p(math.exp(-z)))
        return softplus(z + d) - softplus(z)
    # softplus(z+d) - softplus(z) = log1p(s(z) * expm1(d)); |x| < 8.3e307
    x = sigmoid(z) * math.expm1(d)
    if x > -0.5:
        return math.log1p(x)
    # x near -1 (d << 0, z >> 0) would cancel inside log1p; the change is
    # then at least log(2) in size. With softplus(u) = u + softplus(-u):
    if z > 0.0 and z + d > 0.0:
        return d + (math.log1p(math.exp(-(z + d))) - math.log1p(math.exp(-z)))
    return softplus(z + d) - softplus(z)


@jit()
def expm1_small(d):
    """``exp(d) - 1``: Taylor polynomial for ``|d| <= SERIES_MAX``, else ``expm1``."""
    if abs(d) <= SERIES_MAX:
        return d * (1.0 + d * (0.5 + d * (1.0 / 6.0 + d * (1.0 / 24.0))))
    return math.expm1(d)


@jit()
def log1p_small(s):
    """``log(1 + s)``: Taylor polynomial for ``|s| <= SERIES_MAX``, else ``log1p``."""
    if abs(s) <= SERIES_MAX:
        return s * (1.0 + s * (-0.5 + s * (1.0 / 3.0 + s * (-0.25))))
    return math.log1p(s)


@jit()
def squared_delta(dx_plus, dx_minus, residual):
    """``(y - x+)^2 - (y - x-)^2`` from the changes ``x+ - x``, ``x- - x``.

    Equal to ``(x- - x+) (2 (y - x) - (x+ - x) - (x- - x))``; ``residual`` is
    ``y - x`` at the base point.
    """
    return (dx_minus - dx_plus) * (2.0 * residual - dx_plus - dx_minus)


#: Smallest normal float64: a probability below it has lost relative precision.
_MIN_NORMAL = 2.2250738585072014e-308


@jit()
def _log_sum_exp(z, start, count):
    """``log(sum_k exp(z_k))`` over ``z[start:start + count]``, shifted by the maximum."""
    zmax = z[start]
    for k in range(start + 1, start + count):
        zmax = max(zmax, z[k])
    total = 0.0
    for k in range(start, start + count):
        total += math.exp(z[k] - zmax)
    return zmax + math.log(total)


@jit()
def _direct_term(p, d):
    """Whether ``p * expm1(d)`` is accurate as it stands (else it is formed from the log-probability).

    ``expm1(d)`` overflows beyond ``EXP_MAX``, and a probability that
    underflowed (subnormal or 0) says little about ``p e^d`` for large ``d``.
    """
    return d <= EXP_MAX and (p >= _MIN_NORMAL or d <= 0.0)


@jit()
def log_softmax_shift(z, p, dz, start, count):
    """``logsumexp(z + dz) - logsumexp(z)`` = ``log(sum_k p_k exp(dz_k))``.

    ``z`` holds the logits and ``p = softmax(z)`` at ``[start, start + count)``;
    ``dz`` the changes at ``[0, count)``. Small changes go through
    ``log1p(sum_k p_k expm1(dz_k))``, which keeps their relative accuracy.
    A term whose ``expm1`` would overflow, or whose probability underflowed,
    is formed as ``exp(log p_k + dz_k) - p_k`` with ``log p_k = z_k - lse(z)``
    from the logits. When the sum is near -1 (every ``dz_k`` very negative),
    ``log1p`` would cancel; the result is then at most ``log(1/2)`` in size,
    and the max-shifted ``log(sum_k exp(log p_k + dz_k))`` is accurate
    instead; so it is when the sum overflows (the result is then above 700).
    """
    s = 0.0
    lse = math.nan
    for k in range(count):
        d = dz[k]
        if d != 0.0:
            pk = p[start + k]
            if _direct_term(pk, d):
                s += pk * expm1_small(d)
            else:
                if math.isnan(lse):
                    lse = _log_sum_exp(z, start, count)
                s += math.exp((z[start + k] - lse) + d) - pk
    if s > -0.5 and s < math.inf:
        return math.log1p(s)
    if math.isnan(lse):
        lse = _log_sum_exp(z, start, count)
    m = -math.inf
    for k in range(count):
        m = max(m, (z[start + k] - lse) + dz[k])
    total = 0.0
    for k in range(count):
        total += math.exp((z[start + k] - lse) + dz[k] - m)
    return m + math.log(total)


@jit()
def log_softmax_shift_one(z, p, start, count, j, t):
    """:func:`log_softmax_shift` when only logit ``j`` moves, by ``t``: ``log(1 + p_j expm1(t))``."""
    pj = p[start + j]
    lse = math.nan
    if _direct_term(pj, t):
        x = pj * expm1_small(t)
    else:
        lse = _log_sum_exp(z, start, count)
        x = math.exp((z[start + j] - lse) + t) - pj
    if x > -0.5 and x < math.inf:
        return math.log1p(x)
    # 1 + x near 0 (p_j near 1, t << 0: the other classes' share is summed
    # from their own log-probabilities, not formed as 1 - p_j) or overflowing
    if math.isnan(lse):
        lse = _log_sum_exp(z, start, count)
    m = -math.inf
    for k in range(count):
        m = max(m, (z[start + k] - lse) + (t if k == j else 0.0))
    total = 0.0
    for k in range(count):
        total += math.exp((z[start + k] - lse) + (t if k == j else 0.0) - m)
    return m + math.log(total)

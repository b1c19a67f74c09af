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
"""

import math

from ._jit import jit
from .activations import sigmoid, softplus
from .codes import IDENTITY, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, SOFTPLUS, TANH

#: Largest ``|d|`` for which the Taylor polynomial is used.
SERIES_MAX = 1e-4
#: Number of Taylor coefficients kept per unit and sample.
N_COEF = 4


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
        # s(z+d) - s(z) = -expm1(-d) * s(-z) * s(z+d)
        return -math.expm1(-d) * sigmoid(-z) * sigmoid(z + d)
    if code == TANH:
        # tanh(x) = 2 s(2x) - 1
        return -2.0 * math.expm1(-2.0 * d) * sigmoid(-2.0 * z) * sigmoid(2.0 * (z + d))
    # softplus(z+d) - softplus(z) = log1p(s(z) * expm1(d))
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


@jit()
def log_softmax_shift(p, dz, start, count):
    """``logsumexp(z + dz) - logsumexp(z)`` = ``log(sum_k p_k exp(dz_k))``.

    ``p`` holds ``softmax(z)`` at ``[start, start + count)``; ``dz`` the
    changes at ``[0, count)``. Small changes go through
    ``log1p(sum_k p_k expm1(dz_k))``, which keeps their relative accuracy.
    When that sum is near -1 (every ``dz_k`` very negative), ``log1p`` would
    cancel; the result is then at most ``log(1/2)`` in size, and the
    max-shifted ``log(sum_k exp(log p_k + dz_k))`` is accurate instead.
    """
    s = 0.0
    for k in range(count):
        if dz[k] != 0.0:
            s += p[start + k] * expm1_small(dz[k])
    if s > -0.5:
        return math.log1p(s)
    m = -math.inf
    for k in range(count):
        if p[start + k] > 0.0:
            m = max(m, math.log(p[start + k]) + dz[k])
    total = 0.0
    for k in range(count):
        if p[start + k] > 0.0:
            total += math.exp(math.log(p[start + k]) + dz[k] - m)
    return m + math.log(total)

"""Cancellation-free changes of the losses, and the activations' changes as the incremental engine uses them.

The incremental engine never subtracts two O(1) values to get an O(h)
change. An activation's ``f(z + d) - f(z)`` is its module's ``change``
(:mod:`fastgrad._kernels.activations`: exact piece by piece for the
piecewise-linear ones; for the smooth ones, the Taylor polynomial to
``d**4`` when ``|d| <= SERIES_MAX``, with coefficients precomputed once per
unit and sample by :func:`taylor_coefficients`, else a closed form built on
``expm1`` and ``log1p`` that is finite for every finite ``z`` and ``d``
whose exact result is in range; see ``tests/test_deltas.py`` and
``tests/test_nonfinite.py``). This module holds the losses' changes: the
squared error's, and softmax cross-entropy's log-sum-exp shift.
"""

import math

from ._jit import jit
from .activations import EXP_MAX, N_COEF, SERIES_MAX, act_delta, taylor

__all__ = ["EXP_MAX", "N_COEF", "SERIES_MAX", "act_delta", "expm1_small", "log1p_small", "log_softmax_shift",
           "log_softmax_shift_one", "squared_delta", "taylor_coefficients"]


@jit()
def taylor_coefficients(code, z, a, out, n, u):
    """Write ``f^(m)(z) / m!`` for m = 1..4 into ``out[m - 1, n, u]`` (``out``: (N_COEF, N, U)).

    ``a`` is ``f(z)``; the coefficients are the activation module's ``taylor``.
    """
    c1, c2, c3, c4 = taylor(code, z, a)
    out[0, n, u] = c1
    out[1, n, u] = c2
    out[2, n, u] = c3
    out[3, n, u] = c4


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

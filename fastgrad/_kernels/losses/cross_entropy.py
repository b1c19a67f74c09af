"""``cross_entropy``: softmax cross-entropy, ``-(1/N) sum_n sum_k y_nk log softmax(z_n)_k``, from the logits.

Requires ``output="softmax"``; every kernel here reads the output
pre-activations (logits) and the probabilities ``p = softmax(z)``, never the
log of a rounded probability: the term is ``sum_k y_k (lse(z) - z_k)``, and
its changes are log-sum-exp shifts ``log(sum_k p_k exp(dz_k))`` formed from
``expm1`` of the changes, so small changes keep their relative accuracy.
"""

import cmath
import math

import numpy as np

from .._jit import jit
from ..activations import EXP_MAX, SERIES_MAX

CODE = 3
NAME = "cross_entropy"
#: The per-sample term reads only the logits: a softmax layer's probabilities need not be formed for it.
READS_ACTIVATIONS = False
#: The output activation this loss requires.
OUTPUT = "softmax"
#: Its own reduction of the elements' terms (``reduction=None``; see :mod:`fastgrad.conventions`).
REDUCTION = "mean"
#: Not quadratic: its log-sum-exp curves.
QUADRATIC = False


@jit(inline=True)
def scale(code, n_samples):
    """Factor turning the sum of the samples' terms into ``E``: the mean over samples."""
    return 1.0 / n_samples


@jit(inline=True)
def _logsumexp(z, start, count):
    """``log sum_k exp(z_k)`` over ``z[start:start + count]``, shifted by the largest so that nothing overflows."""
    zmax = z[start]
    for k in range(1, count):
        zmax = max(zmax, z[start + k])
    s = 0.0
    for k in range(count):
        s += math.exp(z[start + k] - zmax)
    return zmax + math.log(s)


@jit(inline=True)
def sample_value(z, a, y, start, count):
    """One sample's unscaled term ``sum_k y_k (lse(z) - z_k)`` (no log of a rounded-to-zero probability)."""
    lse = _logsumexp(z, start, count)
    total = 0.0
    for k in range(count):
        total += y[k] * (lse - z[start + k])
    return total


@jit(inline=True)
def sample_magnitude(z, a, y, start, count):
    """The size of the numbers the term is computed from: ``sum_k |y_k| (|lse| + |z_k|)``.

    ``lse - z_k`` of a confident classifier is ~1e-7 computed from logits of order 1..1e4.
    """
    lse = _logsumexp(z, start, count)
    total = 0.0
    for k in range(count):
        total += abs(y[k]) * (abs(lse) + abs(z[start + k]))
    return total


@jit(inline=True)
def output_deltas(code, z, a, y, start, count, act, n_samples, d_out):
    """``dE/dz_k = (p_k sum(y) - y_k) / N`` (softmax and cross-entropy together)."""
    y_sum = 0.0
    for k in range(count):
        y_sum += y[k]
    for k in range(count):
        d_out[start + k] = (a[start + k] * y_sum - y[k]) / n_samples


@jit(inline=True)
def expm1_small(d):
    """``exp(d) - 1``: Taylor polynomial for ``|d| <= SERIES_MAX``, else ``expm1``."""
    if abs(d) <= SERIES_MAX:
        return d * (1.0 + d * (0.5 + d * (1.0 / 6.0 + d * (1.0 / 24.0))))
    return math.expm1(d)
_MIN_NORMAL = 2.2250738585072014e-308


@jit(inline=True)
def _log_sum_exp(z, start, count):
    """``log(sum_k exp(z_k))`` over ``z[start:start + count]``, shifted by the maximum."""
    zmax = z[start]
    for k in range(start + 1, start + count):
        zmax = max(zmax, z[k])
    total = 0.0
    for k in range(start, start + count):
        total += math.exp(z[k] - zmax)
    return zmax + math.log(total)


@jit(inline=True)
def _direct_term(p, d):
    """Whether ``p * expm1(d)`` is accurate as it stands (else it is formed from the log-probability).

    ``expm1(d)`` overflows beyond ``EXP_MAX``, and a probability that
    underflowed (subnormal or 0) says little about ``p e^d`` for large ``d``.
    """
    return d <= EXP_MAX and (p >= _MIN_NORMAL or d <= 0.0)


@jit(inline=True)
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


@jit(inline=True)
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


@jit(inline=True)
def output_change(base, n, off, K, act, dz_p, dz_m, x_p, x_m):
    """Unscaled ``E_n(+) - E_n(-)`` from the logit changes: ``ysum (lse(+) - lse(-)) - sum_k y_k (dz+ - dz-)``."""
    Z, A, C, R, Y, ysum = base
    shift = log_softmax_shift(Z[n], A[n], dz_p, off, K) - log_softmax_shift(Z[n], A[n], dz_m, off, K)
    lin = 0.0
    for k in range(K):
        lin += Y[n, k] * (dz_p[k] - dz_m[k])
    return ysum[n] * shift - lin, False


@jit(inline=True)
def unit_change(base, n, off, K, j, t, act):
    """Unscaled ``E_n(+) - E_n(-)`` when only logit ``j`` moves, by ``+-t``: ``ysum (lse(+) - lse(-)) - y_j 2t``."""
    Z, A, C, R, Y, ysum = base
    shift = log_softmax_shift_one(Z[n], A[n], off, K, j, t) - log_softmax_shift_one(Z[n], A[n], off, K, j, -t)
    return ysum[n] * shift - Y[n, j] * (2.0 * t), False


@jit(inline=True)
def abs_term(base, n, off, k, act):
    """Logit ``k``'s factor in the absolute-value chain: ``ysum p_k + |y_k|``."""
    Z, A, C, R, Y, ysum = base
    return ysum[n] * A[n, off + k] + abs(Y[n, k])


def abs_terms(Y, A_out, ysum, deriv):
    """:func:`abs_term` of every sample and logit at once (NumPy, ``A_out`` the probabilities (N, K))."""
    return ysum[:, None] * A_out + np.abs(Y)


@jit(inline=True)
def output_series(base, n, off, K, act, s1, s2, s3, s_abs):
    """Loss series ``(e1, e3, e1_abs, lim)`` of sample ``n`` from the logit series ``s1..s3``.

    ``ysum log1p(S) - sum_k y_k dz_k`` with ``S = sum_k p_k expm1(dz_k)``; ``lim`` keeps ``|expm1(dz)|`` and
    ``|S|`` within ``SERIES_MAX``.
    """
    Z, A, C, R, Y, ysum = base
    lim = np.inf
    S1 = 0.0
    S2 = 0.0
    S3 = 0.0
    lin1 = 0.0
    lin3 = 0.0
    big = 0.0
    e1_abs = 0.0
    for k in range(K):
        u1 = s1[k]
        u2 = s2[k]
        u3 = s3[k]
        big = max(big, abs(u1) + abs(u2) + abs(u3))
        p = A[n, off + k]
        S1 += p * u1
        S2 += p * (u2 + 0.5 * u1 * u1)
        S3 += p * (u3 + u1 * u2 + u1 * u1 * u1 / 6.0)
        lin1 += Y[n, k] * u1
        lin3 += Y[n, k] * u3
        e1_abs += abs_term(base, n, off, k, act) * s_abs[k]
    if big > 0.0:
        lim = 0.5 * SERIES_MAX / big
    e1 = ysum[n] * S1 - lin1
    e3 = ysum[n] * (S3 - S1 * S2 + S1 * S1 * S1 / 3.0) - lin3
    return e1, e3, e1_abs, lim


@jit(inline=True)
def output_series_lanes(base, n, off, K, act, WT, g, e1, e3, e1_abs, lim, scratch):
    """:func:`output_series` of sample ``n`` for many units at once, one lane each (see ``series_lanes``).

    Lane ``b``'s logit series is ``g[0..2, b] * WT[:, b]`` (its absolute twin
    ``g[3, b] * |WT[:, b]|``); the sums run lane by lane in
    :func:`output_series`' order (``scratch``: six rows of the lanes' width),
    so each lane's ``e1``, ``e3``, ``e1_abs`` and ``lim`` are bitwise that one's.
    """
    Z, A, C, R, Y, ysum = base
    B = g.shape[1]
    S1, S2, S3, lin1, lin3, big = scratch[0], scratch[1], scratch[2], scratch[3], scratch[4], scratch[5]
    for b in range(B):
        S1[b] = 0.0
        S2[b] = 0.0
        S3[b] = 0.0
        lin1[b] = 0.0
        lin3[b] = 0.0
        big[b] = 0.0
    for k in range(K):
        p = A[n, off + k]
        y = Y[n, k]
        term = abs_term(base, n, off, k, act)
        w = WT[k]
        for b in range(B):
            u1 = g[0, b] * w[b]
            u2 = g[1, b] * w[b]
            u3 = g[2, b] * w[b]
            big[b] = max(big[b], abs(u1) + abs(u2) + abs(u3))
            S1[b] += p * u1
            S2[b] += p * (u2 + 0.5 * u1 * u1)
            S3[b] += p * (u3 + u1 * u2 + u1 * u1 * u1 / 6.0)
            lin1[b] += y * u1
            lin3[b] += y * u3
            e1_abs[b] += term * (g[3, b] * abs(w[b]))
    for b in range(B):
        lim[b] = 0.5 * SERIES_MAX / big[b] if big[b] > 0.0 else np.inf
        e1[b] = ysum[n] * S1[b] - lin1[b]
        e3[b] = ysum[n] * (S3[b] - S1[b] * S2[b] + S1[b] * S1[b] * S1[b] / 3.0) - lin3[b]


@jit(inline=True)
def unit_series(base, n, off, K, j, act, s1, s2, s3, sa):
    """:func:`output_series` when only logit ``j`` moves, by ``s`` (``s1..s3``, ``sa``: scratch rows)."""
    Z, A, C, R, Y, ysum = base
    for k in range(K):
        s1[k] = 0.0
        s2[k] = 0.0
        s3[k] = 0.0
        sa[k] = 0.0
    s1[j] = 1.0
    sa[j] = 1.0
    return output_series(base, n, off, K, act, s1, s2, s3, sa)


@jit(inline=True)
def complex_sample_value(z, a, y, start, count):
    """:func:`sample_value` of complex128 logits: ``sum_k y_k (lse(z) - z_k)``, lse shifted by the largest real part."""
    m = z[start].real
    for k in range(1, count):
        m = max(m, z[start + k].real)
    s = 0j
    for k in range(count):
        s += cmath.exp(z[start + k] - m)
    lse = m + cmath.log(s)
    total = 0j
    for k in range(count):
        total += y[k] * (lse - z[start + k])
    return total


@jit(inline=True)
def split_sample_value(Zr, Zi, Ar, Ai, n, y, start, count):
    """:func:`complex_sample_value` of sample ``n`` on split real/imaginary buffers, as ``(re, im)``."""
    m = Zr[n, start]
    for k in range(1, count):
        m = max(m, Zr[n, start + k])
    sr = 0.0
    si = 0.0
    for k in range(count):
        e = math.exp(Zr[n, start + k] - m)
        sr += e * math.cos(Zi[n, start + k])
        si += e * math.sin(Zi[n, start + k])
    lr = m + math.log(math.hypot(sr, si))
    li = math.atan2(si, sr)
    tr = 0.0
    ti = 0.0
    for k in range(count):
        tr += y[k] * (lr - Zr[n, start + k])
        ti += y[k] * (li - Zi[n, start + k])
    return tr, ti

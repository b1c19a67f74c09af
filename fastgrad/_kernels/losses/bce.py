"""``bce``: binary cross-entropy on sigmoid outputs, ``-(1/N) sum_n sum_k [y log x + (1 - y) log(1 - x)]``.

Requires ``output="sigmoid"``; ``x = sigmoid(z)``, and every kernel here reads
the logits ``z``, never the log of a rounded probability. The per-output
term ``softplus(z) - y z`` is formed as

    (1 - y) softplus(z) + y softplus(-z)        (softplus(z) - z = softplus(-z))

whose two parts are non-negative for targets in [0, 1]: a confident, right
output (``y = 1``, ``z = 40``: ``4e-18``) keeps its relative accuracy,
where ``softplus(z) - y z`` would cancel to 0. Its derivative is
``sigmoid(z) - y = (1 - y) s - y q`` with ``s = sigmoid(z)`` and
``q = sigmoid(-z)`` each computed from ``z``: exact to rounding for hard
targets. Multi-label rows and soft targets are allowed.
"""

import math

import numpy as np

from .._jit import jit
from ..activations import SERIES_MAX
from ..activations.softplus import complex_value as softplus_complex
from ..activations.softplus import exact_change as softplus_change
from ..activations.softplus import value as softplus

CODE = 4
NAME = "bce"
#: The term reads only the logits (a sigmoid layer's activations are formed anyway, but not read here).
READS_ACTIVATIONS = False
#: The output activation this loss requires.
OUTPUT = "sigmoid"
#: Its own reduction of the elements' terms (``reduction=None``; see :mod:`fastgrad.conventions`).
REDUCTION = "mean"
#: Not quadratic: softplus curves.
QUADRATIC = False


@jit(inline=True)
def scale(code, n_samples):
    """Factor turning the sum of the samples' terms into ``E``: the mean over samples."""
    return 1.0 / n_samples


@jit(inline=True)
def sigmoid_pair(z):
    """``(sigmoid(z), sigmoid(-z))`` from one ``exp``, bitwise the sigmoid activation's ``value`` of each."""
    e = math.exp(-abs(z))
    if z >= 0.0:
        return 1.0 / (1.0 + e), e / (1.0 + e)
    return e / (1.0 + e), 1.0 / (1.0 + e)


@jit(inline=True)
def _slope(z, y):
    """``sigmoid(z) - y`` as ``(1 - y) s - y q``: exact to rounding for ``y`` 0 or 1 however saturated ``z`` is."""
    s, q = sigmoid_pair(z)
    return (1.0 - y) * s - y * q


@jit(inline=True)
def sample_value(z, a, y, start, count):
    """One sample's unscaled term ``sum_k (1 - y_k) softplus(z_k) + y_k softplus(-z_k)``."""
    total = 0.0
    for k in range(count):
        zk = z[start + k]
        total += (1.0 - y[k]) * softplus(zk) + y[k] * softplus(-zk)
    return total


@jit(inline=True)
def sample_magnitude(z, a, y, start, count):
    """The size of the numbers the term is computed from: the parts in absolute value, and ``|z| |x - y|``.

    The parts do not cancel for targets in [0, 1]; the last term is what a
    rounding of ``z`` at its own size moves the term by (a wrong, confident
    output: ``|z| ~ term``; a right one: both tiny).
    """
    total = 0.0
    for k in range(count):
        zk = z[start + k]
        total += (abs(1.0 - y[k]) * softplus(zk) + abs(y[k]) * softplus(-zk)
                  + abs(zk) * abs(_slope(zk, y[k])))
    return total


@jit(inline=True)
def output_deltas(code, z, a, y, start, count, act, n_samples, d_out):
    """``dE/dz_k = (sigmoid(z_k) - y_k) / N`` (sigmoid and bce together; ``act`` is sigmoid's code)."""
    for k in range(count):
        d_out[start + k] = _slope(z[start + k], y[k]) / n_samples


@jit(inline=True)
def _odd_change(z, y, dp, dm):
    """``t(z + dp) - t(z + dm)`` of one output's term ``t = (1 - y) softplus(z) + y softplus(-z)``.

    Each softplus part's two changes (:func:`softplus_change`, for any step,
    cancellation-free) are subtracted: of opposite signs when ``dp``, ``dm``
    are, so nothing cancels but the parts' own ``(1 - y) s - y q``.
    """
    total = 0.0
    if y != 1.0:
        total += (1.0 - y) * (softplus_change(z, dp) - softplus_change(z, dm))
    if y != 0.0:
        total += y * (softplus_change(-z, -dp) - softplus_change(-z, -dm))
    return total


@jit(inline=True)
def output_change(base, n, off, K, act, dz_p, dz_m, x_p, x_m):
    """Unscaled ``E_n(+) - E_n(-)`` from the logit changes ``dz_p``/``dz_m`` (no kink; ``x_p``/``x_m`` unused)."""
    Z, A, C, R, Y, ysum = base
    total = 0.0
    for k in range(K):
        if dz_p[k] != dz_m[k]:
            total += _odd_change(Z[n, off + k], Y[n, k], dz_p[k], dz_m[k])
    return total, False


@jit(inline=True)
def unit_change(base, n, off, K, j, t, act):
    """Unscaled ``E_n(+) - E_n(-)`` when only logit ``j`` moves, by ``+-t``."""
    Z, A, C, R, Y, ysum = base
    return _odd_change(Z[n, off + j], Y[n, j], t, -t), False


@jit(inline=True)
def abs_term(base, n, off, k, act):
    """Logit ``k``'s factor in the absolute-value chain: ``|x| + |y|``, what ``x - y`` is rounded at."""
    Z, A, C, R, Y, ysum = base
    return abs(A[n, off + k]) + abs(Y[n, k])


def abs_terms(Y, A_out, ysum, deriv):
    """:func:`abs_term` of every sample and logit at once (NumPy, ``A_out`` the sigmoid outputs (N, K))."""
    return np.abs(A_out) + np.abs(Y)


@jit(inline=True)
def _series_coefficients(base, n, off, k):
    """``(g1, c2, c3)``: output ``k``'s term changes by ``g1 u + c2 u^2 + c3 u^3 + ...`` when its logit moves by ``u``.

    ``g1 = sigmoid(z) - y``; ``c2``, ``c3`` are softplus's (``softplus(-z - u)``'s
    are ``c2`` and ``-c3``, so ``y`` drops out of them). Read from the base
    state, no ``exp`` (the series runs per unit, sample and output): the
    output layer is sigmoid, so ``A`` holds ``s = sigmoid(z)`` and ``C`` its
    Taylor coefficients ``s q`` and ``s q (q - s) / 2``, each formed from
    ``s`` and ``q = sigmoid(-z)`` computed directly. ``q`` comes back as
    ``s q / s`` for ``s >= 1/2`` (relative accuracy kept in saturation) and
    ``1 - s`` below (``q > 1/2``: an absolute roundoff is a relative one).
    """
    Z, A, C, R, Y, ysum = base
    v = off + k
    s = A[n, v]
    sq = C[0, n, v]
    q = sq / s if s >= 0.5 else 1.0 - s
    y = Y[n, k]
    return (1.0 - y) * s - y * q, sq / 2.0, C[1, n, v] / 3.0


@jit(inline=True)
def output_series(base, n, off, K, act, s1, s2, s3, s_abs):
    """Loss series ``(e1, e3, e1_abs, lim)`` of sample ``n`` from the logit series ``s1..s3``.

    Each term's series composed with ``s``; ``lim`` keeps every logit change
    within ``SERIES_MAX`` (softplus's series range, that of the sigmoid too).
    """
    Z, A, C, R, Y, ysum = base
    lim = np.inf
    e1 = 0.0
    e3 = 0.0
    e1_abs = 0.0
    for k in range(K):
        u1 = s1[k]
        u2 = s2[k]
        u3 = s3[k]
        bound = abs(u1) + abs(u2) + abs(u3)
        if bound == 0.0 and s_abs[k] == 0.0:
            continue
        if bound > 0.0:
            lim = min(lim, SERIES_MAX / bound)
        g1, c2, c3 = _series_coefficients(base, n, off, k)
        e1 += g1 * u1
        e3 += g1 * u3 + 2.0 * c2 * u1 * u2 + c3 * u1 * u1 * u1
        e1_abs += abs_term(base, n, off, k, act) * s_abs[k]
    return e1, e3, e1_abs, lim


@jit(inline=True)
def output_series_lanes(base, n, off, K, act, WT, g, e1, e3, e1_abs, lim, scratch):
    """:func:`output_series` of sample ``n`` for many units at once, one lane each (see ``series_lanes``).

    Lane ``b``'s logit series is ``g[0..2, b] * WT[:, b]`` (its absolute twin
    ``g[3, b] * |WT[:, b]|``); ``e1``, ``e3``, ``e1_abs`` (zeroed) and ``lim``
    (infinite) are accumulated lane by lane in :func:`output_series`' order,
    the same outputs skipped, so each lane's result is bitwise that one's.
    """
    for k in range(K):
        g1, c2, c3 = _series_coefficients(base, n, off, k)
        term = abs_term(base, n, off, k, act)
        w = WT[k]
        for b in range(w.shape[0]):
            u1 = g[0, b] * w[b]
            u2 = g[1, b] * w[b]
            u3 = g[2, b] * w[b]
            sa = g[3, b] * abs(w[b])
            bound = abs(u1) + abs(u2) + abs(u3)
            if bound == 0.0 and sa == 0.0:
                continue
            if bound > 0.0:
                lim[b] = min(lim[b], SERIES_MAX / bound)
            e1[b] += g1 * u1
            e3[b] += g1 * u3 + 2.0 * c2 * u1 * u2 + c3 * u1 * u1 * u1
            e1_abs[b] += term * sa


@jit(inline=True)
def unit_series(base, n, off, K, j, act, s1, s2, s3, sa):
    """:func:`output_series` when only logit ``j`` moves, by ``s``: closed form (the caller limits ``s``)."""
    g1, c2, c3 = _series_coefficients(base, n, off, j)
    return g1, c3, abs_term(base, n, off, j, act), np.inf


@jit(inline=True)
def complex_sample_value(z, a, y, start, count):
    """:func:`sample_value` of complex128 logits: the same two parts, each softplus's analytic continuation."""
    total = 0j
    for k in range(count):
        zk = z[start + k]
        pr, pi = softplus_complex(zk.real, zk.imag)
        mr, mi = softplus_complex(-zk.real, -zk.imag)
        total += (1.0 - y[k]) * complex(pr, pi) + y[k] * complex(mr, mi)
    return total


@jit(inline=True)
def split_sample_value(Zr, Zi, Ar, Ai, n, y, start, count):
    """:func:`complex_sample_value` of sample ``n`` on split real/imaginary buffers, as ``(re, im)``."""
    tr = 0.0
    ti = 0.0
    for k in range(count):
        x = Zr[n, start + k]
        v = Zi[n, start + k]
        pr, pi = softplus_complex(x, v)
        mr, mi = softplus_complex(-x, -v)
        tr += (1.0 - y[k]) * pr + y[k] * mr
        ti += (1.0 - y[k]) * pi + y[k] * mi
    return tr, ti

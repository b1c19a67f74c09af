"""The squared-error losses: ``mse``, ``sse`` and ``half_sse``, one module (they differ only in a factor).

The per-sample term is ``sum_k (y_k - x_k)^2`` over the output activations
``x``; ``E`` is its sum over samples times ``scale``: ``1/N`` for ``mse``
(mean over samples, sum over outputs), 1 for ``sse``, ``1/2`` for
``half_sse``.
"""

import numpy as np

from .._jit import jit
from ..activations import change_limit, compose, derivative, layer_change, slack, step_changes

CODES = (0, 1, 2)
NAMES = ("mse", "sse", "half_sse")
#: The per-sample term reads the output activations (not only the pre-activations).
READS_ACTIVATIONS = True
#: The output activation these losses require (None: any but the output-only ones).
OUTPUT = None
#: Each name's own reduction of its elements' terms (``reduction=None``; see :mod:`fastgrad.conventions`).
REDUCTION = {"mse": "mean", "sse": "sum", "half_sse": "sum"}
#: Quadratic in the output activations: exact central differences where the activations are linear.
QUADRATIC = True


@jit(inline=True)
def scale(code, n_samples):
    """Factor turning the sum of the samples' terms into ``E``: ``1/N`` (mse), 1 (sse), ``1/2`` (half_sse)."""
    if code == 0:
        return 1.0 / n_samples
    if code == 1:
        return 1.0
    if code == 2:
        return 0.5
    raise ValueError("fastgrad squared_error.scale: unknown code")


@jit(inline=True)
def sample_value(z, a, y, start, count):
    """One sample's unscaled term ``sum_k (y_k - x_k)^2`` (``x`` the activations at ``a[start:start+count]``)."""
    total = 0.0
    for k in range(count):
        r = y[k] - a[start + k]
        total += r * r
    return total


@jit(inline=True)
def sample_magnitude(z, a, y, start, count):
    """The size of the numbers the term is computed from: ``sum_k (2 |y_k - x_k| (|y_k| + |x_k|) + (y_k - x_k)^2)``."""
    total = 0.0
    for k in range(count):
        r = y[k] - a[start + k]
        total += 2.0 * abs(r) * (abs(y[k]) + abs(a[start + k])) + r * r
    return total


@jit(inline=True)
def output_deltas(code, z, a, y, start, count, act, n_samples, d_out):
    """``dE/dz = c (x - y) f'(z)`` of one sample's output units: ``c = 2/N`` (mse), 2 (sse), 1 (half_sse)."""
    if code == 0:
        factor = 2.0 / n_samples
    elif code == 1:
        factor = 2.0
    elif code == 2:
        factor = 1.0
    else:
        raise ValueError("fastgrad squared_error.output_deltas: unknown code")
    for k in range(count):
        u = start + k
        d_out[u] = factor * (a[u] - y[k]) * derivative(z[u], a[u], act)


@jit(inline=True)
def squared_delta(dx_plus, dx_minus, residual):
    """``(y - x+)^2 - (y - x-)^2`` from the changes ``x+ - x``, ``x- - x``.

    Equal to ``(x- - x+) (2 (y - x) - (x+ - x) - (x- - x))``; ``residual`` is
    ``y - x`` at the base point.
    """
    return (dx_minus - dx_plus) * (2.0 * residual - dx_plus - dx_minus)


@jit(inline=True)
def output_change(base, n, off, K, act, dz_p, dz_m, x_p, x_m):
    """Unscaled ``E_n(+) - E_n(-)`` from the output pre-activation changes ``dz_p``/``dz_m``, and a kink flag.

    ``x_p``/``x_m`` are scratch for the output activation changes.
    """
    Z, A, C, R, Y, ysum = base
    crossed = layer_change(act, Z, C, n, off, K, dz_p, x_p)
    crossed |= layer_change(act, Z, C, n, off, K, dz_m, x_m)
    total = 0.0
    for k in range(K):
        total += squared_delta(x_p[k], x_m[k], R[n, k])
    return total, crossed


@jit(inline=True)
def unit_change(base, n, off, K, j, t, act):
    """Unscaled ``E_n(+) - E_n(-)`` when output unit ``j``'s pre-activation moves by ``+-t``, and a kink flag."""
    Z, A, C, R, Y, ysum = base
    u = off + j
    gp, gm, crossed = step_changes(act, Z[n, u], t, C[0, n, u], C[1, n, u], C[2, n, u], C[3, n, u])
    return squared_delta(gp, gm, R[n, j]), crossed


@jit(inline=True)
def abs_term(base, n, off, k, act):
    """Output unit ``k``'s factor in the absolute-value chain: ``2 (|y| + |x|) (|f'| + slack)``."""
    Z, A, C, R, Y, ysum = base
    return 2.0 * (abs(Y[n, k]) + abs(A[n, off + k])) * (abs(C[0, n, off + k]) + slack(act))


def abs_terms(Y, A_out, ysum, deriv):
    """:func:`abs_term` of every sample and output at once (NumPy; ``deriv = |f'| + slack`` (N, K))."""
    return 2.0 * (np.abs(Y) + np.abs(A_out)) * deriv


@jit(inline=True)
def output_series(base, n, off, K, act, s1, s2, s3, s_abs):
    """Loss series ``(e1, e3, e1_abs, lim)`` of sample ``n`` from the output pre-activation series ``s1..s3``.

    ``(r - dx)^2 - r^2 = dx^2 - 2 r dx`` with ``dx`` the output activation's change composed with ``s``;
    ``lim`` keeps every output change in its activation's series range.
    """
    Z, A, C, R, Y, ysum = base
    lim = np.inf
    e1 = 0.0
    e3 = 0.0
    e1_abs = 0.0
    for k in range(K):
        v = off + k
        lim = min(lim, change_limit(act, Z[n, v], abs(s1[k]) + abs(s2[k]) + abs(s3[k])))
        x1, x2, x3 = compose(C[0, n, v], C[1, n, v], C[2, n, v], s1[k], s2[k], s3[k])
        r2 = 2.0 * R[n, k]
        e1 -= r2 * x1
        e3 += 2.0 * x1 * x2 - r2 * x3
        e1_abs += abs_term(base, n, off, k, act) * s_abs[k]
    return e1, e3, e1_abs, lim


@jit(inline=True)
def output_series_lanes(base, n, off, K, act, WT, g, e1, e3, e1_abs, lim, scratch):
    """:func:`output_series` of sample ``n`` for many units at once, one lane each (see ``series_lanes``).

    Lane ``b``'s output series is ``g[0..2, b] * WT[:, b]`` (its absolute
    twin ``g[3, b] * |WT[:, b]|``); ``e1``, ``e3``, ``e1_abs`` (zeroed) and
    ``lim`` (infinite) are accumulated lane by lane with :func:`output_series`'
    operations in its order, so each lane's result is bitwise that one.
    """
    Z, A, C, R, Y, ysum = base
    for k in range(K):
        v = off + k
        z = Z[n, v]
        c1 = C[0, n, v]
        c2 = C[1, n, v]
        c3 = C[2, n, v]
        r2 = 2.0 * R[n, k]
        term = abs_term(base, n, off, k, act)
        w = WT[k]
        for b in range(w.shape[0]):
            s1 = g[0, b] * w[b]
            s2 = g[1, b] * w[b]
            s3 = g[2, b] * w[b]
            lim[b] = min(lim[b], change_limit(act, z, abs(s1) + abs(s2) + abs(s3)))
            x1, x2, x3 = compose(c1, c2, c3, s1, s2, s3)
            e1[b] -= r2 * x1
            e3[b] += 2.0 * x1 * x2 - r2 * x3
            e1_abs[b] += term * (g[3, b] * abs(w[b]))


@jit(inline=True)
def unit_series(base, n, off, K, j, act, s1, s2, s3, sa):
    """:func:`output_series` when only output unit ``j`` moves, by ``s`` (no scratch needed): closed form."""
    Z, A, C, R, Y, ysum = base
    u = off + j
    g1 = C[0, n, u]
    g2 = C[1, n, u]
    g3 = C[2, n, u]
    r2 = 2.0 * R[n, j]
    e1 = -r2 * g1
    e3 = 2.0 * g1 * g2 - r2 * g3
    return e1, e3, abs_term(base, n, off, j, act), np.inf


@jit(inline=True)
def complex_sample_value(z, a, y, start, count):
    """:func:`sample_value` of complex128 rows (the analytic square ``(y - x)^2``, not ``|y - x|^2``)."""
    total = 0j
    for k in range(count):
        r = y[k] - a[start + k]
        total += r * r
    return total


@jit(inline=True)
def split_sample_value(Zr, Zi, Ar, Ai, n, y, start, count):
    """:func:`complex_sample_value` of sample ``n`` on split real/imaginary buffers, as ``(re, im)``."""
    tr = 0.0
    ti = 0.0
    for k in range(count):
        rr = y[k] - Ar[n, start + k]
        ri = -Ai[n, start + k]
        tr += rr * rr - ri * ri
        ti += 2.0 * rr * ri
    return tr, ti

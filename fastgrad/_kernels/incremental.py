"""The incremental engine's direct path: a perturbation's changes, sample by sample.

A perturbation of ``W_l[i, j]`` (or ``b_l[j]``) changes the pre-activation
of unit ``j`` of layer ``l`` by ``+-t_n`` (``t_n = h * a_{l-1}[n, i]``, or
``h``), hence a rank-1 change of layer ``l+1``'s pre-activations, and full
(but small) changes of the layers after it. These kernels carry the
*changes* through the network with the cancellation-free formulas of
:mod:`.deltas`, starting from a cached forward pass, and return the
per-sample loss change ``E_n(w + h) - E_n(w - h)`` without ever forming two
totals. They work for any step; :mod:`.series` uses them wherever its
polynomials do not apply.
"""

import math

import numpy as np
from numba import prange

from ._jit import jit
from .activations import act_delta, activate, has_kink, has_series, is_linear
from .codes import (
    ACT,
    CROSS_ENTROPY,
    FAN_OUT,
    SOFTMAX,
    U_OFF,
    W_OFF,
)
from .deltas import (
    SERIES_MAX,
    log_softmax_shift,
    log_softmax_shift_one,
    squared_delta,
    taylor_coefficients,
)
from .forward import forward_layers
from .loss import sample_loss


@jit(parallel=True)
def base_state(layout, Z, A, Y, C_out, R_out, ysum_out):
    """Per-sample quantities the incremental kernel reuses for every parameter.

    Parameters
    ----------
    layout : ndarray of int64, shape (L, N_COLS)
    Z, A : ndarray of float64, shape (N, U)
        Cached forward pass.
    Y : ndarray of float64, shape (N, K)
    C_out : ndarray of float64, shape (N_COEF, N, U)
        Written: Taylor coefficients of every unit's activation.
    R_out : ndarray of float64, shape (N, K)
        Written: residuals ``y - x`` of the output layer.
    ysum_out : ndarray of float64, shape (N,)
        Written: ``sum_k y_nk`` (cross-entropy's weight on the log-sum-exp).
    """
    last = layout.shape[0] - 1
    out_off = layout[last, U_OFF]
    K = layout[last, FAN_OUT]
    for n in prange(Z.shape[0]):
        for l in range(layout.shape[0]):
            code = layout[l, ACT]
            u_off = layout[l, U_OFF]
            for j in range(layout[l, FAN_OUT]):
                taylor_coefficients(code, Z[n, u_off + j], A[n, u_off + j], C_out, n, u_off + j)
        s = 0.0
        for k in range(K):
            R_out[n, k] = Y[n, k] - A[n, out_off + k]
            s += Y[n, k]
        ysum_out[n] = s


@jit()
def _layer_delta(code, Z, C, n, u_off, count, dz, da):
    """``da[k] = f(z + dz[k]) - f(z)`` for the units ``u_off..u_off+count``.

    Returns whether a step crosses a kink of the activation
    (``z > 0`` differs from ``z + dz > 0``). When every change is in the
    Taylor range of an activation whose series hold everywhere, one
    branch-free (vectorisable) loop evaluates the polynomials.
    """
    if is_linear(code):
        for k in range(count):
            da[k] = dz[k]
        return False
    if has_series(code):
        big = 0.0
        for k in range(count):
            big = max(big, abs(dz[k]))
        if big <= SERIES_MAX:
            for k in range(count):
                u = u_off + k
                d = dz[k]
                da[k] = d * (C[0, n, u] + d * (C[1, n, u] + d * (C[2, n, u] + d * C[3, n, u])))
            return False
    crossed = False
    kinked = has_kink(code)
    for k in range(count):
        u = u_off + k
        z = Z[n, u]
        da[k] = act_delta(code, z, dz[k], C[0, n, u], C[1, n, u], C[2, n, u], C[3, n, u])
        if kinked and dz[k] != 0.0 and (z > 0.0) != (z + dz[k] > 0.0):
            crossed = True
    return crossed


@jit()
def _suffix_change(theta, layout, loss_code, Z, A, C, R, Y, ysum, n, l, dz_p, dz_m, da_p, da_m):
    """Unscaled ``E_n(+) - E_n(-)`` of sample ``n`` from layer ``l``'s changes, and a kink flag.

    ``dz_p``/``dz_m`` hold the pre-activation changes of layer ``l`` under the
    + and - perturbation; the layers after it are recomputed as changes,
    ``dz = da_prev @ W`` (bias unchanged), with ``da_p``/``da_m`` as scratch.
    All four are rows of at least the widest layer; all are overwritten.
    The flag says whether either perturbation moved a relu/leaky_relu
    pre-activation across its kink.
    """
    last = layout.shape[0] - 1
    crossed = False
    while l < last:
        count = layout[l, FAN_OUT]
        crossed |= _layer_delta(layout[l, ACT], Z, C, n, layout[l, U_OFF], count, dz_p, da_p)
        crossed |= _layer_delta(layout[l, ACT], Z, C, n, layout[l, U_OFF], count, dz_m, da_m)
        l += 1
        fan_out = layout[l, FAN_OUT]
        w_off = layout[l, W_OFF]
        for k in range(fan_out):
            dz_p[k] = 0.0
            dz_m[k] = 0.0
        for i in range(count):
            gp = da_p[i]
            gm = da_m[i]
            if gp == 0.0 and gm == 0.0:
                continue
            w = theta[w_off + i * fan_out:w_off + (i + 1) * fan_out]
            for k in range(fan_out):
                dz_p[k] += gp * w[k]
                dz_m[k] += gm * w[k]
    change, crossed_out = _loss_change(layout, loss_code, Z, A, C, R, Y, ysum, n, dz_p, dz_m, da_p, da_m)
    return change, crossed or crossed_out


@jit()
def _loss_change(layout, loss_code, Z, A, C, R, Y, ysum, n, dz_p, dz_m, x_p, x_m):
    """Unscaled ``E_n(+) - E_n(-)`` from the output pre-activation changes, and a kink flag.

    ``x_p``/``x_m`` are scratch for the output activation changes.
    """
    last = layout.shape[0] - 1
    off = layout[last, U_OFF]
    K = layout[last, FAN_OUT]
    if loss_code == CROSS_ENTROPY:
        shift = log_softmax_shift(Z[n], A[n], dz_p, off, K) - log_softmax_shift(Z[n], A[n], dz_m, off, K)
        lin = 0.0
        for k in range(K):
            lin += Y[n, k] * (dz_p[k] - dz_m[k])
        return ysum[n] * shift - lin, False
    crossed = _layer_delta(layout[last, ACT], Z, C, n, off, K, dz_p, x_p)
    crossed |= _layer_delta(layout[last, ACT], Z, C, n, off, K, dz_m, x_m)
    total = 0.0
    for k in range(K):
        total += squared_delta(x_p[k], x_m[k], R[n, k])
    return total, crossed


@jit()
def sample_change_direct(theta, layout, loss_code, Z, A, C, R, Y, ysum, n, l, j, t, dz_p, dz_m, da_p, da_m):
    """Unscaled ``E_n(+) - E_n(-)`` when unit ``j`` of layer ``l`` moves by ``+-t`` in sample ``n``.

    The direct path, for any step: the unit's activation changes
    ``f(z +- t) - f(z)`` (:func:`.deltas.act_delta`), then a rank-1 change of
    the next layer and full changes of the layers after it. ``dz_p``,
    ``dz_m``, ``da_p``, ``da_m`` are scratch rows of at least the widest layer.
    Returns ``(change, crossed)``: ``crossed`` when the + or - step moved
    any relu/leaky_relu pre-activation (the unit's own or a later one)
    across its kink.
    """
    last = layout.shape[0] - 1
    u = layout[l, U_OFF] + j
    if l == last and loss_code == CROSS_ENTROPY:
        # only logit j moves: ysum * (lse(+) - lse(-)) - y_j * 2t
        off = layout[l, U_OFF]
        K = layout[l, FAN_OUT]
        shift = log_softmax_shift_one(Z[n], A[n], off, K, j, t) - log_softmax_shift_one(Z[n], A[n], off, K, j, -t)
        return ysum[n] * shift - Y[n, j] * (2.0 * t), False
    code = layout[l, ACT]
    z = Z[n, u]
    gp = act_delta(code, z, t, C[0, n, u], C[1, n, u], C[2, n, u], C[3, n, u])
    gm = act_delta(code, z, -t, C[0, n, u], C[1, n, u], C[2, n, u], C[3, n, u])
    crossed = has_kink(code) and t != 0.0 and (
        (z > 0.0) != (z + t > 0.0) or (z > 0.0) != (z - t > 0.0)
    )
    if l == last:
        return squared_delta(gp, gm, R[n, j]), crossed
    if gp == 0.0 and gm == 0.0:
        return 0.0, crossed
    m = l + 1
    fan_out = layout[m, FAN_OUT]
    row = layout[m, W_OFF] + j * fan_out
    for k in range(fan_out):
        w = theta[row + k]
        dz_p[k] = gp * w
        dz_m[k] = gm * w
    change, crossed_later = _suffix_change(theta, layout, loss_code, Z, A, C, R, Y, ysum, n, m, dz_p, dz_m, da_p, da_m)
    return change, crossed or crossed_later


@jit()
def sample_loss_shifted(theta, layout, loss_code, Z, A, Y, n, l, j, t, zw, aw):
    """Sample ``n``'s unscaled loss with unit ``j`` of layer ``l`` moved by ``t``, by a plain forward pass.

    The pre-activation becomes ``Z[n, u] + t`` and every later layer is
    recomputed (:func:`.forward.forward_layers`); ``zw``/``aw`` are (1, U)
    scratch rows. The loss itself, not a change: only for
    :func:`sample_change_checked`'s fallback.
    """
    for v in range(Z.shape[1]):
        zw[0, v] = Z[n, v]
        aw[0, v] = A[n, v]
    u_off = layout[l, U_OFF]
    u = u_off + j
    zw[0, u] = Z[n, u] + t
    code = layout[l, ACT]
    if code == SOFTMAX:
        activate(zw[0], aw[0], u_off, layout[l, FAN_OUT], code)
    else:
        activate(zw[0], aw[0], u, 1, code)
    if l + 1 < layout.shape[0]:
        forward_layers(theta, layout, Z, 0, 1, l + 1, True, zw, aw)  # Z stands in for X: never read from layer 1 on
    return sample_loss(zw[0], aw[0], Y[n], layout, loss_code)


@jit()
def sample_change_checked(theta, layout, loss_code, Z, A, C, R, Y, ysum, n, l, j, t, dz_p, dz_m, da_p, da_m):
    """:func:`sample_change_direct`, falling back to the plain difference where it is not finite.

    The changes' closed forms are finite wherever the exact changes are in
    range; what can still overflow (a pre-activation change beyond 1.8e308,
    or a loss change beyond it) is retried as ``E_n(+t) - E_n(-t)`` from two
    plain forward passes of the sample (:func:`sample_loss_shifted`).

    Returns
    -------
    change : float
        Unscaled ``E_n(+) - E_n(-)``; NaN when the loss at ``+-t`` is not finite.
    crossed : bool
        As in :func:`sample_change_direct`.
    magnitude : float
        ``|E_n(+)| + |E_n(-)|`` when the plain difference was taken (its
        cancellation scales with it), else 0.
    finite : bool
        False when the loss at ``+t`` or ``-t`` is not finite in float64.
    """
    change, crossed = sample_change_direct(theta, layout, loss_code, Z, A, C, R, Y, ysum, n, l, j, t,
                                           dz_p, dz_m, da_p, da_m)
    if math.isfinite(change):
        return change, crossed, 0.0, True
    zw = np.empty((1, Z.shape[1]), dtype=np.float64)
    aw = np.empty((1, Z.shape[1]), dtype=np.float64)
    e_plus = sample_loss_shifted(theta, layout, loss_code, Z, A, Y, n, l, j, t, zw, aw)
    e_minus = sample_loss_shifted(theta, layout, loss_code, Z, A, Y, n, l, j, -t, zw, aw)
    if math.isfinite(e_plus) and math.isfinite(e_minus):
        return e_plus - e_minus, crossed, abs(e_plus) + abs(e_minus), True
    return math.nan, crossed, 0.0, False

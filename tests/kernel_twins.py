"""Compiled reference kernels that only the tests use: the plain forms the fast kernels are compared with.

:func:`central_diff_full` is the black-box loop (two whole forward passes of
the batch per parameter); :func:`complex_batch_loss` the complex step done
plainly (a whole complex forward pass over complex128 parameters). They
were in the package, which does not call them.

:func:`unit_series_rowwise`, :func:`unit_abs_series_rowwise` and
:func:`unit_deltas_rowwise` are the incremental engines' per-unit kernels
as they were before their dense loops took eight input rows a pass (issue
18): serial, one fused loop per layer, one input row at a time through
:func:`fastgrad._kernels.dense.add_scaled_series` and its kin. The package's
kernels must give bitwise the same results (``tests/test_deep_kernels.py``).
"""

import math

import numpy as np
from numba import prange

from fastgrad._kernels._jit import jit
from fastgrad._kernels.activations import (
    SERIES_MAX,
    act_delta,
    change_limit,
    compose,
    has_kink,
    has_series,
    is_linear,
    slack,
    step_changes,
)
from fastgrad._kernels.codes import ACT, FAN_OUT, U_OFF, W_OFF
from fastgrad._kernels.complex_forward import complex_forward_rows, complex_sample_loss
from fastgrad._kernels.dense import add_scaled_abs, add_scaled_pair, add_scaled_series, set_scaled, set_scaled_abs
from fastgrad._kernels.forward import SAMPLE_TILE, forward_rows
from fastgrad._kernels.incremental import sample_loss_shifted
from fastgrad._kernels.loss import loss_from_activations
from fastgrad._kernels.losses import abs_term, loss_scale, output_change, output_series, unit_change
from fastgrad._kernels.losses import unit_series as unit_series_out


@jit()
def batch_loss(theta, layout, loss_code, X, Y, Z, A):
    """Loss ``E`` of the whole batch, serially, using scratch ``Z``/``A`` (N, U); samples summed in order."""
    N = X.shape[0]
    for lo in range(0, N, SAMPLE_TILE):
        forward_rows(theta, layout, X, lo, min(N, lo + SAMPLE_TILE), Z, A)
    return loss_from_activations(Z, A, Y, layout, loss_code)


@jit(parallel=True)
def central_diff_full(theta, layout, loss_code, X, Y, eps, order, bounds, n_units, out):
    """Central differences ``(E(w + eps) - E(w - eps)) / (2 eps)`` of chosen parameters.

    Arguments as :func:`fastgrad._kernels.numgrad.full_differences` (``theta`` read only: each chunk perturbs
    its own copy), with one step ``eps`` (> 0) for every parameter and no method or kink flags.

    Notes
    -----
    Each chunk owns a copy of ``theta`` and its activation buffers, and each
    derivative goes to its own slot, so threads never share writable memory.
    A perturbed entry is restored by assigning the saved value, and every
    loss is a serial sum over samples in order: the result is bitwise the same
    for any thread count and any ``n_chunks``. Each loss costs a full forward
    pass of the batch: O(N * P) per parameter.
    """
    for c in prange(bounds.shape[0] - 1):
        th = theta.copy()
        z = np.empty((X.shape[0], n_units), dtype=np.float64)
        a = np.empty((X.shape[0], n_units), dtype=np.float64)
        for b in range(bounds[c], bounds[c + 1]):
            p = order[b]
            saved = th[p]
            th[p] = saved + eps
            e_plus = batch_loss(th, layout, loss_code, X, Y, z, a)
            th[p] = saved - eps
            e_minus = batch_loss(th, layout, loss_code, X, Y, z, a)
            th[p] = saved
            out[p] = (e_plus - e_minus) / (2.0 * eps)


@jit()
def complex_batch_loss(theta_c, layout, loss_code, X, Y, Zc, Ac):
    """Complex loss ``E(theta_c)`` of the batch, serially (the plain version).

    Parameters
    ----------
    theta_c : ndarray of complex128, shape (P,)
        Flat parameters; read only. ``Im E(w + i h e_p) / h`` is the complex
        step derivative of parameter ``p``.
    layout : ndarray of int64, shape (L, N_COLS)
    loss_code : int
    X : ndarray of float64, shape (N, D)
    Y : ndarray of float64, shape (N, K)
    Zc, Ac : ndarray of complex128, shape (N, U)
        Scratch, written: pre-activations and activations (a softmax output
        layer's activations are not written).

    Returns
    -------
    complex
        The loss, scaled as :func:`fastgrad._kernels.loss.loss_scale`.

    Notes
    -----
    Same tiling and summation order as
    :func:`fastgrad._kernels.forward.forward_rows` (bias first, then inputs
    in order, exact zero inputs skipped), samples summed in order, so with
    a real ``theta_c`` the real parts are bitwise the real forward pass.
    """
    N = X.shape[0]
    for lo in range(0, N, SAMPLE_TILE):
        complex_forward_rows(theta_c, layout, X, lo, min(N, lo + SAMPLE_TILE), Zc, Ac)
    total = 0j
    for n in range(N):
        total += complex_sample_loss(Zc[n], Ac[n], Y[n], layout, loss_code)
    return total * loss_scale(loss_code, N)


# ---------------------------------------------------- the per-unit kernels, row by row (before issue 18)
@jit()
def unit_series_rowwise(theta, layout, loss_code, base, l, units, E1_out, E3_out, E1abs_out, lim_out):
    """:func:`fastgrad._kernels.series.unit_series` of every sample, serially, one input row at a time."""
    Z, C = base.Z, base.C
    last = layout.shape[0] - 1
    out_off = layout[last, U_OFF]
    K = layout[last, FAN_OUT]
    width = 0
    for m in range(layout.shape[0]):
        width = max(width, layout[m, FAN_OUT])
    code = layout[l, ACT]
    s1, s2, s3, sa = np.empty(width), np.empty(width), np.empty(width), np.empty(width)
    d1, d2, d3, da = np.empty(width), np.empty(width), np.empty(width), np.empty(width)
    for b in range(units.shape[0]):
        j = units[b]
        u = layout[l, U_OFF] + j
        for n in range(Z.shape[0]):
            lim = min(1.0, change_limit(code, Z[n, u], 1.0))
            if l == last:
                e1, e3, e1_abs, lim_out_n = unit_series_out(loss_code, base, n, out_off, K, j, code, s1, s2, s3, sa)
            else:
                g1, g2, g3 = C[0, n, u], C[1, n, u], C[2, n, u]
                m = l + 1
                H = layout[m, FAN_OUT]
                row = theta[layout[m, W_OFF] + j * H:layout[m, W_OFF] + (j + 1) * H]
                set_scaled(s1, g1, row)
                set_scaled(s2, g2, row)
                set_scaled(s3, g3, row)
                set_scaled_abs(sa, abs(g1) + slack(code), row)
                while m < last:
                    act = layout[m, ACT]
                    act_slack = slack(act)
                    off = layout[m, U_OFF]
                    for k in range(H):
                        v = off + k
                        lim = min(lim, change_limit(act, Z[n, v], abs(s1[k]) + abs(s2[k]) + abs(s3[k])))
                        d1[k], d2[k], d3[k] = compose(C[0, n, v], C[1, n, v], C[2, n, v], s1[k], s2[k], s3[k])
                        da[k] = (abs(C[0, n, v]) + act_slack) * sa[k]
                    m += 1
                    H_next = layout[m, FAN_OUT]
                    w_off = layout[m, W_OFF]
                    for q in range(H_next):
                        s1[q] = 0.0
                        s2[q] = 0.0
                        s3[q] = 0.0
                        sa[q] = 0.0
                    for k in range(H):
                        if da[k] == 0.0 and d2[k] == 0.0 and d3[k] == 0.0:
                            continue
                        w = theta[w_off + k * H_next:w_off + (k + 1) * H_next]
                        add_scaled_series(s1, s2, s3, sa, d1[k], d2[k], d3[k], da[k], w)
                    H = H_next
                e1, e3, e1_abs, lim_out_n = output_series(loss_code, base, n, out_off, K, layout[last, ACT],
                                                          s1, s2, s3, sa)
            lim = min(lim, lim_out_n)
            if not (np.isfinite(e1) and np.isfinite(e3)):
                lim = -1.0
            E1_out[n, b] = e1
            E3_out[n, b] = e3
            E1abs_out[n, b] = e1_abs
            lim_out[n, b] = lim


@jit()
def unit_abs_series_rowwise(theta, layout, loss_code, base, l, units, E1abs_out):
    """:func:`fastgrad._kernels.series.unit_abs_series` of every sample, serially, one input row at a time."""
    C = base.C
    last = layout.shape[0] - 1
    width = 0
    for m in range(layout.shape[0]):
        width = max(width, layout[m, FAN_OUT])
    code = layout[l, ACT]
    sa, da = np.empty(width), np.empty(width)
    for b in range(units.shape[0]):
        j = units[b]
        u = layout[l, U_OFF] + j
        for n in range(C.shape[1]):
            g = abs(C[0, n, u]) + slack(code)
            if l == last:
                E1abs_out[n, b] = abs_term(loss_code, base, n, layout[l, U_OFF], j, code)
                continue
            m = l + 1
            H = layout[m, FAN_OUT]
            set_scaled_abs(sa, g, theta[layout[m, W_OFF] + j * H:layout[m, W_OFF] + (j + 1) * H])
            while m < last:
                act_slack = slack(layout[m, ACT])
                off = layout[m, U_OFF]
                for k in range(H):
                    da[k] = (abs(C[0, n, off + k]) + act_slack) * sa[k]
                m += 1
                H_next = layout[m, FAN_OUT]
                w_off = layout[m, W_OFF]
                for q in range(H_next):
                    sa[q] = 0.0
                for k in range(H):
                    if da[k] == 0.0:
                        continue
                    add_scaled_abs(sa, da[k], theta[w_off + k * H_next:w_off + (k + 1) * H_next])
                H = H_next
            total = 0.0
            for k in range(layout[last, FAN_OUT]):
                total += abs_term(loss_code, base, n, layout[last, U_OFF], k, layout[last, ACT]) * sa[k]
            E1abs_out[n, b] = total


@jit()
def _layer_change_rowwise(code, Z, C, n, u_off, count, dz, da):
    """:func:`fastgrad._kernels.activations.layer_change`, indexing ``C`` unit by unit."""
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
def _sample_change_rowwise(theta, layout, loss_code, base, n, l, j, t, dz_p, dz_m, da_p, da_m):
    """:func:`fastgrad._kernels.incremental.sample_change_checked`'s change and flag, one row at a time."""
    Z, C = base.Z, base.C
    last = layout.shape[0] - 1
    if l == last:
        change, crossed = unit_change(loss_code, base, n, layout[l, U_OFF], layout[l, FAN_OUT], j, t,
                                      layout[l, ACT])
    else:
        u = layout[l, U_OFF] + j
        gp, gm, crossed = step_changes(layout[l, ACT], Z[n, u], t, C[0, n, u], C[1, n, u], C[2, n, u], C[3, n, u])
        if gp == 0.0 and gm == 0.0:
            return 0.0, crossed
        m = l + 1
        fan_out = layout[m, FAN_OUT]
        row = layout[m, W_OFF] + j * fan_out
        set_scaled(dz_p, gp, theta[row:row + fan_out])
        set_scaled(dz_m, gm, theta[row:row + fan_out])
        while m < last:
            count = layout[m, FAN_OUT]
            crossed |= _layer_change_rowwise(layout[m, ACT], Z, C, n, layout[m, U_OFF], count, dz_p, da_p)
            crossed |= _layer_change_rowwise(layout[m, ACT], Z, C, n, layout[m, U_OFF], count, dz_m, da_m)
            m += 1
            fan_out = layout[m, FAN_OUT]
            w_off = layout[m, W_OFF]
            for k in range(fan_out):
                dz_p[k] = 0.0
                dz_m[k] = 0.0
            for i in range(count):
                if da_p[i] == 0.0 and da_m[i] == 0.0:
                    continue
                add_scaled_pair(dz_p, dz_m, da_p[i], da_m[i], theta[w_off + i * fan_out:w_off + (i + 1) * fan_out])
        change, crossed_out = output_change(loss_code, base, n, layout[last, U_OFF], layout[last, FAN_OUT],
                                            layout[last, ACT], dz_p, dz_m, da_p, da_m)
        crossed = crossed or crossed_out
    if math.isfinite(change):
        return change, crossed
    zw = np.empty((1, Z.shape[1]))
    aw = np.empty((1, Z.shape[1]))
    e_plus = sample_loss_shifted(theta, layout, loss_code, Z, base.A, base.Y, n, l, j, t, zw, aw)
    e_minus = sample_loss_shifted(theta, layout, loss_code, Z, base.A, base.Y, n, l, j, -t, zw, aw)
    if math.isfinite(e_plus) and math.isfinite(e_minus):
        return e_plus - e_minus, crossed
    return math.nan, crossed


@jit()
def unit_deltas_rowwise(theta, layout, loss_code, base, l, units, h, D_out, crossed_out):
    """:func:`fastgrad._kernels.series.unit_deltas` of every sample, serially, one input row at a time."""
    width = base.Z.shape[1]
    dz_p, dz_m, da_p, da_m = np.empty(width), np.empty(width), np.empty(width), np.empty(width)
    for b in range(units.shape[0]):
        for n in range(base.Z.shape[0]):
            change, crossed = _sample_change_rowwise(theta, layout, loss_code, base, n, l, units[b], h,
                                                     dz_p, dz_m, da_p, da_m)
            D_out[n, b] = change / (2.0 * h)
            crossed_out[n, b] = 1 if crossed else 0

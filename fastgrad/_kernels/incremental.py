"""The incremental engine's direct path: a perturbation's changes, sample by sample.

A perturbation of ``W_l[i, j]`` (or ``b_l[j]``) changes the pre-activation
of unit ``j`` of layer ``l`` by ``+-t_n`` (``t_n = h * a_{l-1}[n, i]``, or
``h``), hence a rank-1 change of layer ``l+1``'s pre-activations, and full
(but small) changes of the layers after it. These kernels carry the
*changes* through the network with the cancellation-free formulas of
:mod:`.activations` and :mod:`.losses`, starting from a cached forward pass, and return the
per-sample loss change ``E_n(w + h) - E_n(w - h)`` without ever forming two
totals. They work for any step; :mod:`.series` uses them wherever its
polynomials do not apply.
"""

import math

import numpy as np
from numba import prange

from ._jit import jit
from .activations import N_COEF, activate, layer_change, step_changes, taylor
from .codes import ACT, FAN_OUT, SOFTMAX, U_OFF, W_OFF
from .dense import add_rows_pair, set_scaled
from .forward import forward_layers
from .loss import sample_loss
from .losses import output_change, unit_change

__all__ = ["N_COEF", "base_state", "sample_change_checked", "sample_change_direct", "taylor_coefficients"]


@jit(inline=True)
def taylor_coefficients(code, z, a, out, n, u):
    """Write ``f^(m)(z) / m!`` for m = 1..4 into ``out[m - 1, n, u]`` (``out``: (N_COEF, N, U)).

    ``a`` is ``f(z)``; the coefficients are the activation module's ``taylor``.
    """
    c1, c2, c3, c4 = taylor(code, z, a)
    out[0, n, u] = c1
    out[1, n, u] = c2
    out[2, n, u] = c3
    out[3, n, u] = c4


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
def _suffix_change(theta, layout, loss_code, base, n, l, dz_p, dz_m, da_p, da_m):
    """Unscaled ``E_n(+) - E_n(-)`` of sample ``n`` from layer ``l``'s changes, and a kink flag.

    ``dz_p``/``dz_m`` hold the pre-activation changes of layer ``l`` under the
    + and - perturbation; the layers after it are recomputed as changes,
    ``dz = da_prev @ W`` (bias unchanged), with ``da_p``/``da_m`` as scratch.
    All four are rows of at least the widest layer; all are overwritten.
    The flag says whether either perturbation moved a relu/leaky_relu
    pre-activation across its kink.
    """
    Z, C = base.Z, base.C
    last = layout.shape[0] - 1
    crossed = False
    rows = np.empty(dz_p.shape[0], dtype=np.int64)  # the inputs of a layer that add anything
    while l < last:
        count = layout[l, FAN_OUT]
        crossed |= layer_change(layout[l, ACT], Z, C, n, layout[l, U_OFF], count, dz_p, da_p)
        crossed |= layer_change(layout[l, ACT], Z, C, n, layout[l, U_OFF], count, dz_m, da_m)
        l += 1
        fan_out = layout[l, FAN_OUT]
        w_off = layout[l, W_OFF]
        for k in range(fan_out):
            dz_p[k] = 0.0
            dz_m[k] = 0.0
        used = 0  # inputs whose two changes are both 0 add nothing: left out; the others in order, 8 a pass
        for i in range(count):
            if not (da_p[i] == 0.0 and da_m[i] == 0.0):
                rows[used] = i
                used += 1
        add_rows_pair(dz_p, dz_m, da_p, da_m, rows, used, theta, w_off, fan_out)
    change, crossed_out = output_change(loss_code, base, n, layout[last, U_OFF], layout[last, FAN_OUT],
                                        layout[last, ACT], dz_p, dz_m, da_p, da_m)
    return change, crossed or crossed_out


@jit()
def sample_change_direct(theta, layout, loss_code, base, n, l, j, t, dz_p, dz_m, da_p, da_m):
    """Unscaled ``E_n(+) - E_n(-)`` when unit ``j`` of layer ``l`` moves by ``+-t`` in sample ``n``.

    The direct path, for any step: the unit's activation changes
    ``f(z +- t) - f(z)`` (:func:`.activations.step_changes`), then a rank-1 change of
    the next layer and full changes of the layers after it. ``dz_p``,
    ``dz_m``, ``da_p``, ``da_m`` are scratch rows of at least the widest layer.
    Returns ``(change, crossed)``: ``crossed`` when the + or - step moved
    any relu/leaky_relu pre-activation (the unit's own or a later one)
    across its kink.
    """
    Z, C = base.Z, base.C
    last = layout.shape[0] - 1
    if l == last:
        off, K, act = layout[l, U_OFF], layout[l, FAN_OUT], layout[l, ACT]
        return unit_change(loss_code, base, n, off, K, j, t, act)
    u = layout[l, U_OFF] + j
    gp, gm, crossed = step_changes(layout[l, ACT], Z[n, u], t, C[0, n, u], C[1, n, u], C[2, n, u], C[3, n, u])
    if gp == 0.0 and gm == 0.0:
        return 0.0, crossed
    m = l + 1
    fan_out = layout[m, FAN_OUT]
    row = layout[m, W_OFF] + j * fan_out
    set_scaled(dz_p, gp, theta[row:row + fan_out])
    set_scaled(dz_m, gm, theta[row:row + fan_out])
    change, crossed_later = _suffix_change(theta, layout, loss_code, base, n, m, dz_p, dz_m, da_p, da_m)
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
def sample_change_checked(theta, layout, loss_code, base, n, l, j, t, dz_p, dz_m, da_p, da_m):
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
    change, crossed = sample_change_direct(theta, layout, loss_code, base, n, l, j, t,
                                           dz_p, dz_m, da_p, da_m)
    if math.isfinite(change):
        return change, crossed, 0.0, True
    zw = np.empty((1, base.Z.shape[1]), dtype=np.float64)
    aw = np.empty((1, base.Z.shape[1]), dtype=np.float64)
    e_plus = sample_loss_shifted(theta, layout, loss_code, base.Z, base.A, base.Y, n, l, j, t, zw, aw)
    e_minus = sample_loss_shifted(theta, layout, loss_code, base.Z, base.A, base.Y, n, l, j, -t, zw, aw)
    if math.isfinite(e_plus) and math.isfinite(e_minus):
        return e_plus - e_minus, crossed, abs(e_plus) + abs(e_minus), True
    return math.nan, crossed, 0.0, False

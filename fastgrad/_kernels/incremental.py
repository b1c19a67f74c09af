"""Per-parameter central differences that recompute only what changes.

A perturbation of ``W_l[i, j]`` (or ``b_l[j]``) changes the pre-activation
of unit ``j`` of layer ``l`` by ``+-t_n`` (``t_n = h * a_{l-1}[n, i]``, or
``h``), hence a rank-1 change of layer ``l+1``'s pre-activations, and full
(but small) changes of the layers after it. The kernel carries these
*changes* through the network with the cancellation-free formulas of
:mod:`.deltas`, starting from a cached forward pass, and sums the per-sample
loss changes ``E_n(w + h) - E_n(w - h)`` without ever forming two totals.
"""

import math

import numpy as np
from numba import prange

from ._jit import jit
from .codes import (
    ACT,
    B_OFF,
    CROSS_ENTROPY,
    FAN_IN,
    FAN_OUT,
    IDENTITY,
    SIGMOID,
    SOFTPLUS,
    TANH,
    U_OFF,
    W_OFF,
)
from .deltas import (
    N_COEF,
    SERIES_MAX,
    act_delta,
    expm1_small,
    log1p_small,
    log_softmax_shift,
    squared_delta,
    taylor_coefficients,
)
from .loss import loss_scale


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


#: Degree of the output-layer loss polynomials (squared error: 2 x 4).
POLY_DEGREE = 8


@jit()
def output_poly_supported(layout, loss_code):
    """Whether the last hidden layer's loss changes are polynomials (see below)."""
    if layout.shape[0] < 2:
        return False
    code = layout[layout.shape[0] - 1, ACT]
    if loss_code == CROSS_ENTROPY:
        return True
    return code == SIGMOID or code == TANH or code == SOFTPLUS or code == IDENTITY


@jit(parallel=True)
def output_polynomials(theta, layout, loss_code, A, C, R, Y, poly_out, w_absmax_out):
    """Per (hidden unit j, sample n): the loss change as a polynomial of ``g``.

    When unit ``j`` of the last hidden layer changes by ``g``, the output
    pre-activations change by ``g * W_L[j, :]`` and, while every
    ``|g * W_L[j, k]| <= SERIES_MAX``, output ``k`` changes by
    ``x_k(g) = sum_{m=1..4} c_m (g w_k)^m`` (the activation's Taylor
    polynomial, see :mod:`.deltas`). The sample's loss change is then a
    polynomial in ``g`` whose coefficients are sums over the K outputs,
    computed here once instead of once per parameter:

    * squared error: ``sum_k (x_k^2 - 2 r_k x_k)``, degree 8, in
      ``poly_out[j, 0..7, n]`` (coefficient of ``g^(d+1)`` at ``d``);
    * softmax + cross-entropy: ``S(g) = sum_k p_k expm1(g w_k)`` to degree 4
      in ``poly_out[j, 0..3, n]`` and ``sum_k y_k w_k`` in ``poly_out[j, 4, n]``;
      the change is ``ysum log1p(S(g)) - g sum_k y_k w_k``.

    Parameters
    ----------
    poly_out : ndarray of float64, shape (H, POLY_DEGREE, N)
        Written; ``H`` is the last hidden layer's width.
    w_absmax_out : ndarray of float64, shape (H,)
        Written: ``max_k |W_L[j, k]|``, for the range test.
    """
    last = layout.shape[0] - 1
    H = layout[last, FAN_IN]
    K = layout[last, FAN_OUT]
    off = layout[last, U_OFF]
    w_off = layout[last, W_OFF]
    code = layout[last, ACT]
    N = A.shape[0]
    for j in prange(H):
        row = w_off + j * K
        big = 0.0
        for k in range(K):
            big = max(big, abs(theta[row + k]))
        w_absmax_out[j] = big
        for n in range(N):
            for d in range(POLY_DEGREE):
                poly_out[j, d, n] = 0.0
            for k in range(K):
                w = theta[row + k]
                if loss_code == CROSS_ENTROPY:
                    pk = A[n, off + k]
                    poly_out[j, 0, n] += pk * w
                    poly_out[j, 1, n] += pk * (w * w / 2.0)
                    poly_out[j, 2, n] += pk * (w * w * w / 6.0)
                    poly_out[j, 3, n] += pk * (w * w * w * w / 24.0)
                    poly_out[j, 4, n] += Y[n, k] * w
                else:
                    v = off + k
                    a1 = C[0, n, v] * w
                    a2 = C[1, n, v] * w * w
                    a3 = C[2, n, v] * w * w * w
                    a4 = C[3, n, v] * w * w * w * w
                    r2 = 2.0 * R[n, k]
                    poly_out[j, 0, n] += -r2 * a1
                    poly_out[j, 1, n] += a1 * a1 - r2 * a2
                    poly_out[j, 2, n] += 2.0 * a1 * a2 - r2 * a3
                    poly_out[j, 3, n] += 2.0 * a1 * a3 + a2 * a2 - r2 * a4
                    poly_out[j, 4, n] += 2.0 * a1 * a4 + 2.0 * a2 * a3
                    poly_out[j, 5, n] += 2.0 * a2 * a4 + a3 * a3
                    poly_out[j, 6, n] += 2.0 * a3 * a4
                    poly_out[j, 7, n] += a4 * a4


@jit()
def _layer_delta(code, Z, C, n, u_off, count, dz, da):
    """``da[k] = f(z + dz[k]) - f(z)`` for the units ``u_off..u_off+count``.

    When every change is in the Taylor range of a smooth activation, one
    branch-free (vectorisable) loop evaluates the polynomials.
    """
    if code == IDENTITY:
        for k in range(count):
            da[k] = dz[k]
        return
    if code == SIGMOID or code == TANH or code == SOFTPLUS:
        big = 0.0
        for k in range(count):
            big = max(big, abs(dz[k]))
        if big <= SERIES_MAX:
            for k in range(count):
                u = u_off + k
                d = dz[k]
                da[k] = d * (C[0, n, u] + d * (C[1, n, u] + d * (C[2, n, u] + d * C[3, n, u])))
            return
    for k in range(count):
        u = u_off + k
        da[k] = act_delta(code, Z[n, u], dz[k], C[0, n, u], C[1, n, u], C[2, n, u], C[3, n, u])


@jit()
def _suffix_change(theta, layout, loss_code, Z, A, C, R, Y, ysum, n, l, dz_p, dz_m, da_p, da_m):
    """Unscaled ``E_n(+) - E_n(-)`` of sample ``n`` from layer ``l``'s changes.

    ``dz_p``/``dz_m`` hold the pre-activation changes of layer ``l`` under the
    + and - perturbation; the layers after it are recomputed as changes,
    ``dz = da_prev @ W`` (bias unchanged), with ``da_p``/``da_m`` as scratch.
    All four are rows of at least the widest layer; all are overwritten.
    """
    last = layout.shape[0] - 1
    while l < last:
        count = layout[l, FAN_OUT]
        _layer_delta(layout[l, ACT], Z, C, n, layout[l, U_OFF], count, dz_p, da_p)
        _layer_delta(layout[l, ACT], Z, C, n, layout[l, U_OFF], count, dz_m, da_m)
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
            row = w_off + i * fan_out
            for k in range(fan_out):
                w = theta[row + k]
                dz_p[k] += gp * w
                dz_m[k] += gm * w
    return _loss_change(layout, loss_code, Z, A, C, R, Y, ysum, n, dz_p, dz_m, da_p, da_m)


@jit()
def _loss_change(layout, loss_code, Z, A, C, R, Y, ysum, n, dz_p, dz_m, x_p, x_m):
    """Unscaled ``E_n(+) - E_n(-)`` from the output pre-activation changes.

    ``x_p``/``x_m`` are scratch for the output activation changes.
    """
    last = layout.shape[0] - 1
    off = layout[last, U_OFF]
    K = layout[last, FAN_OUT]
    if loss_code == CROSS_ENTROPY:
        shift = log_softmax_shift(A[n], dz_p, off, K) - log_softmax_shift(A[n], dz_m, off, K)
        lin = 0.0
        for k in range(K):
            lin += Y[n, k] * (dz_p[k] - dz_m[k])
        return ysum[n] * shift - lin
    _layer_delta(layout[last, ACT], Z, C, n, off, K, dz_p, x_p)
    _layer_delta(layout[last, ACT], Z, C, n, off, K, dz_m, x_m)
    total = 0.0
    for k in range(K):
        total += squared_delta(x_p[k], x_m[k], R[n, k])
    return total


@jit()
def locate_param(layout, p):
    """``(layer, unit j, input i)`` of flat index ``p``; ``i = -1`` for a bias."""
    for l in range(layout.shape[0]):
        b_off = layout[l, B_OFF]
        fan_out = layout[l, FAN_OUT]
        if p < b_off:
            local = p - layout[l, W_OFF]
            return l, local % fan_out, local // fan_out
        if p < b_off + fan_out:
            return l, p - b_off, -1
    return -1, -1, -1


@jit(inline=True)
def _unit_changes(code, Z, C, CT, u, t, g_p, g_m):
    """``g_p[n], g_m[n] = f(z_nu +- t[n]) - f(z_nu)`` for every sample.

    ``CT`` is ``C`` transposed to (N_COEF, U, N), so that the Taylor path
    is a contiguous, branch-free loop over samples.
    """
    N = t.shape[0]
    t_max = 0.0
    for n in range(N):
        t_max = max(t_max, abs(t[n]))
    if (code == SIGMOID or code == TANH or code == SOFTPLUS) and t_max <= SERIES_MAX:
        for n in range(N):
            d = t[n]
            c1 = CT[0, u, n]
            c2 = CT[1, u, n]
            c3 = CT[2, u, n]
            c4 = CT[3, u, n]
            odd = d * (c1 + d * d * c3)
            even = d * d * (c2 + d * d * c4)
            g_p[n] = odd + even
            g_m[n] = even - odd
        return
    for n in range(N):
        g_p[n] = act_delta(code, Z[n, u], t[n], C[0, n, u], C[1, n, u], C[2, n, u], C[3, n, u])
        g_m[n] = act_delta(code, Z[n, u], -t[n], C[0, n, u], C[1, n, u], C[2, n, u], C[3, n, u])


@jit()
def _poly_change_one(poly, j, n, loss_code, ysum_n, gp, gm):
    """Unscaled loss change of sample ``n`` from last-hidden unit ``j``'s ``g+-``."""
    if loss_code == CROSS_ENTROPY:
        c1 = poly[j, 0, n]
        c2 = poly[j, 1, n]
        c3 = poly[j, 2, n]
        c4 = poly[j, 3, n]
        s_p = gp * (c1 + gp * (c2 + gp * (c3 + gp * c4)))
        s_m = gm * (c1 + gm * (c2 + gm * (c3 + gm * c4)))
        return ysum_n * (log1p_small(s_p) - log1p_small(s_m)) - (gp - gm) * poly[j, 4, n]
    e_p = 0.0
    e_m = 0.0
    for d in range(POLY_DEGREE - 1, -1, -1):
        e_p = (e_p + poly[j, d, n]) * gp
        e_m = (e_m + poly[j, d, n]) * gm
    return e_p - e_m


@jit(inline=True)
def _poly_changes(poly, j, loss_code, ysum, g_p, g_m):
    """Overwrite ``g_p[n]`` with sample n's unscaled loss change, every sample.

    Branch-free over samples (vectorisable); the caller has checked that
    every change is in the polynomials' range, where ``|S| <= SERIES_MAX``
    and ``log1p`` is its Taylor polynomial.
    """
    N = g_p.shape[0]
    if loss_code == CROSS_ENTROPY:
        for n in range(N):
            gp = g_p[n]
            gm = g_m[n]
            c1 = poly[j, 0, n]
            c2 = poly[j, 1, n]
            c3 = poly[j, 2, n]
            c4 = poly[j, 3, n]
            s_p = gp * (c1 + gp * (c2 + gp * (c3 + gp * c4)))
            s_m = gm * (c1 + gm * (c2 + gm * (c3 + gm * c4)))
            l_p = s_p * (1.0 + s_p * (-0.5 + s_p * (1.0 / 3.0 + s_p * (-0.25))))
            l_m = s_m * (1.0 + s_m * (-0.5 + s_m * (1.0 / 3.0 + s_m * (-0.25))))
            g_p[n] = ysum[n] * (l_p - l_m) - (gp - gm) * poly[j, 4, n]
        return
    for n in range(N):
        gp = g_p[n]
        gm = g_m[n]
        e_p = gp * (poly[j, 0, n] + gp * (poly[j, 1, n] + gp * (poly[j, 2, n] + gp * (poly[j, 3, n]
              + gp * (poly[j, 4, n] + gp * (poly[j, 5, n] + gp * (poly[j, 6, n] + gp * poly[j, 7, n])))))))
        e_m = gm * (poly[j, 0, n] + gm * (poly[j, 1, n] + gm * (poly[j, 2, n] + gm * (poly[j, 3, n]
              + gm * (poly[j, 4, n] + gm * (poly[j, 5, n] + gm * (poly[j, 6, n] + gm * poly[j, 7, n])))))))
        g_p[n] = e_p - e_m


@jit()
def unit_lookahead(theta, layout, Z, C, l, j, V_out, g_lim_out):
    """Coefficients of the change that unit ``j`` of layer ``l`` makes two layers on.

    When the unit's activation changes by ``g`` in sample ``n``, layer
    ``l+1``'s pre-activations change by ``g * W_{l+1}[j, :]``, its
    activations by ``sum_m c_m (g W_{l+1}[j, k])^m`` (Taylor polynomial, or
    the exact linear piece of relu/leaky_relu/identity), and layer ``l+2``'s
    pre-activations by ``sum_{m=1..4} g^m V[m-1, n, :]`` with

        V[m-1, n, :] = sum_k c_m[n, k] W_{l+1}[j, k]^m W_{l+2}[k, :].

    This holds, to the Taylor remainder (< 2e-17 relative), while
    ``|g| <= g_lim[n]``: every ``|g W_{l+1}[j, k]|`` within ``SERIES_MAX`` for
    smooth activations, or too small to reach a kink of relu/leaky_relu.

    Parameters
    ----------
    l, j : int
        The unit; ``l + 2`` must be a layer.
    V_out : ndarray of float64, shape (N_COEF, N, width)
        Written at ``[:, :, :fan_out(l+2)]``.
    g_lim_out : ndarray of float64, shape (N,)
        Written: the largest ``|g|`` for which ``V`` applies, per sample.
    """
    m1 = l + 1
    m2 = l + 2
    H1 = layout[m1, FAN_OUT]
    H2 = layout[m2, FAN_OUT]
    u1 = layout[m1, U_OFF]
    row1 = layout[m1, W_OFF] + j * H1
    w2 = layout[m2, W_OFF]
    code = layout[m1, ACT]
    smooth = code == SIGMOID or code == TANH or code == SOFTPLUS
    degree = N_COEF if smooth else 1
    w_big = 0.0
    for k in range(H1):
        w_big = max(w_big, abs(theta[row1 + k]))
    N = Z.shape[0]
    for n in range(N):
        if code == IDENTITY or w_big == 0.0:
            g_lim_out[n] = np.inf
        elif smooth:
            g_lim_out[n] = SERIES_MAX / w_big
        else:
            # relu/leaky_relu: no pre-activation may reach its kink; half way
            # to the nearest one leaves room for rounding in z + dz
            lim = np.inf
            for k in range(H1):
                w = abs(theta[row1 + k])
                if w > 0.0:
                    lim = min(lim, 0.5 * abs(Z[n, u1 + k]) / w)
            g_lim_out[n] = lim
        for m in range(N_COEF):
            for q in range(H2):
                V_out[m, n, q] = 0.0
        for k in range(H1):
            w1 = theta[row1 + k]
            if w1 == 0.0:
                continue
            row2 = w2 + k * H2
            power = 1.0
            for m in range(degree):
                power *= w1
                coef = C[m, n, u1 + k] * power
                if coef == 0.0:
                    continue
                for q in range(H2):
                    V_out[m, n, q] += coef * theta[row2 + q]


@jit(inline=True)
def param_loss_change(
    theta, layout, loss_code, X, Y, Z, A, C, CT, R, ysum, poly, w_absmax, V, g_lim, h, p, t, g_p, g_m, dz_p, dz_m, da_p, da_m
):
    """Unscaled ``sum_n E_n(w_p + h) - E_n(w_p - h)``, samples in order.

    ``t``, ``g_p``, ``g_m`` (N,) and the four width-rows are the calling
    chunk's scratch. The hot paths (output and last hidden layer) are
    written inline: calls that pass arrays cost reference counting per call.
    """
    last = layout.shape[0] - 1
    l, j, i = locate_param(layout, p)
    N = X.shape[0]
    for n in range(N):
        if i < 0:
            t[n] = h
        elif l == 0:
            t[n] = h * X[n, i]
        else:
            t[n] = h * A[n, layout[l - 1, U_OFF] + i]
    u = layout[l, U_OFF] + j
    code = layout[l, ACT]
    total = 0.0
    if l == last:
        # only output unit j moves, by +-t[n]
        if loss_code == CROSS_ENTROPY:
            for n in range(N):
                if t[n] != 0.0:
                    pj = A[n, u]
                    shift = math.log1p(pj * expm1_small(t[n])) - math.log1p(pj * expm1_small(-t[n]))
                    total += ysum[n] * shift - Y[n, j] * (2.0 * t[n])
            return total
        _unit_changes(code, Z, C, CT, u, t, g_p, g_m)
        for n in range(N):
            total += squared_delta(g_p[n], g_m[n], R[n, j])
        return total
    _unit_changes(code, Z, C, CT, u, t, g_p, g_m)
    nxt = l + 1
    fan_out = layout[nxt, FAN_OUT]
    row = layout[nxt, W_OFF] + j * fan_out
    if nxt == last and poly.shape[0] > 0:
        g_max = 0.0
        for n in range(N):
            g_max = max(g_max, abs(g_p[n]), abs(g_m[n]))
        if g_max * w_absmax[j] <= SERIES_MAX:
            _poly_changes(poly, j, loss_code, ysum, g_p, g_m)
            for n in range(N):
                total += g_p[n]
            return total
    for n in range(N):
        gp = g_p[n]
        gm = g_m[n]
        if gp == 0.0 and gm == 0.0:
            continue
        if nxt == last and poly.shape[0] > 0 and max(abs(gp), abs(gm)) * w_absmax[j] <= SERIES_MAX:
            total += _poly_change_one(poly, j, n, loss_code, ysum[n], gp, gm)
        elif nxt < last and max(abs(gp), abs(gm)) <= g_lim[n]:
            # two layers on in one step, from the unit's lookahead coefficients
            for q in range(layout[nxt + 1, FAN_OUT]):
                v1 = V[0, n, q]
                v2 = V[1, n, q]
                v3 = V[2, n, q]
                v4 = V[3, n, q]
                dz_p[q] = gp * (v1 + gp * (v2 + gp * (v3 + gp * v4)))
                dz_m[q] = gm * (v1 + gm * (v2 + gm * (v3 + gm * v4)))
            total += _suffix_change(theta, layout, loss_code, Z, A, C, R, Y, ysum, n, nxt + 1, dz_p, dz_m, da_p, da_m)
        else:
            # general path: rank-1 change of the next layer, then full layers
            for k in range(fan_out):
                w = theta[row + k]
                dz_p[k] = gp * w
                dz_m[k] = gm * w
            total += _suffix_change(theta, layout, loss_code, Z, A, C, R, Y, ysum, n, nxt, dz_p, dz_m, da_p, da_m)
    return total


@jit(parallel=True)
def central_diff_incremental(theta, layout, loss_code, X, Y, Z, A, C, CT, R, ysum, poly, w_absmax, h, order, bounds, out):
    """Central differences of the parameters ``order[bounds[0]:bounds[-1]]``.

    Parameters
    ----------
    theta : ndarray of float64, shape (P,)
    layout : ndarray of int64, shape (L, N_COLS)
    loss_code : int
    X : ndarray of float64, shape (N, D)
    Y : ndarray of float64, shape (N, K)
    Z, A : ndarray of float64, shape (N, U)
        Cached forward pass at ``theta``.
    C, R, ysum
        From :func:`base_state`.
    CT : ndarray of float64, shape (N_COEF, U, N)
        ``C`` transposed (contiguous over samples).
    poly, w_absmax
        From :func:`output_polynomials`, or empty arrays (shape (0, 8, N)
        and (0,)) where it does not apply.
    h : float
        Step, > 0.
    order : ndarray of int64
        Flat parameter indices.
    bounds : ndarray of int64, shape (n_chunks + 1,)
        Chunk ``c`` handles ``order[bounds[c]:bounds[c + 1]]``.
    out : ndarray of float64, shape (P,)
        Written at ``out[order[b]]`` for every handled ``b``.

    Notes
    -----
    Inputs are read only; each chunk has private scratch of
    O(N_COEF * N * width) and writes only its own parameters' slots. With
    ``order`` unit-major (all parameters of one unit together) a chunk
    computes each unit's lookahead (:func:`unit_lookahead`) once. Every derivative is a serial
    sum over samples in order, so results are bitwise the same for any
    thread count and any chunking. Scale: ``(E+ - E-) / (2 h)``.
    """
    n_chunks = bounds.shape[0] - 1
    width = 0
    for l in range(layout.shape[0]):
        width = max(width, layout[l, FAN_OUT])
    scale = loss_scale(loss_code, X.shape[0]) / (2.0 * h)
    for c in prange(n_chunks):
        t = np.empty(X.shape[0], dtype=np.float64)
        g_p = np.empty(X.shape[0], dtype=np.float64)
        g_m = np.empty(X.shape[0], dtype=np.float64)
        dz_p = np.empty(width, dtype=np.float64)
        dz_m = np.empty(width, dtype=np.float64)
        da_p = np.empty(width, dtype=np.float64)
        da_m = np.empty(width, dtype=np.float64)
        V = np.zeros((N_COEF, X.shape[0], width), dtype=np.float64)
        g_lim = np.zeros(X.shape[0], dtype=np.float64)
        unit_l = -1
        unit_j = -1
        for b in range(bounds[c], bounds[c + 1]):
            p = order[b]
            l, j, i = locate_param(layout, p)
            if l + 2 < layout.shape[0] and (l != unit_l or j != unit_j):
                unit_lookahead(theta, layout, Z, C, l, j, V, g_lim)
                unit_l = l
                unit_j = j
            change = param_loss_change(
                theta, layout, loss_code, X, Y, Z, A, C, CT, R, ysum, poly, w_absmax, V, g_lim,
                h, p, t, g_p, g_m, dz_p, dz_m, da_p, da_m,
            )
            out[p] = change * scale

"""The incremental engine's fast path: each unit's loss change as a polynomial.

Perturbing ``W_l[i, j]`` by ``+-h`` changes only the pre-activation of unit
``j`` of layer ``l``, by ``+-t_n`` with ``t_n = h * a_{l-1}[n, i]`` (``h`` for
the bias). So every parameter of one unit shares one function per sample,

    E_n(z_nj + s) - E_n(z_nj) = e1_n s + e2_n s^2 + e3_n s^3 + ...,

and the central difference of ``W_l[i, j]`` is exactly

    (E(w + h) - E(w - h)) / (2 h) = scale * sum_n (e1_n a_ni + e3_n h^2 a_ni^3) + O(h^4 s^4)

(the even terms cancel). :func:`unit_series` computes ``e1`` and ``e3`` for
every unit and sample by carrying the *change* caused by ``s`` through the
layers after the unit as truncated power series in ``s`` (Taylor-mode
propagation: a layer's change is three coefficient vectors, its activation
change the activation's Taylor polynomial composed with them), never
subtracting two values of the loss. :func:`.assemble.assemble_unit_params` then forms
every parameter's central difference from them.

Both steps are exact to rounding where the series apply: while ``|s|`` is
below ``lim_n`` (computed per unit and sample) every pre-activation change
after the unit stays within ``SERIES_MAX`` of a smooth activation's
expansion point (dropped terms below ``1e-16`` of the first) and away from
any relu/leaky_relu kink. A sample outside that range (a large step, a kink
within reach, a non-finite coefficient) is computed by the direct path of
:mod:`.incremental` instead, for that parameter and sample only.
"""


import numpy as np
from numba import prange

from ._jit import jit
from .activations import change_limit, compose, slack
from .codes import (
    ACT,
    FAN_OUT,
    U_OFF,
    W_OFF,
)
from .dense import add_rows_abs, add_rows_series, set_scaled, set_scaled_abs
from .incremental import sample_change_checked
from .losses import abs_term, output_series
from .losses import unit_series as unit_series_out


@jit(inline=True)
def max_width(layout):
    """Units of the widest layer (the size of a scratch row)."""
    width = 0
    for m in range(layout.shape[0]):
        width = max(width, layout[m, FAN_OUT])
    return width


@jit()
def _task_samples(task, parts, n_lo, n_hi):
    """Return the unit index and the sample range ``[lo, hi)`` of ``task``.

    Each unit's samples ``[n_lo, n_hi)`` are split into ``parts``
    consecutive pieces; tasks ``b * parts .. b * parts + parts - 1`` are
    unit ``b``'s.
    """
    b = task // parts
    c = task - b * parts
    span = n_hi - n_lo
    return b, n_lo + (span * c) // parts, n_lo + (span * (c + 1)) // parts


@jit(inline=True)
def _compose_layer(C, Z, n, off, H, act, act_slack, s1, s2, s3, sa, d1, d2, d3, da, lim):
    """The activation changes ``d1..d3`` (:func:`compose`) and ``da`` of units ``off..off+H`` of sample ``n``.

    Returns ``lim`` lowered to every unit's :func:`change_limit` (in unit
    order, as a running minimum). One loop per output row, over contiguous
    slices: each is a simple loop that Numba vectorizes (one loop writing
    four rows is not: too many possible overlaps for LLVM to check), and
    each value is the same expression as in one fused loop, so the same bits.
    """
    c1, c2, c3, z = C[0, n, off:off + H], C[1, n, off:off + H], C[2, n, off:off + H], Z[n, off:off + H]
    for k in range(H):
        lim = min(lim, change_limit(act, z[k], abs(s1[k]) + abs(s2[k]) + abs(s3[k])))
    t1, t2, t3, ta = d1[:H], d2[:H], d3[:H], da[:H]
    for k in range(H):
        t1[k] = compose(c1[k], c2[k], c3[k], s1[k], s2[k], s3[k])[0]
    for k in range(H):
        t2[k] = compose(c1[k], c2[k], c3[k], s1[k], s2[k], s3[k])[1]
    for k in range(H):
        t3[k] = compose(c1[k], c2[k], c3[k], s1[k], s2[k], s3[k])[2]
    for k in range(H):
        ta[k] = (abs(c1[k]) + act_slack) * sa[k]
    return lim


@jit(parallel=True)
def unit_series(theta, layout, loss_code, base, l, units, n_lo, n_hi, parts, E1_out, E3_out, E1abs_out, lim_out):
    """Odd loss-change coefficients of the units ``units`` of layer ``l``, every sample.

    Parameters
    ----------
    theta : ndarray of float64, shape (P,)
    layout : ndarray of int64, shape (L, N_COLS)
    loss_code : int
    base : :class:`fastgrad._kernels.state.BaseState`
        The cached forward pass, Taylor coefficients, residuals, targets.
    l : int
        Layer.
    units : ndarray of int64, shape (B,)
        Units of layer ``l``.
    n_lo, n_hi : int
        Only samples ``n_lo <= n < n_hi`` are computed (and their rows of
        the outputs written): a unit whose series cost much can be done in
        several calls, each short enough for Ctrl-C to land between them.
    parts : int
        Each unit's samples are split into this many pieces, each a task of
        its own (use more than one when there are fewer units than threads).
    E1_out, E3_out : ndarray of float64, shape (N, B)
        Written: ``e1``/``e3`` of unit ``units[b]`` and sample ``n`` at ``[n, b]``
        (unscaled per-sample loss, see the module docstring).
    E1abs_out : ndarray of float64, shape (N, B)
        Written: ``e1`` recomputed with every factor of every term replaced
        by its absolute value, the residual ``y - x`` by ``|y| + |x|`` and a
        smooth activation's derivative ``|f'|`` by ``|f'| + 1``
        (:func:`_slack`): the magnitude that rounding errors of ``e1``, or
        of a backprop that computes it in a lower precision, scale with.
    lim_out : ndarray of float64, shape (N, B)
        Written: the largest ``|s|`` for which the series apply; ``-1`` where
        they do not (a non-finite coefficient), so that every step goes the
        direct way.

    Notes
    -----
    One thread computes one unit's piece of samples, in order, and every
    sample's coefficients depend on nothing else, so the result does not
    depend on the thread count, on ``parts`` or on the sample ranges. Work per unit and sample: about four times
    a forward pass of the layers after ``l + 1``.
    """
    Z, C = base.Z, base.C
    last = layout.shape[0] - 1
    out_off = layout[last, U_OFF]
    K = layout[last, FAN_OUT]
    width = max_width(layout)
    code = layout[l, ACT]
    for task in prange(units.shape[0] * parts):
        b, lo, hi = _task_samples(task, parts, n_lo, n_hi)
        j = units[b]
        u = layout[l, U_OFF] + j
        s1 = np.empty(width, dtype=np.float64)
        s2 = np.empty(width, dtype=np.float64)
        s3 = np.empty(width, dtype=np.float64)
        sa = np.empty(width, dtype=np.float64)
        d1 = np.empty(width, dtype=np.float64)
        d2 = np.empty(width, dtype=np.float64)
        d3 = np.empty(width, dtype=np.float64)
        da = np.empty(width, dtype=np.float64)
        rows = np.empty(width, dtype=np.int64)  # the inputs of a layer that add anything
        for n in range(lo, hi):
            lim = min(1.0, change_limit(code, Z[n, u], 1.0))
            if l == last:
                e1, e3, e1_abs, lim_out_n = unit_series_out(loss_code, base, n, out_off, K, j, code,
                                                            s1, s2, s3, sa)
            else:
                # the unit's own activation change, then layer l+1's rank-1 change
                g1 = C[0, n, u]
                g2 = C[1, n, u]
                g3 = C[2, n, u]
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
                    lim = _compose_layer(C, Z, n, layout[m, U_OFF], H, act, act_slack, s1, s2, s3, sa,
                                         d1, d2, d3, da, lim)
                    m += 1
                    H_next = layout[m, FAN_OUT]
                    w_off = layout[m, W_OFF]
                    for q in range(H_next):
                        s1[q] = 0.0
                        s2[q] = 0.0
                        s3[q] = 0.0
                        sa[q] = 0.0
                    # inputs whose d2, d3 and absolute twin are all 0 (a dead relu) add nothing: left out, as
                    # they always were; the others are added in order, 8 rows a pass (bitwise as one by one)
                    count = 0
                    for k in range(H):
                        if not (da[k] == 0.0 and d2[k] == 0.0 and d3[k] == 0.0):
                            rows[count] = k
                            count += 1
                    add_rows_series(s1, s2, s3, sa, d1, d2, d3, da, rows, count, theta, w_off, H_next)
                    H = H_next
                e1, e3, e1_abs, lim_out_n = output_series(loss_code, base, n, out_off, K,
                                                          layout[last, ACT], s1, s2, s3, sa)
            lim = min(lim, lim_out_n)
            if not (np.isfinite(e1) and np.isfinite(e3)):
                lim = -1.0
            E1_out[n, b] = e1
            E3_out[n, b] = e3
            E1abs_out[n, b] = e1_abs
            lim_out[n, b] = lim


@jit(parallel=True)
def unit_abs_series(theta, layout, loss_code, base, l, units, n_lo, n_hi, parts, E1abs_out):
    """Only the absolute-value chain of :func:`unit_series` (``E1abs_out``), for ``engine="unit"``.

    One stream instead of four: the unit engine takes its derivatives from
    :func:`unit_deltas` and needs the series only for the rounding budget.
    ``n_lo``, ``n_hi``, ``parts``: as in :func:`unit_series`.
    """
    C = base.C
    last = layout.shape[0] - 1
    width = max_width(layout)
    code = layout[l, ACT]
    for task in prange(units.shape[0] * parts):
        sa = np.empty(width, dtype=np.float64)  # the chain's row, and its activations' row
        da = np.empty(width, dtype=np.float64)
        rows = np.empty(width, dtype=np.int64)  # the inputs of a layer that add anything
        b, lo, hi = _task_samples(task, parts, n_lo, n_hi)
        j = units[b]
        u = layout[l, U_OFF] + j
        for n in range(lo, hi):
            g = abs(C[0, n, u]) + slack(code)
            if l == last:
                E1abs_out[n, b] = abs_term(loss_code, base, n, layout[l, U_OFF], j, code)
                continue
            m = l + 1
            H = layout[m, FAN_OUT]
            set_scaled_abs(sa, g, theta[layout[m, W_OFF] + j * H:layout[m, W_OFF] + (j + 1) * H])
            while m < last:
                act = layout[m, ACT]
                act_slack = slack(act)
                c1 = C[0, n, layout[m, U_OFF]:layout[m, U_OFF] + H]  # (a slice: a loop Numba vectorizes)
                for k in range(H):
                    da[k] = (abs(c1[k]) + act_slack) * sa[k]
                m += 1
                H_next = layout[m, FAN_OUT]
                w_off = layout[m, W_OFF]
                for q in range(H_next):
                    sa[q] = 0.0
                count = 0
                for k in range(H):
                    if not da[k] == 0.0:  # (as ever, a zero input is left out; NaN is not)
                        rows[count] = k
                        count += 1
                add_rows_abs(sa, da, rows, count, theta, w_off, H_next)
                H = H_next
            total = 0.0
            for k in range(layout[last, FAN_OUT]):
                total += abs_term(loss_code, base, n, layout[last, U_OFF], k, layout[last, ACT]) * sa[k]
            E1abs_out[n, b] = total


@jit(parallel=True)
def unit_deltas(theta, layout, loss_code, base, l, units, n_lo, n_hi, parts, h, D_out, crossed_out):
    """Numerical derivatives of every sample's loss with respect to each unit's pre-activation.

    ``D_out[n, b] = (E_n(z + h) - E_n(z - h)) / 2h`` for unit ``units[b]``
    of layer ``l``, by the direct path (:func:`.incremental.sample_change_checked`:
    cancellation-free, two evaluations of the sample's suffix; NaN where the
    sample's loss at ``z +- h`` is not finite);
    ``crossed_out[n, b]`` is 1 where a step crossed a relu/leaky_relu kink.
    One thread per unit and piece of samples (``n_lo``, ``n_hi``, ``parts``:
    as in :func:`unit_series`), in order: independent of the thread count.
    """
    width = max_width(layout)
    for task in prange(units.shape[0] * parts):
        b, lo, hi = _task_samples(task, parts, n_lo, n_hi)
        j = units[b]
        scratch = np.empty((4, width), dtype=np.float64)
        for n in range(lo, hi):
            change, crossed, _, _ = sample_change_checked(
                theta, layout, loss_code, base, n, l, j, h, scratch[0], scratch[1], scratch[2],
                scratch[3],
            )  # NaN where the loss at z +- h is not finite
            D_out[n, b] = change / (2.0 * h)
            crossed_out[n, b] = 1 if crossed else 0

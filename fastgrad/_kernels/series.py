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
subtracting two values of the loss. :func:`assemble_unit_params` then forms
every parameter's central difference from them.

Both steps are exact to rounding where the series apply: while ``|s|`` is
below ``lim_n`` (computed per unit and sample) every pre-activation change
after the unit stays within ``SERIES_MAX`` of a smooth activation's
expansion point (dropped terms below ``1e-16`` of the first) and away from
any relu/leaky_relu kink. A sample outside that range (a large step, a kink
within reach, a non-finite coefficient) is computed by the direct path of
:mod:`.incremental` instead, for that parameter and sample only.
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
    LEAKY_RELU,
    RELU,
    U_OFF,
    W_OFF,
)
from .deltas import SERIES_MAX
from .incremental import sample_change_checked
from .loss import loss_scale
from .steps import step_size


@jit()
def max_width(layout):
    """Units of the widest layer (the size of a scratch row)."""
    width = 0
    for m in range(layout.shape[0]):
        width = max(width, layout[m, FAN_OUT])
    return width


@jit(inline=True)
def _change_limit(code, z, bound):
    """Largest ``|s|`` keeping a change ``|dz| <= |s| * bound`` in the series' range.

    Smooth activations: ``SERIES_MAX``; relu/leaky_relu: half the distance
    to the kink (none when ``z`` is on it); identity: no limit.
    """
    if bound == 0.0 or code == IDENTITY:
        return np.inf
    if code == RELU or code == LEAKY_RELU:
        return 0.5 * abs(z) / bound
    return SERIES_MAX / bound


@jit(inline=True)
def _slack(code):
    """Absolute error, in units of roundoff, of a derivative a backprop computes for ``code``.

    Smooth activations' derivatives are usually formed from the activation
    (``s (1 - s)``, ``1 - t^2``), which loses relative accuracy in
    saturation: their absolute error is about one roundoff. Piecewise linear
    ones are exact.
    """
    if code == RELU or code == LEAKY_RELU or code == IDENTITY:
        return 0.0
    return 1.0


@jit(inline=True)
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
def _compose(c1, c2, c3, u1, u2, u3):
    """Coefficients of ``f(z + u(s)) - f(z)`` to ``s^3``, ``u(s) = u1 s + u2 s^2 + u3 s^3``.

    ``c1..c3`` are ``f``'s Taylor coefficients at ``z``.
    """
    r1 = c1 * u1
    r2 = c1 * u2 + c2 * u1 * u1
    r3 = c1 * u3 + 2.0 * c2 * u1 * u2 + c3 * u1 * u1 * u1
    return r1, r2, r3


@jit(inline=True)
def _output_series(layout, loss_code, Z, A, C, R, Y, ysum, n, s1, s2, s3, s_abs):
    """Loss series ``(e1, e3, e1_abs, lim)`` of sample ``n`` from the output pre-activation series.

    ``s1..s3`` hold the output pre-activation changes' coefficients, and
    ``s_abs`` the same first-order chain with every factor replaced by its
    absolute value; ``e1_abs`` continues that chain through the loss with
    the residual's terms' magnitudes ``|y| + |x|`` (see :func:`unit_series`).
    """
    last = layout.shape[0] - 1
    off = layout[last, U_OFF]
    K = layout[last, FAN_OUT]
    lim = np.inf
    if loss_code == CROSS_ENTROPY:
        # ysum * log1p(S) - sum_k y_k dz_k,  S = sum_k p_k expm1(dz_k)
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
            e1_abs += (ysum[n] * p + abs(Y[n, k])) * s_abs[k]
        if big > 0.0:
            lim = 0.5 * SERIES_MAX / big  # |expm1(dz)| and |S| stay within SERIES_MAX
        e1 = ysum[n] * S1 - lin1
        e3 = ysum[n] * (S3 - S1 * S2 + S1 * S1 * S1 / 3.0) - lin3
        return e1, e3, e1_abs, lim
    code = layout[last, ACT]
    e1 = 0.0
    e3 = 0.0
    e1_abs = 0.0
    for k in range(K):
        v = off + k
        lim = min(lim, _change_limit(code, Z[n, v], abs(s1[k]) + abs(s2[k]) + abs(s3[k])))
        x1, x2, x3 = _compose(C[0, n, v], C[1, n, v], C[2, n, v], s1[k], s2[k], s3[k])
        # (r - dx)^2 - r^2 = dx^2 - 2 r dx
        r2 = 2.0 * R[n, k]
        e1 -= r2 * x1
        e3 += 2.0 * x1 * x2 - r2 * x3
        e1_abs += 2.0 * (abs(Y[n, k]) + abs(A[n, v])) * (abs(C[0, n, v]) + _slack(code)) * s_abs[k]
    return e1, e3, e1_abs, lim


@jit(parallel=True)
def unit_series(theta, layout, loss_code, Z, A, C, R, Y, ysum, l, units, n_lo, n_hi, parts, E1_out, E3_out,
                E1abs_out, lim_out):
    """Odd loss-change coefficients of the units ``units`` of layer ``l``, every sample.

    Parameters
    ----------
    theta : ndarray of float64, shape (P,)
    layout : ndarray of int64, shape (L, N_COLS)
    loss_code : int
    Z, A : ndarray of float64, shape (N, U)
        Cached forward pass.
    C, R, ysum
        From :func:`.incremental.base_state`.
    Y : ndarray of float64, shape (N, K)
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
    last = layout.shape[0] - 1
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
        for n in range(lo, hi):
            lim = min(1.0, _change_limit(code, Z[n, u], 1.0))
            if l == last:
                if loss_code == CROSS_ENTROPY:
                    for k in range(layout[l, FAN_OUT]):
                        s1[k] = 0.0
                        s2[k] = 0.0
                        s3[k] = 0.0
                        sa[k] = 0.0
                    s1[j] = 1.0
                    sa[j] = 1.0
                    e1, e3, e1_abs, lim_out_n = _output_series(
                        layout, loss_code, Z, A, C, R, Y, ysum, n, s1, s2, s3, sa
                    )
                else:
                    g1 = C[0, n, u]
                    g2 = C[1, n, u]
                    g3 = C[2, n, u]
                    r2 = 2.0 * R[n, j]
                    e1 = -r2 * g1
                    e3 = 2.0 * g1 * g2 - r2 * g3
                    e1_abs = 2.0 * (abs(Y[n, j]) + abs(A[n, u])) * (abs(g1) + _slack(code))
                    lim_out_n = np.inf
            else:
                # the unit's own activation change, then layer l+1's rank-1 change
                g1 = C[0, n, u]
                g2 = C[1, n, u]
                g3 = C[2, n, u]
                m = l + 1
                H = layout[m, FAN_OUT]
                row = layout[m, W_OFF] + j * H
                for k in range(H):
                    w = theta[row + k]
                    s1[k] = g1 * w
                    s2[k] = g2 * w
                    s3[k] = g3 * w
                    sa[k] = (abs(g1) + _slack(code)) * abs(w)
                while m < last:
                    act = layout[m, ACT]
                    off = layout[m, U_OFF]
                    for k in range(H):
                        v = off + k
                        lim = min(lim, _change_limit(act, Z[n, v], abs(s1[k]) + abs(s2[k]) + abs(s3[k])))
                        d1[k], d2[k], d3[k] = _compose(C[0, n, v], C[1, n, v], C[2, n, v], s1[k], s2[k], s3[k])
                        da[k] = (abs(C[0, n, v]) + _slack(act)) * sa[k]
                    m += 1
                    H_next = layout[m, FAN_OUT]
                    w_off = layout[m, W_OFF]
                    for q in range(H_next):
                        s1[q] = 0.0
                        s2[q] = 0.0
                        s3[q] = 0.0
                        sa[q] = 0.0
                    for k in range(H):
                        a1 = d1[k]
                        a2 = d2[k]
                        a3 = d3[k]
                        aa = da[k]
                        if aa == 0.0 and a2 == 0.0 and a3 == 0.0:
                            continue
                        w = theta[w_off + k * H_next:w_off + (k + 1) * H_next]
                        for q in range(H_next):
                            s1[q] += a1 * w[q]
                            s2[q] += a2 * w[q]
                            s3[q] += a3 * w[q]
                            sa[q] += aa * abs(w[q])
                    H = H_next
                e1, e3, e1_abs, lim_out_n = _output_series(layout, loss_code, Z, A, C, R, Y, ysum, n, s1, s2, s3, sa)
            lim = min(lim, lim_out_n)
            if not (np.isfinite(e1) and np.isfinite(e3)):
                lim = -1.0
            E1_out[n, b] = e1
            E3_out[n, b] = e3
            E1abs_out[n, b] = e1_abs
            lim_out[n, b] = lim


@jit(parallel=True)
def unit_abs_series(theta, layout, loss_code, Z, A, C, Y, ysum, l, units, n_lo, n_hi, parts, E1abs_out):
    """Only the absolute-value chain of :func:`unit_series` (``E1abs_out``), for ``engine="unit"``.

    One stream instead of four: the unit engine takes its derivatives from
    :func:`unit_deltas` and needs the series only for the rounding budget.
    ``n_lo``, ``n_hi``, ``parts``: as in :func:`unit_series`.
    """
    last = layout.shape[0] - 1
    width = max_width(layout)
    code = layout[l, ACT]
    for task in prange(units.shape[0] * parts):
        b, lo, hi = _task_samples(task, parts, n_lo, n_hi)
        j = units[b]
        u = layout[l, U_OFF] + j
        sa = np.empty(width, dtype=np.float64)
        da = np.empty(width, dtype=np.float64)
        for n in range(lo, hi):
            g = abs(C[0, n, u]) + _slack(code)
            if l == last:
                if loss_code == CROSS_ENTROPY:
                    E1abs_out[n, b] = ysum[n] * A[n, u] + abs(Y[n, j])
                else:
                    E1abs_out[n, b] = 2.0 * (abs(Y[n, j]) + abs(A[n, u])) * g
                continue
            m = l + 1
            H = layout[m, FAN_OUT]
            row = layout[m, W_OFF] + j * H
            for k in range(H):
                sa[k] = g * abs(theta[row + k])
            while m < last:
                act = layout[m, ACT]
                off = layout[m, U_OFF]
                for k in range(H):
                    da[k] = (abs(C[0, n, off + k]) + _slack(act)) * sa[k]
                m += 1
                H_next = layout[m, FAN_OUT]
                w_off = layout[m, W_OFF]
                for q in range(H_next):
                    sa[q] = 0.0
                for k in range(H):
                    aa = da[k]
                    if aa == 0.0:
                        continue
                    w = theta[w_off + k * H_next:w_off + (k + 1) * H_next]
                    for q in range(H_next):
                        sa[q] += aa * abs(w[q])
                H = H_next
            off = layout[last, U_OFF]
            total = 0.0
            for k in range(layout[last, FAN_OUT]):
                v = off + k
                if loss_code == CROSS_ENTROPY:
                    total += (ysum[n] * A[n, v] + abs(Y[n, k])) * sa[k]
                else:
                    total += 2.0 * (abs(Y[n, k]) + abs(A[n, v])) * (abs(C[0, n, v]) + _slack(layout[last, ACT])) * sa[k]
            E1abs_out[n, b] = total


#: Difference methods (the same codes as :mod:`.codes`' CENTRAL, RICHARDSON, COMPLEX).
CENTRAL_METHOD = 0
RICHARDSON_METHOD = 1
COMPLEX_METHOD = 2
#: Assembly of per-unit numerical deltas (``engine="unit"``): ``E1`` holds
#: each unit's numerical derivative, ``E3`` its series coefficient for the
#: truncation estimate ``h^2 sum_n a e3``.
UNIT_DELTAS = 3


@jit(parallel=True)
def unit_deltas(theta, layout, loss_code, Z, A, C, R, Y, ysum, l, units, n_lo, n_hi, parts, h, D_out, crossed_out):
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
                theta, layout, loss_code, Z, A, C, R, Y, ysum, n, l, j, h, scratch[0], scratch[1], scratch[2],
                scratch[3],
            )  # NaN where the loss at z +- h is not finite
            D_out[n, b] = change / (2.0 * h)
            crossed_out[n, b] = 1 if crossed else 0


#: Entry status codes written by :func:`assemble_unit_params` (``status_out``).
#: The value is finite and its truncation estimate complete.
STATUS_OK = 0
#: A sample's loss at ``w +- h`` (or ``+- 2h``, which Richardson's value
#: needs) is not finite in float64: no difference of losses exists; the
#: value is NaN.
STATUS_LOSS_NONFINITE = 1
#: The difference quotient itself is outside float64's range (or the sum of
#: the samples' contributions is inf - inf): the value is not finite.
STATUS_VALUE_NONFINITE = 2
#: The value is finite, but a sample's loss at the extra step that only
#: estimates the truncation error (``+- 2h`` central, ``+- 4h`` Richardson)
#: is not: that estimate is missing from the entry's truncation.
STATUS_ESTIMATE_NONFINITE = 3


@jit()
def _direct_value(theta, layout, loss_code, Z, A, C, R, Y, ysum, n, l, j, h, an, method, noise, scratch):
    """One sample's contribution ``(value, truncation, crossed, status)`` by the direct path.

    ``value`` is the unscaled contribution to the derivative: the central
    difference ``D(h) = (E_n(+) - E_n(-)) / 2h``, or Richardson's
    ``R(h) = (4 D(h) - D(2h)) / 3``. ``truncation`` estimates its truncation
    error from the same formula at twice the step: ``|D(h) - D(2h)| / 3``,
    or ``|R(h) - R(2h)| / 15`` (both assume the step is small enough for the
    error's leading power of ``h``), plus the cancellation of any plain
    difference of losses :func:`.incremental.sample_change_checked` fell
    back to. ``status`` is one of the ``STATUS_*`` codes: where a loss the
    value needs is not finite, the value is NaN; where only the estimate's
    is, the estimate is left out.

    Richardson has ``D(h)``, ``D(2h)`` and ``D(4h)``, which also show when
    the step is not small: the differences ``d1 = D(h) - D(2h)`` and
    ``d2 = D(2h) - D(4h)`` have the ratio 4 only where ``h^2`` dominates (a
    saturated unit flipped by a huge step gives ``D ~ 1/h``, ratio 1/2, and
    ``R(h)`` keeps 7/6 of ``D(h)``, all of it error). Fitting ``D(h) = D* +
    c h^p`` to the three gives ``R(h) - D* = d1 (4 d1 - d2) / (3 (d1 -
    d2))``, 0 at ratio 4; it is added (at most ``|R(h)| + |d1|``), unless
    ``4 d1 - d2`` is within ``noise`` (a bound on the rounding of one
    ``D``) of 0.
    """
    d = np.empty(3, dtype=np.float64)
    crossed = False
    count = 3 if method == RICHARDSON_METHOD else 2
    status = STATUS_OK
    rounding = 0.0
    step = h
    for k in range(count):
        t = step * an
        change, crossed_k, magnitude, finite = sample_change_checked(
            theta, layout, loss_code, Z, A, C, R, Y, ysum, n, l, j, t, scratch[0], scratch[1], scratch[2],
            scratch[3]
        )
        d[k] = change / (2.0 * step)
        if k < count - 1:  # the extra step only estimates the error
            crossed = crossed or crossed_k
            if not finite:
                return math.nan, 0.0, crossed, STATUS_LOSS_NONFINITE
            # a plain difference of losses: its cancellation, weighted as in the formula (4/3, 1/3)
            rounding += 8.0 * (layout.shape[0] + 2) * 2.0**-53 * magnitude / (2.0 * step)
        elif not finite:
            status = STATUS_ESTIMATE_NONFINITE
        step *= 2.0
    if method == RICHARDSON_METHOD:
        r1 = (4.0 * d[0] - d[1]) / 3.0
        if status != STATUS_OK:
            return r1, rounding, crossed, status
        r2 = (4.0 * d[1] - d[2]) / 3.0
        trunc = abs(r1 - r2) / 15.0 + rounding
        d1 = d[0] - d[1]
        d2 = d[1] - d[2]
        off = 4.0 * d1 - d2  # 0 where the h^2 term dominates
        if abs(off) > 8.0 * noise:
            cap = abs(r1) + abs(d1)
            if d1 == d2:
                trunc += cap
            else:
                trunc += min(abs(d1 * off / (3.0 * (d1 - d2))), cap)
        return r1, trunc, crossed, status
    if status != STATUS_OK:
        return d[0], rounding, crossed, status
    return d[0], abs(d[0] - d[1]) / 3.0 + rounding, crossed, status


@jit(parallel=True)
def assemble_unit_params(
    theta, layout, loss_code, X, Y, Z, A, C, R, ysum, l, units, E1, E3, E1abs, lim, steps, eps, scaled, method,
    want, budget, rows_lo, rows_hi, out, absum_out, trunc_out, kink_out, status_out,
):
    """Numerical derivatives of ``W_l[:, j]`` and ``b_l[j]`` for every ``j`` in ``units``.

    Parameters
    ----------
    theta, layout, loss_code, X, Y, Z, A, C, R, ysum
        As in :func:`unit_series`.
    l : int
        Layer.
    units : ndarray of int64, shape (B,)
    E1, E3, E1abs, lim : ndarray of float64, shape (N, B)
        From :func:`unit_series`.
    steps : ndarray of float64, shape (P,) or (0,)
        Each parameter's step ``h`` (> 0); empty: computed here from
        ``eps`` and ``scaled`` (:func:`.steps.step_size`, exactly
        representable except for the complex step), which saves a P-sized
        array when nobody reads the steps.
    eps : float
    scaled : bool
        The step rule, when ``steps`` is empty.
    method : int
        ``CENTRAL_METHOD``: ``(E(w + h) - E(w - h)) / 2h``;
        ``RICHARDSON_METHOD``: ``(4 D(h) - D(2h)) / 3`` with ``D`` the
        central difference; ``COMPLEX_METHOD``: ``Im E(w + i h) / h``;
        ``UNIT_DELTAS``: ``sum_n a E1`` (``E1`` the numerical per-unit
        deltas of :func:`unit_deltas`), truncation ``h^2 |sum_n a E3|``.
    want : ndarray of bool, shape (P,) or (0,)
        Only these flat entries are written; empty: every entry.
    budget : bool
        Also write ``absum_out``, ``trunc_out`` and ``kink_out``. Without
        it (a numerical gradient alone) they are not touched (pass empty
        arrays) and ``E1abs`` is not read: a third less work per entry.
    rows_lo, rows_hi : int
        Only rows ``rows_lo <= i < rows_hi`` of ``W_l`` (row ``fan_in``: the
        bias) are assembled, so that a costly block can be split into calls
        short enough for Ctrl-C to land between them.
    out : ndarray of float64, shape (P,)
        Written: the derivative.
    absum_out : ndarray of float64, shape (P,)
        Written: ``scale * sum_n E1abs a``, the size of the terms the
        derivative sums (for rounding budgets).
    trunc_out : ndarray of float64, shape (P,)
        Written: the difference formula's truncation error, estimated:
        ``|scale h^2 sum_n e3 a^3|`` for the central difference and the
        complex step (their ``h^2`` terms), plus the direct path's samples'
        estimates (:func:`_direct_value`); Richardson removes the series'
        ``h^2`` term exactly.
    kink_out : ndarray of int8, shape (P,)
        Written: 1 when a step of this parameter moved a relu/leaky_relu
        pre-activation across its kink in some sample, else 0.
    status_out : ndarray of int8, shape (P,)
        Written with ``budget``: ``STATUS_OK``, or why the value is not
        finite (``STATUS_LOSS_NONFINITE``: the loss at ``w +- h`` is not,
        value NaN; ``STATUS_VALUE_NONFINITE``: the quotient overflows) or
        its truncation estimate incomplete (``STATUS_ESTIMATE_NONFINITE``).
        Without ``budget`` the values are the same (NaN where the loss is
        not finite) and nothing is written here.

    Notes
    -----
    Row ``i`` of ``W_l`` (and the bias, as row ``fan_in``) is handled by one
    thread: ``sum_n e1 a + c h^2 sum_n e3 a^3`` (c = 1 central, 0
    Richardson, -1 complex step), samples in order, when every sample's step
    ``h |a_ni|`` is within the series' range; otherwise the samples are
    summed one by one, each out-of-range one by the direct path. The complex
    step never leaves the series: an imaginary step moves no real part, so
    no kink is crossed; a pre-activation exactly on a kink (range 0) is
    flagged instead. Bitwise the same for any thread count.
    """
    N = X.shape[0]
    B = units.shape[0]
    fan_in = layout[l, FAN_IN]
    fan_out = layout[l, FAN_OUT]
    w_off = layout[l, W_OFF]
    b_off = layout[l, B_OFF]
    prev = layout[l - 1, U_OFF] if l > 0 else 0
    width = max_width(layout)
    scale = loss_scale(loss_code, N)
    every = want.shape[0] == 0
    given_steps = steps.shape[0] > 0
    representable = method != COMPLEX_METHOD
    c3 = 1.0
    if method == RICHARDSON_METHOD or method == UNIT_DELTAS:
        c3 = 0.0
    elif method == COMPLEX_METHOD:
        c3 = -1.0
    lim_min = np.empty(B, dtype=np.float64)
    for b in range(B):
        low = np.inf
        for n in range(N):
            low = min(low, lim[n, b])
        lim_min[b] = low
    for i in prange(rows_lo, rows_hi):
        a = np.empty(N, dtype=np.float64)
        for n in range(N):
            if i == fan_in:
                a[n] = 1.0
            elif l == 0:
                a[n] = X[n, i]
            else:
                a[n] = A[n, prev + i]
        a_max = 0.0
        for n in range(N):
            a_max = max(a_max, abs(a[n]))
        acc1 = np.zeros(B, dtype=np.float64)
        acc3 = np.zeros(B, dtype=np.float64)
        acc_abs = np.zeros(B, dtype=np.float64)
        for n in range(N):
            an = a[n]
            if an == 0.0:
                continue
            an3 = an if method == UNIT_DELTAS else an * an * an
            if budget:
                abs_an = abs(an)
                for b in range(B):
                    acc1[b] += an * E1[n, b]
                    acc3[b] += an3 * E3[n, b]
                    acc_abs[b] += abs_an * E1abs[n, b]
            else:
                for b in range(B):
                    acc1[b] += an * E1[n, b]
                    acc3[b] += an3 * E3[n, b]
        scratch = np.empty((4, 0), dtype=np.float64)  # allocated on first use: most rows never need it
        for b in range(B):
            j = units[b]
            p = b_off + j if i == fan_in else w_off + i * fan_out + j
            if not (every or want[p]):
                continue
            h = steps[p] if given_steps else step_size(theta[p], eps, scaled, representable)
            h2 = h * h
            kink = False
            trunc = 0.0
            status = STATUS_OK
            whole = method == UNIT_DELTAS or h * a_max <= lim_min[b] or (
                method == COMPLEX_METHOD and lim_min[b] > 0.0)
            if whole:
                value = acc1[b] + c3 * h2 * acc3[b]
                trunc = abs(h2 * acc3[b]) if method != RICHARDSON_METHOD else 0.0
                # h^2 a^3 e3 summed before the h^2 can overflow (|a| > 5e102): sample by sample instead
                whole = method == UNIT_DELTAS or (math.isfinite(value) and math.isfinite(trunc))
            if not whole:
                if scratch.shape[1] < width:
                    scratch = np.empty((4, width), dtype=np.float64)
                value = 0.0
                series3 = 0.0
                direct_trunc = 0.0
                for n in range(N):
                    an = a[n]
                    if an == 0.0:
                        continue
                    if abs(h * an) <= lim[n, b] or (method == COMPLEX_METHOD and lim[n, b] > 0.0):
                        term3 = h2 * (an * an * an) * E3[n, b]
                        if not math.isfinite(term3):  # |h a| <= lim <= 1: (h a)^2 (a e3) is in range
                            term3 = ((h * an) * (h * an)) * (an * E3[n, b])
                        value += an * E1[n, b] + c3 * term3
                        series3 += term3
                    elif method == COMPLEX_METHOD:
                        # on a kink (or non-finite coefficients): the piece the real part is on
                        value += an * E1[n, b]
                        kink = kink or lim[n, b] == 0.0
                    else:
                        noise = 4.0 * (layout.shape[0] + 2) * 2.0**-53 * abs(an) * E1abs[n, b] if budget else 0.0
                        v, v_trunc, crossed, v_status = _direct_value(
                            theta, layout, loss_code, Z, A, C, R, Y, ysum, n, l, j, h, an, method, noise, scratch
                        )
                        kink = kink or crossed
                        if v_status == STATUS_LOSS_NONFINITE:
                            status = STATUS_LOSS_NONFINITE
                            break
                        if v_status != STATUS_OK:
                            status = v_status
                        value += v
                        direct_trunc += v_trunc
                trunc = abs(series3) if method != RICHARDSON_METHOD else 0.0
                trunc += abs(direct_trunc)
            if status == STATUS_LOSS_NONFINITE:
                value = math.nan
                trunc = 0.0
            out[p] = scale * value
            if status == STATUS_OK and not math.isfinite(out[p]):
                status = STATUS_VALUE_NONFINITE
            if budget:
                absum_out[p] = scale * acc_abs[b]
                trunc_out[p] = scale * trunc
                kink_out[p] = 1 if kink else 0
                status_out[p] = status

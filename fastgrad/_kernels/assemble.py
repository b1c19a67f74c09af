"""The incremental engine's assembly: every parameter's central difference from its unit's loss series.

:func:`fastgrad._kernels.series.unit_series` gives, for every unit and
sample, the odd coefficients of the loss change; a parameter ``W_l[i, j]``
moves unit ``j`` by ``h a_ni`` in sample ``n``, so its derivative is a
weighted sum over samples of unit ``j``'s coefficients (see that module).
Where every sample's step is within the series' range (nearly always), one
pass over the samples gives every parameter of a row of ``W_l``
(:func:`_assemble_rows`). The rest ("pending" entries: a large step, a kink
within reach, a non-finite coefficient) are summed sample by sample
(:func:`_assemble_pending`, compiled only when a check first needs it),
each out-of-range sample by its unit's fitted sample function
(:mod:`.pending_fit`) where one vouches for it, else by the direct path of
:mod:`.incremental`.
"""

import math
from functools import partial

import numpy as np
from numba import prange

from .._scratch import take
from .._threading import launch
from ._jit import jit
from .codes import B_OFF, COMPLEX, FAN_IN, FAN_OUT, RICHARDSON, U_OFF, UNIT_DELTAS, W_OFF
from .incremental import sample_change_checked
from .loss import loss_scale
from .pending_fit import NO_FIT, fit_pending, fitted
from .row_products import ROW_TILE, finite_unit_tiles, row_products
from .series import max_width
from .steps import step_size

#: Row tiles per task of :func:`_assemble_rows` (a task's scratch rows are allocated once).
CHUNK_TILES = 8
#: Pending entries per call of :func:`_assemble_pending`, so that Ctrl-C lands between calls: an entry's direct
#: path costs ~100 us; FITTED_CALL where its block was fitted (:mod:`.pending_fit`: ~1 us an entry).
PENDING_CALL, FITTED_CALL = 256, 8192


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
def _direct_value(theta, layout, loss_code, base, n, l, j, h, an, method, noise, scratch):
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
    count = 3 if method == RICHARDSON else 2
    status = STATUS_OK
    rounding = 0.0
    step = h
    for k in range(count):
        t = step * an
        change, crossed_k, magnitude, finite = sample_change_checked(
            theta, layout, loss_code, base, n, l, j, t, scratch[0], scratch[1], scratch[2],
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
    return _combine(d, method, status, rounding, crossed, noise)


@jit()
def _combine(d, method, status, rounding, crossed, noise):
    """:func:`_direct_value`'s result from the central differences ``d`` at ``h, 2h (, 4h)`` (error ``rounding``)."""
    if method == RICHARDSON:
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


@jit(inline=True)
def _fitted_value(coef, degree, err, reach, h, an, method, noise, d):
    """One sample's :func:`_direct_value` from its fit (:mod:`.pending_fit`); ``ok`` False: beyond the fit's reach."""
    count = 3 if method == RICHARDSON else 2
    step = h
    for k in range(count):
        r = step * an / reach
        u = r * r
        if not u <= 1.0 + 1e-12:  # (the reach covers every step but for its rounding)
            return 0.0, 0.0, False
        d[k] = an * fitted(coef, degree, min(u, 1.0))
        step *= 2.0
    # each d carries at most |a| err; Richardson's value (4 d0 - d1) / 3 at most 5/3 of that
    value, trunc, _, _ = _combine(d, method, STATUS_OK, 2.0 * abs(an) * err, False, noise)
    return value, trunc, True


@jit(inline=True)
def _row_inputs(X, A, layout, l, i, a):
    """Write row ``i``'s input of every sample into ``a`` (N,): ``X[:, i]``, ``A[:, prev + i]``, or 1 (the bias row)."""
    fan_in = layout[l, FAN_IN]
    prev = layout[l - 1, U_OFF] if l > 0 else 0
    for n in range(a.shape[0]):
        if i == fan_in:
            a[n] = 1.0
        elif l == 0:
            a[n] = X[n, i]
        else:
            a[n] = A[n, prev + i]


@jit(inline=True)
def _param_index(layout, l, i, j):
    """Flat index of ``W_l[i, j]``, or of ``b_l[j]`` for ``i == fan_in``."""
    if i == layout[l, FAN_IN]:
        return layout[l, B_OFF] + j
    return layout[l, W_OFF] + i * layout[l, FAN_OUT] + j


@jit(inline=True)
def _store(p, value, absum, trunc, kink, status, budget, out, absum_out, trunc_out, kink_out, status_out):
    """Write entry ``p``'s (already scaled) results; a value that overflowed gets ``STATUS_VALUE_NONFINITE``."""
    out[p] = value
    if status == STATUS_OK and not math.isfinite(value):
        status = STATUS_VALUE_NONFINITE
    if budget:
        absum_out[p] = absum
        trunc_out[p] = trunc
        kink_out[p] = 1 if kink else 0
        status_out[p] = status


@jit(inline=True)
def _series_weight(method):
    """The weight ``c`` of the series' ``h^2 sum_n e3 a^3`` term in the value: central 1, complex -1, else 0."""
    if method == RICHARDSON or method == UNIT_DELTAS:
        return 0.0
    if method == COMPLEX:
        return -1.0
    return 1.0


@jit(parallel=True)
def _assemble_rows(theta, layout, loss_code, X, A, l, units, E1, E3, E1abs, lim, steps, eps, scaled, method,
                   want, rows_wanted, budget, rows_lo, rows_hi, out, absum_out, trunc_out, kink_out, status_out,
                   pending_out):
    """The entries of rows ``rows_lo..rows_hi-1`` whose every sample is in the series' range, in one pass.

    Arguments as :func:`assemble_unit_params`; ``pending_out`` (rows_hi -
    rows_lo, B) int8 is set to 1 where an entry needs the sample-by-sample
    sum (:func:`_assemble_pending`), and that entry is not written.
    """
    N = X.shape[0]
    B = units.shape[0]
    scale = loss_scale(loss_code, N)
    every = want.shape[0] == 0
    c3 = _series_weight(method)
    lim_min = np.empty(B, dtype=np.float64)
    for b in range(B):
        low = np.inf
        for n in range(N):
            low = min(low, lim[n, b])
        lim_min[b] = low
    rows = _rows_to_assemble(rows_wanted, rows_lo, rows_hi)
    finite = finite_unit_tiles(E1, E3, E1abs, budget)
    # the units one after the other (a whole layer or a block of it): a row's entries are one slice of theta
    run = units[B - 1] - units[0] == B - 1 if B > 0 else False
    n_tiles = (rows.shape[0] + ROW_TILE - 1) // ROW_TILE
    for chunk in prange((n_tiles + CHUNK_TILES - 1) // CHUNK_TILES):
        # the tile's rows' inputs, cubes and sizes, one row per line (rows past ``count``: zeros, never stored)
        a = np.zeros((ROW_TILE, N), dtype=np.float64)
        a3 = np.zeros((ROW_TILE, N), dtype=np.float64)
        a_abs = np.zeros((ROW_TILE, N), dtype=np.float64)
        a_max = np.zeros(ROW_TILE, dtype=np.float64)
        acc1 = np.empty((ROW_TILE, B), dtype=np.float64)
        acc3 = np.empty((ROW_TILE, B), dtype=np.float64)
        acc_abs = np.zeros((ROW_TILE, B), dtype=np.float64)
        value = np.empty(B, dtype=np.float64)
        trunc = np.empty(B, dtype=np.float64)
        whole = np.empty(B, dtype=np.bool_)
        for t in range(chunk * CHUNK_TILES, min(n_tiles, (chunk + 1) * CHUNK_TILES)):
            first = t * ROW_TILE
            count = min(ROW_TILE, rows.shape[0] - first)
            for r in range(ROW_TILE):
                if r < count:
                    _row_inputs(X, A, layout, l, rows[first + r], a[r])
                else:
                    a[r, :] = 0.0
                a_max[r] = 0.0
                for n in range(N):
                    an = a[r, n]
                    a3[r, n] = an if method == UNIT_DELTAS else an * an * an
                    a_abs[r, n] = abs(an)
                    a_max[r] = max(a_max[r], abs(an))
            row_products(a, a, E1, finite, acc1)
            row_products(a3, a, E3, finite, acc3)
            if budget:
                row_products(a_abs, a, E1abs, finite, acc_abs)
            for r in range(count):
                i = rows[first + r]
                base = _param_index(layout, l, i, 0)  # (a row's entries are base + unit)
                _row_values(theta, steps, eps, scaled, method, c3, base, units, run, a_max[r], lim_min,
                            acc1[r], acc3[r], value, trunc, whole)
                for b in range(B):
                    p = base + units[0] + b if run else base + units[b]
                    if not (every or want[p]):
                        continue
                    if not whole[b]:
                        pending_out[i - rows_lo, b] = 1
                        continue
                    _store(p, scale * value[b], scale * acc_abs[r, b], scale * trunc[b], False, STATUS_OK, budget,
                           out, absum_out, trunc_out, kink_out, status_out)


@jit(inline=True)
def _row_values(theta, steps, eps, scaled, method, c3, base, units, run, a_max, lim_min, acc1, acc3,
                value_out, trunc_out, whole_out):
    """One row's unscaled values, truncations and whether each is whole (in the series' range, finite).

    ``value = acc1 + c h^2 acc3`` and ``trunc = |h^2 acc3|`` (0 for
    Richardson) for every unit ``b`` (entry ``base + units[b]``, or
    ``base + units[0] + b`` when the units are a ``run``); an entry is whole
    where every sample's step ``h |a|`` is within the series' range (or the
    method never leaves it) and both are finite (``h^2 a^3 e3`` summed
    before the ``h^2`` can overflow where ``|a| > 5e102``: the
    sample-by-sample sum takes those).
    """
    given_steps = steps.shape[0] > 0
    representable = method != COMPLEX
    start = units[0]
    for b in range(units.shape[0]):
        p = base + start + b if run else base + units[b]
        h = steps[p] if given_steps else step_size(theta[p], eps, scaled, representable)
        h2 = h * h
        v = acc1[b] + c3 * h2 * acc3[b]
        tr = abs(h2 * acc3[b]) if method != RICHARDSON else 0.0
        value_out[b] = v
        trunc_out[b] = tr
        reach = lim_min[b]
        in_range = h * a_max <= reach or (method == COMPLEX and reach > 0.0)
        whole_out[b] = method == UNIT_DELTAS or (in_range and math.isfinite(v) and math.isfinite(tr))


@jit()
def _rows_to_assemble(rows_wanted, rows_lo, rows_hi):
    """The rows ``rows_lo..rows_hi-1``, or only those ``rows_wanted`` marks when it is not empty."""
    if rows_wanted.shape[0] == 0:
        return np.arange(rows_lo, rows_hi)
    count = 0
    for i in range(rows_lo, rows_hi):
        if rows_wanted[i]:
            count += 1
    rows = np.empty(count, dtype=np.int64)
    count = 0
    for i in range(rows_lo, rows_hi):
        if rows_wanted[i]:
            rows[count] = i
            count += 1
    return rows


@jit(parallel=True)
def _assemble_pending(theta, layout, loss_code, X, base, l, units, E1, E3, E1abs, lim, steps, eps,
                      scaled, method, budget, rows, cols, out, absum_out, trunc_out, kink_out, status_out,
                      fit_reach, fit_coef, fit_degree, fit_err):
    """The entries ``(rows[e], units[cols[e]])``, summed sample by sample (arguments as :func:`assemble_unit_params`).

    A sample whose step is within the series' range adds its series terms;
    any other adds its fit's value where :func:`.pending_fit.fit_samples`
    made one (``fit_err >= 0``; the ``fit_*`` arrays may be empty: no fits),
    else the direct path's value (:func:`_direct_value`); the
    complex step never leaves the series (an imaginary step moves no real
    part), and a pre-activation exactly on a kink (range 0) is flagged.
    One thread per entry, samples in order: bitwise the same for any thread
    count and any set of entries.
    """
    N = X.shape[0]
    width = max_width(layout)
    scale = loss_scale(loss_code, N)
    given_steps = steps.shape[0] > 0
    representable = method != COMPLEX
    c3 = _series_weight(method)
    any_fit = fit_err.shape[0] > 0
    for e in prange(rows.shape[0]):
        i = rows[e]
        b = cols[e]
        j = units[b]
        p = _param_index(layout, l, i, j)
        a = np.empty(N, dtype=np.float64)
        _row_inputs(X, base.A, layout, l, i, a)
        scratch = np.empty((4, width), dtype=np.float64)
        d = np.empty(3, dtype=np.float64)
        h = steps[p] if given_steps else step_size(theta[p], eps, scaled, representable)
        h2 = h * h
        kink = False
        status = STATUS_OK
        value = 0.0
        series3 = 0.0
        direct_trunc = 0.0
        acc_abs = 0.0
        for n in range(N):
            an = a[n]
            if an == 0.0:
                continue
            if budget:
                acc_abs += abs(an) * E1abs[n, b]
            if status == STATUS_LOSS_NONFINITE:
                continue  # the value is NaN; the terms' size is still summed
            if abs(h * an) <= lim[n, b] or (method == COMPLEX and lim[n, b] > 0.0):
                term3 = h2 * (an * an * an) * E3[n, b]
                if not math.isfinite(term3):  # |h a| <= lim <= 1: (h a)^2 (a e3) is in range
                    term3 = ((h * an) * (h * an)) * (an * E3[n, b])
                value += an * E1[n, b] + c3 * term3
                series3 += term3
            elif method == COMPLEX:
                # on a kink (or non-finite coefficients): the piece the real part is on
                value += an * E1[n, b]
                kink = kink or lim[n, b] == 0.0
            else:
                noise = 4.0 * (layout.shape[0] + 2) * 2.0**-53 * abs(an) * E1abs[n, b] if budget else 0.0
                if any_fit and fit_err[n, b] >= 0.0:
                    v, v_trunc, ok = _fitted_value(fit_coef[n, b], fit_degree[n, b], fit_err[n, b], fit_reach[n, b],
                                                   h, an, method, noise, d)
                    if ok:
                        value += v
                        direct_trunc += v_trunc
                        continue
                v, v_trunc, crossed, v_status = _direct_value(
                    theta, layout, loss_code, base, n, l, j, h, an, method, noise, scratch
                )
                kink = kink or crossed
                if v_status == STATUS_LOSS_NONFINITE:
                    status = STATUS_LOSS_NONFINITE
                    continue
                if v_status != STATUS_OK:
                    status = v_status
                value += v
                direct_trunc += v_trunc
        trunc = abs(series3) if method != RICHARDSON else 0.0
        trunc += abs(direct_trunc)
        if status == STATUS_LOSS_NONFINITE:
            value = math.nan
            trunc = 0.0
        _store(p, scale * value, scale * acc_abs, scale * trunc, kink, status, budget,
               out, absum_out, trunc_out, kink_out, status_out)


_EVERY_ROW = np.zeros(0, dtype=np.bool_)


def assemble_unit_params(
    theta, layout, loss_code, X, base, l, units, E1, E3, E1abs, lim, steps, eps, scaled, method,
    want, budget, rows_lo, rows_hi, out, absum_out, trunc_out, kink_out, status_out, work=None, rows_wanted=None,
):
    """Numerical derivatives of ``W_l[:, j]`` and ``b_l[j]`` for every ``j`` in ``units``.

    Parameters
    ----------
    theta, layout, loss_code, X
        As in :func:`.series.unit_series`; ``X`` the batch.
    base : :class:`fastgrad._kernels.state.BaseState`
        As in :func:`.series.unit_series`.
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
        ``CENTRAL``: ``(E(w + h) - E(w - h)) / 2h``;
        ``RICHARDSON``: ``(4 D(h) - D(2h)) / 3`` with ``D`` the
        central difference; ``COMPLEX``: ``Im E(w + i h) / h``;
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
    work : float, optional
        The caller's estimate of the rows' work (flops): small work runs
        the serial twin (:meth:`fastgrad._threading.Kernel.launch`); None:
        chosen by the arrays' size.
    rows_wanted : ndarray of bool, shape (fan_in + 1,), optional
        The rows with a wanted entry among ``units`` (None: every row is
        read; ``want`` decides): for sparse samples of huge nets.

    Notes
    -----
    ``sum_n e1 a + c h^2 sum_n e3 a^3`` (c = 1 central, 0 Richardson, -1
    complex step), samples in order, where every sample's step ``h |a_ni|``
    is within the series' range; else sample by sample (the module's text).
    The complex step never leaves the series (an imaginary step moves no
    real part); a pre-activation on a kink (range 0) is flagged instead.
    Bitwise the same for any thread count.
    """
    pending = take("assemble.pending", (rows_hi - rows_lo, units.shape[0]), np.int8)
    pending[...] = 0
    rows_kernel = _assemble_rows if work is None else partial(launch, _assemble_rows, work)
    rows_arg = _EVERY_ROW if rows_wanted is None else rows_wanted
    rows_kernel(theta, layout, loss_code, X, base.A, l, units, E1, E3, E1abs, lim, steps, eps, scaled, method, want,
                rows_arg, budget, rows_lo, rows_hi, out, absum_out, trunc_out, kink_out, status_out, pending)
    if not pending.any():  # (nearly always: np.nonzero of the block costs as much as a small net's assembly)
        return
    rows, cols = np.nonzero(pending)
    rows = (rows + rows_lo).astype(np.int64)
    cols = cols.astype(np.int64)
    fit = fit_pending(theta, layout, loss_code, X, base, l, units, E1, E1abs, lim, steps, eps, scaled, method,
                       rows, cols)
    call = PENDING_CALL if fit is NO_FIT else FITTED_CALL
    for lo in range(0, rows.shape[0], call):
        _assemble_pending(theta, layout, loss_code, X, base, l, units, E1, E3, E1abs, lim, steps,
                          eps, scaled, method, budget, rows[lo:lo + call], cols[lo:lo + call],
                          out, absum_out, trunc_out, kink_out, status_out, *fit)


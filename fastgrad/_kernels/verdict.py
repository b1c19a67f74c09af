"""Per-entry error budgets, the verdict of every entry, and per-tensor summaries, in parallel passes.

:func:`fastgrad.check` judges every entry; on a large net the NumPy version
of these elementwise formulas (a dozen temporaries of P doubles) cost as much
as the numerical gradient itself, on one thread. Each entry is computed on
its own, with the same operations in the same order as the NumPy twins
(:func:`fastgrad.budget.error_budget`, :func:`fastgrad.entries.relative_error`),
so the result is the same bits for any thread count.
"""

import numpy as np
from numba import prange

from ._jit import jit
from .codes import B_OFF, FAN_IN, FAN_OUT, W_OFF


@jit(parallel=True)
def budget_into(absum, trunc, steps, c_own, c_cancel, c_user, tiny, out):
    """``out = trunc + (c_own absum [+ c_cancel / steps]) + c_user absum + tiny``.

    ``c_cancel`` = 0 leaves the cancellation term out (it is not added as 0,
    so that the sum is bitwise NumPy's ``trunc + own + user + tiny``).
    """
    for p in prange(out.shape[0]):
        own = c_own * absum[p]
        if c_cancel != 0.0:
            own = own + c_cancel / steps[p]
        user = c_user * absum[p]
        out[p] = trunc[p] + own + user + tiny


@jit(parallel=True)
def entry_errors(analytic, numerical, budget, checked, rtol, atol, ratio_out, rel_out):
    """Budget ratio ``|a - n| / budget`` and relative error of every entry.

    The relative error is ``|a - n| / max(|a|, |n|, atol / rtol)`` (0 where
    ``a == n``). A non-finite value on either side gives ``inf`` in both;
    an entry that is not ``checked`` gives 0 in both (``checked`` empty:
    every entry is). :class:`fastgrad.CheckResult` computes its ``rel_error``
    and ``budget_ratio`` with it on demand instead of keeping them.
    """
    floor = atol / rtol
    for p in prange(analytic.shape[0]):
        if checked.shape[0] != 0 and not checked[p]:
            ratio_out[p] = 0.0
            rel_out[p] = 0.0
            continue
        a = analytic[p]
        n = numerical[p]
        if not (np.isfinite(a) and np.isfinite(n)):
            ratio_out[p] = np.inf
            rel_out[p] = np.inf
            continue
        diff = abs(a - n)
        ratio_out[p] = diff / budget[p]
        if diff == 0.0:
            rel_out[p] = 0.0
        else:
            rel_out[p] = diff / max(max(abs(a), abs(n)), floor)


#: Entries per piece of :func:`tensor_verdicts` (each tensor is cut into
#: pieces of this size, whatever the thread count: which entry wins a tie
#: does not depend on it).
SUMMARY_PIECE = 4096

# Entry verdicts (``status_out`` of :func:`tensor_verdicts`).
PASSED = 0
FAILED = 1
KINK = 2  # a +-h step crossed a relu/leaky_relu kink
UNRESOLVED = 3  # the budget cannot tell the value from zero (see tensor_verdicts)
NONFINITE = 4  # the numerical value or its budget is not finite (or the budget is not positive)
LARGE_STEP = 5  # the step moves a pre-activation too far for the truncation estimate
UNCHECKED = 6
#: An entry is resolved when ``safety`` budgets are below this fraction of
#: ``max(|a|, |n|)``; so an entry that passes is off by less than half of it
#: (a zero, a sign flip or a factor 2 never passes). At 1 an entry passed
#: with a tolerance of 90 % of its value (a gradient x1.5 with it); at 0.1
#: or 0.25 correct float32 backprops come out inconclusive.
RESOLUTION = 0.5
#: Columns of ``counts_out``: failed, the four inconclusive kinds (column ``status - 1``), checked.
N_COUNTS = 6
#: ``kink`` flags of :func:`tensor_verdicts`: 1 a step crossed a kink, 2 a step is too large.
KINK_FLAG = 1
LARGE_STEP_FLAG = 2


@jit(inline=True)
def _beats(x, best):
    """Whether ``x`` replaces ``best`` in a scan for ``np.max``/``np.argmax``.

    Their order: a NaN beats everything and the first NaN stays; otherwise
    only a strictly larger value wins, so the first of equal maxima stays.
    """
    if best != best:
        return False
    return x != x or x > best


@jit(inline=True)
def _pieces(offsets):
    """Cut every tensor into pieces of ``SUMMARY_PIECE``: each tensor's first piece, and each piece's tensor."""
    T = offsets.shape[0] - 1
    first_piece = np.empty(T + 1, dtype=np.int64)  # tensor t's pieces: first_piece[t]:first_piece[t + 1]
    first_piece[0] = 0
    for t in range(T):
        size = offsets[t + 1] - offsets[t]
        first_piece[t + 1] = first_piece[t] + max(1, (size + SUMMARY_PIECE - 1) // SUMMARY_PIECE)
    piece_tensor = np.empty(first_piece[T], dtype=np.int64)
    for t in range(T):
        for task in range(first_piece[t], first_piece[t + 1]):
            piece_tensor[task] = t
    return first_piece, piece_tensor


@jit()
def tensor_scales(offsets, numerical, kink, checked, scales_out):
    """Largest ``|numerical|`` of each tensor over its judged entries (checked, finite, no kink).

    ``kink`` and ``checked`` may be empty: no kinks, every entry checked.
    The maximum does not depend on the order, so neither on the thread count.
    """
    first_piece, piece_tensor = _pieces(offsets)
    part = np.empty(piece_tensor.shape[0])
    _scale_pieces(offsets, first_piece, piece_tensor, numerical, kink, checked, part)
    for t in range(offsets.shape[0] - 1):
        best = 0.0
        for task in range(first_piece[t], first_piece[t + 1]):
            best = max(best, part[task])
        scales_out[t] = best


@jit(parallel=True)
def _scale_pieces(offsets, first_piece, piece_tensor, numerical, kink, checked, part):
    for task in prange(piece_tensor.shape[0]):
        t = piece_tensor[task]
        start = offsets[t] + (task - first_piece[t]) * SUMMARY_PIECE
        stop = min(offsets[t + 1], start + SUMMARY_PIECE)
        best = 0.0
        for p in range(start, stop):
            if checked.shape[0] != 0 and not checked[p]:
                continue
            if kink.shape[0] != 0 and kink[p] != 0:
                continue
            x = abs(numerical[p])
            if x <= 1.7976931348623157e308 and x > best:  # finite (NaN compares False)
                best = x
        part[task] = best


@jit()
def tensor_verdicts(offsets, analytic, numerical, budget, kink, checked, negligible, by_budget, safety, rtol, atol,
                    status_out, counts_out, maxima_out, worst_out):
    """Every entry's verdict and every tensor's summary, in one parallel pass.

    Parameters
    ----------
    offsets : ndarray of int64, shape (T + 1,)
        Tensor ``t`` is the flat range ``offsets[t]:offsets[t + 1]``.
    analytic, numerical, budget : ndarray of float64, shape (P,)
        The gradient checked, the numerical gradient and its error budget.
    kink : ndarray of bool or uint8, shape (P,) or (0,)
        ``KINK_FLAG`` where a step crossed a kink, ``LARGE_STEP_FLAG`` where
        a step moved a pre-activation too far (:func:`flag_large_steps`);
        empty: neither.
    checked : ndarray of bool, shape (P,) or (0,)
        Entries that were checked (empty: all).
    negligible : ndarray of float64, shape (T,)
        Per tensor: a budget at or below this resolves an entry however
        small its value (see Notes).
    by_budget : bool
        Judge by ``|a - n| > safety budget`` (else by ``rel > rtol``).
    safety, rtol, atol : float
    status_out : ndarray of uint8, shape (P,)
        Written: ``PASSED``, ``FAILED``, ``KINK``, ``UNRESOLVED``,
        ``NONFINITE``, ``LARGE_STEP`` or ``UNCHECKED``.
    counts_out : ndarray of int64, shape (T, N_COUNTS)
        Written: failed, kink, unresolved, non-finite, large-step and checked
        entries.
    maxima_out : ndarray of float64, shape (T, 2)
        Written: the largest relative error and budget ratio of each tensor
        over its judged entries (inconclusive ones count as 0).
    worst_out : ndarray of int64, shape (T,)
        Written: index within the tensor of its worst entry by the verdict's
        measure (as ``np.argmax``: the first of equal maxima, or the first NaN).

    Notes
    -----
    An entry fails when ``|a - n|`` exceeds ``safety`` budgets (or, with
    fixed tolerances, ``rel > rtol``), whatever else holds. One that does
    not fail is *unresolved* (inconclusive, never passed) when its budget
    does not resolve its value, ``safety budget >= RESOLUTION max(|a|, |n|)``
    (under fixed tolerances too: a step that rounds to nothing gives a
    numerical zero that no tolerance makes meaningful), unless that budget
    is negligible for its tensor (``budget <= negligible[t]``: exact zeros
    of dead units are confirmed to far below the tensor's gradients). A non-finite analytic
    value fails; a non-finite numerical value, or a budget that is not
    finite and positive, makes a finite analytic one inconclusive (the loss
    or the budget's series overflow near ``w``). Each tensor is cut into
    pieces of ``SUMMARY_PIECE`` entries, scanned in parallel, and the
    pieces' results are combined in order, so the result does not depend on
    the thread count.
    """
    T = offsets.shape[0] - 1
    first_piece, piece_tensor = _pieces(offsets)
    n_pieces = piece_tensor.shape[0]
    part_counts = np.empty((n_pieces, N_COUNTS), dtype=np.int64)
    part_max = np.empty((n_pieces, 3), dtype=np.float64)  # rel, ratio, the verdict's measure
    part_worst = np.empty(n_pieces, dtype=np.int64)
    _verdict_pieces(offsets, first_piece, piece_tensor, analytic, numerical, budget, kink, checked, negligible,
                    by_budget, safety, rtol, atol, status_out, part_counts, part_max, part_worst)
    for t in range(T):  # pieces in order: the first maximum wins, as in one scan
        for c in range(N_COUNTS):
            counts_out[t, c] = 0
        max_r = -np.inf
        max_q = -np.inf
        best = -np.inf
        worst = 0
        for task in range(first_piece[t], first_piece[t + 1]):
            for c in range(N_COUNTS):
                counts_out[t, c] += part_counts[task, c]
            if _beats(part_max[task, 0], max_r):
                max_r = part_max[task, 0]
            if _beats(part_max[task, 1], max_q):
                max_q = part_max[task, 1]
            if _beats(part_max[task, 2], best):
                best = part_max[task, 2]
                worst = part_worst[task]
        maxima_out[t, 0] = max_r
        maxima_out[t, 1] = max_q
        worst_out[t] = worst


@jit(inline=True)
def entry_verdict(a, n, b, flag, negligible, by_budget, safety, rtol, floor):
    """``(status, budget ratio, relative error)`` of one checked entry (ratio and error 0 when inconclusive)."""
    if not np.isfinite(a):
        return FAILED, np.inf, np.inf
    if flag == LARGE_STEP_FLAG:
        return LARGE_STEP, 0.0, 0.0
    if flag:
        return KINK, 0.0, 0.0
    if not (np.isfinite(n) and b > 0.0 and b <= 1.7976931348623157e308):
        return NONFINITE, 0.0, 0.0  # no finite positive budget: nothing can be judged (a NaN budget passed all)
    diff = abs(a - n)
    if not np.isfinite(diff):  # a - n overflows
        return FAILED, np.inf, np.inf
    ratio = diff / b
    rel = 0.0 if diff == 0.0 else diff / max(max(abs(a), abs(n)), floor)
    if (ratio > safety) if by_budget else (rel > rtol):
        return FAILED, ratio, rel
    if safety * b >= RESOLUTION * max(abs(a), abs(n)) and b > negligible:
        return UNRESOLVED, 0.0, 0.0
    return PASSED, ratio, rel


@jit(parallel=True)
def _verdict_pieces(offsets, first_piece, piece_tensor, analytic, numerical, budget, kink, checked, negligible,
                    by_budget, safety, rtol, atol, status_out, part_counts, part_max, part_worst):
    """The pieces of :func:`tensor_verdicts`, in parallel: each piece's counts, maxima and first worst entry."""
    floor = atol / rtol
    for task in prange(piece_tensor.shape[0]):
        t = piece_tensor[task]
        lo = offsets[t]
        start = lo + (task - first_piece[t]) * SUMMARY_PIECE
        stop = min(offsets[t + 1], start + SUMMARY_PIECE)
        counts = np.zeros(N_COUNTS, dtype=np.int64)
        max_r = -np.inf
        max_q = -np.inf
        best = -np.inf
        worst = 0
        for p in range(start, stop):
            if checked.shape[0] != 0 and not checked[p]:
                status_out[p] = UNCHECKED
                q = 0.0
                r = 0.0
            else:
                flag = kink[p] if kink.shape[0] != 0 else 0
                status, q, r = entry_verdict(analytic[p], numerical[p], budget[p], flag, negligible[t],
                                             by_budget, safety, rtol, floor)
                status_out[p] = status
                counts[N_COUNTS - 1] += 1
                if status != PASSED:
                    counts[status - 1] += 1
            measure = q if by_budget else r
            if _beats(r, max_r):
                max_r = r
            if _beats(q, max_q):
                max_q = q
            if _beats(measure, best):
                best = measure
                worst = p - lo
        for c in range(N_COUNTS):
            part_counts[task, c] = counts[c]
        part_max[task, 0] = max_r
        part_max[task, 1] = max_q
        part_max[task, 2] = best
        part_worst[task] = worst


@jit(parallel=True)
def flag_large_steps(theta, layout, in_max, eps, scaled, reach, limit, flags):
    """Set ``LARGE_STEP_FLAG`` where a parameter's step moves its unit's pre-activation by more than ``limit``.

    The truncation estimate is the difference formula's leading Taylor term;
    once a step moves a pre-activation by ~1 the series of a sigmoid, tanh,
    softplus or log-sum-exp (poles at distance pi/2 to pi) no longer shrinks
    and the estimate can be far too small (a logistic regression on x ~ 1e4
    at the full engine's default step failed a correct gradient at 44x).
    The move is ``reach * h * max_n |input|`` for a weight (``h`` the step,
    ``reach`` the largest multiple of it taken: 2 for Richardson) and
    ``reach * h`` for a bias; ``in_max`` holds each layer's ``max_n |input_i|``
    one after the other. A kink flag already set is kept.
    """
    L = layout.shape[0]
    start = 0
    for l in range(L):
        fan_in = layout[l, FAN_IN]
        fan_out = layout[l, FAN_OUT]
        w_off = layout[l, W_OFF]
        b_off = layout[l, B_OFF]
        for i in prange(fan_in):
            for j in range(fan_out):
                p = w_off + i * fan_out + j
                h = eps * max(1.0, abs(theta[p])) if scaled else eps
                if flags[p] == 0 and reach * h * in_max[start + i] > limit:
                    flags[p] = LARGE_STEP_FLAG
        for j in range(fan_out):
            p = b_off + j
            h = eps * max(1.0, abs(theta[p])) if scaled else eps
            if flags[p] == 0 and reach * h > limit:
                flags[p] = LARGE_STEP_FLAG
        start += fan_in

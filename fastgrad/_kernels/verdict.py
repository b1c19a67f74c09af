"""Per-entry error budgets, budget ratios and relative errors, in one parallel pass.

:func:`fastgrad.check` judges every entry; on a large net the NumPy version
of these elementwise formulas (a dozen temporaries of P doubles) cost as much
as the numerical gradient itself, on one thread. Each entry is computed on
its own, with the same operations in the same order as the NumPy twins
(:func:`fastgrad.check.error_budget`, :func:`fastgrad.check.relative_error`),
so the result is the same bits for any thread count.
"""

import numpy as np
from numba import prange

from ._jit import jit


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
    an entry that is not ``checked`` gives 0 in both.
    """
    floor = atol / rtol
    for p in prange(analytic.shape[0]):
        if not checked[p]:
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


@jit(inline=True)
def _beats(x, best):
    """Whether ``x`` replaces ``best`` in a scan for ``np.max``/``np.argmax``.

    Their order: a NaN beats everything and the first NaN stays; otherwise
    only a strictly larger value wins, so the first of equal maxima stays.
    """
    if best != best:
        return False
    return x != x or x > best


@jit()
def tensor_verdicts(offsets, ratio, rel, kink, checked, by_budget, safety, rtol, failed_out, kink_out, counts_out,
                    maxima_out, worst_out):
    """Every tensor's verdict from the per-entry errors, in one parallel pass.

    Parameters
    ----------
    offsets : ndarray of int64, shape (T + 1,)
        Tensor ``t`` is the flat range ``offsets[t]:offsets[t + 1]``.
    ratio, rel : ndarray of float64, shape (P,)
        From :func:`entry_errors`.
    kink, checked : ndarray of bool, shape (P,)
        Steps that crossed a kink; entries that were checked.
    by_budget : bool
        Judge by ``ratio > safety`` (else by ``rel > rtol``).
    safety, rtol : float
    failed_out : ndarray of bool, shape (P,)
        Written: the entry fails (and is not inconclusive).
    kink_out : ndarray of bool, shape (P,)
        Written: the entry is inconclusive (checked, and a step crossed a kink).
    counts_out : ndarray of int64, shape (T, 3)
        Written: failed, inconclusive and checked entries of each tensor.
    maxima_out : ndarray of float64, shape (T, 2)
        Written: the largest relative error and budget ratio of each tensor,
        inconclusive entries counted as 0.
    worst_out : ndarray of int64, shape (T,)
        Written: index within the tensor of its worst entry by the verdict's
        measure (as ``np.argmax``: the first of equal maxima, or the first NaN).

    Notes
    -----
    Each tensor is cut into pieces of ``SUMMARY_PIECE`` entries, scanned in
    parallel (:func:`_scan_pieces`), and the pieces' results are combined in
    order. Only the scan is a parallel function: Numba compiles every array
    expression of a parallel function as a parallel loop of its own, which
    made the first call several seconds slower.
    """
    T = offsets.shape[0] - 1
    first_piece = np.empty(T + 1, dtype=np.int64)  # tensor t's pieces: first_piece[t]:first_piece[t + 1]
    first_piece[0] = 0
    for t in range(T):
        size = offsets[t + 1] - offsets[t]
        first_piece[t + 1] = first_piece[t] + max(1, (size + SUMMARY_PIECE - 1) // SUMMARY_PIECE)
    n_pieces = first_piece[T]
    piece_tensor = np.empty(n_pieces, dtype=np.int64)
    for t in range(T):
        for task in range(first_piece[t], first_piece[t + 1]):
            piece_tensor[task] = t
    part_counts = np.empty((n_pieces, 3), dtype=np.int64)
    part_max = np.empty((n_pieces, 3), dtype=np.float64)  # rel, ratio, the verdict's measure
    part_worst = np.empty(n_pieces, dtype=np.int64)
    _scan_pieces(offsets, first_piece, piece_tensor, ratio, rel, kink, checked, by_budget, safety, rtol, failed_out,
                 kink_out, part_counts, part_max, part_worst)
    for t in range(T):  # pieces in order: the first maximum wins, as in one scan
        for c in range(3):
            counts_out[t, c] = 0
        max_r = -np.inf
        max_q = -np.inf
        best = -np.inf
        worst = 0
        for task in range(first_piece[t], first_piece[t + 1]):
            for c in range(3):
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


@jit(parallel=True)
def _scan_pieces(offsets, first_piece, piece_tensor, ratio, rel, kink, checked, by_budget, safety, rtol, failed_out,
                 kink_out, part_counts, part_max, part_worst):
    """The pieces of :func:`tensor_verdicts`, in parallel: each piece's counts, maxima and first worst entry."""
    for task in prange(piece_tensor.shape[0]):
        t = piece_tensor[task]
        lo = offsets[t]
        start = lo + (task - first_piece[t]) * SUMMARY_PIECE
        stop = min(offsets[t + 1], start + SUMMARY_PIECE)
        failed = 0
        inconclusive = 0
        n_checked = 0
        max_r = -np.inf
        max_q = -np.inf
        best = -np.inf
        worst = 0
        for p in range(start, stop):
            on_kink = kink[p] and checked[p]
            kink_out[p] = on_kink
            if checked[p]:
                n_checked += 1
            if on_kink:
                inconclusive += 1
            q = 0.0 if on_kink else ratio[p]
            r = 0.0 if on_kink else rel[p]
            measure = q if by_budget else r
            wrong = measure > safety if by_budget else measure > rtol
            failed_out[p] = wrong
            if wrong:
                failed += 1
            if _beats(r, max_r):
                max_r = r
            if _beats(q, max_q):
                max_q = q
            if _beats(measure, best):
                best = measure
                worst = p - lo
        part_counts[task, 0] = failed
        part_counts[task, 1] = inconclusive
        part_counts[task, 2] = n_checked
        part_max[task, 0] = max_r
        part_max[task, 1] = max_q
        part_max[task, 2] = best
        part_worst[task] = worst

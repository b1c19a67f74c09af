"""The per-entry verdict kernels against their slow NumPy twins (bitwise), for any thread count."""

import numba
import numpy as np
import pytest

import fastgrad
from fastgrad._kernels.verdict import budget_into, entry_errors

P = 5000


def numpy_budget(absum, trunc, steps, c_own, c_cancel, c_user, tiny):
    """The formula of :func:`fastgrad.check.error_budget`, written out in NumPy."""
    own = c_own * absum
    if c_cancel != 0.0:
        own = own + c_cancel / steps
    user = c_user * absum
    return trunc + own + user + tiny


def numpy_errors(a, n, budget, checked, rtol, atol):
    """Budget ratios and :func:`fastgrad.relative_error`, with unchecked entries zeroed."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = np.abs(a - n) / budget
    ratio[~(np.isfinite(a) & np.isfinite(n))] = np.inf
    ratio[~checked] = 0.0
    rel = fastgrad.relative_error(a, n, rtol, atol)
    rel[~checked] = 0.0
    return ratio, rel


def _inputs(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(P) * 10.0 ** rng.integers(-12, 3, P)
    n = a * (1.0 + rng.standard_normal(P) * 10.0 ** rng.integers(-16, -2, P))
    n[::7] = a[::7]  # exactly equal
    a[::11] = 0.0
    n[5], a[6], n[7], a[8] = np.nan, np.inf, -np.inf, np.nan
    a[9], n[9] = 1e308, -1e308  # a - n overflows
    n[10] = 1e-300  # below atol / rtol
    checked = rng.random(P) > 0.2
    absum = np.abs(rng.standard_normal(P)) * 10.0 ** rng.integers(-10, 2, P)
    trunc = np.abs(rng.standard_normal(P)) * 1e-12
    steps = 10.0 ** rng.uniform(-9, -3, P)
    return a, n, checked, absum, trunc, steps


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("c_cancel", [0.0, 3.7e-16])
@pytest.mark.parametrize("threads", [1, 2])
def test_budget_and_errors_match_numpy_bitwise(seed, c_cancel, threads):
    a, n, checked, absum, trunc, steps = _inputs(seed)
    c_own, c_user, tiny = 4.0 * 2.0**-53 * 4, 2.0**-24 * (4 + 8.0), float(np.finfo(np.float32).tiny)
    want_budget = numpy_budget(absum, trunc, steps, c_own, c_cancel, c_user, tiny)
    budget = np.empty(P)
    ratio = np.empty(P)
    rel = np.empty(P)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        budget_into(absum, trunc, steps, c_own, c_cancel, c_user, tiny, budget)
        entry_errors(a, n, budget, checked, 1e-3, 1e-5, ratio, rel)
    finally:
        numba.set_num_threads(previous)
    want_ratio, want_rel = numpy_errors(a, n, want_budget, checked, 1e-3, 1e-5)
    assert np.array_equal(budget.view(np.int64), want_budget.view(np.int64))
    assert np.array_equal(ratio.view(np.int64), want_ratio.view(np.int64))
    assert np.array_equal(rel.view(np.int64), want_rel.view(np.int64))
    # the special entries really took their special paths
    for p in (5, 6, 7, 8, 9):  # NaN, inf, -inf, NaN, an overflowing difference
        assert (ratio[p], rel[p]) == ((np.inf, np.inf) if checked[p] else (0.0, 0.0))
    assert np.count_nonzero(ratio == 0.0) > np.count_nonzero(~checked)


def test_entry_errors_flags_a_wrong_entry():
    # a check of the check: the ratio of a wrong entry is large, of a right one small
    a = np.array([1.0, 1.0, 2.0])
    n = np.array([1.0, 1.0 + 1e-6, 2.0 + 1e-15])
    budget = np.full(3, 1e-12)
    ratio, rel = np.empty(3), np.empty(3)
    entry_errors(a, n, budget, np.ones(3, dtype=bool), 1e-3, 1e-5, ratio, rel)
    assert ratio[0] == 0.0 and ratio[1] > 1e5 and ratio[2] < 10.0
    assert rel[1] == pytest.approx(1e-6 / (1.0 + 1e-6), rel=1e-9)


def numpy_tensor_verdicts(offsets, ratio, rel, kink, checked, by_budget, safety, rtol):
    """Per-tensor verdicts the way check() computed them in NumPy, tensor by tensor."""
    kink = kink & checked
    rows = []
    for lo, hi in zip(offsets[:-1], offsets[1:]):
        q, r, k, c = ratio[lo:hi], rel[lo:hi], kink[lo:hi], checked[lo:hi]
        wrong = (q > safety) if by_budget else (r > rtol)
        failed = wrong & ~k
        judged_q = np.where(k, 0.0, q)
        judged_r = np.where(k, 0.0, r)
        worst = int(np.argmax(judged_q if by_budget else judged_r))
        rows.append((failed, k, (int(failed.sum()), int(k.sum()), int(c.sum())),
                     (float(np.max(judged_r)), float(np.max(judged_q))), worst))
    return rows


def _verdict_inputs(seed):
    rng = np.random.default_rng(seed)
    offsets = np.array([0, 3, 4, 1004, 1010, 1010 + 3 * 997])  # tensors smaller and larger than the pieces
    P = int(offsets[-1])
    ratio = np.abs(rng.standard_normal(P)) * 10.0 ** rng.integers(-3, 3, P)
    rel = np.abs(rng.standard_normal(P)) * 10.0 ** rng.integers(-12, 0, P)
    ratio[rng.random(P) < 0.1] = 0.0
    ratio[100] = ratio[900] = 1e9  # a tie for the worst: the first must win
    rel[200] = rel[950] = 0.5
    ratio[1500] = np.inf
    rel[1600] = np.nan  # np.max / np.argmax: the first NaN wins
    rel[2500] = np.nan
    kink = rng.random(P) < 0.05
    kink[[100, 1600]] = False
    checked = rng.random(P) > 0.1
    return offsets, ratio, rel, kink, checked


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("by_budget", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_tensor_verdicts_match_numpy(seed, by_budget, threads):
    from fastgrad._kernels.verdict import tensor_verdicts

    offsets, ratio, rel, kink, checked = _verdict_inputs(seed)
    P, T = int(offsets[-1]), offsets.size - 1
    failed, on_kink = np.empty(P, dtype=bool), np.empty(P, dtype=bool)
    counts, maxima, worst = np.empty((T, 3), dtype=np.int64), np.empty((T, 2)), np.empty(T, dtype=np.int64)
    with fastgrad._config.threads_context(min(threads, numba.config.NUMBA_NUM_THREADS)):
        tensor_verdicts(offsets, ratio, rel, kink, checked, by_budget, 10.0, 1e-3, failed, on_kink, counts, maxima,
                        worst)
    for t, (want_failed, want_kink, want_counts, want_maxima, want_worst) in enumerate(
            numpy_tensor_verdicts(offsets, ratio, rel, kink, checked, by_budget, 10.0, 1e-3)):
        lo, hi = offsets[t], offsets[t + 1]
        assert np.array_equal(failed[lo:hi], want_failed)
        assert np.array_equal(on_kink[lo:hi], want_kink)
        assert tuple(counts[t]) == want_counts
        assert np.array_equal(maxima[t], np.array(want_maxima), equal_nan=True)
        assert worst[t] == want_worst, (t, worst[t], want_worst)
    # the inputs did exercise ties and NaN: tensor 2 has the tied ratio, tensor 4 NaN rel entries
    if by_budget:
        assert worst[2] == 100 - 4
    else:
        assert np.isnan(maxima[4, 0]) and worst[4] == 1600 - 1010


def test_tensor_verdicts_fail_a_wrong_entry():
    # a check of the check: one entry far outside its budget fails its tensor, and is the worst
    from fastgrad._kernels.verdict import tensor_verdicts

    offsets = np.array([0, 50, 60])
    ratio = np.full(60, 0.5)
    ratio[37] = 1e6
    rel = np.full(60, 1e-12)
    kink, checked = np.zeros(60, dtype=bool), np.ones(60, dtype=bool)
    failed, on_kink = np.empty(60, dtype=bool), np.empty(60, dtype=bool)
    counts, maxima, worst = np.empty((2, 3), dtype=np.int64), np.empty((2, 2)), np.empty(2, dtype=np.int64)
    tensor_verdicts(offsets, ratio, rel, kink, checked, True, 10.0, 1e-3, failed, on_kink, counts, maxima, worst)
    assert counts[0, 0] == 1 and counts[1, 0] == 0 and np.flatnonzero(failed).tolist() == [37]
    assert worst[0] == 37 and maxima[0, 1] == 1e6
    kink[37] = True  # the same entry across a kink is inconclusive, not failed
    tensor_verdicts(offsets, ratio, rel, kink, checked, True, 10.0, 1e-3, failed, on_kink, counts, maxima, worst)
    assert counts[0, 0] == 0 and counts[0, 1] == 1 and maxima[0, 1] == 0.5

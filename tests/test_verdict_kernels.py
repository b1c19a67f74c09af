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

"""The per-entry verdict kernels against their slow NumPy twins (bitwise), for any thread count."""

import numba
import numpy as np
import pytest
import reference as ref

import fastgrad
from fastgrad._kernels import verdict as V
from fastgrad._kernels.verdict import budget_into, entry_errors

P = 5000


def numpy_budget(absum, trunc, steps, c_own, c_cancel, c_user, tiny):
    """The formula of :func:`fastgrad.budget.error_budget`, written out in NumPy."""
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


def numpy_statuses(a, n, b, kink, checked, negligible, by_budget, safety, rtol, atol):
    """Every entry's verdict code, written out in NumPy (the rules of tensor_verdicts' Notes)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.abs(a - n)
        ratio = diff / b
        rel = np.where(diff == 0.0, 0.0, diff / np.maximum(np.maximum(np.abs(a), np.abs(n)), atol / rtol))
        wrong = ratio > safety if by_budget else rel > rtol
        unresolved = (safety * b >= V.RESOLUTION * np.maximum(np.abs(a), np.abs(n))) & (b > negligible)
    status = np.where(wrong, V.FAILED, np.where(unresolved, V.UNRESOLVED, V.PASSED))
    status = np.where(~np.isfinite(diff), V.FAILED, status)  # a - n overflows
    status = np.where(~np.isfinite(n) | ~(b > 0) | ~np.isfinite(b), V.NONFINITE, status)
    status = np.where(kink == 1, V.KINK, status)
    status = np.where(kink == 2, V.LARGE_STEP, status)
    status = np.where(~np.isfinite(a), V.FAILED, status)
    status = np.where(checked, status, V.UNCHECKED).astype(np.uint8)
    judged = status <= V.FAILED
    ratio = np.where(judged & checked, np.where(np.isfinite(diff) & np.isfinite(a), ratio, np.inf), 0.0)
    rel = np.where(judged & checked, np.where(np.isfinite(diff) & np.isfinite(a), rel, np.inf), 0.0)
    return status, ratio, rel


def numpy_tensor_verdicts(offsets, a, n, b, kink, checked, negligible, by_budget, safety, rtol, atol):
    """Per-tensor verdicts tensor by tensor, in NumPy."""
    rows = []
    for t, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
        status, ratio, rel = numpy_statuses(a[lo:hi], n[lo:hi], b[lo:hi], kink[lo:hi], checked[lo:hi],
                                            negligible[t], by_budget, safety, rtol, atol)
        counts = tuple(int(np.count_nonzero(status == code)) for code in (V.FAILED, V.KINK, V.UNRESOLVED,
                                                                          V.NONFINITE, V.LARGE_STEP))
        counts += (int(np.count_nonzero(checked[lo:hi])),)
        worst = int(np.argmax(ratio if by_budget else rel))
        rows.append((status, counts, (float(np.max(rel)), float(np.max(ratio))), worst))
    return rows


def _verdict_inputs(seed):
    rng = np.random.default_rng(seed)
    offsets = np.array([0, 3, 4, 1004, 1010, 1010 + 3 * 997])  # tensors smaller and larger than the pieces
    P = int(offsets[-1])
    a = rng.standard_normal(P) * 10.0 ** rng.integers(-12, 3, P)
    n = a * (1.0 + rng.standard_normal(P) * 10.0 ** rng.integers(-16, -2, P))
    b = np.abs(a) * 10.0 ** rng.uniform(-16, 1, P) + 1e-300
    a[rng.random(P) < 0.05] = 0.0
    n[rng.random(P) < 0.02] = 0.0
    a[100], n[100], b[100] = 2.0, 1.0, 1e-30  # a tie for the worst: the first must win
    a[900], n[900], b[900] = 2.0, 1.0, 1e-30
    n[1500], a[1600], n[1700], a[1800] = np.nan, np.inf, -np.inf, np.nan
    b[1510], b[1520], b[1530] = np.nan, np.inf, -1e-3  # no usable budget: inconclusive, never passed
    a[1900], n[1900] = 1e308, -1e308  # a - n overflows
    kink = (rng.random(P) < 0.05).astype(np.uint8)
    kink[rng.random(P) < 0.03] = 2  # a step too large
    kink[[100, 900, 1600, 1800, 1900]] = 0
    kink[2000] = 1
    a[2000] = np.nan  # a non-finite gradient fails even across a kink
    checked = rng.random(P) > 0.1
    checked[[100, 900, 1500, 1510, 1520, 1530, 1600, 1700, 1800, 1900, 2000]] = True
    kink[[1510, 1520, 1530]] = 0
    negligible = 10.0 ** rng.uniform(-14, -4, offsets.size - 1)
    return offsets, a, n, b, kink, checked, negligible


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("by_budget", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_tensor_verdicts_match_numpy(seed, by_budget, threads):
    offsets, a, n, b, kink, checked, negligible = _verdict_inputs(seed)
    P, T = int(offsets[-1]), offsets.size - 1
    status = np.empty(P, dtype=np.uint8)
    counts, maxima, worst = np.empty((T, V.N_COUNTS), dtype=np.int64), np.empty((T, 2)), np.empty(T, dtype=np.int64)
    with fastgrad._config.threads_context(min(threads, numba.config.NUMBA_NUM_THREADS)):
        V.tensor_verdicts(offsets, a, n, b, kink, checked, negligible, by_budget, 10.0, 1e-3, 1e-5, status, counts,
                          maxima, worst)
    for t, (want_status, want_counts, want_maxima, want_worst) in enumerate(
            numpy_tensor_verdicts(offsets, a, n, b, kink, checked, negligible, by_budget, 10.0, 1e-3, 1e-5)):
        lo, hi = offsets[t], offsets[t + 1]
        assert np.array_equal(status[lo:hi], want_status), t
        assert tuple(counts[t]) == want_counts
        assert np.array_equal(maxima[t], np.array(want_maxima), equal_nan=True)
        assert worst[t] == want_worst, (t, worst[t], want_worst)
    # the inputs did exercise every code, and the tie: tensor 2 has the tied entries
    assert {V.PASSED, V.FAILED, V.KINK, V.NONFINITE, V.LARGE_STEP, V.UNCHECKED} <= set(np.unique(status).tolist())
    assert V.UNRESOLVED in status
    assert status[2000] == V.FAILED and status[1500] == V.NONFINITE and status[1900] == V.FAILED
    assert (status[[1510, 1520, 1530]] == V.NONFINITE).all()
    if by_budget:
        assert worst[2] == 100 - 4


def test_empty_kink_and_checked_mean_none_and_all():
    offsets, a, n, b, kink, checked, negligible = _verdict_inputs(3)
    P, T = int(offsets[-1]), offsets.size - 1
    outs = []
    for k, c in ((np.empty(0, np.uint8), np.empty(0, bool)), (np.zeros(P, np.uint8), np.ones(P, bool))):
        status = np.empty(P, dtype=np.uint8)
        counts, maxima, worst = np.empty((T, V.N_COUNTS), np.int64), np.empty((T, 2)), np.empty(T, np.int64)
        V.tensor_verdicts(offsets, a, n, b, k, c, negligible, True, 10.0, 1e-3, 1e-5, status, counts, maxima, worst)
        scales = np.empty(T)
        V.tensor_scales(offsets, n, k, c, scales)
        outs.append((status, counts, maxima, worst, scales))
    for x, y in zip(*outs):
        assert np.array_equal(x, y, equal_nan=True)


@pytest.mark.nojit
@pytest.mark.parametrize("threads", [1, 2])
def test_tensor_scales_match_numpy(threads):
    offsets, a, n, b, kink, checked, negligible = _verdict_inputs(4)
    scales = np.empty(offsets.size - 1)
    with fastgrad._config.threads_context(min(threads, numba.config.NUMBA_NUM_THREADS)):
        V.tensor_scales(offsets, n, kink, checked, scales)
    for t, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
        judged = checked[lo:hi] & (kink[lo:hi] == 0) & np.isfinite(n[lo:hi])
        assert scales[t] == np.max(np.abs(n[lo:hi][judged]), initial=0.0)


def _one_tensor_verdict(a, n, b, negligible=1e-300, by_budget=True):
    P = a.size
    offsets = np.array([0, P])
    status = np.empty(P, dtype=np.uint8)
    counts, maxima, worst = np.empty((1, V.N_COUNTS), np.int64), np.empty((1, 2)), np.empty(1, np.int64)
    V.tensor_verdicts(offsets, a, n, b, np.empty(0, np.uint8), np.empty(0, bool), np.array([negligible]), by_budget,
                      10.0, 1e-3, 1e-5, status, counts, maxima, worst)
    return status, counts[0], worst[0]


def test_tensor_verdicts_fail_a_wrong_entry():
    # a check of the check: one entry far outside its budget fails its tensor, and is the worst
    a = np.full(60, 1.0)
    n = a.copy()
    n[37] = 1.0 + 1e-6
    b = np.full(60, 1e-15)
    status, counts, worst = _one_tensor_verdict(a, n, b)
    assert counts[0] == 1 and np.flatnonzero(status == V.FAILED).tolist() == [37] and worst == 37


def test_a_budget_as_large_as_the_value_is_unresolved_not_passed():
    # item 1 of issue 12: with a huge budget, an all-zero gradient used to pass
    n = np.linspace(0.1, 1.0, 10)
    a = np.zeros(10)
    status, counts, _ = _one_tensor_verdict(a, n, np.full(10, 0.5))
    assert (status == V.UNRESOLVED).all() and counts[0] == 0 and counts[2] == 10
    # ... unless the budget is negligible for the tensor: an exact zero is then a confirmed zero
    status, _, _ = _one_tensor_verdict(np.zeros(3), np.zeros(3), np.full(3, 1e-20), negligible=1e-12)
    assert (status == V.PASSED).all()
    # ... and a value far above its budget is judged as usual
    status, _, _ = _one_tensor_verdict(n * 1.5, n, np.full(10, 1e-12))
    assert (status == V.FAILED).all()
    status, _, _ = _one_tensor_verdict(n * 1.5, n, np.full(10, 0.5), by_budget=False)
    assert (status == V.FAILED).all()
    # a budget of 90 % of the value does not resolve it: x1.5 would pass, so the entry is inconclusive
    status, _, _ = _one_tensor_verdict(n * 1.5, n, 0.09 * n)
    assert (status == V.UNRESOLVED).all()
    # ... under fixed tolerances as well (a step that rounds to nothing: a numerical zero, a huge budget)
    status, _, _ = _one_tensor_verdict(np.zeros(10), np.zeros(10), np.full(10, 1.0), by_budget=False)
    assert (status == V.UNRESOLVED).all()


@pytest.mark.nojit
@pytest.mark.parametrize("hidden, output", [("tanh", "sigmoid"), ("relu", "softmax"), ("relu", "identity")])
@pytest.mark.parametrize("threads", [1, 2])
def test_rounding_kernels_match_numpy(hidden, output, threads):
    from fastgrad._kernels.rounding import add_input_rounding, unit_term_scales

    rng = np.random.default_rng(6)
    sizes = [5, 7, 4, 3]
    loss = "cross_entropy" if output == "softmax" else "mse"
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    params = [p * 3.0 for p in net.init(seed=1)]
    X = rng.standard_normal((9, 5)) * 100.0
    theta = net.flatten(params)
    Z, A = net._forward(theta, X)
    scales, act_scales = np.empty(A.shape[1]), np.empty(A.shape[1])
    absum = np.abs(rng.standard_normal(net.n_params))
    absum[int(net.offsets[3]) + 1] = np.nan  # a bias whose terms were not computed: its weights are left alone
    trunc = rng.random(net.n_params)
    want = trunc.copy()
    with fastgrad._config.threads_context(min(threads, numba.config.NUMBA_NUM_THREADS)):
        unit_term_scales(theta, net.layout, X, Z, A, scales, act_scales)
        add_input_rounding(trunc, absum, net.layout, act_scales, 0.5)
    a = X
    want_scales, want_act = [], []
    for l in range(net.n_layers):
        W, b = params[2 * l], params[2 * l + 1]
        s = np.abs(a) @ np.abs(W) + np.abs(b)
        want_scales.append(np.max(s, axis=0))
        act = output if l == net.n_layers - 1 else hidden
        z = a @ W + b
        d = np.zeros_like(z) if act == "softmax" else np.abs(ref.activation_derivative(act, z))
        want_act.append(np.max(s * d, axis=0))
        a = ref.softmax(z) if act == "softmax" else ref.activate(act, z)
    np.testing.assert_allclose(scales, np.concatenate(want_scales), rtol=1e-13)
    np.testing.assert_allclose(act_scales, np.concatenate(want_act), rtol=1e-12, atol=1e-300)
    for l in range(1, net.n_layers):
        lo_w, lo_b = int(net.offsets[2 * l]), int(net.offsets[2 * l + 1])
        extra = 0.5 * np.outer(want_act[l - 1], absum[lo_b:lo_b + sizes[l + 1]])
        block = want[lo_w:lo_b].reshape(sizes[l], sizes[l + 1])
        want[lo_w:lo_b] = np.where(np.isnan(extra), block, block + extra).ravel()
    np.testing.assert_allclose(trunc, want, rtol=1e-13)


@pytest.mark.parametrize("threads", [1, 2])
def test_term_scales_sum_in_the_written_order_across_blocks(threads):
    """Bitwise: |b_j| first, then i upwards, for every (n, j), in a layer wider than one block of units."""
    from fastgrad._kernels.rounding import TERM_BLOCK, unit_term_scales

    rng = np.random.default_rng(9)
    sizes = [37, 2 * TERM_BLOCK + 19, 5]
    net = fastgrad.MLP(sizes, hidden="tanh", output="sigmoid")
    params = [p * np.exp(rng.uniform(-8, 8, p.shape)) for p in net.init(seed=2)]  # magnitudes over 7 decades
    X = rng.standard_normal((6, sizes[0])) * 1e3
    theta = net.flatten(params)
    Z, A = net._forward(theta, X)
    scales, act_scales = np.empty(A.shape[1]), np.empty(A.shape[1])
    with fastgrad._config.threads_context(min(threads, numba.config.NUMBA_NUM_THREADS)):
        unit_term_scales(theta, net.layout, X, Z, A, scales, act_scales)
    a, want = X, []
    for l in range(net.n_layers):
        W, b = params[2 * l], params[2 * l + 1]
        s = np.broadcast_to(np.abs(b), (X.shape[0], b.size)).copy()
        for i in range(W.shape[0]):  # the kernel's order, one addition per term
            s += np.abs(a[:, i:i + 1] * W[i])
        want.append(s.max(axis=0))
        a = A[:, int(net.layout[l, 4]):int(net.layout[l, 4]) + b.size] if l < net.n_layers - 1 else None
    assert np.array_equal(scales, np.concatenate(want))

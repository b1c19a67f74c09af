"""The incremental engine's per-unit loss-change series and its direct-path fallback.

:func:`fastgrad._kernels.series.unit_series` is checked against an exact
twin (mpmath derivatives of the per-sample loss with respect to one unit's
pre-activation), the assembled central differences against the direct path
(every sample forced through :func:`sample_change_direct`), and the
engine's result for independence from blocking and from which entries are
asked for.
"""

import numpy as np
import pytest
from exact import DIGITS, exact_central_difference, exact_sample_loss, mpmath, needs_mpmath

import fastgrad
from fastgrad import engines
from fastgrad._kernels.assemble import assemble_unit_params
from fastgrad._kernels.series import unit_series
from fastgrad.engines import IncrementalState, numerical_flat

CASES = [
    ([4, 5, 3], "sigmoid", "sigmoid", "mse"),
    ([3, 4, 4, 2], "tanh", "identity", "sse"),
    ([3, 5, 4, 3, 3], "softplus", "softmax", "cross_entropy"),
    ([4, 6, 5, 3], "leaky_relu", "tanh", "half_sse"),
    ([3, 4, 3, 2], "relu", "relu", "mse"),
    ([5, 3], "identity", "identity", "half_sse"),
    ([3, 4, 2], "sigmoid", "softmax", "cross_entropy"),
    ([4, 5, 4, 3], "tanh", "sigmoid", "bce"),
    ([5, 3], "identity", "sigmoid", "bce"),
    ([3, 5, 4, 2], "gelu", "silu", "half_sse"),
    ([4, 5, 3], "silu", "gelu", "mse"),
]
IDS = ["-".join([str(s) for s in c[0]] + list(c[1:])) for c in CASES]


def _case(sizes, hidden, output, loss, N=3, seed=5):
    rng = np.random.default_rng(seed)
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    params = [p + 0.2 * rng.normal(size=p.shape) for p in net.init(seed)]
    X = rng.normal(size=(N, sizes[0]))
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], N)]
    else:
        Y = rng.uniform(size=(N, sizes[-1]))
    return net, params, X, Y


def _series(net, theta, X, Y, layer):
    Z, A = net._forward(theta, X)
    st = IncrementalState(net, X, Y, Z, A)
    units = np.arange(net.sizes[layer + 1], dtype=np.int64)
    E1 = np.empty((X.shape[0], units.size))
    E3 = np.empty_like(E1)
    E1abs = np.empty_like(E1)
    lim = np.empty_like(E1)
    unit_series(theta, net.layout, net.loss_code, st.base, layer, units, 0, X.shape[0], 1,
                E1, E3, E1abs, lim)
    assert np.all(E1abs >= np.abs(E1) * (1 - 1e-12))  # the absolute chain bounds the signed one
    return st, units, E1, E3, lim, E1abs


def _assemble(net, theta, X, Y, st, layer, units, E1, E3, E1abs, lim, h, out, method=0):
    P = net.n_params
    want = np.ones(P, dtype=np.bool_)
    steps = np.full(P, h)
    absum, trunc, kink, status = np.zeros(P), np.zeros(P), np.zeros(P, dtype=np.int8), np.zeros(P, dtype=np.int8)
    assemble_unit_params(theta, net.layout, net.loss_code, X, st.base, layer, units,
                         E1, E3, E1abs, lim, steps, 0.0, False, method, want, True, 0, net.sizes[layer] + 1, out,
                         absum, trunc, kink, status)
    assert not status.any()
    return absum, trunc, kink


@pytest.mark.nojit
@needs_mpmath
@pytest.mark.parametrize("sizes,hidden,output,loss", CASES, ids=IDS)
def test_unit_series_matches_exact_derivatives(sizes, hidden, output, loss):
    # e1 = dE_n/ds and e3 = d3E_n/ds3 / 6, where s shifts one unit's
    # pre-activation, from 60-digit mpmath differentiation of the exact loss.
    net, params, X, Y = _case(sizes, hidden, output, loss)
    theta = net.flatten(params)
    exact_theta = [mpmath.mpf(float(v)) for v in theta]
    for layer in range(net.n_layers):
        _, units, E1, E3, lim, _ = _series(net, theta, X, Y, layer)
        want1 = np.empty_like(E1)
        want3 = np.empty_like(E3)
        with mpmath.workdps(DIGITS):
            for n in range(X.shape[0]):
                for b, j in enumerate(units):
                    def f(s, n=n, j=int(j)):
                        return exact_sample_loss(net, exact_theta, X[n], Y[n], (layer, j, s))
                    want1[n, b] = float(mpmath.diff(f, 0, 1))
                    want3[n, b] = float(mpmath.diff(f, 0, 3) / 6)
        assert np.all(lim > 0), (layer, lim)  # kink-free, normal scale: the series apply everywhere
        scale1 = np.max(np.abs(want1))
        scale3 = max(np.max(np.abs(want3)), 1e-12 * scale1)  # e3 = 0 for a linear suffix
        assert np.max(np.abs(E1 - want1)) <= 1e-14 * scale1, (layer, E1, want1)
        assert np.max(np.abs(E3 - want3)) <= 1e-13 * scale3, (layer, E3, want3)


@needs_mpmath
def test_unit_series_would_catch_a_wrong_coefficient():
    # The twin comparison above has teeth: e3 matters at a large step.
    # Replacing e3 by 0 moves the central difference at h = 1e-3 by more
    # than the tolerance the exact test uses.
    net, params, X, Y = _case([4, 5, 3], "sigmoid", "sigmoid", "mse")
    theta = net.flatten(params)
    st, units, E1, E3, lim, E1abs = _series(net, theta, X, Y, 0)
    h = 1e-5
    out = np.full(net.n_params, np.nan)
    out0 = np.full(net.n_params, np.nan)
    _assemble(net, theta, X, Y, st, 0, units, E1, E3, E1abs, lim, h, out)
    _assemble(net, theta, X, Y, st, 0, units, E1, np.zeros_like(E3), E1abs, lim, h, out0)
    layer0 = slice(0, 4 * 5 + 5)
    exact = [exact_central_difference(net, theta, X, Y, i, h) for i in range(4 * 5 + 5)]
    scale = np.max(np.abs(exact))
    assert np.max(np.abs(out[layer0] - exact)) <= 1e-12 * scale
    assert np.max(np.abs(out0[layer0] - exact)) > 1e-11 * scale


@pytest.mark.parametrize("sizes,hidden,output,loss", CASES, ids=IDS)
@pytest.mark.parametrize("h", [1e-8, 1e-6])
def test_series_agree_with_the_direct_path(sizes, hidden, output, loss, h):
    # Force every sample through sample_change_direct (lim = -1): the two
    # ways of computing each central difference must agree to rounding.
    net, params, X, Y = _case(sizes, hidden, output, loss, N=6, seed=9)
    theta = net.flatten(params)
    fast = np.full(net.n_params, np.nan)
    direct = np.full(net.n_params, np.nan)
    for layer in range(net.n_layers):
        st, units, E1, E3, lim, E1abs = _series(net, theta, X, Y, layer)
        _assemble(net, theta, X, Y, st, layer, units, E1, E3, E1abs, lim, h, fast)
        _, _, kink = _assemble(net, theta, X, Y, st, layer, units, E1, E3, E1abs, np.full_like(lim, -1.0), h, direct)
        assert not kink.any()  # kink-free data
    assert not np.isnan(fast).any() and not np.isnan(direct).any()
    scale = np.max(np.abs(direct))
    assert np.max(np.abs(fast - direct)) <= 1e-12 * scale


@needs_mpmath
@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_kink_within_reach_takes_the_direct_path(hidden):
    # One hidden pre-activation 2^-30 (~9.3e-10) from the kink, steps of
    # 1e-8: that sample's + and - steps land on different pieces. The series
    # would give the derivative; the exact central difference differs, and
    # the engine must return the latter. The pre-activation is made exact in
    # float64 (x = e_0, W[0, j] = 0.5, b_j = -0.5 + 2^-30), so that float
    # and exact arithmetic see the same kink distance.
    sizes = [3, 4, 3, 2]
    net, params, X, Y = _case(sizes, hidden, "sigmoid", "mse", N=4, seed=7)  # a seed where sample n matters
    layer, n, j = 0, 1, 2
    X[n] = [1.0, 0.0, 0.0]
    params[0][0, j] = 0.5
    params[1][j] = -0.5 + 2.0**-30
    theta = net.flatten(params)
    assert net._forward(theta, X)[0][n, j] == 2.0**-30
    h = 1e-8
    got = np.concatenate([g.ravel() for g in fastgrad.numerical_gradient(net, params, X, Y, eps=h)])
    analytic = np.concatenate([g.ravel() for g in net.backprop(params, X, Y)])
    b_j = int(net.offsets[2 * layer + 1]) + j
    w_cols = [int(net.offsets[2 * layer]) + i * sizes[1] + j for i in range(sizes[0])]
    scale = np.max(np.abs(analytic))
    worst = 0.0
    steps = engines.parameter_steps(theta, h, False, "central")  # fl(w + h) - w, the step really taken
    for p in [b_j, *w_cols, int(net.offsets[2])]:
        exact = exact_central_difference(net, theta, X, Y, p, float(steps[p]))
        worst = max(worst, abs(got[p] - exact) / scale)
    assert worst <= 1e-12, worst
    # the kink really changes the answer for that unit's bias and W[0, j]
    for p in (b_j, w_cols[0]):
        assert abs(got[p] - analytic[p]) > 0.1 * scale, p


def test_subset_and_blocking_do_not_change_a_single_bit(monkeypatch):
    net, params, X, Y = _case([6, 20, 12, 3], "tanh", "sigmoid", "mse", N=5)
    theta = net.flatten(params)
    whole = numerical_flat(net, theta, X, Y, 1e-8, "incremental")
    idx = np.random.default_rng(0).choice(net.n_params, 17, replace=False)
    part = numerical_flat(net, theta, X, Y, 1e-8, "incremental", indices=idx)
    assert np.array_equal(part[idx], whole[idx])
    rest = np.setdiff1d(np.arange(net.n_params), idx)
    assert np.isnan(part[rest]).all()
    monkeypatch.setattr(engines, "BLOCK_FLOPS", 1.0)  # one small block after another
    calls = []
    tiny = numerical_flat(net, theta, X, Y, 1e-8, "incremental", progress=lambda d, t: calls.append((d, t)))
    assert np.array_equal(tiny, whole)
    assert len(calls) > net.n_layers and calls[-1] == (net.n_params, net.n_params)
    # a subset in small blocks: each block's rows with a wanted entry are read off the columns between its units
    for subset in (idx, np.arange(net.offsets[1], net.offsets[2]), np.array([0, net.n_params - 1])):
        small = numerical_flat(net, theta, X, Y, 1e-8, "incremental", indices=subset)
        assert np.array_equal(small[subset], whole[subset]) and np.isnan(small).sum() == net.n_params - subset.size
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_scratch_does_not_grow_with_the_parameter_count():
    # Blocks hold O(N * units-per-block) coefficients, never O(P * N).
    net = fastgrad.MLP([784, 512, 10])
    per_unit = engines.unit_cost(net, 0, 64)
    block = max(4, int(engines.BLOCK_FLOPS // per_unit))
    assert block * 64 * 3 * 8 < 50e6  # E1, E3, lim for one block: well under 50 MB


@pytest.mark.parametrize("sizes,hidden,output,loss", CASES, ids=IDS)
def test_abs_only_series_is_the_series_absolute_chain(sizes, hidden, output, loss):
    # engine="unit" computes only the absolute-value chain; it must be the
    # very same numbers as unit_series' E1abs.
    from fastgrad._kernels.series import unit_abs_series

    net, params, X, Y = _case(sizes, hidden, output, loss)
    theta = net.flatten(params)
    for layer in range(net.n_layers):
        st, units, _, _, _, E1abs = _series(net, theta, X, Y, layer)
        alone = np.empty_like(E1abs)
        unit_abs_series(theta, net.layout, net.loss_code, st.base, layer, units, 0,
                        X.shape[0], 1, alone)
        assert np.array_equal(alone, E1abs)


@pytest.mark.parametrize("sizes,hidden,output,loss", CASES, ids=IDS)
@pytest.mark.parametrize("engine,method", [("incremental", "central"), ("incremental", "richardson"),
                                           ("incremental", "complex"), ("unit", "central"), ("full", "central")])
def test_gradient_without_budget_is_check_numerical_bitwise(sizes, hidden, output, loss, engine, method):
    # numerical_gradient skips the budget's work (budget=False); its values must not change by it
    net, params, X, Y = _case(sizes, hidden, output, loss, N=5)
    plain = fastgrad.numerical_gradient(net, params, X, Y, engine=engine, method=method)
    result = fastgrad.check(net, params, X, Y, net.backprop(params, X, Y), engine=engine, method=method)
    for a, b in zip(plain, result.numerical):
        assert np.array_equal(a.view(np.int64), b.view(np.int64))
    assert all(np.isfinite(b).all() for b in result.budget)  # and check did compute its budget


@pytest.mark.parametrize("method", ["central", "richardson", "complex"])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("subset", [False, True])
def test_steps_computed_in_the_kernel_are_the_step_array_bitwise(method, scaled, subset):
    # Without the budget the kernel computes each step itself (no P-sized
    # steps array) and every entry is wanted without a mask; the values must
    # be those computed from parameter_steps' array and an explicit mask.
    net, params, X, Y = _case([4, 6, 5, 3], "tanh", "sigmoid", "mse", N=5)
    params = [10.0 * p for p in params]  # |w| > 1: scaled steps differ from eps
    theta = net.flatten(params)
    idx = np.arange(0, net.n_params, 3) if subset else None
    kwargs = dict(method=method, indices=idx, scaled=scaled)
    inline = engines.numerical_details(net, theta, X, Y, 1e-6, "incremental", budget=False, **kwargs)
    given = engines.numerical_details(net, theta, X, Y, 1e-6, "incremental", budget=True, **kwargs)
    assert inline.steps.size == 0 and given.steps.size == net.n_params
    assert np.array_equal(inline.values.view(np.int64), given.values.view(np.int64))
    if scaled:  # and the steps really were per parameter
        assert np.unique(given.steps).size > 10


@pytest.mark.parametrize("engine,method", [("incremental", "central"), ("incremental", "richardson"),
                                           ("unit", "central"), ("full", "central")])
def test_calls_split_by_samples_and_rows_do_not_change_a_single_bit(monkeypatch, engine, method):
    # A tiny call budget splits every unit's samples (and its parameters' rows) over many calls,
    # and each unit's samples between threads, as on a net whose units cost seconds (issue 12, item 8).
    net, params, X, Y = _case([6, 20, 12, 3], "tanh", "sigmoid", "mse", N=7)
    theta = net.flatten(params)
    whole = engines.numerical_details(net, theta, X, Y, 1e-6, engine, method)
    monkeypatch.setattr(engines, "CALL_FLOPS_PER_THREAD", 1.0)
    calls = []
    split = engines.numerical_details(net, theta, X, Y, 1e-6, engine, method,
                                      progress=lambda d, t: calls.append((d, t)))
    for name in ("values", "absum", "trunc", "kink", "status"):
        assert np.array_equal(getattr(whole, name), getattr(split, name), equal_nan=True), name
    if engine != "full":
        assert len(calls) > X.shape[0] * net.n_layers  # progress after every call, not only every block
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1] == (net.n_params, net.n_params)


@pytest.mark.parametrize("sizes,hidden,output,loss", CASES[:3], ids=IDS[:3])
def test_unit_series_pieces_are_the_whole_bitwise(sizes, hidden, output, loss):
    net, params, X, Y = _case(sizes, hidden, output, loss, N=7)
    theta = net.flatten(params)
    for layer in range(net.n_layers):
        st, units, *whole = _series(net, theta, X, Y, layer)  # units, E1, E3, lim, E1abs
        got = [np.full_like(whole[0], np.nan) for _ in range(4)]
        E1, E3, E1abs, lim = got
        for n_lo, n_hi, parts in [(0, 3, 3), (3, 4, 1), (4, 7, 2)]:  # ranges, each unit's split between tasks
            unit_series(theta, net.layout, net.loss_code, st.base, layer, units, n_lo,
                        n_hi, parts, E1, E3, E1abs, lim)
        for a, b in zip((E1, E3, lim, E1abs), whole):
            assert np.array_equal(a, b)

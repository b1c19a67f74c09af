"""Large steps (pending entries) by fitted sample functions: exact, verdicts unchanged, fits refused where unsafe."""

import numpy as np
import pytest
from exact import exact_central_difference, exact_sample_loss, mpmath, needs_mpmath

import fastgrad
from fastgrad._kernels import pending_fit


def _flat(grads):
    return np.concatenate([g.ravel() for g in grads])


def _case(sizes, hidden="sigmoid", output="sigmoid", loss="mse", n=6, seed=0, x_scale=1.0):
    rng = np.random.default_rng(seed)
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    params = [p + 0.1 * rng.normal(size=p.shape) for p in net.init(seed)]
    X = x_scale * rng.normal(size=(n, sizes[0]))
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
    else:
        Y = rng.uniform(size=(n, sizes[-1]))
    return net, params, X, Y


@pytest.fixture
def fits(monkeypatch):
    """Count the (sample, unit) pairs fitted (and offered) during the test."""
    seen = {"fitted": 0, "offered": 0}
    original = pending_fit.fit_samples

    def spy(*args):
        original(*args)
        err = args[-1]
        seen["fitted"] += int((err >= 0).sum())
        seen["offered"] += err.size

    monkeypatch.setattr(pending_fit, "fit_samples", spy)
    return seen


def _without_fits(monkeypatch):
    monkeypatch.setattr(pending_fit, "FIT_MIN_ENTRIES", 10**9)


CASES = [
    ([24, 6, 3], "sigmoid", "sigmoid", "mse", 1e-4, 1.0),
    ([20, 5, 4, 3], "tanh", "identity", "sse", 1e-3, 1.0),
    ([18, 6, 3], "softplus", "softmax", "cross_entropy", 1e-4, 1.0),
    ([20, 5, 3], "sigmoid", "sigmoid", "bce", None, 1e4),  # unnormalised features at the default step
    ([18, 5, 4, 2], "gelu", "silu", "mse", 1e-4, 10.0),
]


@needs_mpmath
@pytest.mark.parametrize("sizes,hidden,output,loss,eps,x_scale", CASES)
def test_fitted_large_steps_match_the_exact_central_difference(sizes, hidden, output, loss, eps, x_scale, fits,
                                                               monkeypatch):
    net, params, X, Y = _case(sizes, hidden, output, loss, x_scale=x_scale)
    got = _flat(fastgrad.numerical_gradient(net, params, X, Y, eps=eps))
    assert fits["fitted"] > 0, fits  # (the large steps did go through fits)
    theta = net.flatten(params)
    scale = np.max(np.abs(got))
    idx = np.linspace(0, sizes[0] * sizes[1] - 1, 10).astype(int)  # the first layer's weights: the largest steps
    worst = 0.0
    for i in idx:
        w = theta[i]
        nominal = eps if eps is not None else 1e-8 * max(1.0, abs(w))
        h = (w + nominal) - w  # the step fastgrad takes (exactly representable)
        worst = max(worst, abs(got[i] - exact_central_difference(net, theta, X, Y, int(i), h)) / scale)
    assert worst <= 1e-12, worst
    _without_fits(monkeypatch)
    direct = _flat(fastgrad.numerical_gradient(net, params, X, Y, eps=eps))
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-13 * scale)


@needs_mpmath
@pytest.mark.nojit
def test_every_accepted_fit_is_within_its_error_bound_of_the_exact_sample_function():
    """The kernel's twin: psi(t) = (E_n(z + t) - E_n(z - t)) / 2t in mpmath, at points between the nodes."""
    from fastgrad._kernels.series import unit_series

    net, params, X, Y = _case([16, 4, 3], n=3)
    theta = net.flatten(params)
    Z, A = net._forward(theta, X)
    from fastgrad.engines import IncrementalState

    st = IncrementalState(net, X, Y, Z, A)
    N, B = X.shape[0], 4
    units = np.arange(B, dtype=np.int64)
    E1, E3, E1abs, lim = (np.empty((N, B)) for _ in range(4))
    unit_series(theta, net.layout, net.loss_code, st.base, 0, units, 0, N, 1, E1, E3, E1abs, lim)
    reach = np.full((N, B), 3e-3)
    coef = np.empty((N, B, pending_fit.FIT_NODES))
    degree = np.empty((N, B), dtype=np.int64)
    err = np.empty((N, B))
    pending_fit.fit_samples(theta, net.layout, net.loss_code, st.base, 0, units, E1, E1abs, lim, reach, coef, degree,
                            err)
    assert (err >= 0).all() and (err < 1e-13 * np.abs(E1abs).max()).all()
    assert (degree < pending_fit.FIT_NODES - 1).all()  # (converged: the last terms are dropped as noise)
    with mpmath.workdps(60):
        exact_theta = [mpmath.mpf(float(v)) for v in theta]
        for n in range(N):
            for b in range(B):
                for u in (0.013, 0.31, 0.77):
                    t = mpmath.mpf(float(reach[n, b])) * mpmath.sqrt(u)
                    psi = (exact_sample_loss(net, exact_theta, X[n], Y[n], (0, b, t))
                           - exact_sample_loss(net, exact_theta, X[n], Y[n], (0, b, -t))) / (2 * t)
                    value = pending_fit.fitted(coef[n, b], degree[n, b], u)
                    assert abs(value - float(psi)) <= err[n, b] + 1e-16 * abs(float(psi)), (n, b, u)


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_nets_with_kinks_keep_the_direct_path(hidden, fits, monkeypatch):
    """A kink can be crossed and crossed back between nodes: no fit is made, and nothing changes."""
    net, params, X, Y = _case([24, 6, 3], hidden=hidden)
    got = _flat(fastgrad.numerical_gradient(net, params, X, Y, eps=1e-3))
    assert fits["fitted"] == 0
    _without_fits(monkeypatch)
    np.testing.assert_array_equal(got, _flat(fastgrad.numerical_gradient(net, params, X, Y, eps=1e-3)))


def test_a_fit_is_refused_where_the_step_leaves_the_smooth_range(fits):
    """Huge steps (saturating flips): the fits do not converge and the direct path answers."""
    net, params, X, Y = _case([24, 6, 3], x_scale=1e3)
    fastgrad.numerical_gradient(net, params, X, Y, eps=1e-2)
    assert fits["offered"] > 0 and fits["fitted"] < fits["offered"]


def test_fitted_values_are_bitwise_the_same_on_any_thread_count(fits):
    net, params, X, Y = _case([40, 12, 3], n=9)
    one = _flat(fastgrad.numerical_gradient(net, params, X, Y, eps=1e-4, threads=1))
    two = _flat(fastgrad.numerical_gradient(net, params, X, Y, eps=1e-4, threads=2))
    assert fits["fitted"] > 0
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("method", ["central", "richardson"])
def test_a_check_with_large_steps_passes_a_right_gradient_and_fails_a_wrong_one(method, fits):
    net, params, X, Y = _case([30, 8, 3], n=8)
    eps = 1e-4 if method == "central" else 1e-3
    right = net.backprop(params, X, Y)
    assert fastgrad.check(net, params, X, Y, right, eps=eps, method=method).passed
    assert fits["fitted"] > 0
    wrong = [g.copy() for g in right]
    wrong[0][5, 2] *= 1.0 + 1e-5  # one weight's derivative off by 1e-5 of itself
    result = fastgrad.check(net, params, X, Y, wrong, eps=eps, method=method)
    assert not result.passed
    assert np.argwhere(result.failed[0]).tolist() == [[5, 2]]


SMOOTH = ["sigmoid", "tanh", "softplus", "gelu", "silu"]
OUTPUTS = [("sigmoid", "mse"), ("identity", "sse"), ("softmax", "cross_entropy"), ("sigmoid", "bce"),
           ("tanh", "half_sse")]


def _random_case(k):
    """Case ``k`` of the sweep: depth 1-3, fan-in 16-40 (units with enough pending rows to be fitted)."""
    rng = np.random.default_rng(1000 + k)
    depth = int(rng.integers(1, 4))
    sizes = [int(rng.integers(16, 41))] + [int(rng.integers(3, 9)) for _ in range(depth)]
    hidden = SMOOTH[k % len(SMOOTH)]
    output, loss = OUTPUTS[(k // len(SMOOTH)) % len(OUTPUTS)]
    if depth == 1 and loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    x_scale = [1.0, 1e2, 1e4][k % 3]
    eps = [None, 1e-5, 1e-4, 1e-3, 1e-2][(k // 3) % 5]
    net, params, X, Y = _case(sizes, hidden, output, loss, n=int(rng.integers(2, 12)), seed=k, x_scale=x_scale)
    params = [p * float(rng.choice([1.0, 4.0])) for p in params]  # some saturated units
    return net, params, X, Y, eps


@pytest.mark.parametrize("k", range(60))
def test_fits_change_no_verdict_on_random_nets(k, fits, monkeypatch):
    """Random smooth nets at large steps and unnormalised features: the same verdicts with and without the fits.

    A right gradient, and one with a single entry off by 1e-6 of itself: every entry's status (passed,
    failed, inconclusive) is the direct path's, and the values agree to rounding.
    """
    net, params, X, Y, eps = _random_case(k)
    right = net.backprop(params, X, Y)
    wrong = [g.copy() for g in right]
    flat = wrong[0].reshape(-1)
    flat[int(np.argmax(np.abs(flat)))] *= 1.0 + 1e-6
    with_fits = [fastgrad.check(net, params, X, Y, g, eps=eps) for g in (right, wrong)]
    fitted = fits["fitted"]
    _without_fits(monkeypatch)
    direct = [fastgrad.check(net, params, X, Y, g, eps=eps) for g in (right, wrong)]
    for a, b in zip(with_fits, direct):
        assert a.passed == b.passed
        for x, y in zip(a.failed, b.failed):
            np.testing.assert_array_equal(x, y)
        scale = max(float(np.max(np.abs(v))) for v in b.numerical)
        for x, y in zip(a.numerical, b.numerical):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-12 * scale)
    _SWEEP_FITTED.append(fitted)  # (which cases fit depends on the draw; the sweep as a whole must use them)


_SWEEP_FITTED: list[int] = []


def test_the_sweep_used_fits():
    """Run after the sweep (pytest keeps file order): some of its sampled cases went through fits."""
    if len(_SWEEP_FITTED) < 60:
        pytest.skip("the whole sweep did not run in this session")
    assert sum(f > 0 for f in _SWEEP_FITTED) >= 20, _SWEEP_FITTED


def test_a_sampled_or_sharded_entry_is_bitwise_its_full_check_value(fits):
    """A unit's fits do not depend on which of its entries a call computes: samples, shards, blocks."""
    net, params, X, Y = _case([60, 20, 4], n=10, x_scale=3.0)
    full = fastgrad.numerical_gradient(net, params, X, Y, eps=1e-4)
    assert fits["fitted"] > 0
    sampled = fastgrad.numerical_gradient(net, params, X, Y, eps=1e-4, sample=0.05, seed=3)
    mapped = fastgrad.numerical_gradient(net, params, X, Y, eps=1e-4, workers=map)
    for f, s, m in zip(full, sampled, mapped):
        taken = ~np.isnan(s)
        np.testing.assert_array_equal(s[taken], f[taken])
        np.testing.assert_array_equal(m, f)


def test_the_reference_net_at_the_tutorials_step_is_bitwise_the_same_on_1_and_2_threads(fits):
    """784-128-10 at eps = 1e-4: blocks and row pieces differ with the thread count, the values do not."""
    from fastgrad.bench import make_case

    net, params, X, Y = make_case([784, 128, 10], 64)
    one = _flat(fastgrad.numerical_gradient(net, params, X, Y, eps=1e-4, threads=1))
    two = _flat(fastgrad.numerical_gradient(net, params, X, Y, eps=1e-4, threads=2))
    assert fits["fitted"] > 0
    np.testing.assert_array_equal(one, two)

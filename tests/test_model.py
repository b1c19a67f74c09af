"""fastgrad.MLP kernels and fastgrad.numerical_gradient against tests/reference.py."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgrad

# Depth 1 (no hidden layer) to 4 weight layers, plus single input / output units.
ARCHS = [
    [3, 2],
    [4, 5, 3],
    [3, 4, 4, 2],
    [2, 3, 4, 3, 2],
    [1, 3, 1],
]
ARCH_IDS = ["-".join(map(str, a)) for a in ARCHS]
MAIN_ARCH = [3, 4, 4, 2]
# One architecture per depth, for the big sweeps.
DEPTHS = {1: [3, 2], 2: [3, 4, 2], 3: [2, 3, 3, 2], 4: [2, 3, 2, 3, 2]}
OUTPUTS = ref.ACTIVATIONS + ("softmax",)
PAIRS = ref.OUTPUT_LOSS_PAIRS
PAIR_IDS = [f"{out}-{loss}" for out, loss in PAIRS]

# Same formula, different summation order: agreement to a few ulps.
FWD_TOL = dict(rtol=1e-10, atol=1e-12)


def loss_for(output):
    """Return a valid loss for the given output activation."""
    return "cross_entropy" if output == "softmax" else "mse"


def assert_grads_close(actual, desired, rtol, atol, names=None):
    assert len(actual) == len(desired)
    names = names or ref.tensor_names(len(desired) // 2)
    for name, a, d in zip(names, actual, desired):
        assert np.shape(a) == np.shape(d), name
        np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=f"tensor {name}")


# --------------------------------------------------------------------------
# The reference itself (the oracle must be right before it judges anything)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", ["tanh", "relu"])
@pytest.mark.parametrize(
    "output,loss",
    [("sigmoid", "mse"), ("identity", "sse"), ("softmax", "cross_entropy"), ("sigmoid", "bce")],
)
def test_reference_backprop_matches_reference_differences(rng, hidden, output, loss):
    sizes = [3, 4, 3]
    params, X, Y = ref.random_case(rng, sizes, hidden, output, loss)
    analytic = ref.backprop(params, X, Y, hidden, output, loss)
    numerical = ref.numerical_gradient(params, X, Y, hidden, output, loss)
    assert_grads_close(analytic, numerical, rtol=1e-4, atol=1e-7)


def test_reference_losses_by_hand():
    Yhat = np.array([[0.0, 1.0], [2.0, 3.0]])
    Y = np.array([[1.0, 1.0], [0.0, 0.0]])
    # squared errors: 1, 0, 4, 9 -> sum 14
    assert ref.sse(Yhat, Y) == 14.0
    assert ref.half_sse(Yhat, Y) == 7.0
    assert ref.mse(Yhat, Y) == 7.0  # 14 / N with N = 2
    Z = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    Yc = np.array([[1.0, 0.0], [0.0, 1.0]])
    # p = [1/2, 1/2] and [3/4, 1/4]
    expected = -(np.log(0.5) + np.log(0.25)) / 2
    assert ref.cross_entropy_from_logits(Z, Yc) == pytest.approx(expected, rel=1e-15)
    # bce: x = sigmoid(z) = [1/2, 3/4] and [1/2, 1/2]; -log(1/2) - log(1/4) - 2 log(1/2) = log 32, over N = 2
    assert ref.bce_from_logits(Z, Yc) == pytest.approx(np.log(32.0) / 2, rel=1e-15)


# --------------------------------------------------------------------------
# Construction, attributes, init
# --------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", ARCHS, ids=ARCH_IDS)
def test_attributes(sizes):
    net = fastgrad.MLP(sizes, hidden="tanh", output="identity", loss="sse")
    assert net.sizes == tuple(sizes)
    assert type(net.sizes) is tuple and all(type(s) is int for s in net.sizes)
    assert net.hidden == "tanh"
    assert net.output == "identity"
    assert net.loss_name == "sse"
    assert net.n_layers == len(sizes) - 1
    assert tuple(net.tensor_names) == ref.tensor_names(len(sizes) - 1)
    assert [tuple(s) for s in net.param_shapes] == ref.param_shapes(sizes)
    assert net.n_params == sum(int(np.prod(s)) for s in ref.param_shapes(sizes))


def test_sizes_accepts_numpy_ints_and_arrays():
    net = fastgrad.MLP(
        np.array([4, 3, 2]), hidden="tanh", output="identity", loss="mse"
    )
    assert net.sizes == (4, 3, 2)
    assert all(type(s) is int for s in net.sizes)
    net2 = fastgrad.MLP((np.int32(2), np.int64(5)), output="identity", loss="mse")
    assert net2.sizes == (2, 5)
    assert net2.n_params == 2 * 5 + 5


@pytest.mark.parametrize("sizes", ARCHS, ids=ARCH_IDS)
def test_init_shapes_dtype_and_determinism(sizes):
    net = fastgrad.MLP(sizes, hidden="tanh", output="sigmoid", loss="mse")
    p0 = net.init(seed=0)
    assert isinstance(p0, list)
    assert [p.shape for p in p0] == ref.param_shapes(sizes)
    assert all(p.dtype == np.float64 for p in p0)
    # biases: small, never zero (a check at init must see bias-proportional errors), both signs
    for b in p0[1::2]:
        assert np.all((np.abs(b) >= 0.01) & (np.abs(b) <= 0.1))
    signs = np.sign(np.concatenate(p0[1::2]))
    if signs.size >= 8:
        assert (signs > 0).any() and (signs < 0).any()
    again = net.init(seed=0)
    for a, b in zip(p0, again):
        assert np.array_equal(a, b)
    other = net.init(seed=1)
    assert any(not np.array_equal(a, b) for a, b in zip(p0[0::2], other[0::2]))
    assert any(not np.array_equal(a, b) for a, b in zip(p0[1::2], other[1::2]))
    # default seed is 0
    for a, b in zip(net.init(), p0):
        assert np.array_equal(a, b)


def _excess_kurtosis(w):
    w = w.ravel() - w.mean()
    return float(np.mean(w**4) / np.mean(w**2) ** 2 - 3.0)


@pytest.mark.parametrize(
    "hidden,output",
    [("sigmoid", "sigmoid"), ("tanh", "identity"), ("softplus", "tanh")],
)
def test_init_glorot_uniform(hidden, output):
    sizes = [300, 200, 150]
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss="mse")
    params = net.init(seed=3)
    for W, (fan_in, fan_out) in zip(params[0::2], zip(sizes[:-1], sizes[1:])):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.max(np.abs(W)) <= limit
        assert np.max(np.abs(W)) > 0.99 * limit  # actually fills the interval
        assert np.std(W) == pytest.approx(limit / np.sqrt(3.0), rel=0.02)
        assert abs(np.mean(W)) < 0.02 * limit
        assert _excess_kurtosis(W) == pytest.approx(
            -1.2, abs=0.1
        )  # uniform, not normal


@pytest.mark.parametrize(
    "hidden,output", [("relu", "relu"), ("leaky_relu", "relu"), ("relu", "leaky_relu")]
)
def test_init_he_normal(hidden, output):
    sizes = [200, 450, 300]  # fan_in != fan_out: the std must follow fan_in
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss="mse")
    params = net.init(seed=4)
    for W, fan_in in zip(params[0::2], sizes[:-1]):
        std = np.sqrt(2.0 / fan_in)
        assert np.std(W) == pytest.approx(std, rel=0.02)
        assert abs(np.mean(W)) < 0.02 * std
        assert abs(_excess_kurtosis(W)) < 0.15  # normal, not uniform


# --------------------------------------------------------------------------
# Forward, loss, backprop against the reference
# --------------------------------------------------------------------------


def _cases(items):
    """List (sizes, hidden, item) cases for a parametrized sweep.

    Every hidden activation x item on a depth-3 net, and every item on the
    other architectures with the hidden activation rotating.
    """
    cases = [(MAIN_ARCH, hidden, item) for hidden in ref.ACTIVATIONS for item in items]
    k = 0
    for sizes in ARCHS:
        if sizes == MAIN_ARCH:
            continue
        for item in items:
            cases.append((sizes, ref.ACTIVATIONS[k % len(ref.ACTIVATIONS)], item))
            k += 1
    return cases


def _case_id(case):
    sizes, hidden, item = case
    item = "-".join(item) if isinstance(item, tuple) else item
    return f"{'-'.join(map(str, sizes))}:{hidden}:{item}"


FORWARD_CASES = _cases(OUTPUTS)
BACKPROP_CASES = _cases(PAIRS)


@pytest.mark.nojit
@pytest.mark.parametrize(
    "sizes,hidden,output", FORWARD_CASES, ids=[_case_id(c) for c in FORWARD_CASES]
)
def test_forward_matches_reference(make_case, sizes, hidden, output):
    net, params, X, Y = make_case(sizes, hidden, output, loss_for(output), N=5)
    got = net.forward(params, X)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float64
    assert got.shape == (5, sizes[-1])
    np.testing.assert_allclose(got, ref.output_of(params, X, hidden, output), **FWD_TOL)


@pytest.mark.nojit
@pytest.mark.parametrize("sizes", ARCHS, ids=ARCH_IDS)
@pytest.mark.parametrize("output,loss", PAIRS, ids=PAIR_IDS)
def test_loss_matches_reference(make_case, sizes, output, loss):
    hidden = "tanh" if len(sizes) % 2 else "softplus"
    net, params, X, Y = make_case(sizes, hidden, output, loss, N=5)
    got = net.loss(params, X, Y)
    assert isinstance(got, float)
    assert got == pytest.approx(
        ref.loss(params, X, Y, hidden, output, loss), rel=1e-12, abs=1e-15
    )


def test_losses_relate_by_their_scale_factors(rng):
    # mse = sse / N, half_sse = sse / 2 on the same net and data.
    sizes, N = [3, 4, 2], 7
    params, X, Y = ref.random_case(rng, sizes, "tanh", "identity", "mse", N=N)
    values = {
        name: fastgrad.MLP(sizes, hidden="tanh", output="identity", loss=name).loss(
            params, X, Y
        )
        for name in ("mse", "sse", "half_sse")
    }
    assert values["mse"] == pytest.approx(values["sse"] / N, rel=1e-13)
    assert values["half_sse"] == pytest.approx(values["sse"] / 2, rel=1e-13)
    assert values["sse"] > 0


@pytest.mark.nojit
@pytest.mark.parametrize(
    "sizes,hidden,pair", BACKPROP_CASES, ids=[_case_id(c) for c in BACKPROP_CASES]
)
def test_backprop_matches_reference(make_case, sizes, hidden, pair):
    output, loss = pair
    net, params, X, Y = make_case(sizes, hidden, output, loss, N=5)
    got = net.backprop(params, X, Y)
    assert isinstance(got, list)
    assert all(isinstance(g, np.ndarray) and g.dtype == np.float64 for g in got)
    assert_grads_close(
        got, ref.backprop(params, X, Y, hidden, output, loss), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_kink_convention_at_exact_zero(hidden):
    # Hidden pre-activation exactly 0: relu'(0) = 0, leaky_relu'(0) = 0.01.
    sizes = [2, 2, 1]
    net = fastgrad.MLP(sizes, hidden=hidden, output="identity", loss="half_sse")
    W1 = np.array([[1.0, 0.0], [1.0, 0.0]])
    b1 = np.array([-3.0, 0.0])  # unit 1: z = x1 + x2 - 3 = 0; unit 2: z = 0
    W2 = np.array([[2.0], [-1.5]])
    b2 = np.array([0.25])
    params = [W1, b1, W2, b2]
    X = np.array([[1.0, 2.0], [2.5, 0.5]])
    Y = np.array([[1.0], [-1.0]])
    zs, _ = ref.forward(params, X, hidden, "identity")
    assert np.all(zs[0] == 0.0)
    got = net.backprop(params, X, Y)
    want = ref.backprop(params, X, Y, hidden, "identity", "half_sse")
    slope = 0.0 if hidden == "relu" else 0.01
    # delta_2 = (yhat - y) = (0.25 - 1, 0.25 + 1); dE/dz1 = delta_2 W2^T * slope
    delta2 = np.array([[-0.75], [1.25]])
    assert np.allclose(want[1], slope * (delta2 @ W2.T).sum(axis=0), rtol=1e-15, atol=0)
    assert_grads_close(got, want, rtol=1e-12, atol=1e-15)


def test_output_kink_convention_at_exact_zero():
    # [D, K] net with relu output and z == 0 everywhere: every gradient is 0.
    net = fastgrad.MLP([2, 2], output="relu", loss="mse")
    params = [np.zeros((2, 2)), np.zeros(2)]
    X = np.array([[1.0, -2.0], [0.5, 3.0]])
    Y = np.array([[1.0, 2.0], [3.0, 4.0]])
    for g in net.backprop(params, X, Y):
        assert np.all(g == 0.0)
    net = fastgrad.MLP([2, 2], output="leaky_relu", loss="mse")
    got = net.backprop(params, X, Y)
    want = ref.backprop(params, X, Y, "sigmoid", "leaky_relu", "mse")
    assert np.all(want[1] != 0.0)
    assert_grads_close(got, want, rtol=1e-13, atol=0)


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh"])
def test_cross_entropy_gradient_with_unnormalised_targets(rng, hidden):
    # E = -(1/N) sum y log p is defined for any y, not only rows summing to 1:
    # dE/dz = (p * sum_k y - y) / N, not the one-hot shortcut (p - y) / N.
    sizes = [3, 4, 3]
    net = fastgrad.MLP(sizes, hidden=hidden, output="softmax", loss="cross_entropy")
    params = ref.random_params(rng, sizes)
    X = rng.standard_normal((5, 3))
    Y = rng.uniform(0.0, 2.0, (5, 3))  # row sums far from 1
    assert net.loss(params, X, Y) == pytest.approx(
        ref.loss(params, X, Y, hidden, "softmax", "cross_entropy"), rel=1e-12
    )
    assert_grads_close(
        net.backprop(params, X, Y),
        ref.backprop(params, X, Y, hidden, "softmax", "cross_entropy"),
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("output", OUTPUTS)
def test_large_preactivations_stay_finite(rng, output):
    sizes = [3, 4]
    loss = loss_for(output)
    net = fastgrad.MLP(sizes, output=output, loss=loss)
    # z up to +-800 (exp overflows without care); softmax logit gaps up to 1500
    # (a probability underflows to 0, so log p must come from a log-softmax).
    W = np.array(
        [[400.0, -350.0, 300.0, 380.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    )
    params = [W, np.array([0.0, 1.0, -2.0, 3.0])]
    X = np.array([[1.0, 0.3, 0.2], [-1.0, 0.1, 0.0], [2.0, 0.0, 1.0]])
    Y = ref.random_targets(rng, 3, 4, output, loss)
    out = net.forward(params, X)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(
        out, ref.output_of(params, X, "sigmoid", output), rtol=1e-12, atol=1e-300
    )
    value = net.loss(params, X, Y)
    assert np.isfinite(value)
    assert value == pytest.approx(
        ref.loss(params, X, Y, "sigmoid", output, loss), rel=1e-12
    )
    grads = net.backprop(params, X, Y)
    assert all(np.all(np.isfinite(g)) for g in grads)


# --------------------------------------------------------------------------
# numerical_gradient against the reference central differences
# --------------------------------------------------------------------------


def _diff_atol(params, X, Y, hidden, output, loss, eps):
    # Both sides round E(w +- eps) to a few ulps of |E| (the summation order
    # differs); the quotient carries that as an absolute error of ~|E| u / eps.
    value = abs(ref.loss(params, X, Y, hidden, output, loss))
    return max(1e-10, 1e-15 * value / eps)


@pytest.mark.nojit
@pytest.mark.parametrize("hidden", ref.ACTIVATIONS)
@pytest.mark.parametrize("output,loss", PAIRS, ids=PAIR_IDS)
def test_numerical_gradient_matches_reference(make_case, hidden, output, loss):
    sizes = [3, 3, 2]
    net, params, X, Y = make_case(sizes, hidden, output, loss)
    want = ref.numerical_gradient(params, X, Y, hidden, output, loss, eps=1e-4)
    atol = _diff_atol(params, X, Y, hidden, output, loss, 1e-4)
    for engine in ("incremental", "full"):
        got = fastgrad.numerical_gradient(net, params, X, Y, eps=1e-4, engine=engine)
        assert isinstance(got, list)
        assert all(isinstance(g, np.ndarray) and g.dtype == np.float64 for g in got)
        assert_grads_close(got, want, rtol=1e-7, atol=atol)


@pytest.mark.parametrize("sizes", ARCHS, ids=ARCH_IDS)
@pytest.mark.parametrize("eps", [1e-2, 1e-3, 1e-4, 1e-5])
def test_numerical_gradient_eps_matches_reference(make_case, sizes, eps):
    net, params, X, Y = make_case(sizes, "sigmoid", "sigmoid", "mse")
    got = fastgrad.numerical_gradient(net, params, X, Y, eps=eps)
    want = ref.numerical_gradient(params, X, Y, "sigmoid", "sigmoid", "mse", eps=eps)
    atol = _diff_atol(params, X, Y, "sigmoid", "sigmoid", "mse", eps)
    assert_grads_close(got, want, rtol=1e-7, atol=atol)


@pytest.mark.parametrize(
    "hidden,output,loss",
    [
        ("relu", "identity", "mse"),
        ("leaky_relu", "sigmoid", "sse"),
        ("relu", "softmax", "cross_entropy"),
        ("tanh", "relu", "half_sse"),
    ],
)
def test_numerical_gradient_across_a_kink_matches_reference(rng, hidden, output, loss):
    # A pre-activation within eps of a relu kink: the difference quotient
    # straddles it, and must still be exactly the API's formula.
    sizes = [3, 4, 3, 2]
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    for _ in range(5):
        params = ref.random_params(rng, sizes)
        X = rng.standard_normal((4, 3))
        Y = ref.random_targets(rng, 4, 2, output, loss)
        zs, _ = ref.forward(params, X, hidden, output)
        layer = 2 if output in ref.KINKED else int(rng.integers(0, 2))
        n, j = int(rng.integers(0, 4)), int(rng.integers(0, sizes[layer + 1]))
        params[2 * layer + 1][j] -= zs[layer][n, j] - rng.uniform(-5e-5, 5e-5)
        assert abs(ref.forward(params, X, hidden, output)[0][layer][n, j]) < 1e-4
        want = ref.numerical_gradient(params, X, Y, hidden, output, loss)
        atol = _diff_atol(params, X, Y, hidden, output, loss, 1e-4)
        for engine in _engines():
            got = fastgrad.numerical_gradient(net, params, X, Y, eps=1e-4, engine=engine)
            assert_grads_close(got, want, rtol=1e-7, atol=atol)


def test_numerical_gradient_eps_actually_used(make_case):
    # A large eps has a visible truncation error; the reference must track it.
    net, params, X, Y = make_case([3, 4, 2], "tanh", "tanh", "sse")
    big = fastgrad.numerical_gradient(net, params, X, Y, eps=0.3)
    small = fastgrad.numerical_gradient(net, params, X, Y, eps=1e-4)
    assert max(np.max(np.abs(a - b)) for a, b in zip(big, small)) > 1e-4
    want = ref.numerical_gradient(params, X, Y, "tanh", "tanh", "sse", eps=0.3)
    assert_grads_close(big, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("engine,default_eps", [("incremental", 1e-8), ("full", 1e-4)])
def test_numerical_gradient_default_eps_per_engine(make_case, engine, default_eps):
    # The full engine keeps the tutorial's 1e-4; the incremental engine (the
    # default engine) has no cancellation and defaults to 1e-8. The default
    # step is scaled by max(1, |w|): with every |w| <= 1 it is the explicit one.
    net, params, X, Y = make_case([3, 4, 2], "tanh", "sigmoid", "mse")
    big = [p.copy() for p in params]
    big[0][0, 0] = 3.0
    scaled = fastgrad.numerical_gradient(net, big, X, Y, engine=engine)
    plain = fastgrad.numerical_gradient(net, big, X, Y, eps=default_eps, engine=engine)
    assert not np.array_equal(scaled[0], plain[0])  # W1[0, 0] got the step 3 * eps
    params = [np.clip(p, -0.9, 0.9) for p in params]
    default = fastgrad.numerical_gradient(net, params, X, Y, engine=engine)
    explicit = fastgrad.numerical_gradient(net, params, X, Y, eps=default_eps, method="central", engine=engine)
    none = fastgrad.numerical_gradient(net, params, X, Y, eps=None, engine=engine)
    other = fastgrad.numerical_gradient(net, params, X, Y, eps=default_eps * 10, engine=engine)
    for a, b, c in zip(default, explicit, none):
        assert np.array_equal(a, b)
        assert np.array_equal(a, c)
    assert any(not np.array_equal(a, d) for a, d in zip(default, other))
    if engine == "incremental":
        assert all(np.array_equal(a, b) for a, b in zip(default, fastgrad.numerical_gradient(net, params, X, Y)))


def test_numerical_gradient_progress_callback(make_case):
    net, params, X, Y = make_case([3, 5, 4, 2], "tanh", "sigmoid", "mse")
    calls = []
    got = fastgrad.numerical_gradient(
        net, params, X, Y, progress=lambda done, total: calls.append((done, total))
    )
    assert calls, "progress was never called"
    dones = [d for d, _ in calls]
    totals = {t for _, t in calls}
    assert len(totals) == 1
    (total,) = totals
    assert total > 0
    assert dones == sorted(dones)
    assert all(0 <= d <= total for d in dones)
    assert dones[-1] == total
    quiet = fastgrad.numerical_gradient(net, params, X, Y)
    for a, b in zip(got, quiet):
        assert np.array_equal(a, b)


# --------------------------------------------------------------------------
# Backprop against numerical gradients, every activation / loss / depth
# --------------------------------------------------------------------------

SWEEP = [(depth, hidden) for depth in (2, 3, 4) for hidden in ref.ACTIVATIONS] + [
    (1, "sigmoid")
]


@pytest.mark.parametrize("depth,hidden", SWEEP, ids=[f"depth{d}-{h}" for d, h in SWEEP])
@pytest.mark.parametrize("output,loss", PAIRS, ids=PAIR_IDS)
def test_backprop_passes_check(make_case, depth, hidden, output, loss):
    # eps = 1e-4 leaves a truncation error up to ~1e-5 relative on small
    # entries of these nets, so the check runs with rtol 1e-4 / atol 1e-7.
    net, params, X, Y = make_case(DEPTHS[depth], hidden, output, loss)
    result = fastgrad.check(net, params, X, Y, rtol=1e-4, atol=1e-7)
    assert result.passed, str(result)
    assert result.n_failed == 0
    assert result.max_rel_error < 1e-4


# --------------------------------------------------------------------------
# Exact properties
# --------------------------------------------------------------------------


def _linear_case(rng, D=4, K=3, N=6):
    net = fastgrad.MLP([D, K], hidden="sigmoid", output="identity", loss="half_sse")
    W = rng.standard_normal((D, K))
    b = rng.standard_normal(K)
    X = rng.standard_normal((N, D))
    Y = rng.standard_normal((N, K))
    residual = X @ W + b - Y
    exact = [X.T @ residual, residual.sum(axis=0)]
    return net, [W, b], X, Y, exact


def test_linear_half_sse_backprop_is_closed_form(rng):
    net, params, X, Y, exact = _linear_case(rng)
    assert_grads_close(net.backprop(params, X, Y), exact, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("eps", [1e-4, 1e-2, 0.5, 3.0])
def test_linear_half_sse_central_difference_exact_for_any_eps(rng, eps):
    # The loss is quadratic in each single parameter, so the central
    # difference has no truncation error at all: only rounding, ~|E| u / eps.
    net, params, X, Y, exact = _linear_case(rng)
    got = fastgrad.numerical_gradient(net, params, X, Y, eps=eps)
    E = ref.loss(params, X, Y, "sigmoid", "identity", "half_sse")
    scale = max(np.max(np.abs(g)) for g in exact)
    atol = 50 * np.finfo(float).eps * max(E, scale) / eps
    assert_grads_close(got, exact, rtol=1e-9, atol=atol)
    result = fastgrad.check(net, params, X, Y, eps=eps, rtol=1e-7, atol=1e-9)
    assert result.passed, str(result)


def test_linear_sse_and_mse_scale(rng):
    # Same linear data: sse gradient = 2 * half_sse gradient, mse = 2/N of it.
    D, K, N = 3, 2, 5
    W = rng.standard_normal((D, K))
    b = rng.standard_normal(K)
    X = rng.standard_normal((N, D))
    Y = rng.standard_normal((N, K))
    residual = X @ W + b - Y
    base = [X.T @ residual, residual.sum(axis=0)]
    for loss, factor in (("half_sse", 1.0), ("sse", 2.0), ("mse", 2.0 / N)):
        net = fastgrad.MLP([D, K], output="identity", loss=loss)
        assert_grads_close(
            net.backprop([W, b], X, Y),
            [factor * g for g in base],
            rtol=1e-12,
            atol=1e-13,
        )
        num = fastgrad.numerical_gradient(net, [W, b], X, Y)
        assert_grads_close(num, [factor * g for g in base], rtol=1e-8, atol=1e-9)


def _smooth_case(rng, engine="incremental"):
    sizes = [3, 4, 2]
    hidden, output, loss = "tanh", "tanh", "mse"
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    params, X, Y = ref.random_case(rng, sizes, hidden, output, loss)
    exact = np.concatenate(
        [g.ravel() for g in ref.backprop(params, X, Y, hidden, output, loss)]
    )

    def error(eps):
        num = fastgrad.numerical_gradient(net, params, X, Y, eps=eps, engine=engine)
        return float(np.linalg.norm(np.concatenate([g.ravel() for g in num]) - exact))

    return error


@pytest.mark.parametrize("engine", ["incremental", "full"])
def test_error_shrinks_like_eps_squared(rng, engine):
    error = _smooth_case(rng, engine)
    # Truncation regime: halving eps divides the error by ~4.
    steps = [0.04, 0.02, 0.01, 0.005]
    errors = [error(e) for e in steps]
    for big, small in zip(errors[:-1], errors[1:]):
        assert 3.5 < big / small < 4.5, errors
    # Near the optimum (eps ~ u^(1/3)) the error is tiny.
    best = error(1e-5)
    assert best < 1e-3 * errors[-1]
    assert best < 1e-8


def test_rounding_wins_for_tiny_eps(rng):
    # API.md: entry = (E(w + eps) - E(w - eps)) / (2 eps). Formed literally,
    # the subtraction cancels and rounding (~|E| u / eps) takes over for tiny
    # eps: the error grows again, roughly like 1/eps.
    error = _smooth_case(rng, "full")
    best = error(1e-5)
    assert error(1e-10) > 10 * best
    assert error(1e-12) > 10 * error(1e-10) / 3


def test_incremental_engine_has_no_rounding_blowup(rng):
    # The incremental engine never subtracts two losses: shrinking eps far
    # below the full engine's optimum keeps the result at rounding level,
    # at least 1000x closer to the exact gradient than the full engine.
    seed = int(rng.integers(2**31))
    incremental = _smooth_case(np.random.default_rng(seed), "incremental")
    full = _smooth_case(np.random.default_rng(seed), "full")
    for eps in (1e-8, 1e-10, 1e-12):
        assert incremental(eps) < 1e-13, (eps, incremental(eps))
        assert incremental(eps) * 1000 < full(eps), (eps, incremental(eps), full(eps))


# --------------------------------------------------------------------------
# Hypothesis: shapes of everything on arbitrary small architectures
# --------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=2, max_size=5),
    N=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_shapes_property(sizes, N, seed):
    rng = np.random.default_rng(seed)
    net = fastgrad.MLP(sizes, hidden="tanh", output="sigmoid", loss="mse")
    shapes = ref.param_shapes(sizes)
    assert net.n_params == sum(int(np.prod(s)) for s in shapes)
    params = net.init(seed=seed % 1000)
    assert [p.shape for p in params] == shapes
    params = ref.random_params(rng, sizes)
    X = rng.standard_normal((N, sizes[0]))
    Y = rng.uniform(0.1, 0.9, (N, sizes[-1]))
    out = net.forward(params, X)
    assert out.shape == (N, sizes[-1])
    np.testing.assert_allclose(
        out, ref.output_of(params, X, "tanh", "sigmoid"), **FWD_TOL
    )
    grads = net.backprop(params, X, Y)
    num = fastgrad.numerical_gradient(net, params, X, Y)
    assert [g.shape for g in grads] == shapes
    assert [g.shape for g in num] == shapes
    assert_grads_close(grads, num, rtol=1e-4, atol=1e-7)
    result = fastgrad.check(net, params, X, Y, rtol=1e-4, atol=1e-7)
    assert result.n_params == net.n_params
    assert [t.name for t in result.tensors] == list(ref.tensor_names(len(sizes) - 1))
    assert [tuple(t.shape) for t in result.tensors] == shapes


# --------------------------------------------------------------------------
# Beyond API.md: public extras the package exposes today
# --------------------------------------------------------------------------


def _engines():
    import inspect

    if "engine" not in inspect.signature(fastgrad.numerical_gradient).parameters:
        return []
    return ["full", "incremental"]


@pytest.mark.skipif(not _engines(), reason="numerical_gradient has no engine kwarg")
@pytest.mark.parametrize("hidden", ref.ACTIVATIONS)
@pytest.mark.parametrize("output,loss", PAIRS, ids=PAIR_IDS)
def test_engines_match_reference(make_case, hidden, output, loss):
    # numerical_gradient(engine=...) is not in API.md; every engine must still
    # return the API's central difference (to rounding).
    smooth = hidden not in ref.KINKED and output not in ref.KINKED
    archs = (
        ([3, 2], [1, 3, 1], [3, 3, 4, 2])
        if hidden == "sigmoid"
        else ([1, 3, 1], [3, 3, 4, 2])
    )
    for sizes in archs:
        net, params, X, Y = make_case(sizes, hidden, output, loss)
        for eps in (1e-4, 0.3) if smooth else (1e-4, 1e-3):
            want = ref.numerical_gradient(params, X, Y, hidden, output, loss, eps=eps)
            atol = _diff_atol(params, X, Y, hidden, output, loss, eps)
            for engine in _engines():
                got = fastgrad.numerical_gradient(
                    net, params, X, Y, eps=eps, engine=engine
                )
                assert_grads_close(got, want, rtol=1e-7, atol=atol)


@pytest.mark.skipif(
    not hasattr(fastgrad, "relative_error"), reason="no fastgrad.relative_error"
)
def test_public_relative_error_follows_the_rule(rng):
    a = np.concatenate([rng.standard_normal(20), [0.0, 0.0, 1e-9, 3.0, -2e-9]])
    n = np.concatenate(
        [a[:20] * (1 + 1e-4 * rng.standard_normal(20)), [0.0, 1e-9, 0.0, 3.0, 2e-9]]
    )
    for rtol, atol in ((1e-5, 1e-8), (1e-3, 0.0), (1e-7, 1e-6)):
        got = fastgrad.relative_error(a, n, rtol, atol)
        np.testing.assert_allclose(
            got, ref.rel_error(a, n, rtol, atol), rtol=1e-14, atol=0
        )

"""The default verdict: per-entry error budgets, methods, kinks, float32.

The budget must never cry wolf on a correct gradient (hundreds of random
networks, saturated ones and float32 backprops among them) and still catch
errors far below a fixed tolerance's reach.
"""

import numpy as np
import pytest
import reference as ref
from exact import DIGITS, exact_loss, mpmath, needs_mpmath

import fastgrad

ACTS = ["sigmoid", "tanh", "relu", "leaky_relu", "softplus", "identity"]
OUTPUTS = [("sigmoid", "mse"), ("identity", "sse"), ("tanh", "half_sse"), ("softmax", "cross_entropy"),
           ("relu", "mse"), ("softplus", "half_sse"), ("sigmoid", "bce")]


# --------------------------------------------------------------------------
# A user's backprop in any float dtype (float32 arithmetic throughout)
# --------------------------------------------------------------------------


def _act(name, z):
    one = z.dtype.type(1)
    if name == "sigmoid":
        return one / (one + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.where(z > 0, z, z.dtype.type(0))
    if name == "leaky_relu":
        return np.where(z > 0, z, z.dtype.type(0.01) * z)
    if name == "softplus":
        return np.logaddexp(z.dtype.type(0), z)
    if name == "identity":
        return z.copy()
    raise ValueError(name)


def _act_prime(name, z, a):
    one = z.dtype.type(1)
    if name == "sigmoid":
        return a * (one - a)
    if name == "tanh":
        return one - a * a
    if name == "relu":
        return np.where(z > 0, one, z.dtype.type(0))
    if name == "leaky_relu":
        return np.where(z > 0, one, z.dtype.type(0.01))
    if name == "softplus":
        return one / (one + np.exp(-z))
    if name == "identity":
        return np.ones_like(z)
    raise ValueError(name)


def user_backprop(params, X, Y, hidden, output, loss, dtype):
    """A textbook backprop computed entirely in ``dtype`` (exp may overflow to inf, as it would)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        return _user_backprop(params, X, Y, hidden, output, loss, dtype)


def _user_backprop(params, X, Y, hidden, output, loss, dtype):
    params = [np.asarray(p, dtype=dtype) for p in params]
    a = np.asarray(X, dtype=dtype)
    Y = np.asarray(Y, dtype=dtype)
    L = len(params) // 2
    zs, acts = [], [a]
    for layer in range(L):
        z = a @ params[2 * layer] + params[2 * layer + 1]
        name = output if layer == L - 1 else hidden
        if name == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            a = e / e.sum(axis=1, keepdims=True)
        else:
            a = _act(name, z)
        zs.append(z)
        acts.append(a)
    N = dtype(X.shape[0])
    if loss == "cross_entropy":
        delta = (a * Y.sum(axis=1, keepdims=True) - Y) / N
    elif loss == "bce":
        delta = (a - Y) / N
    else:
        factor = {"mse": dtype(2) / N, "sse": dtype(2), "half_sse": dtype(1)}[loss]
        delta = factor * (a - Y) * _act_prime(output, zs[-1], a)
    grads = [None] * (2 * L)
    for layer in reversed(range(L)):
        grads[2 * layer] = acts[layer].T @ delta
        grads[2 * layer + 1] = delta.sum(axis=0)
        if layer > 0:
            delta = (delta @ params[2 * layer].T) * _act_prime(hidden, zs[layer - 1], acts[layer])
    return grads


def _random_case(rng, dtype, saturate, x_scale=1.0):
    depth = int(rng.integers(1, 5))
    sizes = [int(rng.integers(1, 7)) for _ in range(depth + 1)]
    hidden = ACTS[int(rng.integers(len(ACTS)))]
    output, loss = OUTPUTS[int(rng.integers(len(OUTPUTS)))]
    if loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    N = int(rng.choice([1, 2, 5, 8, 17, 64]))
    scale = 6.0 if saturate else 1.0
    params = ref.random_params(rng, sizes, scale=scale)
    X = rng.standard_normal((N, sizes[0])) * x_scale
    Y = ref.random_targets(rng, N, sizes[-1], output, loss)
    params = [p.astype(dtype) for p in params]
    return sizes, hidden, output, loss, params, X.astype(dtype), Y.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("saturate", [False, True], ids=["normal", "saturated"])
def test_no_false_alarm_on_correct_gradients(dtype, saturate):
    # 4 x 60 = 240 random networks: depth 1-4, every activation and loss,
    # N from 1 to 64, weights at normal scale and x6 into saturation, the
    # user's backprop in float64 or in float32 arithmetic.
    # A saturated net can leave the check unable to tell the gradient from zero
    # (everything is ~1e-100): "inconclusive" then, never "failed".
    rng = np.random.default_rng(1000 + 2 * int(saturate) + (dtype is np.float32))
    checked = inconclusive = 0
    for _ in range(60):
        sizes, hidden, output, loss, params, X, Y = _random_case(rng, dtype, saturate)
        net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
        grads = user_backprop(params, X, Y, hidden, output, loss, dtype)
        if not all(np.all(np.isfinite(g)) for g in grads):
            continue  # float32 overflow in the user's own arithmetic: nothing to check
        result = fastgrad.check(net, params, X, Y, grads)
        assert result.status != "failed", f"{sizes} {hidden} {output} {loss} N={X.shape[0]}\n{result}"
        assert result.passed or saturate, f"{sizes} {hidden} {output} {loss} N={X.shape[0]}\n{result}"
        inconclusive += result.status == "inconclusive"
        checked += 1
    assert checked >= 55
    assert inconclusive <= checked // 3, inconclusive


@pytest.fixture
def sigmoid_case():
    rng = np.random.default_rng(3)
    sizes = [5, 6, 3]
    net = fastgrad.MLP(sizes, hidden="sigmoid", output="sigmoid", loss="mse")
    params = ref.random_params(rng, sizes)
    X = rng.standard_normal((16, 5))
    Y = rng.uniform(size=(16, 3))
    return net, params, X, Y, net.backprop(params, X, Y)


def test_single_entry_off_by_one_millionth_is_caught(sigmoid_case):
    net, params, X, Y, grads = sigmoid_case
    assert fastgrad.check(net, params, X, Y, grads).passed
    wrong = [g.copy() for g in grads]
    i = np.unravel_index(np.argmax(np.abs(wrong[0])), wrong[0].shape)  # a well-conditioned entry
    wrong[0][i] *= 1 + 1e-6
    result = fastgrad.check(net, params, X, Y, wrong)
    assert not result.passed
    assert [(f.tensor, f.index) for f in result.failures] == [("W1", tuple(int(k) for k in i))]
    assert result.failures[0].budget_ratio > 10
    assert "over their error budget" in str(result)
    # a fixed tolerance of torch.autograd.gradcheck's kind does not see it
    assert fastgrad.check(net, params, X, Y, wrong, rtol=1e-3, atol=1e-5).passed


def test_tensor_scaled_by_one_plus_1e_4_is_caught(sigmoid_case):
    net, params, X, Y, grads = sigmoid_case
    wrong = [g.copy() for g in grads]
    wrong[2] = wrong[2] * (1 + 1e-4)
    result = fastgrad.check(net, params, X, Y, wrong)
    assert not result.passed
    assert {f.tensor for f in result.failures} == {"W2"}
    assert "1.0001" in result.tensor("W2").hint


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_relu_kink_within_reach_is_inconclusive_not_a_failure(hidden):
    rng = np.random.default_rng(7)
    sizes = [3, 4, 2]
    net = fastgrad.MLP(sizes, hidden=hidden, output="sigmoid", loss="mse")
    params = ref.random_params(rng, sizes)
    X = rng.standard_normal((6, 3))
    Y = rng.uniform(size=(6, 2))
    Z, _ = net._forward(net.flatten(params), X)
    n, j = 2, 1
    params[1][j] -= Z[n, j] - 1e-9  # that pre-activation now sits 1e-9 from the kink
    grads = net.backprop(params, X, Y)
    result = fastgrad.check(net, params, X, Y, grads)
    assert result.passed, str(result)
    flagged = {(c.tensor, c.index) for c in result.inconclusive}
    assert ("b1", (j,)) in flagged
    assert all(name in ("W1", "b1") and index[-1] == j for name, index in flagged)
    assert "inconclusive" in str(result)
    # a wrong gradient elsewhere is still caught
    wrong = [g.copy() for g in grads]
    wrong[2][0, 0] *= 1.01
    assert not fastgrad.check(net, params, X, Y, wrong).passed


def _exact_gradient(net, params, X, Y):
    theta = net.flatten(params)
    with mpmath.workdps(DIGITS):
        base = [mpmath.mpf(float(v)) for v in theta]

        def loss_at(i, w):
            moved = list(base)
            moved[i] = w
            return exact_loss(net, moved, X, Y)

        return np.array([float(mpmath.diff(lambda w, i=i: loss_at(i, w), base[i])) for i in range(theta.size)])


@needs_mpmath
@pytest.mark.parametrize("engine", ["incremental", "full"])
@pytest.mark.parametrize(
    "hidden,output,loss",
    [("sigmoid", "sigmoid", "mse"), ("tanh", "softmax", "cross_entropy"), ("softplus", "identity", "half_sse"),
     ("tanh", "sigmoid", "bce")],
)
def test_method_accuracy_against_the_exact_gradient(engine, hidden, output, loss):
    rng = np.random.default_rng(5)
    sizes = [3, 4, 3]
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    params = ref.random_params(rng, sizes)
    X = rng.standard_normal((5, 3))
    Y = ref.random_targets(rng, 5, 3, output, loss)
    exact = _exact_gradient(net, params, X, Y)
    scale = np.max(np.abs(exact))
    bounds = {"complex": 1e-13, "richardson": 1e-10, "central": 1e-7}
    for method, bound in bounds.items():
        got = np.concatenate([g.ravel() for g in fastgrad.numerical_gradient(
            net, params, X, Y, method=method, engine=engine)])
        assert np.max(np.abs(got - exact)) <= bound * scale, method
        result = fastgrad.check(net, params, X, Y, method=method, engine=engine)
        assert result.passed and result.method == method, str(result)


def test_budget_is_reported_per_entry(sigmoid_case):
    net, params, X, Y, grads = sigmoid_case
    result = fastgrad.check(net, params, X, Y, grads)
    assert result.verdict == "budget"
    assert [b.shape for b in result.budget] == [p.shape for p in params]
    assert all(np.all(b > 0) for b in result.budget)
    for a, n, b, q in zip(result.analytic, result.numerical, result.budget, result.budget_ratio):
        np.testing.assert_allclose(q, np.abs(a - n) / b, rtol=1e-12)
    assert result.max_budget_ratio == max(float(np.max(q)) for q in result.budget_ratio)
    doc = result.to_dict()
    assert doc["verdict"] == "budget" and doc["max_budget_ratio"] == pytest.approx(result.max_budget_ratio)
    # fixed tolerances override the budget
    assert fastgrad.check(net, params, X, Y, grads, rtol=1e-5).verdict == "tolerance"


def test_float32_gradient_budget_keeps_catching_one_percent():
    rng = np.random.default_rng(11)
    sizes = [4, 5, 3]
    net = fastgrad.MLP(sizes, hidden="tanh", output="sigmoid", loss="mse")
    params = [p.astype(np.float32) for p in ref.random_params(rng, sizes)]
    X = rng.standard_normal((32, 4)).astype(np.float32)
    Y = rng.uniform(size=(32, 3)).astype(np.float32)
    grads = user_backprop(params, X, Y, "tanh", "sigmoid", "mse", np.float32)
    assert fastgrad.check(net, params, X, Y, grads).passed
    wrong = [g.copy() for g in grads]
    wrong[1] = wrong[1] * np.float32(1.01)
    result = fastgrad.check(net, params, X, Y, wrong)
    assert not result.passed and {f.tensor for f in result.failures} == {"b1"}


@pytest.mark.parametrize("engine", ["incremental", "full"])
@pytest.mark.parametrize("method", ["central", "richardson", "complex"])
def test_methods_are_bitwise_reproducible_across_threads(engine, method):
    rng = np.random.default_rng(9)
    sizes = [6, 9, 7, 3]
    net = fastgrad.MLP(sizes, hidden="tanh", output="sigmoid", loss="mse")
    params = ref.random_params(rng, sizes)
    X = rng.standard_normal((12, 6))
    Y = rng.uniform(size=(12, 3))
    runs = [fastgrad.numerical_gradient(net, params, X, Y, method=method, engine=engine, threads=t) for t in (1, 2)]
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    one, two = (fastgrad.check(net, params, X, Y, method=method, engine=engine, threads=t) for t in (1, 2))
    assert all(np.array_equal(a, b) for a, b in zip(one.budget, two.budget))


@pytest.mark.parametrize(
    "sizes,hidden,output,loss",
    [([4, 6, 5, 3], "tanh", "sigmoid", "mse"), ([3, 5, 4, 3, 3], "softplus", "softmax", "cross_entropy"),
     ([5, 7, 4, 2], "leaky_relu", "identity", "half_sse"), ([4, 6, 5, 3], "softplus", "sigmoid", "bce")],
)
def test_unit_engine_agrees_with_the_per_parameter_engine(sizes, hidden, output, loss):
    rng = np.random.default_rng(8)
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    params = ref.random_params(rng, sizes)
    X = rng.standard_normal((9, sizes[0]))
    Y = ref.random_targets(rng, 9, sizes[-1], output, loss)
    unit = np.concatenate([g.ravel() for g in fastgrad.numerical_gradient(net, params, X, Y, engine="unit")])
    exact = np.concatenate([g.ravel() for g in fastgrad.numerical_gradient(net, params, X, Y)])
    assert np.max(np.abs(unit - exact)) <= 1e-9 * np.max(np.abs(exact))
    runs = [fastgrad.numerical_gradient(net, params, X, Y, engine="unit", threads=t) for t in (1, 2)]
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    with pytest.raises(ValueError, match="engine='unit'"):
        fastgrad.numerical_gradient(net, params, X, Y, engine="unit", method="complex")

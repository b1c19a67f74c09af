"""``loss="bce"``: binary cross-entropy on sigmoid outputs, from the logits (issue 15).

* Its value against the NumPy twin and against 60-digit mpmath at hostile
  logits (|z| up to 1e3, saturated right and wrong, targets 0, 1 and 0.3,
  multi-label rows): a confident right output keeps its relative accuracy.
* The numerical gradient of every engine and method against the twin's
  exact gradient, on moderate and on saturated nets.
* ``fastgrad.check`` passes the twin's backprop and fails wrong ones on the
  tensors they are wrong in.
* The pairing: bce needs ``output="sigmoid"``.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from exact import DIGITS, mpmath, needs_mpmath

import fastgrad
from fastgrad._kernels.losses.bce import _odd_change
from fastgrad.directional import term_sizes
from fastgrad.engines import numerical_details

#: (engine, method) pairs an MLP supports ("unit" differentiates by central differences only).
COMBOS = [("incremental", "central"), ("incremental", "richardson"), ("incremental", "complex"),
          ("full", "central"), ("full", "richardson"), ("full", "complex"), ("unit", "central")]
#: Largest error relative to the gradient's largest entry, per (engine, method), at the default step.
#: Measured on the moderate net below: ~4e-16 for the incremental and unit engines and the complex step,
#: ~1e-11 full Richardson, ~6e-9 full central (cancellation in E(w+h) - E(w-h)).
LIMIT = {("full", "central"): 1e-6, ("full", "richardson"): 1e-9}
HOSTILE = (0.0, 1e-3, 1.0, 30.0, 40.0, 700.0, 800.0, 1e3)


def _accurate_grads(params, X, Y, hidden):
    """The twin's backprop with ``sigmoid(z) - y`` as ``(1 - y) s(z) - y s(-z)``: exact in saturation too."""
    zs, acts = ref.forward(params, X, hidden, "sigmoid")
    N = Y.shape[0]
    delta = ((1.0 - Y) * ref.sigmoid(zs[-1]) - Y * ref.sigmoid(-zs[-1])) / N
    grads = [None] * len(params)
    for layer in reversed(range(len(params) // 2)):
        grads[2 * layer] = acts[layer].T @ delta
        grads[2 * layer + 1] = delta.sum(axis=0)
        if layer > 0:
            delta = (delta @ params[2 * layer].T) * ref.activation_derivative(hidden, zs[layer - 1])
    return grads


def _logit_net(Z):
    """A net whose logits are ``Z`` exactly: ``MLP([K, K])`` with ``W = I``, ``b = 0`` and ``X = Z``."""
    K = Z.shape[1]
    net = fastgrad.MLP([K, K], output="sigmoid", loss="bce")
    return net, [np.eye(K), np.zeros(K)]


def _exact_softplus(v):
    """``log(1 + e^v)`` as ``max(v, 0) + log1p(e^-|v|)``: 60 digits of it, also where it is ``v`` + 1e-304."""
    return max(v, 0) + mpmath.log1p(mpmath.exp(-abs(v)))


def _exact_bce(Z, Y):
    """``(1/N) sum_n sum_k log(1 + e^z) - y z`` to 60 digits, as ``(1 - y) softplus(z) + y softplus(-z)``.

    (``softplus(z) - y z`` itself would cancel to 0 at 60 digits for ``y = 1``, ``z = 700``.)
    """
    with mpmath.workdps(DIGITS):
        terms = [(mpmath.mpf(float(z)), mpmath.mpf(float(y))) for z, y in zip(np.ravel(Z), np.ravel(Y))]
        total = mpmath.fsum((1 - y) * _exact_softplus(z) + y * _exact_softplus(-z) for z, y in terms)
        return total / Z.shape[0]


def _hostile_batch():
    """Every hostile logit, both signs, against targets 0, 1 and 0.3, in multi-label rows of three."""
    logits = [s * m for m in HOSTILE for s in (1.0, -1.0)]
    rows_z, rows_y = [], []
    for z in logits:
        for y in (0.0, 1.0, 0.3):
            rows_z.append([z, -z, 0.5 * z])
            rows_y.append([y, 1.0, 1.0 - y])  # two or three 1s in some rows
    return np.array(rows_z), np.array(rows_y)


# --------------------------------------------------------------------------
# The value
# --------------------------------------------------------------------------


@needs_mpmath
def test_value_matches_the_twin_and_the_exact_loss_at_hostile_logits():
    Z, Y = _hostile_batch()
    net, params = _logit_net(Z)
    got = net.loss(params, Z, Y)
    twin = ref.bce_from_logits(Z, Y)
    # the twin's softplus(z) - y z cancels where a confident output is right: it rounds at the size of z
    assert abs(got - twin) <= 8 * np.finfo(float).eps * np.sum(np.abs(Z) + np.logaddexp(0.0, Z)) / Z.shape[0]
    exact = _exact_bce(Z, Y)
    assert abs(got - float(exact)) <= 1e-14 * float(exact)


@needs_mpmath
@pytest.mark.parametrize("z", [s * m for m in HOSTILE for s in (1.0, -1.0)])
@pytest.mark.parametrize("y", [0.0, 1.0, 0.3])
def test_each_term_keeps_its_relative_accuracy(z, y):
    # a right, confident output (y = 1, z = 40: 4.2e-18) is not rounded to 0 against |z|
    Z, Y = np.array([[z]]), np.array([[y]])
    net, params = _logit_net(Z)
    got = net.loss(params, Z, Y)
    exact = float(_exact_bce(Z, Y))
    assert abs(got - exact) <= 4 * np.finfo(float).eps * exact + 1e-320, (got, exact)


def test_mlp_bce_needs_a_sigmoid_output():
    with pytest.raises(ValueError, match="tanh") as info:
        fastgrad.MLP([3, 2], output="tanh", loss="bce")
    assert "bce" in str(info.value) and "sigmoid" in str(info.value)
    with pytest.raises(ValueError, match="bce"):
        fastgrad.MLP([3, 2], output="softmax", loss="bce")
    for loss in ("mse", "sse", "half_sse", "bce"):  # sigmoid still goes with the squared errors
        assert fastgrad.MLP([3, 2], output="sigmoid", loss=loss).loss_name == loss


@needs_mpmath
@pytest.mark.parametrize("y", [0.0, 1.0, 0.3])
def test_the_incremental_change_is_cancellation_free(y):
    # t(z + d) - t(z - d) of one output's term, every hostile z and steps from 1e-300 to 800, against
    # 1500-digit arithmetic (enough for a difference 1e-300 of values down to e^-1000)
    worst = 0.0
    for z in [s * m for m in HOSTILE for s in (1.0, -1.0)]:
        for d in (1e-300, 1e-8, 1e-4, 0.3, 10.0, 800.0):
            got = _odd_change(z, y, d, -d)
            with mpmath.workdps(1500):
                zz, dd, yy = mpmath.mpf(z), mpmath.mpf(d), mpmath.mpf(y)

                def term(v, yy=yy):
                    return (1 - yy) * mpmath.log1p(mpmath.exp(v)) + yy * mpmath.log1p(mpmath.exp(-v))

                exact = term(zz + dd) - term(zz - dd)
                # the parts' own sizes: (1 - y) s - y q cancels only for soft targets, where it must
                parts = abs((1 - yy) * (mpmath.log1p(mpmath.exp(zz + dd)) - mpmath.log1p(mpmath.exp(zz - dd))))
                parts += abs(yy * (mpmath.log1p(mpmath.exp(-zz - dd)) - mpmath.log1p(mpmath.exp(-zz + dd))))
                # a subnormal result keeps only an absolute accuracy of a few 2^-1074
                err = float(abs(mpmath.mpf(got) - exact) / (parts + mpmath.mpf("1e-320") / np.finfo(float).eps))
            worst = max(worst, err)
            assert err <= 8 * np.finfo(float).eps, (z, d, got, float(exact))
    assert worst > 0.0


# --------------------------------------------------------------------------
# The numerical gradient, every engine and method
# --------------------------------------------------------------------------


def _moderate_case(seed=0, N=7):
    rng = np.random.default_rng(seed)
    sizes = [4, 6, 3]
    params = ref.random_params(rng, sizes, scale=3.0)
    X = rng.standard_normal((N, sizes[0]))
    Y = ref.random_targets(rng, N, sizes[-1], "sigmoid", "bce")
    Y[0] = [1.0, 1.0, 0.0]  # multi-label
    return fastgrad.MLP(sizes, hidden="tanh", output="sigmoid", loss="bce"), params, X, Y


def test_backprop_and_loss_match_the_twin():
    net, params, X, Y = _moderate_case()
    assert net.loss(params, X, Y) == pytest.approx(ref.loss(params, X, Y, "tanh", "sigmoid", "bce"), rel=1e-14)
    for got, want in zip(net.backprop(params, X, Y), ref.backprop(params, X, Y, "tanh", "sigmoid", "bce")):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("engine,method", COMBOS)
def test_numerical_gradient_matches_the_twin(engine, method):
    net, params, X, Y = _moderate_case()
    want = ref.backprop(params, X, Y, "tanh", "sigmoid", "bce")
    got = fastgrad.numerical_gradient(net, params, X, Y, engine=engine, method=method)
    scale = max(float(np.max(np.abs(w))) for w in want)
    err = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want)) / scale
    assert err <= LIMIT.get((engine, method), 1e-12), err


@pytest.mark.parametrize("engine,method", COMBOS)
def test_numerical_gradient_on_saturated_outputs(engine, method):
    # logits ~ +-40: the wrong outputs' gradient is O(1), the right ones' e^-40 ~ 4e-18; multi-label rows
    rng = np.random.default_rng(3)
    D, K, N = 3, 4, 6
    X = rng.choice([-1.0, 1.0], size=(N, D)) * rng.uniform(0.8, 1.2, (N, D))
    params = [40.0 * rng.choice([-1.0, 1.0], size=(D, K)) / D, rng.uniform(-1.0, 1.0, K)]
    Y = (rng.random((N, K)) < 0.5).astype(float)
    net = fastgrad.MLP([D, K], output="sigmoid", loss="bce")
    want = _accurate_grads(params, X, Y, "identity")
    got = fastgrad.numerical_gradient(net, params, X, Y, engine=engine, method=method)
    scale = max(float(np.max(np.abs(w))) for w in want)
    err = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want)) / scale
    assert err <= LIMIT.get((engine, method), 1e-12), err


@pytest.mark.parametrize("engine,method", [c for c in COMBOS if c != ("full", "central")])
def test_every_output_right_and_confident_keeps_relative_accuracy(engine, method):
    # Every target 1 and every logit ~ +40: the whole gradient is ~e^-40 and exact to rounding in the
    # cancellation-free forms (sigmoid(z) - y formed as 1 - y times s minus y s(-z)); each entry
    # is checked relative to itself. (Full central loses ~u / (h |dE/dE|) ~ 1e-12 relative to cancellation,
    # and its h^2 truncation is relative too, ~1e-8: covered by the saturated test above.)
    rng = np.random.default_rng(5)
    D, K, N = 2, 3, 4
    X = rng.uniform(0.5, 1.0, (N, D))
    params = [rng.uniform(20.0, 30.0, (D, K)), rng.uniform(0.0, 1.0, K)]
    Y = np.ones((N, K))
    net = fastgrad.MLP([D, K], output="sigmoid", loss="bce")
    want = _accurate_grads(params, X, Y, "identity")
    got = fastgrad.numerical_gradient(net, params, X, Y, engine=engine, method=method)
    tol = 1e-8 if (engine, method) == ("full", "richardson") else 1e-12
    for g, w in zip(got, want):
        assert np.all(w < 0.0) and np.all(np.abs(w) < 1e-9)
        np.testing.assert_allclose(g, w, rtol=tol, atol=0.0)


def test_term_sizes_equal_the_engines_absum():
    # directional's one-pass absum and the incremental engine's unit-by-unit one (abs_terms = abs_term)
    net, params, X, Y = _moderate_case(seed=4)
    theta = net.flatten(params)
    Z, A = net._forward(theta, X)
    engine = numerical_details(net, theta, X, Y, 1e-6, "incremental", "central", Z=Z, A=A)
    np.testing.assert_allclose(term_sizes(net, theta, X, Y, Z, A), engine.absum, rtol=1e-12)


# --------------------------------------------------------------------------
# fastgrad.check: passes the right gradient, fails wrong ones where they are wrong
# --------------------------------------------------------------------------


def _deltas_backprop(params, X, hidden, delta):
    """Gradients of a net from its output deltas (the twin's backward recursion)."""
    zs, acts = ref.forward(params, X, hidden, "sigmoid")
    grads = [None] * len(params)
    for layer in reversed(range(len(params) // 2)):
        grads[2 * layer] = acts[layer].T @ delta
        grads[2 * layer + 1] = delta.sum(axis=0)
        if layer > 0:
            delta = (delta @ params[2 * layer].T) * ref.activation_derivative(hidden, zs[layer - 1])
    return grads


def _wrong(kind, params, X, Y):
    zs, acts = ref.forward(params, X, "tanh", "sigmoid")
    x, N = acts[-1], Y.shape[0]
    if kind == "no_mean":  # sigmoid(z) - y without 1/N
        return _deltas_backprop(params, X, "tanh", x - Y)
    if kind == "mse_chain":  # (x - y) sigmoid'(z): the squared-error chain, which bce's logits skip
        return _deltas_backprop(params, X, "tanh", (x - Y) * x * (1.0 - x) / N)
    assert kind == "dropped_column"
    delta = (x - Y) / N
    delta[:, -1] = 0.0
    return _deltas_backprop(params, X, "tanh", delta)


@pytest.mark.parametrize("engine,method", COMBOS)
def test_check_passes_the_twins_backprop(engine, method):
    net, params, X, Y = _moderate_case(seed=1)
    result = fastgrad.check(net, params, X, Y, ref.backprop(params, X, Y, "tanh", "sigmoid", "bce"),
                            engine=engine, method=method)
    assert result.passed, str(result)


@pytest.mark.parametrize("engine,method", COMBOS + [("incremental", "directional")])
@pytest.mark.parametrize("kind", ["no_mean", "mse_chain", "dropped_column"])
def test_check_fails_a_wrong_backprop_on_the_right_tensors(kind, engine, method):
    net, params, X, Y = _moderate_case(seed=1)
    result = fastgrad.check(net, params, X, Y, _wrong(kind, params, X, Y), engine=engine, method=method, seed=0)
    assert not result.passed
    failed = {name for name, f in zip(net.tensor_names, result.failed) if f.any()}
    if kind == "dropped_column":
        # the last output's weights, bias and (through backprop) the layer before; never the other outputs
        W2, b2 = dict(zip(net.tensor_names, result.failed))["W2"], dict(zip(net.tensor_names, result.failed))["b2"]
        assert b2[-1] and not b2[:-1].any()
        assert W2[:, -1].any() and not W2[:, :-1].any()
    else:
        assert {"W2", "b2"} <= failed, str(result)

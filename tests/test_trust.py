"""Issue 12, wrong verdicts on legitimate inputs: each test failed on the code before the fix.

1. a budget that swamps the values (tiny eps, full engine) made everything pass;
3. method="directional" failed correct saturated nets (leaf budgets of ~1e-22);
4. exact zeros with a rounding residue in the user's gradient failed;
6. an error proportional to the parameter (a weight-decay term) had no hint.
Each also shows that a wrong gradient still fails.
"""

import numpy as np
import pytest
import reference as ref
from test_verdict import _random_case

import fastgrad


@pytest.fixture
def small_case():
    rng = np.random.default_rng(0)
    net = fastgrad.MLP([4, 6, 3])
    params = net.init(seed=1)
    X, Y = rng.standard_normal((8, 4)), rng.random((8, 3))
    return net, params, X, Y, net.backprop(params, X, Y)


@pytest.mark.parametrize("method, eps", [("central", 1e-15), ("central", 1e-14), ("richardson", 3e-14)])
@pytest.mark.parametrize("wrong", ["zeros", "x1.5"])
def test_a_budget_that_swamps_the_values_never_passes(small_case, method, eps, wrong):
    net, params, X, Y, g = small_case
    grads = [np.zeros_like(x) for x in g] if wrong == "zeros" else [1.5 * x for x in g]
    result = fastgrad.check(net, params, X, Y, grads, engine="full", eps=eps, method=method)
    assert not result.passed and result.status == "inconclusive"
    assert result.mostly_inconclusive
    assert "INCONCLUSIVE" in str(result).splitlines()[0]
    assert any("cannot tell it from zero" in c.reason for c in result.inconclusive)
    # the right gradient is inconclusive too: the check says it cannot vouch, not that it passed
    assert fastgrad.check(net, params, X, Y, g, engine="full", eps=eps, method=method).status == "inconclusive"


@pytest.mark.parametrize("eps", [1e-10, 1e-9])
def test_a_small_step_that_still_resolves_the_values_judges_them(small_case, eps):
    net, params, X, Y, g = small_case
    assert fastgrad.check(net, params, X, Y, g, engine="full", eps=eps).passed
    for grads in ([np.zeros_like(x) for x in g], [1.5 * x for x in g]):
        result = fastgrad.check(net, params, X, Y, grads, engine="full", eps=eps)
        assert result.status == "failed" and result.n_failed > 0.5 * net.n_params


def _saturated_case(rng, scale):
    """A random net of test_verdict's kind (float64 weights at normal scale) on inputs scaled by ``scale``."""
    sizes, hidden, output, loss, params, X, Y = _random_case(rng, np.float64, saturate=False, x_scale=scale)
    return fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss), params, X, Y


@pytest.mark.parametrize("scale", [1e2, 1e3])
def test_directional_never_fails_a_correct_saturated_net(scale):
    rng = np.random.default_rng(12 + int(scale))
    bad = []
    for case in range(48):
        net, params, X, Y = _saturated_case(rng, scale)
        result = fastgrad.check(net, params, X, Y, method="directional", seed=case)
        if result.status == "failed":
            bad.append(f"case {case}: {net!r}\n{result}")
    assert not bad, "\n\n".join(bad[:3])


def test_directional_leaves_get_central_budgets_and_still_catch_one_wrong_entry():
    rng = np.random.default_rng(5)
    net = fastgrad.MLP([5, 7, 3], hidden="tanh")
    params = net.init(seed=2)
    X, Y = rng.standard_normal((16, 5)) * 100.0, rng.random((16, 3))
    g = net.backprop(params, X, Y)
    central = fastgrad.check(net, params, X, Y, g)
    w = np.unravel_index(int(np.argmax(np.abs(g[2]))), g[2].shape)
    g[2][w] *= 1.0 + 1e-6
    result = fastgrad.check(net, params, X, Y, g, method="directional", seed=0)
    assert result.status == "failed" and [(f.tensor, f.index) for f in result.failures] == [("W2", w)]
    leaf = np.ravel_multi_index(w, g[2].shape)
    # the same terms; only the tensor's scale in the user-rounding floor is max|g| here, max|numerical| there
    assert result.budget[2].flat[leaf] == pytest.approx(central.budget[2].flat[leaf], rel=1e-6)


def _dead_unit_case():
    """A relu net whose hidden unit 1 is dead for the whole batch: its gradients are exactly 0."""
    rng = np.random.default_rng(7)
    net = fastgrad.MLP([3, 4, 2], hidden="relu")
    params = net.init(seed=3)
    params[1][1] = -1e3  # unit 1 never fires
    X, Y = rng.standard_normal((10, 3)), rng.random((10, 2))
    return net, params, X, Y


def test_exact_zeros_with_a_rounding_residue_pass():
    net, params, X, Y = _dead_unit_case()
    g = net.backprop(params, X, Y)
    assert not g[0][:, 1].any() and g[1][1] == 0.0
    alpha, N = 0.3, X.shape[0]
    # a user who adds a weight-decay term and takes it off again, rounded differently (a regulariser switched
    # off), leaves residues of order u * |alpha W / N| where the true value is exactly 0
    residue = [x + ((alpha * p) / N - alpha * (p / N)) * 7.0 for x, p in zip(g, params)]
    assert residue[0][:, 1].any()
    result = fastgrad.check(net, params, X, Y, residue)
    assert result.passed, str(result)
    # while a 1e-6 relative error in one live entry is still caught
    wrong = [x.copy() for x in residue]
    wrong[0][0, 0] *= 1.0 + 1e-6
    result = fastgrad.check(net, params, X, Y, wrong)
    assert not result.passed and [(f.tensor, f.index) for f in result.failures] == [("W1", (0, 0))]


def test_a_dead_unit_with_a_real_error_still_fails():
    net, params, X, Y = _dead_unit_case()
    g = net.backprop(params, X, Y)
    scale = max(float(np.abs(x).max()) for x in g)
    g[0][0, 1] = 1e-6 * scale  # the true value is exactly 0
    result = fastgrad.check(net, params, X, Y, g)
    assert not result.passed and [(f.tensor, f.index) for f in result.failures] == [("W1", (0, 1))]


@pytest.mark.parametrize("c", [0.01, -0.003])
def test_an_error_proportional_to_the_parameter_is_named(small_case, c):
    net, params, X, Y, g = small_case
    grads = [x.copy() for x in g]
    grads[2] = g[2] + c * params[2]
    result = fastgrad.check(net, params, X, Y, grads)
    hint = result.tensor("W2").hint
    assert not result.passed and hint is not None and f"{c:g} x W2" in hint, hint
    assert result.tensor("W1").passed


def test_all_zero_biases_get_advice_not_a_failure(small_case):
    net, params, X, Y, _ = small_case
    params = [p if k % 2 == 0 else np.zeros_like(p) for k, p in enumerate(params)]
    result = fastgrad.check(net, params, X, Y)
    assert result.passed and any("every bias is exactly 0" in a for a in result.advice)
    assert "every bias is exactly 0" in str(result)


def test_rounded_preactivations_of_unnormalised_inputs_are_in_the_budget():
    # A correct textbook backprop (NumPy, float64) on features ~1e3 through a softplus: its pre-activation
    # is a cancelling sum of terms ~1e3, rounded at that scale, and the exponential tail turns that into a
    # relative error of ~1e-13 in every gradient term, fastgrad's numerical ones included (25 budgets
    # from a 400-digit reference before). Not a failure; a 1e-6 error is still one.
    params = [np.array([[0.5759512157522925], [-0.1772881985918279], [0.7126028523416311], [0.14187694696886127]]),
              np.array([0.39970819462592616]),
              np.array([[0.35105119647214456, 0.5433979482567114, 1.2189881353040883]]),
              np.array([0.1621102426337127, -0.45832543471721493, 0.2612671199741632])]
    X = np.array([[-148.2502978055257, -37.31731433887794, -375.4614860037177, -1008.2663556721478]])
    Y = np.array([[0.44606916710165295, -1.1090511393995113, -0.4406106696492129]])
    net = fastgrad.MLP([4, 1, 3], hidden="softplus", output="leaky_relu", loss="half_sse")
    user = ref.backprop(params, X, Y, "softplus", "leaky_relu", "half_sse")
    assert fastgrad.check(net, params, X, Y, user).status != "failed"
    user[3][1] *= 1.0 + 1e-6
    result = fastgrad.check(net, params, X, Y, user)
    assert result.status == "failed" and [(f.tensor, f.index) for f in result.failures] == [("b2", (1,))]


def test_a_cancelling_preactivation_in_a_float32_backprop_is_in_the_budget():
    # z1 = 0.32686 - 0.32689 in float32: the hidden activation, and with it dE/dW2, carries a relative
    # error of ~1e-3; a correct float32 backprop failed at ~1000 budgets. It may be inconclusive (float32
    # cannot resolve W2 here), never failed; a gross error still fails.
    from test_verdict import user_backprop

    f32 = np.float32
    net = fastgrad.MLP([2, 1, 1], hidden="leaky_relu", output="identity", loss="half_sse")
    params = [np.array([[0.22458412], [-0.36135077]], f32), np.array([0.0], f32), np.array([[1.5]], f32),
              np.array([0.1], f32)]
    X, Y = np.array([[1.4554425, 0.9046801]], f32), np.array([[0.7]], f32)
    g = user_backprop(params, X, Y, "leaky_relu", "identity", "half_sse", f32)
    assert fastgrad.check(net, params, X, Y, g).status != "failed"
    g[3] = g[3] * f32(1.01)
    assert fastgrad.check(net, params, X, Y, g).status == "failed"


# ---- found by a fresh user's trial (each passed or failed wrongly before) ----------------------------------


def _trial_case(sizes, hidden="sigmoid", output="sigmoid", loss="mse", N=8, seed=0):
    net = fastgrad.MLP(list(sizes), hidden=hidden, output=output, loss=loss)
    params = net.init(seed=seed)
    rng = np.random.default_rng(seed)
    return net, params, rng.normal(size=(N, sizes[0])), rng.uniform(size=(N, sizes[-1]))


@pytest.mark.parametrize("engine, eps", [("full", 1e-17), ("full", 1e-300), ("incremental", 1e-300), ("unit", 5e-324)])
def test_a_step_that_rounds_to_nothing_never_passes_under_fixed_tolerances_either(engine, eps):
    net, params, X, Y = _trial_case((4, 5, 3))
    zeros = [np.zeros_like(p) for p in params]
    result = fastgrad.check(net, params, X, Y, zeros, engine=engine, eps=eps, rtol=1e-3)
    assert not result.passed, str(result)


def test_a_budget_of_most_of_the_value_leaves_a_gradient_x15_inconclusive_not_passed():
    net, params, X, Y = _trial_case((3, 1), output="identity", N=4, seed=2)
    g = net.backprop(params, X, Y)
    result = fastgrad.check(net, params, X, Y, [1.5 * x for x in g], engine="full", eps=3.1622776601683796e-14,
                            method="richardson")
    assert not result.passed, str(result)


def test_one_outlier_input_loosens_only_the_layers_it_reaches():
    net, params, X, Y = _trial_case((4, 5, 3), hidden="tanh")
    X[0, 0] = 1e10  # saturates hidden units: their derivatives' rounding is large, W2's is not
    g = net.backprop(params, X, Y)
    assert fastgrad.check(net, params, X, Y, g).status != "failed"
    g[2] = g[2] * 1.001
    result = fastgrad.check(net, params, X, Y, g)
    assert result.status == "failed" and result.tensor("W2").n_failed > 0


def test_a_whole_dead_tensor_with_a_residue_takes_the_gradient_scale():
    net, params, X, Y = _trial_case((6, 8, 3), hidden="relu", output="identity", N=10, seed=3)
    params[1][:] = -50.0  # every hidden unit dead: dE/dW1 is exactly 0 everywhere
    g = net.backprop(params, X, Y)
    g[0] = (g[0] + (0.1 / 10) * params[0]) - 0.1 * params[0] / 10  # residues ~1e-18
    assert np.abs(g[0]).max() > 0.0
    assert fastgrad.check(net, params, X, Y, g).status != "failed"
    g[0][2, 3] = 1e-6 * max(float(np.abs(x).max()) for x in g)  # a real error there still fails
    assert fastgrad.check(net, params, X, Y, g).status == "failed"


def test_a_tensor_too_large_to_diagnose_whole_still_names_its_one_wrong_entry():
    from fastgrad.checking import HINT_ENTRIES

    rng = np.random.default_rng(8)
    net = fastgrad.MLP([300, 300, 2], hidden="tanh")
    assert net.param_shapes[0][0] * net.param_shapes[0][1] > HINT_ENTRIES
    params = net.init(seed=0)
    X, Y = rng.standard_normal((3, 300)), rng.random((3, 2))
    g = net.backprop(params, X, Y)
    g[0][17, 42] += 1e-3 * float(np.abs(g[0]).max())
    result = fastgrad.check(net, params, X, Y, g)
    assert result.tensor("W1").hint == "only entry (17, 42) of W1 is wrong"
    g = net.backprop(params, X, Y)
    g[0] = g[0] * 2.0
    hint = fastgrad.check(net, params, X, Y, g).tensor("W1").hint
    assert hint is not None and hint.startswith("analytic = 2 x numerical") and "sample" in hint

"""The model protocol and the engine capability table: MLP through the protocol, a second model kind, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from toy_models import TanhRegression

import fastgrad
from fastgrad import capabilities, engines
from fastgrad._kernels import codes
from fastgrad.protocol import Model, is_model


def _toy(wrong_bias: float = 1.0, N: int = 6, D: int = 3, K: int = 2, seed: int = 0):
    model = TanhRegression(D, K, wrong_bias=wrong_bias)
    rng = np.random.default_rng(seed)
    return model, model.init(seed), rng.normal(size=(N, D)), rng.uniform(-0.5, 0.5, size=(N, K))


def test_mlp_is_the_protocols_first_implementation():
    net = fastgrad.MLP([4, 5, 3])
    assert is_model(net) and isinstance(net, Model)
    assert net.kind == capabilities.MLP_KIND
    served = net.capabilities()
    assert served["unit"] == ("central",)
    assert set(served) == set(capabilities.ENGINES)
    assert "directional" in served["incremental"]
    params = net.init(0)
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(5, 4)), rng.uniform(size=(5, 3))
    theta, (Xa, Ya) = net.flatten(params), net.batch(X, Y)
    assert net.loss_at(theta, Xa, Ya) == net.loss(params, X, Y)
    backprop = np.concatenate([g.ravel() for g in net.backprop(params, X, Y)])
    assert np.array_equal(net.gradient_at(theta, Xa, Ya), backprop)


def test_kernel_codes_are_the_tables_and_unchanged():
    # the integers the kernels receive must stay what they were; there is one set of codes (codes.py), which
    # the assembly and the full engine both test against, and the table is where they are chosen
    assert engines.METHOD_CODES == {"central": 0, "richardson": 1, "complex": 2, "unit": 3}
    assert engines.METHOD_CODES["central"] == codes.CENTRAL
    assert engines.METHOD_CODES["richardson"] == codes.RICHARDSON
    assert engines.METHOD_CODES["complex"] == codes.COMPLEX
    assert engines.METHOD_CODES["unit"] == codes.UNIT_DELTAS
    for (engine, method), route in capabilities.TABLE.items():
        assert (route.engine, route.method) == (engine, method)
        assert set(route.kinds) <= set(capabilities.KINDS)


@pytest.mark.parametrize("engine", ["incremental", "unit"])
def test_mlp_only_engines_refuse_a_function_model_naming_the_engine_and_the_choices(engine):
    model, params, X, Y = _toy()
    with pytest.raises(ValueError, match=f"engine='{engine}'.*needs a fastgrad.MLP.*engine='full' with method "
                                         "'central' or 'richardson'"):
        fastgrad.check(model, params, X, Y, engine=engine)
    with pytest.raises(ValueError, match=f"engine='{engine}'"):
        fastgrad.numerical_gradient(model, params, X, Y, engine=engine)
    with pytest.raises(ValueError, match=f"engine='{engine}'"):
        fastgrad.Monitor(model, engine=engine)


def test_a_function_model_without_a_complex_loss_refuses_the_complex_step():
    model, params, X, Y = _toy()
    with pytest.raises(ValueError, match="method='complex'.*kind 'function'"):
        fastgrad.check(model, params, X, Y, engine="full", method="complex")


def test_directional_serves_a_function_model_through_the_full_engine_only():
    """It was MLP-only; a model known by its loss now runs it (projections of its loss: function_directional)."""
    assert capabilities.supported(capabilities.FUNCTION_KIND)["full"] == ("central", "richardson", "complex",
                                                                          "directional")
    model, params, X, Y = _toy()
    result = fastgrad.check(model, params, X, Y, engine="full", method="directional", seed=0)
    assert result.passed and result.method == "directional" and result.forward_passes == model.loss_calls
    wrong = fastgrad.check(TanhRegression(3, 2, wrong_bias=1.001), params, X, Y, engine="full",
                           method="directional", seed=0)
    assert not wrong.passed and wrong.tensor("b").n_failed == 2 and wrong.tensor("W").passed
    with pytest.raises(ValueError, match="engine='incremental'.*needs a fastgrad.MLP"):
        fastgrad.check(model, params, X, Y, engine="incremental", method="directional")


def test_unknown_engine_method_and_non_models_name_the_argument():
    net = fastgrad.MLP([3, 2])
    params, X, Y = net.init(0), np.zeros((2, 3)), np.zeros((2, 2))
    with pytest.raises(ValueError, match="engine must be one of 'incremental', 'full', 'unit'; got 'fast'"):
        fastgrad.check(net, params, X, Y, engine="fast")
    with pytest.raises(ValueError, match="method must be one of 'central', 'richardson', 'complex'; got 'directional'"):
        fastgrad.numerical_gradient(net, params, X, Y, method="directional")
    with pytest.raises(ValueError, match="engine='unit' differentiates each unit by a central difference"):
        fastgrad.check(net, params, X, Y, engine="unit", method="richardson")
    for call in (fastgrad.check, fastgrad.numerical_gradient):
        with pytest.raises(TypeError, match="net must be a fastgrad.MLP .*got dict"):
            call({"sizes": [3, 2]}, params, X, Y)
    with pytest.raises(TypeError, match="net must be a fastgrad.MLP .*got str"):
        fastgrad.Monitor("mlp")


@pytest.mark.parametrize("method", ["central", "richardson"])
def test_a_function_model_is_checked_by_the_full_engine(method):
    model, params, X, Y = _toy()
    result = fastgrad.check(model, params, X, Y, engine="full", method=method)
    assert result.passed, str(result)
    assert result.engine == "full" and result.method == method and result.model == "TanhRegression(3, 2)"
    assert [t.name for t in result.tensors] == ["W", "b"]
    assert result.advice == []  # the protocol's default hook
    exact = model.gradient_at(model.flatten(params), X, Y)
    numerical = np.concatenate([n.ravel() for n in result.numerical])
    assert np.max(np.abs(numerical - exact)) <= 1e-6 * np.max(np.abs(exact))
    assert np.all(np.concatenate([b.ravel() for b in result.budget]) > 0)


def test_a_function_models_wrong_gradient_fails_where_it_is_wrong():
    model, params, X, Y = _toy(wrong_bias=1.001)
    result = fastgrad.check(model, params, X, Y, engine="full")
    assert not result.passed
    assert result.tensor("b").n_failed == 2 and result.tensor("W").passed
    given = fastgrad.check(TanhRegression(3, 2), params, X, Y, model.unflatten(model.gradient_at(
        model.flatten(params), *model.batch(X, Y))), engine="full")
    assert not given.passed and given.tensor("b").n_failed == 2


def test_a_function_models_numerical_gradient_sample_and_monitor():
    model, params, X, Y = _toy()
    full = fastgrad.numerical_gradient(model, params, X, Y, engine="full")
    exact = model.unflatten(model.gradient_at(model.flatten(params), X, Y))
    for n, e in zip(full, exact):
        assert n.shape == e.shape and np.allclose(n, e, rtol=1e-6, atol=1e-9)
    sampled = fastgrad.numerical_gradient(model, params, X, Y, engine="full", sample=1, seed=0)
    assert np.isnan(sampled[0]).sum() == sampled[0].size - 4  # W's four corners; every bias entry
    assert not np.isnan(sampled[1]).any()
    calls = model.loss_calls
    mon = fastgrad.Monitor(model, every=1, budget=None, engine="full", units=2)
    assert mon.warm_up_seconds >= 0 and model.loss_calls == calls  # nothing to compile: no warm-up check
    for _ in range(4):  # single entries, 2 a check: 8 entries in 4 checks
        result = mon.step(params, X, Y, exact)
        assert result is not None and result.passed
    assert mon.steps_to_cover() == 4
    assert sum(r.n_checked for r in mon.history) == model.n_params


def test_is_model_is_isinstance_of_the_protocol_also_for_a_class_seen_before():
    """is_model remembers a class's members; an instance missing one of its own is still refused."""
    net = fastgrad.MLP([3, 2, 1])
    assert is_model(net) and isinstance(net, Model)
    broken = fastgrad.MLP([3, 2, 1])
    del broken.tensor_names  # an instance attribute of an MLP
    assert not isinstance(broken, Model)
    assert not is_model(broken)
    assert is_model(fastgrad.MLP([3, 2, 1]))
    assert not is_model(object()) and not is_model(np.zeros(3))

"""fastgrad.check: verdicts on correct and wrong backprops; the result structure."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import reference as ref

import fastgrad

N = 5


# --------------------------------------------------------------------------
# A tutorial-style sigmoid / MSE net with hand-written NumPy backprop
# --------------------------------------------------------------------------


def tutorial_backprop(params, X, Y, bug=None, layer=None, entry=None):
    """Hand-written backprop of an all-sigmoid MSE net, optionally wrong.

    ``layer`` (1-based) says where a per-layer bug goes; ``entry`` is the
    index used by the single-entry bugs.
    """
    n_layers = len(params) // 2
    acts = [np.asarray(X, dtype=np.float64)]
    for i in range(n_layers):
        W, b = params[2 * i], params[2 * i + 1]
        acts.append(1.0 / (1.0 + np.exp(-(acts[-1] @ W + b))))
    x = acts[-1]
    n = X.shape[0]

    if bug == "missing_factor_2":
        dE_dx = (x - Y) / n
    elif bug == "sum_not_mean":
        dE_dx = 2.0 * (x - Y)
    else:
        dE_dx = 2.0 * (x - Y) / n
    delta = dE_dx * x * (1.0 - x)

    grads = [None] * (2 * n_layers)
    for i in reversed(range(n_layers)):
        here = i + 1  # 1-based layer number
        a_prev = acts[i]
        if bug == "wrong_layer_activations" and here == layer:
            a_prev = acts[i - 1]
        dW = a_prev.T @ delta
        db = delta.sum(axis=0)
        if bug == "transposed_dW" and here == layer:
            dW = dW.T
        if bug == "bias_from_one_sample" and here == layer:
            db = delta[0].copy()
        if bug == "dropped_bias_entry" and here == layer:
            db[entry] = 0.0
        grads[2 * i], grads[2 * i + 1] = dW, db
        if i > 0:
            a = acts[i]
            W = params[2 * i]
            if bug == "wrong_activation_derivative" and here - 1 == layer:
                delta = (delta @ W.T) * a  # sigmoid' taken as a, not a (1 - a)
            else:
                delta = (delta @ W.T) * a * (1.0 - a)
    if bug == "sign_flip":
        grads = [-g for g in grads]
    return grads


def tutorial_case(rng, sizes):
    net = fastgrad.MLP(sizes, hidden="sigmoid", output="sigmoid", loss="mse")
    params = ref.random_params(rng, sizes)
    X = rng.standard_normal((N, sizes[0]))
    Y = rng.uniform(0.0, 1.0, (N, sizes[-1]))
    return net, params, X, Y


def failing_tensors(result):
    return {t.name for t in result.tensors if not t.passed}


# (id, bug, sizes, layer, entry, expected failing tensors)
BUGS = [
    ("sign_flip", "sign_flip", [3, 4, 2], None, None, {"W1", "b1", "W2", "b2"}),
    (
        "missing_factor_2",
        "missing_factor_2",
        [3, 4, 2],
        None,
        None,
        {"W1", "b1", "W2", "b2"},
    ),
    ("sum_not_mean", "sum_not_mean", [3, 4, 2], None, None, {"W1", "b1", "W2", "b2"}),
    ("transposed_dW2", "transposed_dW", [5, 4, 4], 2, None, {"W2"}),
    ("bias_from_one_sample_b2", "bias_from_one_sample", [3, 4, 2], 2, None, {"b2"}),
    ("bias_from_one_sample_b1", "bias_from_one_sample", [3, 4, 2], 1, None, {"b1"}),
    (
        "wrong_activation_derivative",
        "wrong_activation_derivative",
        [3, 4, 2],
        1,
        None,
        {"W1", "b1"},
    ),
    (
        "wrong_activation_derivative_deep",
        "wrong_activation_derivative",
        [3, 4, 4, 2],
        2,
        None,
        {"W1", "b1", "W2", "b2"},
    ),
    ("dW2_from_input", "wrong_layer_activations", [4, 4, 3], 2, None, {"W2"}),
    ("dW3_from_first_hidden", "wrong_layer_activations", [3, 4, 4, 2], 3, None, {"W3"}),
    ("dropped_bias_entry_b1", "dropped_bias_entry", [3, 4, 2], 1, 2, {"b1"}),
    ("dropped_bias_entry_b2", "dropped_bias_entry", [3, 4, 3], 2, 1, {"b2"}),
]


def test_tutorial_backprop_is_correct_without_bug(rng):
    # The hand-written oracle agrees with the reference when no bug is injected.
    for sizes in ([3, 4, 2], [5, 4, 4], [3, 4, 4, 2]):
        net, params, X, Y = tutorial_case(rng, sizes)
        got = tutorial_backprop(params, X, Y)
        want = ref.backprop(params, X, Y, "sigmoid", "sigmoid", "mse")
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("sizes", [[3, 4, 2], [5, 4, 4], [3, 4, 4, 2], [2, 3]])
def test_check_passes_on_correct_gradients(rng, sizes):
    net, params, X, Y = tutorial_case(rng, sizes)
    correct = tutorial_backprop(params, X, Y)
    result = fastgrad.check(net, params, X, Y, grads=correct)
    assert result.passed, str(result)
    assert result.n_failed == 0
    assert result.failures == []
    assert all(t.passed for t in result.tensors)
    assert result.max_rel_error <= result.rtol
    result.raise_if_failed()  # must not raise
    # grads=None checks net.backprop itself
    own = fastgrad.check(net, params, X, Y)
    assert own.passed, str(own)


@pytest.mark.parametrize(
    "bug,sizes,layer,entry,expected", [b[1:] for b in BUGS], ids=[b[0] for b in BUGS]
)
def test_check_catches_injected_bug(rng, bug, sizes, layer, entry, expected):
    net, params, X, Y = tutorial_case(rng, sizes)
    correct = tutorial_backprop(params, X, Y)
    wrong = tutorial_backprop(params, X, Y, bug=bug, layer=layer, entry=entry)
    # Precondition: the bug changes exactly the expected tensors, visibly.
    changed = {
        name
        for name, c, w in zip(net.tensor_names, correct, wrong)
        if c.shape != w.shape or np.max(np.abs(c - w)) > 1e-6
    }
    assert changed == expected

    good = fastgrad.check(net, params, X, Y, grads=correct)
    assert good.passed, str(good)

    result = fastgrad.check(net, params, X, Y, grads=wrong)
    assert not result.passed
    assert failing_tensors(result) == expected
    assert {f.tensor for f in result.failures} == expected
    for name in net.tensor_names:
        assert result.tensor(name).passed == (name not in expected)
    assert result.max_rel_error > result.rtol
    with pytest.raises(fastgrad.GradientCheckError):
        result.raise_if_failed()

    if bug == "transposed_dW":
        # dW.T agrees on the diagonal: only off-diagonal entries can fail.
        assert all(f.index[0] != f.index[1] for f in result.failures)
    if bug == "dropped_bias_entry":
        assert [(f.tensor, tuple(f.index)) for f in result.failures] == [
            (f"b{layer}", (entry,))
        ]
        assert result.tensor(f"b{layer}").worst_index == (entry,)
        assert result.failures[0].analytic == 0.0


# --------------------------------------------------------------------------
# Single-entry injections: location, values, report
# --------------------------------------------------------------------------


@pytest.fixture
def injected(rng):
    """Check a [3, 4, 2] tutorial net with dW1[1, 2] off by 1 % of the top entry."""
    net, params, X, Y = tutorial_case(rng, [3, 4, 2])
    correct = tutorial_backprop(params, X, Y)
    wrong = [g.copy() for g in correct]
    delta = 0.01 * max(np.max(np.abs(g)) for g in correct)
    wrong[0][1, 2] += delta
    numerical = ref.numerical_gradient(params, X, Y, "sigmoid", "sigmoid", "mse")
    result = fastgrad.check(net, params, X, Y, grads=wrong)
    return dict(
        net=net,
        params=params,
        X=X,
        Y=Y,
        correct=correct,
        wrong=wrong,
        numerical=numerical,
        result=result,
    )


def test_single_entry_error_is_located(injected):
    result, wrong, numerical = (
        injected["result"],
        injected["wrong"],
        injected["numerical"],
    )
    assert not result.passed
    assert result.n_failed == 1
    assert len(result.failures) == 1
    f = result.failures[0]
    assert f.tensor == "W1"
    assert tuple(f.index) == (1, 2)
    assert f.analytic == wrong[0][1, 2]
    assert f.numerical == pytest.approx(numerical[0][1, 2], rel=1e-7, abs=1e-10)
    assert f.abs_error == pytest.approx(abs(f.analytic - f.numerical), rel=1e-12)
    expected_rel = ref.rel_error(wrong[0][1, 2], numerical[0][1, 2], 1e-5, 1e-8)
    assert f.rel_error == pytest.approx(float(expected_rel), rel=1e-6)
    assert result.max_rel_error == pytest.approx(f.rel_error, rel=1e-12)

    w1 = result.tensor("W1")
    assert not w1.passed
    assert w1.n_failed == 1
    assert tuple(w1.worst_index) == (1, 2)
    assert w1.worst_analytic == wrong[0][1, 2]
    assert w1.worst_numerical == pytest.approx(numerical[0][1, 2], rel=1e-7, abs=1e-10)
    assert w1.max_rel_error == pytest.approx(f.rel_error, rel=1e-12)
    for name in ("b1", "W2", "b2"):
        assert result.tensor(name).passed
        assert result.tensor(name).n_failed == 0


def test_str_mentions_tensor_and_index(injected):
    text = str(injected["result"])
    assert "W1" in text
    assert re.search(r"[\(\[]\s*1\s*,\s*2\s*[\)\]]", text), text
    passing = fastgrad.check(
        injected["net"],
        injected["params"],
        injected["X"],
        injected["Y"],
        grads=injected["correct"],
    )
    assert str(passing) != text
    for name in ("W1", "b1", "W2", "b2"):
        assert name in str(passing)


def test_raise_if_failed(injected):
    assert issubclass(fastgrad.GradientCheckError, AssertionError)
    with pytest.raises(fastgrad.GradientCheckError, match="W1"):
        injected["result"].raise_if_failed()
    passing = fastgrad.check(
        injected["net"],
        injected["params"],
        injected["X"],
        injected["Y"],
        grads=injected["correct"],
    )
    assert passing.raise_if_failed() is None


def test_to_dict_is_json(injected):
    for result in (
        injected["result"],
        fastgrad.check(
            injected["net"], injected["params"], injected["X"], injected["Y"]
        ),
    ):
        d = result.to_dict()
        assert isinstance(d, dict)
        text = json.dumps(d, allow_nan=False)
        loaded = json.loads(text)
        assert isinstance(loaded, dict)
        assert "W1" in text
        if "passed" in loaded:
            assert loaded["passed"] is bool(result.passed)
    assert "W1" in json.dumps(injected["result"].to_dict())


# --------------------------------------------------------------------------
# Structure of the result
# --------------------------------------------------------------------------


def test_result_structure(rng):
    sizes = [3, 4, 4, 2]
    net, params, X, Y = tutorial_case(rng, sizes)
    wrong = tutorial_backprop(params, X, Y, bug="missing_factor_2")
    numerical = ref.numerical_gradient(params, X, Y, "sigmoid", "sigmoid", "mse")
    result = fastgrad.check(net, params, X, Y, grads=wrong)

    assert isinstance(result, fastgrad.CheckResult)
    assert isinstance(result.passed, bool) and result.passed is False
    assert isinstance(result.max_rel_error, float)
    assert result.rtol == 1e-5
    assert result.atol == 1e-8
    assert result.eps == 1e-8  # the incremental engine's default step
    assert result.engine == "incremental"
    assert result.method == "central"
    assert result.n_params == net.n_params == sum(p.size for p in params)
    assert isinstance(result.loss, float)
    assert result.loss == pytest.approx(
        ref.loss(params, X, Y, "sigmoid", "sigmoid", "mse"), rel=1e-12
    )
    assert isinstance(result.seconds, float) and result.seconds >= 0.0

    assert [t.name for t in result.tensors] == list(net.tensor_names)
    assert [tuple(t.shape) for t in result.tensors] == [p.shape for p in params]
    total_failed = 0
    for t, g, n in zip(result.tensors, wrong, numerical):
        rel = ref.rel_error(g, n, 1e-5, 1e-8)
        assert isinstance(t.worst_index, tuple)
        assert len(t.worst_index) == g.ndim
        assert all(0 <= i < s for i, s in zip(t.worst_index, g.shape))
        assert t.worst_analytic == g[t.worst_index]
        assert t.worst_numerical == pytest.approx(n[t.worst_index], rel=1e-7, abs=1e-10)
        assert t.max_rel_error == pytest.approx(rel.max(), rel=1e-6)
        assert t.max_rel_error == pytest.approx(rel[t.worst_index], rel=1e-6)
        assert t.n_failed == int(np.sum(rel > 1e-5))
        assert t.passed == (t.n_failed == 0)
        total_failed += t.n_failed
    assert result.n_failed == total_failed > 0
    assert result.max_rel_error == max(t.max_rel_error for t in result.tensors)

    # failures: every failing entry, worst first, with consistent fields
    assert len(result.failures) == result.n_failed
    rels = [f.rel_error for f in result.failures]
    assert rels == sorted(rels, reverse=True)
    assert rels[0] == result.max_rel_error
    by_name = dict(zip(net.tensor_names, range(len(params))))
    seen = set()
    for f in result.failures:
        t = by_name[f.tensor]
        idx = tuple(f.index)
        assert (f.tensor, idx) not in seen
        seen.add((f.tensor, idx))
        assert f.analytic == wrong[t][idx]
        assert f.numerical == pytest.approx(numerical[t][idx], rel=1e-7, abs=1e-10)
        assert f.abs_error == pytest.approx(
            abs(f.analytic - f.numerical), rel=1e-12, abs=1e-300
        )
        assert f.rel_error > result.rtol
        assert f.rel_error == pytest.approx(
            float(ref.rel_error(f.analytic, f.numerical, 1e-5, 1e-8)), rel=1e-12
        )


def test_result_is_consistent_with_numerical_gradient(rng):
    # check() compares against numerical_gradient with the same eps: applying
    # the API.md rule to those two arrays reproduces every reported number.
    net, params, X, Y = tutorial_case(rng, [3, 4, 2])
    grads = tutorial_backprop(params, X, Y, bug="sum_not_mean")
    eps, rtol, atol = 1e-3, 1e-4, 1e-6
    numerical = fastgrad.numerical_gradient(net, params, X, Y, eps=eps)
    result = fastgrad.check(
        net, params, X, Y, grads=grads, eps=eps, rtol=rtol, atol=atol
    )
    assert result.eps == eps and result.rtol == rtol and result.atol == atol
    for t, g, n in zip(result.tensors, grads, numerical):
        rel = ref.rel_error(g, n, rtol, atol)
        assert t.max_rel_error == pytest.approx(rel.max(), rel=1e-12)
        assert t.worst_numerical == n[t.worst_index]
        assert t.n_failed == int(np.sum(rel > rtol))


def test_rel_error_zero_when_equal(rng):
    net, params, X, Y = tutorial_case(rng, [3, 4, 2])
    numerical = fastgrad.numerical_gradient(net, params, X, Y)
    result = fastgrad.check(net, params, X, Y, grads=numerical)
    assert result.passed
    assert result.max_rel_error == 0.0
    assert all(t.max_rel_error == 0.0 for t in result.tensors)


# --------------------------------------------------------------------------
# The relative error rule and tolerance overrides
# --------------------------------------------------------------------------


def test_relative_rule_and_rtol_override(injected):
    net, params, X, Y = (
        injected["net"],
        injected["params"],
        injected["X"],
        injected["Y"],
    )
    correct, numerical = injected["correct"], injected["numerical"]
    # Pick a large entry and make it 1e-4 relatively wrong.
    t, idx = 2, np.unravel_index(np.argmax(np.abs(correct[2])), correct[2].shape)
    n = numerical[t][idx]
    assert abs(n) > 1e-3
    grads = [g.copy() for g in correct]
    grads[t][idx] = n * (1 + 1e-4)
    expected = 1e-4 / (1 + 1e-4)  # |a - n| / max(|a|, |n|)

    default = fastgrad.check(net, params, X, Y, grads=grads)
    assert not default.passed
    assert failing_tensors(default) == {"W2"}
    assert tuple(default.failures[0].index) == tuple(idx)
    assert default.failures[0].rel_error == pytest.approx(expected, rel=1e-4)

    loose = fastgrad.check(net, params, X, Y, grads=grads, rtol=1e-3)
    assert loose.passed, str(loose)
    assert loose.rtol == 1e-3
    assert loose.tensor("W2").max_rel_error == pytest.approx(expected, rel=1e-4)

    # the full engine at eps=1e-4: truncation + rounding are far above 1e-12
    tight = fastgrad.check(net, params, X, Y, grads=correct, rtol=1e-12, atol=1e-16, engine="full", eps=1e-4)
    assert not tight.passed


@pytest.fixture
def dead_unit_case(rng):
    """Relu net whose hidden unit 1 is dead: its gradients are exactly 0 both ways."""
    sizes = [3, 4, 2]
    net = fastgrad.MLP(sizes, hidden="relu", output="sigmoid", loss="mse")
    params, X, Y = ref.random_case(rng, sizes, "relu", "sigmoid", "mse")
    params[1][1] = -100.0  # z = x W1[:, 1] - 100 < 0 for every sample
    correct = ref.backprop(params, X, Y, "relu", "sigmoid", "mse")
    assert correct[1][1] == 0.0 and np.all(correct[0][:, 1] == 0.0)
    numerical = fastgrad.numerical_gradient(net, params, X, Y)
    assert numerical[1][1] == 0.0
    return net, params, X, Y, correct


def test_both_near_zero_rule(dead_unit_case):
    net, params, X, Y, correct = dead_unit_case

    # a = 5e-9, n = 0: rel = 5e-9 / max(5e-9, 0, atol/rtol = 1e-3) = 5e-6 -> pass
    # (the tolerance verdict: rtol/atol given; the default budget verdict
    # fails 5e-9 where every term of the true gradient is exactly zero)
    grads = [g.copy() for g in correct]
    grads[1][1] = 5e-9
    assert not fastgrad.check(net, params, X, Y, grads=grads).passed
    result = fastgrad.check(net, params, X, Y, grads=grads, rtol=1e-5, atol=1e-8)
    assert result.passed, str(result)
    assert result.tensor("b1").max_rel_error == pytest.approx(5e-6, rel=1e-9)
    assert tuple(result.tensor("b1").worst_index) == (1,)

    # analytic 2e-8: rel = 2e-5 > 1e-5 -> fail, at b1[1]
    grads[1][1] = 2e-8
    result = fastgrad.check(net, params, X, Y, grads=grads, rtol=1e-5)
    assert not result.passed
    assert [(f.tensor, tuple(f.index)) for f in result.failures] == [("b1", (1,))]
    assert result.failures[0].rel_error == pytest.approx(2e-5, rel=1e-9)
    assert result.failures[0].numerical == 0.0

    # A larger rtol alone does not rescue it:
    # |a - n| = 2e-8 > max(rtol * 2e-8, atol = 1e-8)
    result = fastgrad.check(net, params, X, Y, grads=grads, rtol=1e-4)
    assert not result.passed
    assert result.failures[0].rel_error == pytest.approx(2e-8 / (1e-8 / 1e-4), rel=1e-9)

    # A larger atol does: rel = 2e-8 / (1e-7 / 1e-5) = 2e-6
    result = fastgrad.check(net, params, X, Y, grads=grads, atol=1e-7)
    assert result.passed, str(result)
    assert result.atol == 1e-7
    assert result.tensor("b1").max_rel_error == pytest.approx(2e-6, rel=1e-9)


def test_exactly_equal_zero_entries_have_zero_error(dead_unit_case):
    net, params, X, Y, correct = dead_unit_case
    result = fastgrad.check(net, params, X, Y, grads=correct, rtol=1e-14, atol=1e-300)
    # Every live entry now fails (any difference is too much), the dead ones do not.
    failing = {(f.tensor, tuple(f.index)) for f in result.failures}
    assert ("b1", (1,)) not in failing
    assert not any(name == "W1" and idx[1] == 1 for name, idx in failing)
    assert ("b2", (0,)) in failing or ("b2", (1,)) in failing


def test_check_uses_eps(rng):
    net, params, X, Y = tutorial_case(rng, [3, 4, 2])
    grads = tutorial_backprop(params, X, Y)
    coarse = fastgrad.check(net, params, X, Y, grads=grads, eps=0.5, rtol=1e-5)
    assert coarse.eps == 0.5
    assert not coarse.passed  # truncation error ~ eps^2 is huge
    fine = fastgrad.check(net, params, X, Y, grads=grads, eps=1e-4, rtol=1e-5)
    assert fine.passed
    assert coarse.max_rel_error > 100 * fine.max_rel_error
    # The budget verdict knows its truncation estimate does not hold when a
    # step moves pre-activations by ~0.5: no false alarm, and no false pass
    # either, but an inconclusive check that says why.
    budgeted = fastgrad.check(net, params, X, Y, grads=grads, eps=0.5)
    assert budgeted.status == "inconclusive", str(budgeted)
    assert any("moves a pre-activation" in c.reason for c in budgeted.inconclusive)
    assert fastgrad.check(net, params, X, Y, grads=grads, eps=0.01).passed


def test_non_finite_numerical_gradient_never_passes():
    # The loss overflows to inf (z ~ 1e160 squared), so every central
    # difference is inf - inf = nan. A check must not report that as a pass:
    # either it refuses (ValueError) or the result fails.
    net = fastgrad.MLP([2, 2], output="identity", loss="sse")
    params = [np.array([[1e160, 0.0], [0.0, 1.0]]), np.zeros(2)]
    X = np.array([[1.0, 1.0], [2.0, 0.5]])
    Y = np.zeros((2, 2))
    with np.errstate(over="ignore"):
        assert not np.isfinite(ref.loss(params, X, Y, "sigmoid", "identity", "sse"))
    grads = ref.backprop(params, X, Y, "sigmoid", "identity", "sse")
    assert all(np.all(np.isfinite(g)) for g in grads)
    for g in (None, grads):
        try:
            result = fastgrad.check(net, params, X, Y, grads=g)
        except ValueError:
            continue
        assert not result.passed, str(result)
        with pytest.raises(fastgrad.GradientCheckError):
            result.raise_if_failed()

"""A loss's conventions (reduction, scale, L2, leaky slope) on every engine and method, against the NumPy twin.

Each convention is checked three ways against ``tests/reference_conventions.py``
(written element by element from the definitions): the loss value, the
model's own backprop, and the numerical gradient of every engine and
method; then ``fastgrad.check`` passes the twin's gradient and fails the
mistakes users make with each convention, in the right tensor.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference_conventions as conv

import fastgrad
from fastgrad._kernels import losses
from fastgrad._kernels.activations import leaky_relu

ROUTES = [("incremental", "central"), ("incremental", "richardson"), ("incremental", "complex"),
          ("full", "central"), ("full", "richardson"), ("full", "complex"), ("unit", "central")]
LOSS_OUTPUTS = [(loss, "softmax" if loss == "cross_entropy" else "sigmoid") for loss in losses.CODES]
CONVENTIONS = [dict(reduction=r, scale=s, l2=c) for r in conv.REDUCTIONS for s, c in ((1.0, 0.0), (0.5, 0.03))]


def case(loss_name, output, seed=0, N=6, sizes=(4, 5, 3)):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, sizes[0]))
    if loss_name == "cross_entropy":
        Y = conv.one_hot(rng.integers(0, sizes[-1], size=N), sizes[-1])
    else:
        Y = rng.random((N, sizes[-1]))
    return X, Y


def twin_args(net):
    c = net.conventions
    return dict(reduction=c.reduction, scale=c.scale, l2=c.l2, slope=net.leaky_slope)


def close(a, b, rtol):
    a, b = np.asarray(a), np.asarray(b)
    return np.allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(b)))))


@pytest.mark.parametrize("loss_name,output", LOSS_OUTPUTS)
@pytest.mark.parametrize("kw", CONVENTIONS, ids=lambda kw: f"{kw['reduction']}-s{kw['scale']}-l2{kw['l2']}")
def test_value_backprop_and_numerical_gradient_match_the_twin(loss_name, output, kw):
    net = fastgrad.MLP([4, 5, 3], hidden="tanh", output=output, loss=loss_name, **kw)
    params = net.init(1)
    X, Y = case(loss_name, output)
    hidden = "tanh"
    want_loss = conv.loss(params, X, Y, hidden, output, loss_name, **twin_args(net))
    want = conv.gradient(params, X, Y, hidden, output, loss_name, **twin_args(net))
    assert net.loss(params, X, Y) == pytest.approx(want_loss, rel=1e-13)
    for got, w in zip(net.backprop(params, X, Y), want):
        assert close(got, w, 1e-12)
    for engine, method in ROUTES:
        for got, w in zip(fastgrad.numerical_gradient(net, params, X, Y, engine=engine, method=method), want):
            assert close(got, w, 1e-6 if engine == "full" and method == "central" else 1e-9), (engine, method)
        result = fastgrad.check(net, params, X, Y, want, engine=engine, method=method)
        assert result.passed, (engine, method, result)
    assert fastgrad.check(net, params, X, Y, want, method="directional").passed


def test_plain_conventions_change_no_bit():
    """reduction=None and the loss's own reduction, scale 1, l2 0: bitwise the defaults."""
    X, Y = case("mse", "sigmoid")
    base = fastgrad.MLP([4, 5, 3])
    same = fastgrad.MLP([4, 5, 3], reduction="mean", scale=1.0, l2=0.0)
    params = base.init(0)
    for a, b in zip(fastgrad.numerical_gradient(base, params, X, Y), fastgrad.numerical_gradient(same, params, X, Y)):
        assert np.array_equal(a, b)
    assert same.conventions.plain


def test_summed_mse_is_sse_and_factor_is_exact():
    X, Y = case("mse", "sigmoid", N=7)
    summed = fastgrad.MLP([4, 5, 3], reduction="sum")
    sse = fastgrad.MLP([4, 5, 3], loss="sse")
    params = summed.init(3)
    assert summed.conventions.factor(7, 3) == 7.0
    for a, b in zip(fastgrad.numerical_gradient(summed, params, X, Y), fastgrad.numerical_gradient(sse, params, X, Y)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)


# ------------------------------------------------------------------ mistakes
def _wrong(loss_name="mse", output="sigmoid", **kw):
    net = fastgrad.MLP([4, 5, 3], hidden="tanh", output=output, loss=loss_name, **kw)
    params = net.init(2)
    X, Y = case(loss_name, output, seed=2)
    return net, params, X, Y, conv.gradient(params, X, Y, "tanh", output, loss_name, **twin_args(net))


@pytest.mark.parametrize("engine,method", ROUTES + [("incremental", "directional")])
def test_missing_l2_term_fails_every_weight_and_no_bias(engine, method):
    net, params, X, Y, good = _wrong(l2=0.05)
    bad = [g - 2 * 0.05 * p if i % 2 == 0 else g for i, (g, p) in enumerate(zip(good, params))]
    result = fastgrad.check(net, params, X, Y, bad, engine=engine, method=method)
    assert not result.passed
    assert [t.passed for t in result.tensors] == [False, True, False, True]
    if method != "directional":
        assert "weight-decay" in result.tensor("W1").hint or "L2" in result.tensor("W1").hint
    assert fastgrad.check(net, params, X, Y, good, engine=engine, method=method).passed


def test_l2_on_the_biases_too_fails_the_biases():
    net, params, X, Y, good = _wrong(l2=0.05)
    bad = [g + 2 * 0.05 * p if i % 2 == 1 else g for i, (g, p) in enumerate(zip(good, params))]
    result = fastgrad.check(net, params, X, Y, bad)
    assert [t.passed for t in result.tensors] == [True, False, True, False]


def test_l2_convention_off_by_two_fails():
    """lambda/2 ||W||^2 differentiated as lambda W/2 (the 2 forgotten)."""
    net, params, X, Y, good = _wrong(l2=0.05)
    bad = [g - 0.05 * p if i % 2 == 0 else g for i, (g, p) in enumerate(zip(good, params))]
    assert not fastgrad.check(net, params, X, Y, bad).passed


@pytest.mark.parametrize("loss_name,output", LOSS_OUTPUTS)
def test_wrong_reduction_factor_fails_with_the_factor_in_the_hint(loss_name, output):
    net, params, X, Y, good = _wrong(loss_name, output, reduction="mean_all")
    bad = [g * 3.0 for g in good]  # mean over samples where the loss is the mean over N x K (K = 3)
    result = fastgrad.check(net, params, X, Y, bad)
    assert not result.passed and not any(t.passed for t in result.tensors)
    assert "3" in (result.tensor("b2").hint or "")


def test_l2_residues_of_the_users_own_arithmetic_pass():
    """Lambda / (2 n) * 2 * W in any order, in float64 and float32, with a large L2 term: no false alarm."""
    lam, n = 0.37, 6
    net, params, X, Y, _ = _wrong(l2=lam / (2 * n))
    data = conv.gradient(params, X, Y, "tanh", "sigmoid", "mse")
    for form in (lambda W: lam / n * W, lambda W: (lam / (2 * n)) * 2 * W, lambda W: lam * W / n,
                 lambda W: W * (2 * lam) / (2 * n)):
        grads = [g + form(p) if i % 2 == 0 else g for i, (g, p) in enumerate(zip(data, params))]
        assert fastgrad.check(net, params, X, Y, grads).passed
        assert fastgrad.check(net, params, X, Y, [g.astype(np.float32) for g in grads]).passed
    big = fastgrad.MLP([4, 5, 3], hidden="tanh", l2=50.0)  # the L2 term dwarfs the data term
    grads = [g + 100.0 * p if i % 2 == 0 else g for i, (g, p) in enumerate(zip(data, params))]
    assert fastgrad.check(big, params, X, Y, [np.float32(g) for g in grads]).passed
    grads[2] = grads[2].copy()
    grads[2][1, 1] += 1e-4 * abs(grads[2][1, 1])
    assert not fastgrad.check(big, params, X, Y, grads).passed


# ------------------------------------------------------------------ leaky slope
@pytest.mark.parametrize("slope", [0.3, 1e-3, 0.2, 2.5])
def test_leaky_slope_on_every_engine(slope):
    net = fastgrad.MLP([4, 6, 3], hidden="leaky_relu", output="leaky_relu", loss="half_sse", leaky_slope=slope)
    params = net.init(4)
    X, Y = case("half_sse", "leaky_relu", seed=4)
    want = conv.gradient(params, X, Y, "leaky_relu", "leaky_relu", "half_sse", slope=slope)
    assert net.loss(params, X, Y) == pytest.approx(conv.loss(params, X, Y, "leaky_relu", "leaky_relu", "half_sse",
                                                             slope=slope), rel=1e-14)
    for engine, method in ROUTES:
        result = fastgrad.check(net, params, X, Y, want, engine=engine, method=method)
        assert result.passed or result.n_inconclusive, (engine, method, result)
        assert result.n_failed == 0
    wrong = conv.gradient(params, X, Y, "leaky_relu", "leaky_relu", "half_sse")  # slope 0.01 in the backprop
    result = fastgrad.check(net, params, X, Y, wrong)
    assert not result.passed and result.n_failed > 0


def test_slope_codes_round_trip_bit_for_bit():
    from fastgrad._kernels.activations import derivative

    rng = np.random.default_rng(0)
    for s in np.concatenate([rng.random(200), 10.0 ** rng.uniform(-300, 300, 200), [1.0, 0.01, 2.0**-1022]]):
        code = leaky_relu.encode(s)
        assert float(derivative(-1.0, -s, code)) == float(s)
        assert float(derivative(1.0, 1.0, code)) == 1.0
    for bad in (0.0, -0.1, float("nan"), float("inf"), 1e-310):
        with pytest.raises(ValueError, match="leaky_slope"):
            fastgrad.MLP([2, 2], hidden="leaky_relu", leaky_slope=bad)


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="reduction"):
        fastgrad.MLP([2, 2], reduction="avg")
    with pytest.raises(ValueError, match="scale"):
        fastgrad.MLP([2, 2], scale=0.0)
    with pytest.raises(ValueError, match="l2"):
        fastgrad.MLP([2, 2], l2=-1.0)
    with pytest.raises(TypeError, match="l2"):
        fastgrad.MLP([2, 2], l2="0.1")
    with pytest.raises(ValueError, match="weight_layout"):
        fastgrad.MLP([2, 2], weight_layout="col_major")


def test_repr_names_the_conventions():
    net = fastgrad.MLP([3, 2], output="leaky_relu", reduction="mean_all", scale=0.5, l2=1e-3, leaky_slope=0.3,
                       weight_layout="out_in")
    text = repr(net)
    for part in ("reduction='mean_all'", "scale=0.5", "l2=0.001", "leaky_slope=0.3", "weight_layout='out_in'"):
        assert part in text
    assert repr(fastgrad.MLP([3, 2])) == "MLP([3, 2], output='sigmoid', loss='mse')"

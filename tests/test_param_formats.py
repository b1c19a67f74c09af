"""Parameters in users' own formats: weights (out, in), column and row biases, dicts, integer class labels.

Each format is checked against the (in, out) list the kernels read: the
same numbers give bitwise the same numerical gradient (transposed,
reshaped), every index a result or an error names is in the user's own
layout, and nothing the user passed is written.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference_conventions as conv

import fastgrad


def nets(**kw):
    return (fastgrad.MLP([4, 5, 3], hidden="tanh", **kw),
            fastgrad.MLP([4, 5, 3], hidden="tanh", weight_layout="out_in", **kw))


def data(seed=0, N=6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, 4)), rng.random((N, 3))


@pytest.mark.parametrize("engine,method", [("incremental", "central"), ("full", "richardson"), ("unit", "central"),
                                           ("incremental", "complex")])
def test_out_in_is_the_transpose_bit_for_bit(engine, method):
    in_out, out_in = nets(l2=0.01)
    params = in_out.init(0)
    X, Y = data()
    flipped = conv.to_out_in(params)
    assert [p.shape for p in out_in.init(0)] == [p.shape for p in flipped]
    for a, b in zip(out_in.init(0), flipped):
        assert np.array_equal(a, b)  # the same seed, the same net
    a = fastgrad.numerical_gradient(in_out, params, X, Y, engine=engine, method=method)
    b = fastgrad.numerical_gradient(out_in, flipped, X, Y, engine=engine, method=method)
    for x, y in zip(a, b):
        assert np.array_equal(x.T if x.ndim == 2 else x, y)
    assert out_in.loss(flipped, X, Y) == in_out.loss(params, X, Y)
    for x, y in zip(in_out.backprop(params, X, Y), out_in.backprop(flipped, X, Y)):
        assert np.array_equal(x.T if x.ndim == 2 else x, y)


def test_out_in_failures_are_named_in_the_users_layout():
    _, net = nets()
    params = net.init(1)
    X, Y = data(1)
    grads = net.backprop(params, X, Y)
    grads[2] = grads[2].copy()
    grads[2][2, 4] *= 1.001  # W2 is (3, 5): output unit 2, input unit 4
    result = fastgrad.check(net, params, X, Y, grads)
    assert not result.passed
    assert result.tensor("W2").worst_index == (2, 4)
    # the summary's values are those of the entry it names (W2 is 3 x 5: flat orders differ between layouts)
    assert result.tensor("W2").worst_analytic == grads[2][2, 4]
    assert result.tensor("W2").worst_numerical == result.numerical[2][2, 4]
    assert f"{grads[2][2, 4]:.9g}" in str(result).split("worst failing")[0]
    assert [(f.tensor, f.index) for f in result.failures] == [("W2", (2, 4))]
    assert "(2, 4)" in result.tensor("W2").hint
    assert result.numerical[2].shape == (3, 5) and result.entry_status[2].shape == (3, 5)
    # a dropped row of the (out, in) weight (one output unit's gradient zeroed) is a row there
    grads = net.backprop(params, X, Y)
    grads[0] = grads[0].copy()
    grads[0][1, :] = 0.0
    hint = fastgrad.check(net, params, X, Y, grads).tensor("W1").hint
    assert "row 1" in hint


def test_out_in_shape_and_value_errors_say_the_layout_and_index():
    _, net = nets()
    params = net.init(0)
    wrong = [params[0].T.copy()] + params[1:]
    with pytest.raises(ValueError, match=r"'W1' has shape \(4, 5\), expected \(5, 4\).*out_in"):
        net.flatten(wrong)
    bad = [p.copy() for p in params]
    bad[2][1, 3] = np.nan
    with pytest.raises(ValueError, match=r"params: tensor 'W2' has a non-finite value \(nan\) at index \(1, 3\)"):
        fastgrad.check(net, bad, *data())
    with pytest.raises(ValueError, match=r"grads: tensor 'W2'.*index \(1, 3\)"):
        fastgrad.check(net, params, *data(), grads=bad)


@pytest.mark.parametrize("layout", ["in_out", "out_in"])
def test_column_and_row_biases_come_back_in_the_shape_given(layout):
    net = fastgrad.MLP([4, 5, 3], hidden="tanh", weight_layout=layout)
    params = net.init(2)
    X, Y = data(2)
    shaped = [params[0], params[1].reshape(-1, 1), params[2], params[3].reshape(1, -1)]
    before = [p.copy() for p in shaped]
    ng = fastgrad.numerical_gradient(net, shaped, X, Y)
    assert [g.shape for g in ng] == [p.shape for p in shaped]
    plain = fastgrad.numerical_gradient(net, params, X, Y)
    for a, b in zip(ng, plain):
        assert np.array_equal(a.ravel(), b.ravel())
    grads = [g.copy() for g in net.backprop(shaped, X, Y)]
    assert [g.shape for g in grads] == [p.shape for p in shaped]
    grads[1][3, 0] += 1e-3
    result = fastgrad.check(net, shaped, X, Y, grads)
    assert [(f.tensor, f.index) for f in result.failures] == [("b1", (3, 0))]
    assert result.budget[3].shape == (1, 3)
    for p, q in zip(shaped, before):
        assert np.array_equal(p, q)
    with pytest.raises(ValueError, match=r"'b1' has shape \(5, 2\), expected \(5,\) or \(5, 1\) or \(1, 5\)"):
        net.flatten([params[0], np.zeros((5, 2)), params[2], params[3]])


def test_dict_params_and_grads():
    net, _ = nets(l2=0.02)
    params = net.init(3)
    X, Y = data(3)
    d = dict(zip(net.tensor_names, params))
    ng = fastgrad.numerical_gradient(net, d, X, Y)
    assert isinstance(ng, dict) and list(ng) == ["W1", "b1", "W2", "b2"]
    for name, g in zip(net.tensor_names, fastgrad.numerical_gradient(net, params, X, Y)):
        assert np.array_equal(ng[name], g)
    grads = net.backprop(d, X, Y)
    assert isinstance(grads, dict)
    assert fastgrad.check(net, d, X, Y, grads).passed
    assert fastgrad.check(net, d, X, Y, lambda p, X, Y: net.backprop(p, X, Y)).passed
    grads["b2"] = grads["b2"] * 2.0
    result = fastgrad.check(net, d, X, Y, grads)
    assert [t.name for t in result.tensors if not t.passed] == ["b2"]
    with pytest.raises(ValueError, match=r"unexpected keys \['W3'\]"):
        fastgrad.check(net, {**d, "W3": params[0]}, X, Y)
    with pytest.raises(ValueError, match=r"missing keys \['b2'\]"):
        fastgrad.check(net, d, X, Y, {k: v for k, v in grads.items() if k != "b2"})


def test_integer_class_labels_are_one_hot_rows():
    net = fastgrad.MLP([4, 5, 3], hidden="tanh", output="softmax", loss="cross_entropy", reduction="sum")
    params = net.init(5)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(7, 4))
    labels = rng.integers(0, 3, size=7)
    onehot = conv.one_hot(labels, 3)
    assert net.loss(params, X, labels) == net.loss(params, X, onehot)
    for a, b in zip(fastgrad.numerical_gradient(net, params, X, labels),
                    fastgrad.numerical_gradient(net, params, X, onehot)):
        assert np.array_equal(a, b)
    assert fastgrad.check(net, params, X, list(labels), net.backprop(params, X, onehot)).passed
    bad = labels.copy()
    bad[4] = 3
    with pytest.raises(ValueError, match=r"class label 3 at index \(4,\) is out of range.*0 \.\. 2"):
        fastgrad.check(net, params, X, bad)
    bad[4] = -1
    with pytest.raises(ValueError, match=r"class label -1 at index \(4,\)"):
        net.loss(params, X, bad)
    with pytest.raises(ValueError, match=r"integer class labels in one column: pass them as shape \(N,\)"):
        net.loss(params, X, labels.reshape(-1, 1))
    with pytest.raises(ValueError, match=r"class labels must be integers of shape \(N,\)"):
        net.loss(params, X, labels.astype(float))
    # labels are for cross_entropy only; other losses still want (N, K) targets
    with pytest.raises(ValueError, match="Y must be 2-D"):
        fastgrad.check(fastgrad.MLP([4, 3]), fastgrad.MLP([4, 3]).init(0), X, labels)

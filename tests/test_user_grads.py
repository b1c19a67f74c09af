"""call_user_grads: copies in, validation out, side effects and nondeterminism as notes."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fastgrad
from fastgrad.user_grads import call_user_grads

SIZES = [3, 4, 2]
N = 5


@pytest.fixture
def case(make_case):
    net, params, X, Y = make_case(SIZES, N=N)
    return net, params, X, Y


def snapshot(obj):
    """Deep copy keeping dtype, order and container type."""
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(o) for o in obj)
    return obj.copy(order="K")


def assert_bitwise_equal(before, after):
    if isinstance(before, (list, tuple)):
        assert type(after) is type(before) and len(after) == len(before)
        for b, a in zip(before, after):
            assert_bitwise_equal(b, a)
        return
    assert after.dtype == before.dtype and after.shape == before.shape
    assert after.tobytes() == before.tobytes()


# --------------------------------------------------------------------------
# a correct callable
# --------------------------------------------------------------------------


def test_correct_callable_gives_backprop_and_no_notes(case):
    net, params, X, Y = case
    flat, notes, dtypes = call_user_grads(net.backprop, net, params, X, Y)
    assert np.array_equal(flat, net.flatten(net.backprop(params, X, Y)))
    assert flat.dtype == np.float64 and flat.shape == (net.n_params,)
    assert notes == []
    assert dtypes == [np.dtype(np.float64)] * len(net.tensor_names)


def test_each_call_gets_fresh_copies_with_the_users_dtypes(case):
    net, params, X, Y = case
    params = [p.astype(np.float32) for p in params]
    params[0] = np.asfortranarray(params[0])
    X = X.astype(np.float32)
    Y = Y.astype(np.float32)
    received = []

    def grads(p, Xc, Yc):
        received.append((p, Xc, Yc))
        return net.backprop(p, Xc, Yc)

    call_user_grads(grads, net, params, X, Y)
    assert len(received) == 2
    first, second = received
    for got in (first, second):
        assert type(got[0]) is list and [g.dtype for g in got[0]] == [np.float32] * 4
        assert got[0][0].flags.f_contiguous
        assert got[1].dtype == np.float32 and got[2].dtype == np.float32
        # never the user's own objects
        assert all(g is not p for g, p in zip(got[0], params))
        assert got[0] is not params and got[1] is not X and got[2] is not Y
    # nor the same copies twice
    assert all(a is not b for a, b in zip(first[0], second[0]))
    assert first[1] is not second[1] and first[2] is not second[2]


def test_float32_callable_reports_float32_dtypes(case):
    net, params, X, Y = case

    def grads(p, Xc, Yc):
        return [g.astype(np.float32) for g in net.backprop(p, Xc, Yc)]

    flat, notes, dtypes = call_user_grads(grads, net, params, X, Y)
    assert dtypes == [np.dtype(np.float32)] * 4
    assert notes == []
    assert flat.dtype == np.float64
    expected = np.concatenate([g.astype(np.float32).astype(np.float64).ravel() for g in net.backprop(params, X, Y)])
    assert np.array_equal(flat, expected)


def test_tuple_of_nested_lists_is_accepted(case):
    net, params, X, Y = case
    flat, notes, dtypes = call_user_grads(lambda p, Xc, Yc: tuple(g.tolist() for g in net.backprop(p, Xc, Yc)),
                                          net, params, X, Y)
    assert np.array_equal(flat, net.flatten(net.backprop(params, X, Y)))
    assert notes == [] and dtypes == [np.dtype(np.float64)] * 4


# --------------------------------------------------------------------------
# nondeterminism
# --------------------------------------------------------------------------


def test_random_noise_is_reported_naming_the_tensor(case, rng):
    net, params, X, Y = case

    def noisy(p, Xc, Yc):
        g = net.backprop(p, Xc, Yc)
        g[2] = g[2] + 1e-3 * rng.standard_normal(g[2].shape)
        return g

    flat, notes, _ = call_user_grads(noisy, net, params, X, Y)
    assert len(notes) == 1
    assert notes[0].startswith(
        "grads callable is nondeterministic: two calls on identical inputs differ in 8 of 26 entries"
    )
    assert "most in 'W2' at index (" in notes[0]
    assert "2 x the first" not in notes[0]


def test_tiny_noise_is_printed_with_enough_digits_to_differ(case):
    net, params, X, Y = case
    calls = []

    def jitter(p, Xc, Yc):
        g = net.backprop(p, Xc, Yc)
        calls.append(None)
        if len(calls) == 2:
            g[1] = g[1] * (1 + 1e-14)
        return g

    _, notes, _ = call_user_grads(jitter, net, params, X, Y)
    (note,) = notes
    a, b = re.search(r"\(([^()]+) vs ([^()]+)\)$", note).groups()
    assert a != b and float(a) != float(b)
    assert "'b1'" in note


class AccumulatingBackprop:
    """A backprop that adds into persistent buffers it forgets to zero."""

    def __init__(self, net):
        self.net = net
        self.buffers = None

    def __call__(self, p, X, Y):
        g = self.net.backprop(p, X, Y)
        if self.buffers is None:
            self.buffers = [np.zeros_like(t) for t in g]
        for buffer, t in zip(self.buffers, g):
            buffer += t
        return self.buffers  # the same arrays every call


def test_accumulating_buffer_is_reported_and_first_result_kept(case):
    net, params, X, Y = case
    flat, notes, _ = call_user_grads(AccumulatingBackprop(net), net, params, X, Y)
    correct = net.flatten(net.backprop(params, X, Y))
    # the first result was copied before the second call doubled the buffers
    assert np.array_equal(flat, correct)
    (note,) = notes
    assert "nondeterministic" in note
    worst_name, worst_index = net.locate(int(np.argmax(np.abs(correct))))
    assert f"most in {worst_name!r} at index {fastgrad._validate._index_str(worst_index)}" in note
    assert note.endswith("the second result is 2 x the first: a gradient buffer accumulated into and never zeroed?")


# --------------------------------------------------------------------------
# side effects
# --------------------------------------------------------------------------


def _writer(net, where):
    def grads(p, Xc, Yc):
        g = net.backprop(p, Xc, Yc)
        if where == "params":
            p[2][1, 0] += 1.0
        elif where == "X":
            Xc[3, 1] = 42.0
        else:
            Yc[0, 1] *= -1.0
        return g

    return grads


@pytest.mark.parametrize(
    "where, expected",
    [
        ("params", "grads callable modified its argument params['W2'] in place (first change at index (1, 0))"),
        ("X", "grads callable modified its argument X in place (first change at index (3, 1))"),
        ("Y", "grads callable modified its argument Y in place (first change at index (0, 1))"),
    ],
)
def test_in_place_writer_is_reported_and_users_arrays_untouched(case, where, expected):
    net, params, X, Y = case
    before = snapshot(params), snapshot(X), snapshot(Y)
    flat, notes, _ = call_user_grads(_writer(net, where), net, params, X, Y)
    # both calls wrote the same place: one note, and no nondeterminism
    assert notes == [expected]
    assert np.array_equal(flat, net.flatten(net.backprop(params, X, Y)))
    for b, a in zip(before, (params, X, Y)):
        assert_bitwise_equal(b, a)


def test_writer_into_float32_params_keeps_users_float32_arrays(case):
    net, params, X, Y = case
    params = [p.astype(np.float32) for p in params]
    before = snapshot(params)

    def grads(p, Xc, Yc):
        g = net.backprop(p, Xc, Yc)
        p[1][2] = 7.0
        return g

    _, notes, _ = call_user_grads(grads, net, params, X, Y)
    assert notes == ["grads callable modified its argument params['b1'] in place (first change at index (2,))"]
    assert_bitwise_equal(before, params)


def test_reshaping_the_params_list_is_reported(case):
    net, params, X, Y = case
    before = snapshot(params)

    def grads(p, Xc, Yc):
        g = net.backprop(p, Xc, Yc)
        p.pop()
        return g

    _, notes, _ = call_user_grads(grads, net, params, X, Y)
    assert notes == ["grads callable modified its argument params in place (it now holds 3 tensors instead of 4)"]
    assert_bitwise_equal(before, params)


# --------------------------------------------------------------------------
# bad return values and bad callables
# --------------------------------------------------------------------------


def _returning(net, change):
    def grads(p, Xc, Yc):
        return change(net.backprop(p, Xc, Yc))

    return grads


def _with_nan_in_b2(g):
    g[3][1] = np.nan
    return g


def _with_inf_in_w1(g):
    g[0][2, 3] = -np.inf
    return g


def _with_complex_w2(g):
    g[2] = g[2].astype(np.complex128)
    return g


def _with_wrong_b1_shape(g):
    g[1] = np.zeros((2, 4))  # (1, 4) and (4, 1) are a row and a column bias, accepted
    return g


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda g: g[:3], ValueError, "grads (returned by the callable) has 3 tensors, expected 4 (W1, b1, W2, b2)"),
        (lambda g: g + [g[0]], ValueError, "grads (returned by the callable) has 5 tensors, expected 4"),
        (_with_wrong_b1_shape, ValueError,
         "grads (returned by the callable): tensor 'b1' has shape (2, 4), expected (4,) or (4, 1) or (1, 4)"),
        (_with_complex_w2, TypeError, "grads (returned by the callable): tensor 'W2' has dtype complex128"),
        (_with_nan_in_b2, ValueError,
         "grads (returned by the callable): tensor 'b2' has a non-finite value (nan) at index (1,)"),
        (_with_inf_in_w1, ValueError,
         "grads (returned by the callable): tensor 'W1' has a non-finite value (-inf) at index (2, 3)"),
        (lambda g: np.concatenate([t.ravel() for t in g]), TypeError,
         "grads (returned by the callable) must be a list of arrays [W1, b1, W2, b2], got ndarray"),
        (lambda g: None, TypeError, "grads (returned by the callable) must be a list of arrays"),
    ],
)
def test_bad_return_value_raises_naming_tensor_and_index(case, change, error, message):
    net, params, X, Y = case
    calls = []

    def grads(p, Xc, Yc):
        calls.append(None)
        return _returning(net, change)(p, Xc, Yc)

    with pytest.raises(error, match=re.escape(message)):
        call_user_grads(grads, net, params, X, Y)
    assert len(calls) == 1  # refused at the first call


@pytest.mark.parametrize("not_callable", [3, "backprop", None, np.zeros(43)])
def test_not_callable_raises_type_error_naming_grads(case, not_callable):
    net, params, X, Y = case
    with pytest.raises(TypeError, match=r"^grads must be a list of arrays \[W1, b1, W2, b2\] or a callable"):
        call_user_grads(not_callable, net, params, X, Y)


def test_a_list_is_not_a_callable(case):
    net, params, X, Y = case
    with pytest.raises(TypeError, match=r"^grads is a list of arrays, not a callable"):
        call_user_grads(net.backprop(params, X, Y), net, params, X, Y)


class UserBug(Exception):
    pass


def test_exception_of_the_callable_propagates_unchanged(case):
    net, params, X, Y = case
    raised = UserBug("shapes do not align in my backprop")
    before = snapshot(params), snapshot(X), snapshot(Y)

    def grads(p, Xc, Yc):
        p[0][0, 0] = 99.0  # a write before the failure must not reach the user's arrays
        raise raised

    with pytest.raises(UserBug) as excinfo:
        call_user_grads(grads, net, params, X, Y)
    assert excinfo.value is raised
    assert excinfo.traceback[-1].name == "grads"  # the user's own frame is on top
    for b, a in zip(before, (params, X, Y)):
        assert_bitwise_equal(b, a)

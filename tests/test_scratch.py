"""Kept scratch (fastgrad._scratch): reused between calls, never visible in a result, never shared by two calls."""

import resource
import sys
import threading

import numpy as np
import pytest

import fastgrad
from fastgrad import _scratch


def _case(seed, sizes=(7, 5, 3), n=6):
    net = fastgrad.MLP(list(sizes))
    params = net.init(seed=seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0]))
    Y = rng.uniform(size=(n, sizes[-1]))
    return net, params, X, Y


def test_take_keeps_one_buffer_per_name_in_the_outermost_scope_only():
    outside = _scratch.take("test.a", (3, 4))
    with _scratch.scope():
        a = _scratch.take("test.a", (3, 4))
        b = _scratch.take("test.b", (3, 4))
        assert not np.shares_memory(_scratch.take(None, (3, 4)), a)  # (no name: a caller that cannot keep it)
        assert not np.shares_memory(a, b) and not np.shares_memory(a, outside)
        with _scratch.scope():  # a call inside a call (a progress callback): fresh arrays
            inner = _scratch.take("test.a", (3, 4))
            assert not np.shares_memory(inner, a)
        again = _scratch.take("test.a", (2, 5), np.int8)  # smaller, another dtype: the same buffer
        assert np.shares_memory(again, a) and again.dtype == np.int8 and again.flags.c_contiguous
    with _scratch.scope():
        assert np.shares_memory(_scratch.take("test.a", (3, 4)), a)  # kept between calls
    assert not np.shares_memory(_scratch.take("test.a", (3, 4)), a)  # outside a scope: new


def test_take_allocates_beyond_the_cap(monkeypatch):
    monkeypatch.setattr(_scratch, "KEEP_BYTES", _scratch.kept_bytes() + 1000)
    with _scratch.scope():
        small = _scratch.take("test.small", 100)  # 800 bytes: kept
        big = _scratch.take("test.big", 100)  # over the cap with the first: new each time
    with _scratch.scope():
        assert np.shares_memory(_scratch.take("test.small", 100), small)
        assert not np.shares_memory(_scratch.take("test.big", 100), big)


def test_release_refuses_inside_a_call_and_frees_outside():
    with _scratch.scope():
        _scratch.take("test.c", 10)
        with pytest.raises(RuntimeError, match="in use"):
            _scratch.release()
    _scratch.release()
    assert _scratch.kept_bytes() == 0


def _arrays(result):
    """Every array of a numerical_gradient or check result (a check's derived ones are made here, lazily)."""
    if isinstance(result, list):
        return result
    return (result.numerical + result.analytic + result.budget + result.rel_error + result.budget_ratio
            + result.failed + [np.array([t.max_rel_error for t in result.tensors])])


@pytest.mark.parametrize("checker", [fastgrad.numerical_gradient, fastgrad.check])
def test_a_result_is_not_changed_by_the_next_call(checker):
    """A result holds no kept buffer: read after a call with other numbers, it is the one a lone call gives."""
    net, p1, X1, Y1 = _case(1)
    _, p2, X2, Y2 = _case(2)
    first = checker(net, p1, X1, Y1)
    second = checker(net, p2, X2, Y2)
    got = _arrays(first)  # (a check's derived arrays are made now, after the second call)
    alone = _arrays(checker(net, p1, X1, Y1))
    for a, b in zip(got, alone, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(got, _arrays(second)))  # (other numbers)


def test_a_call_from_a_progress_callback_does_not_disturb_its_caller():
    """The inner call gets fresh arrays; the outer result is bitwise the one without a callback."""
    net, p, X, Y = _case(3, sizes=(40, 24, 3))
    _, p_in, X_in, Y_in = _case(4, sizes=(40, 24, 3))
    alone = fastgrad.numerical_gradient(net, p, X, Y)
    inner_alone = fastgrad.numerical_gradient(net, p_in, X_in, Y_in)
    inner = []

    def progress(done, total):
        inner.append(fastgrad.numerical_gradient(net, p_in, X_in, Y_in))

    nested = fastgrad.numerical_gradient(net, p, X, Y, progress=progress)
    assert inner
    for a, b in zip(nested, alone):
        np.testing.assert_array_equal(a, b)
    for got in inner:
        for a, b in zip(got, inner_alone):
            np.testing.assert_array_equal(a, b)


def test_threads_keep_their_own_buffers():
    """Checks running at once on several threads: each result is bitwise its serial one."""
    cases = [_case(10 + k, sizes=(30, 16, 4)) for k in range(4)]
    expected = [fastgrad.numerical_gradient(*c) for c in cases]
    got = [None] * len(cases)
    errors = []

    def work(k):
        try:
            for _ in range(5):
                got[k] = fastgrad.numerical_gradient(*cases[k])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for g, e in zip(got, expected):
        for a, b in zip(g, e):
            np.testing.assert_array_equal(a, b)


def test_an_error_inside_a_call_leaves_the_next_call_right():
    net, p, X, Y = _case(5)
    bad = [a.copy() for a in p]
    bad[2][1, 1] = np.nan
    with pytest.raises(ValueError, match="W2"):
        fastgrad.numerical_gradient(net, bad, X, Y)
    assert _scratch._pool.depth == 0
    with _scratch.scope():  # the failed call's scope ended: this one is the outermost
        assert _scratch._pool.depth == 1
    np.testing.assert_array_equal(fastgrad.numerical_gradient(net, p, X, Y)[0],
                                  fastgrad.numerical_gradient(net, [a.copy() for a in p], X, Y)[0])


def test_the_callers_arrays_are_not_the_kept_copies():
    net, p, X, Y = _case(6)
    before = [a.copy() for a in p] + [X.copy(), Y.copy()]
    fastgrad.numerical_gradient(net, p, X, Y)
    fastgrad.numerical_gradient(net, p, X * 2.0, Y)
    for a, b in zip(p + [X, Y], before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="minor page faults as getrusage counts them")
def test_a_repeated_call_touches_no_fresh_pages():
    """Without kept scratch each 784-128-10 call faulted ~366 pages in (its result discarded): 0.5-0.9 ms here."""
    net, p, X, Y = _case(7, sizes=(784, 128, 10), n=64)
    for _ in range(5):
        fastgrad.numerical_gradient(net, p, X, Y)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        fastgrad.numerical_gradient(net, p, X, Y)
    per_call = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
    # the result (199 pages) is new memory each call; glibc reuses the freed one. Before: 366 per call
    assert per_call < 100, per_call

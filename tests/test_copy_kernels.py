"""The parallel copy and NaN/inf scan that validation uses for large arrays, against NumPy."""

import numba
import numpy as np
import pytest

import fastgrad
from fastgrad import _validate
from fastgrad._kernels.copy import copy_count_nonfinite, count_nonfinite

SIZE = 3 * _validate.PARALLEL_MIN_SIZE + 5


def _values(seed, bad=()):
    x = np.random.default_rng(seed).standard_normal(SIZE) * 1e300  # sums overflow; entries do not
    for i, v in bad:
        x[i] = v
    return x


@pytest.mark.nojit
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bad", [(), ((0, np.nan),), ((SIZE - 1, np.inf), (17, -np.inf), (40000, np.nan))])
def test_copy_and_count_match_numpy(threads, bad):
    x = _values(1, bad)
    original = x.copy()
    dst = np.full(SIZE, 7.0)
    with fastgrad._config.threads_context(min(threads, numba.config.NUMBA_NUM_THREADS)):
        count = copy_count_nonfinite(x, dst)
        scanned = count_nonfinite(x)
    expected = int(np.count_nonzero(~np.isfinite(x)))
    assert count == scanned == expected == len(bad)
    assert np.array_equal(dst.view(np.int64), x.view(np.int64))  # NaN payloads too
    assert np.array_equal(x.view(np.int64), original.view(np.int64))


def test_large_params_name_the_tensor_and_index_and_stay_untouched():
    net = fastgrad.MLP([300, 200, 3])  # W1 has 60,000 entries: the parallel path
    params = net.init(0)
    assert params[0].size >= _validate.PARALLEL_MIN_SIZE
    params[0][123, 45] = np.inf
    before = [p.copy() for p in params]
    with pytest.raises(ValueError, match=r"params: tensor 'W1' has a non-finite value \(inf\) at index \(123, 45\)"):
        net.flatten(params)
    assert all(np.array_equal(a, b) for a, b in zip(before, params))
    params[0][123, 45] = 0.5
    theta = net.flatten(params)
    assert np.array_equal(theta, np.concatenate([p.ravel() for p in params]))
    assert not any(np.shares_memory(theta, p) for p in params)


def test_large_batch_names_the_index():
    X = np.random.default_rng(0).standard_normal((200, 300))
    X[150, 299] = np.nan
    with pytest.raises(ValueError, match=r"X has a non-finite value \(nan\) at index \(150, 299\)"):
        _validate.batch(X, None, 300, 3)
    X[150, 299] = 1.0
    Xa, _ = _validate.batch(X, None, 300, 3)
    assert np.array_equal(Xa, X) and not np.shares_memory(Xa, X)


def test_overflowing_sum_of_finite_entries_is_accepted():
    # the small-array path proves finiteness by a sum; a sum that overflows must not be taken for a bad entry
    x = np.full(100, 1e308)
    with np.errstate(over="ignore"):
        assert x.sum() == np.inf
    assert np.array_equal(_validate.as_float_array(x, "X"), x)
    big = np.full(SIZE, 1e308)
    assert np.array_equal(_validate.as_float_array(big, "X"), big)

"""The last hidden layer's series as lanes (:func:`unit_series_lanes`) against the one-pair kernel, bit for bit.

:func:`fastgrad._kernels.series.unit_series` (whose series are checked
against mpmath in ``test_series.py``) is the twin: every loss and output
activation, units in any subset and order, sample ranges, non-finite
coefficients (a huge step's overflow), on one and two threads.
"""

import numba
import numpy as np
import pytest
from test_series import CASES, IDS, _case

from fastgrad._config import threads_context
from fastgrad._kernels.series import unit_series
from fastgrad._kernels.series_lanes import unit_series_lanes
from fastgrad.engines import IncrementalState

THREADS = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})


def _both(net, theta, X, Y, units, n_lo, n_hi, threads):
    Z, A = net._forward(theta, X)
    st = IncrementalState(net, X, Y, Z, A)
    layer = net.n_layers - 2
    shape = (X.shape[0], units.size)
    one = [np.full(shape, 7.0) for _ in range(4)]
    lanes = [np.full(shape, 7.0) for _ in range(4)]
    with threads_context(threads):
        unit_series(theta, net.layout, net.loss_code, st.base, layer, units, n_lo, n_hi, 1, *one)
        unit_series_lanes(theta, net.layout, net.loss_code, st.base, layer, units, n_lo, n_hi, *lanes)
    return one, lanes


@pytest.mark.nojit
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("threads", THREADS)
def test_lanes_are_the_one_pair_series_bit_for_bit(case, threads):
    sizes = case[0]
    if len(sizes) < 3:
        pytest.skip("no hidden layer")
    net, params, X, Y = _case(*case, N=7)
    theta = net.flatten(params)
    width = sizes[-2]
    rng = np.random.default_rng(1)
    for units in (np.arange(width, dtype=np.int64), rng.permutation(width)[: max(1, width // 2)].astype(np.int64)):
        for n_lo, n_hi in ((0, 7), (2, 5)):
            one, lanes = _both(net, theta, X, Y, units, n_lo, n_hi, threads)
            for name, a, b in zip(("E1", "E3", "E1abs", "lim"), one, lanes):
                np.testing.assert_array_equal(a, b, err_msg=f"{name}, units {units}, samples {n_lo}-{n_hi}")


def test_lanes_flag_non_finite_coefficients_as_the_one_pair_kernel():
    """Weights near float64's largest make a unit's series overflow: lim -1 in the same entries."""
    net, params, X, Y = _case([3, 4, 5, 3], "tanh", "identity", "sse", N=5)
    params[4][1, :] = 1e300  # unit 1 of the last hidden layer: its output change overflows
    theta = net.flatten(params)
    units = np.arange(5, dtype=np.int64)
    one, lanes = _both(net, theta, X, Y, units, 0, 5, 1)
    assert (one[3][:, 1] == -1.0).all()
    for a, b in zip(one, lanes):
        np.testing.assert_array_equal(a, b)

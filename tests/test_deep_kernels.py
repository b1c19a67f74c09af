"""The deep engines' kernels give bitwise what they gave before their dense loops took 8 rows a pass (issue 18).

:mod:`fastgrad._kernels.dense`'s ``add_rows_*`` add eight input rows per
pass over the outputs, each output's terms left to right: the same
roundings, in the same order, as one :func:`add_scaled_series` (or
``_pair``, ``_abs``) call per row. So :func:`unit_series`,
:func:`unit_abs_series` and :func:`unit_deltas` must agree to the bit with
their row-by-row twins in ``kernel_twins`` (the kernels as they were),
whatever the thread count: on widths that are not multiples of 8, relu nets
with dead units (inputs left out of the list), and huge and tiny
activations (overflow to the direct path's fallback, subnormal products).
Their accuracy against exact derivatives is ``test_series.py``'s.
"""

import numba
import numpy as np
import pytest
from kernel_twins import unit_abs_series_rowwise, unit_deltas_rowwise, unit_series_rowwise

import fastgrad
from fastgrad._config import threads_context
from fastgrad._kernels.dense import (
    JAM,
    add_rows_abs,
    add_rows_pair,
    add_rows_series,
    add_scaled_abs,
    add_scaled_pair,
    add_scaled_series,
)
from fastgrad._kernels.series import unit_abs_series, unit_deltas, unit_series
from fastgrad.engines import IncrementalState

THREADS = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})


def _bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _coefficients(rng, count, scale):
    """Random coefficients over many magnitudes, with exact zeros, -0.0 and subnormals among them."""
    c = rng.normal(size=count) * np.exp(rng.uniform(-3, 3, size=count)) * scale
    c[rng.random(count) < 0.2] = 0.0
    c[rng.random(count) < 0.05] = -0.0
    c[rng.random(count) < 0.05] = 5e-324
    return c


@pytest.mark.nojit
@pytest.mark.parametrize("fan_in", [1, 7, JAM, 13, 2 * JAM + 1, 40])
@pytest.mark.parametrize("fan_out", [1, 7, 13, 33])
@pytest.mark.parametrize("scale", [1.0, 1e100, 1e-160])
def test_add_rows_are_the_row_loops_bitwise(fan_in, fan_out, scale):
    # add_rows_* over a list of rows == one add_scaled_* call per row, in order (a random increasing subset
    # of the rows: the rows a kernel leaves out), from random starting sums
    rng = np.random.default_rng(fan_in * 100 + fan_out)
    w_off = 3
    size = w_off + fan_in * fan_out + 5
    theta = rng.normal(size=size) * np.exp(rng.uniform(-5, 5, size=size))
    rows = np.flatnonzero(rng.random(fan_in) < 0.8).astype(np.int64)
    count = rows.size
    rows = np.concatenate([rows, np.full(3, -1, dtype=np.int64)])  # entries past count are never read
    d = [_coefficients(rng, fan_in, scale) for _ in range(4)]
    d[3] = np.abs(d[3])
    start = [rng.normal(size=fan_out + 2) * scale for _ in range(4)]
    got, want = [s.copy() for s in start], [s.copy() for s in start]
    add_rows_series(*got, *d, rows, count, theta, w_off, fan_out)
    for k in rows[:count]:
        w = theta[w_off + k * fan_out:w_off + (k + 1) * fan_out]
        add_scaled_series(*want, d[0][k], d[1][k], d[2][k], d[3][k], w)
    assert all(_bits_equal(g, w) for g, w in zip(got, want))
    got, want = [s.copy() for s in start[:2]], [s.copy() for s in start[:2]]
    add_rows_pair(*got, d[0], d[1], rows, count, theta, w_off, fan_out)
    for k in rows[:count]:
        add_scaled_pair(*want, d[0][k], d[1][k], theta[w_off + k * fan_out:w_off + (k + 1) * fan_out])
    assert all(_bits_equal(g, w) for g, w in zip(got, want))
    got, want = start[3].copy(), start[3].copy()
    add_rows_abs(got, d[3], rows, count, theta, w_off, fan_out)
    for k in rows[:count]:
        add_scaled_abs(want, d[3][k], theta[w_off + k * fan_out:w_off + (k + 1) * fan_out])
    assert _bits_equal(got, want)
    assert _bits_equal(got[fan_out:], start[3][fan_out:])  # (outputs past fan_out are never written)


def _net(sizes, hidden, output, loss, N=5, seed=0, dead=0.0, x_scale=1.0, w_scale=1.0):
    """A net, its flat parameters and a batch; ``dead``: fraction of hidden units with a bias that kills a relu."""
    rng = np.random.default_rng(seed)
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    params = [p * w_scale + 0.1 * rng.normal(size=p.shape) for p in net.init(seed)]
    for b in params[1:-1:2]:
        b[rng.random(b.shape) < dead] = -50.0
    X = rng.normal(size=(N, sizes[0])) * x_scale
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], N)]
    else:
        Y = rng.uniform(size=(N, sizes[-1]))
    return net, net.flatten(params), X, Y


# widths around multiples of JAM (7, 9, 13, 17), dead relus, and huge/tiny activations
NETS = {
    "relu-7-13-9-dead": dict(sizes=[5, 7, 13, 9, 3], hidden="relu", output="identity", loss="mse", dead=0.3),
    "tanh-13-17-softmax": dict(sizes=[4, 13, 17, 8, 3], hidden="tanh", output="softmax", loss="cross_entropy"),
    "leaky-9-16-bce": dict(sizes=[3, 9, 16, 7, 2], hidden="leaky_relu", output="sigmoid", loss="bce", dead=0.2),
    "sigmoid-24-24": dict(sizes=[6, 24, 24, 24, 4], hidden="sigmoid", output="sigmoid", loss="mse"),
    "relu-huge": dict(sizes=[4, 13, 11, 3], hidden="relu", output="identity", loss="half_sse", x_scale=1e300,
                      w_scale=1e3),
    "relu-tiny": dict(sizes=[4, 13, 11, 3], hidden="relu", output="identity", loss="sse", x_scale=1e-160,
                      dead=0.2),
    "gelu-silu-10": dict(sizes=[3, 10, 12, 10, 2], hidden="gelu", output="silu", loss="half_sse"),
}


@pytest.mark.parametrize("name", list(NETS))
def test_deep_kernels_are_the_row_by_row_kernels_bitwise(name):
    net, theta, X, Y = _net(**NETS[name])
    Z, A = net._forward(theta, X)
    st = IncrementalState(net, X, Y, Z, A)
    N = X.shape[0]
    for layer in range(net.n_layers):
        units = np.arange(net.sizes[layer + 1], dtype=np.int64)
        want = [np.empty((N, units.size)) for _ in range(4)]
        unit_series_rowwise(theta, net.layout, net.loss_code, st.base, layer, units, *want)
        want_abs = np.empty((N, units.size))
        unit_abs_series_rowwise(theta, net.layout, net.loss_code, st.base, layer, units, want_abs)
        want_d, want_crossed = np.empty((N, units.size)), np.empty((N, units.size), dtype=np.int8)
        unit_deltas_rowwise(theta, net.layout, net.loss_code, st.base, layer, units, 1e-6, want_d, want_crossed)
        for threads in THREADS:
            with threads_context(threads):
                got = [np.empty((N, units.size)) for _ in range(4)]
                unit_series(theta, net.layout, net.loss_code, st.base, layer, units, 0, N, threads, *got)
                got_abs = np.empty((N, units.size))
                unit_abs_series(theta, net.layout, net.loss_code, st.base, layer, units, 0, N, 1, got_abs)
                got_d, got_crossed = np.empty((N, units.size)), np.empty((N, units.size), dtype=np.int8)
                unit_deltas(theta, net.layout, net.loss_code, st.base, layer, units, 0, N, 1, 1e-6, got_d, got_crossed)
            for what, g, w in zip(["E1", "E3", "E1abs", "lim"], got, want):
                assert _bits_equal(g, w), (name, layer, threads, what)
            assert _bits_equal(got_abs, want_abs), (name, layer, threads, "unit_abs_series")
            assert _bits_equal(got_d, want_d), (name, layer, threads, "D")
            assert _bits_equal(got_crossed, want_crossed), (name, layer, threads, "crossed")


def test_the_cases_reach_what_they_are_for():
    # dead relus leave inputs out, the huge net sends samples to the direct path (lim < 0) and the tiny one
    # has subnormal changes: else the bitwise test above would not test the skips and the edges
    net, theta, X, Y = _net(**NETS["relu-7-13-9-dead"])
    Z, _ = net._forward(theta, X)
    assert np.any(Z[:, net.sizes[1]:net.sizes[1] + net.sizes[2]] < 0)
    assert np.any(Z[:, :net.sizes[1]] < 0)
    for name, check in [("relu-huge", lambda lim: np.any(lim < 0)), ("relu-tiny", lambda lim: np.all(lim >= 0))]:
        net, theta, X, Y = _net(**NETS[name])
        Z, A = net._forward(theta, X)
        st = IncrementalState(net, X, Y, Z, A)
        units = np.arange(net.sizes[1], dtype=np.int64)
        out = [np.empty((X.shape[0], units.size)) for _ in range(4)]
        unit_series(theta, net.layout, net.loss_code, st.base, 0, units, 0, X.shape[0], 1, *out)
        assert check(out[3]), name

"""The distance to the limit: a layer's check against the NumPy forward pass, at every depth.

For a dense layer, every weight's exact central difference is
``scale sum_n (e1_nj a_ni + h^2 e3_nj a_ni^3)``: two products of the shape of
backprop's weight gradient, so a layer's whole check can cost about a
forward pass and a backprop (about 3 forward-pass equivalents, FPE). The
groups here time fastgrad's check of one layer's every parameter (its
weights and biases) beside one NumPy forward pass of the batch (the FPE
unit, one BLAS thread as in ``bench_engines.py``) and ``np.dot`` on the
two products' shape:

- ``limit last layer 784-256x(d)-10 N=64``: the last layer of nets of depth
  2, 3 and 4 (the layer whose check is the two products and nothing else);
- ``limit first layer 784-128-10 N=64``: the first layer of the reference
  net (the products plus every unit's loss series).

``extra_info["fpe"]`` is fastgrad's median over the group's forward pass's
median, computed by ``bench/summarize.py`` from the rows; each row also
holds its flop count. Every timed check is asserted against backprop.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastgrad._config import threads_context
from fastgrad.bench import blas_threads, forward_flops, make_case, numpy_loss, peer_threads
from fastgrad.engines import numerical_flat

EPS = 1e-8
#: fastgrad's values against backprop (worst |n - a| / max |a| over the layer).
BACKPROP_RTOL = 1e-9
DEPTHS = [2, 3, 4]


def _net(depth):
    return make_case([784] + [256] * (depth - 1) + [10], 64)


def _layer_indices(net, layer):
    lo = int(net.offsets[2 * layer])
    hi = int(net.offsets[2 * layer + 2])
    return np.arange(lo, hi, dtype=np.int64)


def _group(depth):
    return f"limit last layer 784-256x{depth - 1}-10 N=64"


def _info(benchmark, net, X, *, label, role, threads, extra):
    benchmark.extra_info.update(label=label, role=role, n_params=net.n_params, n_samples=X.shape[0],
                                sizes="-".join(map(str, net.sizes)), threads=threads, **extra)


def _check_layer(benchmark, net, params, X, Y, layer, threads):
    theta = net.flatten(params)
    idx = _layer_indices(net, layer)
    numerical_flat(net, theta, X[:2], Y[:2], EPS, "incremental", indices=idx[:3])  # compile
    with threads_context(threads):
        values = benchmark(numerical_flat, net, theta, X, Y, EPS, "incremental", indices=idx)[idx]
    analytic = np.concatenate([g.ravel() for g in net.backprop(params, X, Y)])[idx]
    err = float(np.max(np.abs(values - analytic)) / np.max(np.abs(analytic)))
    assert err <= BACKPROP_RTOL, err
    # the layer's two products (sum_n a e1 and sum_n a^3 e3), multiply-adds counted twice
    fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
    return {"max_rel_error_vs_backprop": err, "entries": int(idx.size),
            "product_flops": 2.0 * 2.0 * X.shape[0] * (fan_in + 1) * fan_out}


@pytest.mark.parametrize("depth", DEPTHS)
def test_last_layer(benchmark, depth, max_threads):
    net, params, X, Y = _net(depth)
    benchmark.group = _group(depth)
    extra = _check_layer(benchmark, net, params, X, Y, net.n_layers - 1, max_threads)
    _info(benchmark, net, X, label="fastgrad, last layer's every entry", role="fastgrad", threads=max_threads,
          extra=extra)


@pytest.mark.parametrize("depth", DEPTHS)
def test_last_layer_numpy_forward(benchmark, depth):
    net, params, X, Y = _net(depth)
    benchmark.group = _group(depth)
    with peer_threads(1):
        loss = benchmark(numpy_loss, params, X, Y)
        n_blas = blas_threads()
    assert abs(loss - net.loss(params, X, Y)) <= 1e-12 * abs(loss)
    _info(benchmark, net, X, label="one NumPy forward pass (the unit)", role="forward", threads=1,
          extra={"flops": forward_flops(net, X.shape[0]), "blas_threads": n_blas})


@pytest.mark.parametrize("depth", DEPTHS)
def test_last_layer_numpy_dot(benchmark, depth):
    """``np.dot`` of the last layer's two products' shape ((fan_in + 1) x N times N x fan_out, twice)."""
    net, params, X, Y = _net(depth)
    benchmark.group = _group(depth)
    fan_in, fan_out = net.sizes[-2], net.sizes[-1]
    rng = np.random.default_rng(0)
    A = rng.normal(size=(fan_in + 1, X.shape[0]))
    E = rng.normal(size=(X.shape[0], fan_out))
    with peer_threads(1):
        out = benchmark(lambda: (np.dot(A, E), np.dot(A, E)))
    np.testing.assert_allclose(out[0], A @ E)
    _info(benchmark, net, X, label="np.dot, the two products", role="blas", threads=1,
          extra={"flops": 2.0 * 2.0 * X.shape[0] * (fan_in + 1) * fan_out})


FIRST_GROUP = "limit first layer 784-128-10 N=64"


def test_first_layer(benchmark, max_threads):
    net, params, X, Y = make_case([784, 128, 10], 64)
    benchmark.group = FIRST_GROUP
    extra = _check_layer(benchmark, net, params, X, Y, 0, max_threads)
    _info(benchmark, net, X, label="fastgrad, first layer's every entry", role="fastgrad", threads=max_threads,
          extra=extra)


def test_first_layer_numpy_forward(benchmark):
    net, params, X, Y = make_case([784, 128, 10], 64)
    benchmark.group = FIRST_GROUP
    with peer_threads(1):
        benchmark(numpy_loss, params, X, Y)
        n_blas = blas_threads()
    _info(benchmark, net, X, label="one NumPy forward pass (the unit)", role="forward", threads=1,
          extra={"flops": forward_flops(net, X.shape[0]), "blas_threads": n_blas})


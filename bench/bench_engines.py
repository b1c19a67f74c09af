"""Checking cost as the network grows: fastgrad's engines beside the naive loop.

Run timed:   pytest bench --benchmark-columns=median,iqr,rounds --benchmark-json=bench.json
Run in CI:   pytest bench --benchmark-disable      (each benchmark once, results asserted)

Every benchmark asserts its numerical gradient against backprop (or the
naive loop against fastgrad), so a fast wrong answer cannot look good.
Peers too slow to run in full are timed on a random subset of parameters
and extrapolated linearly; ``extra_info["extrapolated_from"]`` says so.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from nets import forward_seconds, make_case, naive_numerical, spread_indices

import fastgrad
from fastgrad.engines import numerical_flat

EPS = 1e-6  # incremental engine
NAIVE_EPS = 1e-4  # the tutorial's step for the black-box loop
NAIVE_SUBSET = 200


def _max_rel(numerical, analytic):
    return max(
        float(np.max(np.abs(n - a)) / max(np.max(np.abs(a)), 1e-300)) for n, a in zip(numerical, analytic)
    )


def _info(benchmark, net, X, engine, threads, extra=None):
    benchmark.extra_info.update(
        n_params=net.n_params,
        n_samples=X.shape[0],
        depth=net.n_layers,
        sizes="-".join(map(str, net.sizes)),
        threads=threads,
        dtype="float64",
        method="central",
        engine=engine,
    )
    benchmark.extra_info.update(extra or {})


# --------------------------------------------------------------- reference size
REFERENCE = dict(sizes=[784, 128, 10], n_samples=64)


@pytest.mark.parametrize("threads", [1, "all"])
def test_reference_incremental(benchmark, threads, max_threads):
    """784-128-10, N=64: the full per-parameter check (the tutorial's net)."""
    n_threads = max_threads if threads == "all" else threads
    net, params, X, Y = make_case(**REFERENCE)
    fastgrad.numerical_gradient(net, params, X[:2], Y[:2], eps=EPS)  # compile
    benchmark.group = "784-128-10 N=64"
    grads = benchmark(fastgrad.numerical_gradient, net, params, X, Y, eps=EPS, threads=n_threads)
    err = _max_rel(grads, net.backprop(params, X, Y))
    assert err < 1e-9
    _info(benchmark, net, X, "incremental", n_threads,
          {"forward_pass_seconds": forward_seconds(net, params, X), "max_rel_error_vs_backprop": err})


def test_reference_naive_loop(benchmark):
    """The tutorial's loop (2 NumPy forward passes per parameter), on a subset."""
    net, params, X, Y = make_case(**REFERENCE)
    idx = spread_indices(net, NAIVE_SUBSET)
    benchmark.group = "784-128-10 N=64"
    values = benchmark(naive_numerical, net, params, X, Y, NAIVE_EPS, idx)
    exact = numerical_flat(net, net.flatten(params), X, Y, EPS, "incremental", indices=idx)[idx]
    np.testing.assert_allclose(values, exact, rtol=1e-5, atol=1e-9)
    _info(benchmark, net, X, "naive-numpy-loop", 1,
          {"extrapolated_from": len(idx), "scale_to_full": net.n_params / len(idx)})


def test_reference_torch_gradcheck(benchmark):
    """``torch.autograd.gradcheck`` (default mode) on a subset of W1's entries."""
    torch = pytest.importorskip("torch")
    net, params, X, Y = make_case(**REFERENCE)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    W1, b1, W2, b2 = (torch.tensor(p) for p in params)
    n_sub = NAIVE_SUBSET
    flat_W1 = W1.reshape(-1)
    sub = flat_W1[:n_sub].clone().requires_grad_(True)

    def loss_of_subset(s):
        w = torch.cat([s, flat_W1[n_sub:]]).reshape(W1.shape)
        a = torch.sigmoid(Xt @ w + b1)
        x = torch.sigmoid(a @ W2 + b2)
        return ((Yt - x) ** 2).sum() / Xt.shape[0]

    benchmark.group = "784-128-10 N=64"
    ok = benchmark(torch.autograd.gradcheck, loss_of_subset, (sub,), eps=NAIVE_EPS, atol=1e-5, rtol=1e-3)
    assert ok
    _info(benchmark, net, X, "torch.autograd.gradcheck", torch.get_num_threads(),
          {"extrapolated_from": n_sub, "scale_to_full": net.n_params / n_sub})


def test_reference_full_engine(benchmark):
    """fastgrad's full-recompute engine (compiled tutorial loop), on a subset."""
    net, params, X, Y = make_case(**REFERENCE)
    idx = spread_indices(net, NAIVE_SUBSET)
    theta = net.flatten(params)
    numerical_flat(net, theta, X[:2], Y[:2], NAIVE_EPS, "full", indices=idx[:2])  # compile
    benchmark.group = "784-128-10 N=64"
    values = benchmark(numerical_flat, net, theta, X, Y, NAIVE_EPS, "full", indices=idx)[idx]
    exact = numerical_flat(net, theta, X, Y, EPS, "incremental", indices=idx)[idx]
    np.testing.assert_allclose(values, exact, rtol=1e-5, atol=1e-9)
    _info(benchmark, net, X, "full", numba.get_num_threads(),
          {"extrapolated_from": len(idx), "scale_to_full": net.n_params / len(idx)})


# ------------------------------------------------------------------- big net
def test_large_incremental(benchmark, max_threads):
    """3072-512-10, N=128 (about 1.58 M parameters): full check."""
    net, params, X, Y = make_case([3072, 512, 10], 128)
    fastgrad.numerical_gradient(net, params, X[:2], Y[:2], eps=EPS)
    benchmark.group = "3072-512-10 N=128"
    grads = benchmark.pedantic(
        fastgrad.numerical_gradient, args=(net, params, X, Y), kwargs=dict(eps=EPS, threads=max_threads),
        rounds=3, iterations=1,
    )
    err = _max_rel(grads, net.backprop(params, X, Y))
    assert err < 1e-9
    _info(benchmark, net, X, "incremental", max_threads, {"max_rel_error_vs_backprop": err})


# ------------------------------------------------------------------ scaling
SCALING_H = [1, 8, 32, 128, 512, 1280]  # 784-H-10: P from about 8e2 to 1e6


@pytest.mark.parametrize("hidden_width", SCALING_H)
def test_scaling_incremental(benchmark, hidden_width, max_threads):
    """Time against P for a 1-hidden-layer net (slope of log time vs log P)."""
    net, params, X, Y = make_case([784, hidden_width, 10], 64)
    fastgrad.numerical_gradient(net, params, X[:2], Y[:2], eps=EPS)
    benchmark.group = "scaling 784-H-10 N=64"
    grads = benchmark(fastgrad.numerical_gradient, net, params, X, Y, eps=EPS, threads=max_threads)
    assert _max_rel(grads, net.backprop(params, X, Y)) < 1e-9
    _info(benchmark, net, X, "incremental", max_threads)


# ---------------------------------------------------------------- deep net
DEEP = dict(sizes=[784, 256, 256, 256, 10], n_samples=64)
DEEP_SUBSET = 1000


def test_deep_incremental_subset(benchmark, max_threads):
    """784-256-256-256-10: exact check on a random subset (extrapolate by P)."""
    net, params, X, Y = make_case(**DEEP)
    idx = spread_indices(net, DEEP_SUBSET)
    theta = net.flatten(params)
    numerical_flat(net, theta, X[:2], Y[:2], EPS, "incremental", indices=idx[:2])
    benchmark.group = "784-256-256-256-10 N=64"
    values = benchmark(numerical_flat, net, theta, X, Y, EPS, "incremental", indices=idx)[idx]
    analytic = np.concatenate([g.ravel() for g in net.backprop(params, X, Y)])[idx]
    np.testing.assert_allclose(values, analytic, rtol=1e-7, atol=1e-12)
    _info(benchmark, net, X, "incremental", max_threads,
          {"extrapolated_from": len(idx), "scale_to_full": net.n_params / len(idx)})


def test_deep_naive_subset(benchmark):
    """The naive loop on the same deep net, same kind of subset."""
    net, params, X, Y = make_case(**DEEP)
    idx = spread_indices(net, NAIVE_SUBSET)
    benchmark.group = "784-256-256-256-10 N=64"
    values = benchmark(naive_numerical, net, params, X, Y, NAIVE_EPS, idx)
    analytic = np.concatenate([g.ravel() for g in net.backprop(params, X, Y)])[idx]
    np.testing.assert_allclose(values, analytic, rtol=1e-4, atol=1e-9)
    _info(benchmark, net, X, "naive-numpy-loop", 1,
          {"extrapolated_from": len(idx), "scale_to_full": net.n_params / len(idx)})

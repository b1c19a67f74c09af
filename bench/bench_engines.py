"""Checking cost as the network grows: fastgrad beside the naive loop and torch.

Run timed:   pytest bench --benchmark-json=bench.json && python bench/summarize.py bench.json
Run in CI:   pytest bench --benchmark-disable      (each benchmark once, results asserted)
One group:   pytest bench -k reference --benchmark-json=ref.json

Groups (``benchmark.group``, one per network size):

- ``ref 784-128-10 N=64``: the tutorial's net. fastgrad's default engine
  (full check, 1 thread and all threads) beside the naive NumPy loop,
  fastgrad's full engine and ``torch.autograd.gradcheck`` (slow mode), the
  peers on a subset of parameters drawn from every tensor.
- ``large 3072-512-10 N=128``: about 1.58 M parameters, 1 and all threads.
- ``scaling 784-H-10 N=64``: P from about 1.6e3 to 1e6 (log-log slope).
- ``deep 784-256-256-256-10 N=64``: the full check (or whole units, see
  ``DEEP_MODE``), beside the naive loop; and in ``bench_blas.py`` what
  ``np.dot`` reaches on the deep net's shapes.

Every group also times ``np.dot`` on its nets' layer products (role
"blas", one BLAS thread, GFLOP/s from ``extra_info["flops"]``).

Every benchmark asserts what it timed: fastgrad's numerical gradient
against backprop, the peers against fastgrad or backprop, so a fast wrong
answer cannot look good. Peers too slow to run in full are timed on a
subset of parameters and extrapolated linearly (each parameter costs them
the same two forward passes): ``extra_info["extrapolated_from"]`` is the
subset's size and ``extra_info["scale_to_full"]`` the factor to the full
check. Under ``--benchmark-disable`` the subsets are smaller
(``UNTIMED_PEER_SUBSET``). "Forward-pass equivalents" are in units of one
NumPy forward pass of the batch: the group's ``*_numpy_forward`` row
(median), or else ``extra_info["forward_pass_seconds"]`` (best of a few).

Environment: ``FASTGRAD_BENCH_PEER_THREADS`` = "1" (default) or "all":
threads of the NumPy loop, the forward pass and torch (see
``PEER_THREADS``); ``FASTGRAD_BENCH_DEEP`` = "auto" (default), "full" or
"subset" (see ``DEEP_MODE``).
"""

from __future__ import annotations

import contextlib
import os
import time

import numba
import numpy as np
import pytest

import fastgrad
from fastgrad import engines
from fastgrad._config import threads_context
from fastgrad.bench import (
    blas_threads,
    forward_flops,
    forward_seconds,
    make_case,
    naive_numerical,
    numpy_loss,
    peer_threads,
    spread_indices,
    torch_loss,
)
from fastgrad.engines import numerical_flat

EPS = 1e-8  # the incremental engine's documented default step, passed explicitly
PEER_EPS = 1e-4  # the tutorial's step, for the naive loop, the full engine and torch
NAIVE_SUBSET = 200
#: fastgrad's numerical gradient must match backprop to this (worst tensor's max |n - a| / max |a|).
BACKPROP_RTOL = 1e-9

#: Under --benchmark-disable (CI: nothing is timed) the peers' subsets shrink to about
#: this many parameters (still from every tensor): the same code and assertions, less time.
UNTIMED_PEER_SUBSET = 32

#: Threads of the peers (naive loop, NumPy forward pass, torch): "1" or "all". One by
#: default, so that "fastgrad faster (1 thr)" compares single cores, and because a 2-thread
#: BLAS on these small products stalls whenever another process has a core (measured on the
#: shared 2-core machine: 70 ms instead of 2 ms for the deep net's forward pass).
PEER_THREADS = os.environ.get("FASTGRAD_BENCH_PEER_THREADS", "1")

_FORWARD: dict = {}


@contextlib.contextmanager
def _peer_threads(torch=None):
    """Run the body with the peers' thread count (OpenBLAS's and torch's); yields it."""
    if PEER_THREADS == "all":
        yield torch.get_num_threads() if torch is not None else blas_threads()
        return
    n = int(PEER_THREADS)
    with peer_threads(n, torch):
        yield n


def unit_indices(net, fraction, seed=0):
    """Flat indices of whole units: about ``fraction`` of every layer's units.

    A unit's parameters are its ``fan_in`` incoming weights and its bias;
    the incremental engine's cost is per unit (the parameters of a unit
    share its lookahead), so a subset that extrapolates fairly must hold
    whole units, the same fraction of every layer (at least one unit each).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for layer in range(net.n_layers):
        fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
        count = max(1, int(round(fraction * fan_out)))
        units = np.sort(rng.choice(fan_out, size=count, replace=False))
        w_off, b_off = int(net.offsets[2 * layer]), int(net.offsets[2 * layer + 1])
        parts.append((w_off + np.arange(fan_in)[:, None] * fan_out + units[None, :]).ravel())
        parts.append(b_off + units)
    return np.sort(np.concatenate(parts)).astype(np.int64)


def engine_flops(net, engine, n_samples, indices=None):
    """Return fastgrad's own estimate of an engine's work for these entries.

    It is the engine's cost model (``engines.unit_cost`` for "incremental",
    ``engines.full_param_cost`` for "full"), not a count: good for the order
    of magnitude of the GFLOP/s achieved. The incremental engine's cost is
    per unit, so a unit counts in full once any of its parameters is wanted.
    """
    want = np.zeros(net.n_params, dtype=bool)
    want[slice(None) if indices is None else np.asarray(indices)] = True
    if engine == "full":
        return float(engines.full_param_cost(net, n_samples) * np.count_nonzero(want))
    if engine != "incremental":
        raise ValueError(f"no cost model for engine {engine!r}")
    total = 0.0
    for layer in range(net.n_layers):
        fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
        w_off, b_off = int(net.offsets[2 * layer]), int(net.offsets[2 * layer + 1])
        touched = want[w_off:w_off + fan_in * fan_out].reshape(fan_in, fan_out).any(axis=0)
        touched |= want[b_off:b_off + fan_out]
        total += float(engines.unit_cost(net, layer, n_samples)) * int(np.count_nonzero(touched))
    return total


def max_rel_error(numerical, analytic):
    """Worst tensor's ``max |n - a| / max |a|`` (norm-wise relative error)."""
    return max(
        float(np.max(np.abs(n - a)) / max(np.max(np.abs(a)), 1e-300))
        for n, a in zip(numerical, analytic)
    )


def _peer_indices(benchmark, net, count):
    """Return a subset for a peer: ``count`` parameters from every tensor (fewer when untimed)."""
    if getattr(benchmark, "disabled", False):
        count = min(count, UNTIMED_PEER_SUBSET)
    return spread_indices(net, count)


def _threads(threads, max_threads):
    return max_threads if threads == "all" else int(threads)


def _forward_seconds(net, params, X):
    """One NumPy forward pass of the batch, measured once per network and batch in a session."""
    key = (tuple(net.sizes), X.shape[0])
    if key not in _FORWARD:
        with _peer_threads():
            Y = np.zeros((X.shape[0], net.sizes[-1]))
            _FORWARD[key] = forward_seconds(params, X, Y, repeats=7 if net.n_params > 5e5 else 20)
    return _FORWARD[key]


def _flat_backprop(net, params, X, Y):
    return np.concatenate([g.ravel() for g in net.backprop(params, X, Y)])


def _subset_rel_error(values, analytic):
    return float(np.max(np.abs(values - analytic)) / max(np.max(np.abs(analytic)), 1e-300))


def _info(benchmark, net, X, params, *, label, engine, threads, role, extra=None):
    benchmark.extra_info.update(
        label=label,
        role=role,  # "fastgrad" (default engine: speedups are against it), "peer" or "forward" (the unit)
        n_params=net.n_params,
        n_samples=X.shape[0],
        depth=net.n_layers,
        sizes="-".join(map(str, net.sizes)),
        threads=threads,
        dtype="float64",
        method="central",
        engine=engine,
        forward_pass_seconds=_forward_seconds(net, params, X),
    )
    benchmark.extra_info.update(extra or {})


def _subset_info(net, idx, flops_per_param=None):
    info = {"extrapolated_from": int(len(idx)), "scale_to_full": net.n_params / len(idx)}
    if flops_per_param is not None:
        info["flops"] = flops_per_param * len(idx)  # of the timed call (the subset)
    return info


def _fastgrad_full_check(benchmark, net, params, X, Y, n_threads, rounds=None):
    """Time ``fastgrad.numerical_gradient`` (default engine) and assert it against backprop."""
    fastgrad.numerical_gradient(net, params, X[:2], Y[:2], eps=EPS, threads=n_threads)  # compile
    kwargs = dict(eps=EPS, threads=n_threads)
    if rounds is None:
        grads = benchmark(fastgrad.numerical_gradient, net, params, X, Y, **kwargs)
    else:
        grads = benchmark.pedantic(fastgrad.numerical_gradient, args=(net, params, X, Y), kwargs=kwargs,
                                   rounds=rounds, iterations=1)
    err = max_rel_error(grads, net.backprop(params, X, Y))
    assert err <= BACKPROP_RTOL, f"numerical gradient off backprop by {err:.3g} (relative)"
    return err


def _naive_subset(benchmark, net, params, X, Y, idx):
    """Time the naive loop on ``idx``; assert it against fastgrad's incremental engine at the same entries."""
    with _peer_threads():
        values = benchmark(naive_numerical, net, params, X, Y, PEER_EPS, idx)
        n_blas = blas_threads()
    exact = numerical_flat(net, net.flatten(params), X, Y, EPS, "incremental", indices=idx)[idx]
    np.testing.assert_allclose(values, exact, rtol=1e-5, atol=1e-9)
    return {**_subset_info(net, idx, 2 * forward_flops(net, X.shape[0])), "eps": PEER_EPS,
            "blas_threads": n_blas,
            "max_rel_error_vs_backprop": _subset_rel_error(values, _flat_backprop(net, params, X, Y)[idx])}


def _numpy_forward(benchmark, group, case):
    """Time one NumPy forward pass + loss of the batch: the unit of "forward-pass equivalents"."""
    net, params, X, Y = make_case(**case)
    benchmark.group = group
    with _peer_threads():
        loss = benchmark(numpy_loss, params, X, Y)
        n_blas = blas_threads()
    assert abs(loss - net.loss(params, X, Y)) <= 1e-12 * abs(loss)
    _info(benchmark, net, X, params, label="one NumPy forward pass (the unit)", engine="numpy-forward",
          threads=1, role="forward", extra={"blas_threads": n_blas, "flops": forward_flops(net, X.shape[0])})


# --------------------------------------------------------------- reference size
REFERENCE = dict(sizes=[784, 128, 10], n_samples=64)
REF_GROUP = "ref 784-128-10 N=64"


@pytest.mark.parametrize("threads", [1, "all"])
def test_reference_incremental(benchmark, threads, max_threads):
    """784-128-10, N=64: the full per-parameter check with the default engine."""
    n_threads = _threads(threads, max_threads)
    net, params, X, Y = make_case(**REFERENCE)
    benchmark.group = REF_GROUP
    err = _fastgrad_full_check(benchmark, net, params, X, Y, n_threads)
    _info(benchmark, net, X, params, label="fastgrad incremental (default)", engine="incremental",
          threads=n_threads, role="fastgrad",
          extra={"eps": EPS, "max_rel_error_vs_backprop": err,
                 "flops_estimate": engine_flops(net, "incremental", X.shape[0])})


def test_reference_numpy_forward(benchmark):
    _numpy_forward(benchmark, REF_GROUP, REFERENCE)


def test_reference_naive_loop(benchmark):
    """The tutorial's loop (2 NumPy forward passes per parameter), on a subset."""
    net, params, X, Y = make_case(**REFERENCE)
    idx = _peer_indices(benchmark, net, NAIVE_SUBSET)
    benchmark.group = REF_GROUP
    extra = _naive_subset(benchmark, net, params, X, Y, idx)
    _info(benchmark, net, X, params, label="naive NumPy loop", engine="naive-numpy-loop", threads=1,
          role="peer", extra=extra)


def test_reference_torch_gradcheck(benchmark):
    """``torch.autograd.gradcheck`` (``fast_mode=False``) on the naive loop's subset, from every tensor."""
    try:
        import torch
    except ImportError:  # an optional peer: CI runs without it
        pytest.skip("torch is not installed")
    net, params, X, Y = make_case(**REFERENCE)
    idx = _peer_indices(benchmark, net, NAIVE_SUBSET)
    tensors_hit = sorted({net.locate(int(i))[0] for i in idx})
    assert tensors_hit == sorted(net.tensor_names), tensors_hit
    loss, subset = torch_loss(torch, net, net.flatten(params), X, Y, idx)
    # the torch function is the same loss, with the same gradient, as fastgrad's
    value = loss(subset)
    assert abs(value.detach().item() - net.loss(params, X, Y)) <= 1e-12 * abs(net.loss(params, X, Y))
    (grad,) = torch.autograd.grad(value, subset)
    np.testing.assert_allclose(grad.numpy(), _flat_backprop(net, params, X, Y)[idx], rtol=1e-10, atol=1e-15)
    benchmark.group = REF_GROUP
    with _peer_threads(torch) as n_threads:
        ok = benchmark(torch.autograd.gradcheck, loss, (subset,), eps=PEER_EPS, atol=1e-5, rtol=1e-3,
                       fast_mode=False)
    assert ok
    _info(benchmark, net, X, params, label="torch.autograd.gradcheck", engine="torch.autograd.gradcheck",
          threads=n_threads, role="peer",
          extra={**_subset_info(net, idx, 2 * forward_flops(net, X.shape[0])), "eps": PEER_EPS,
                 "fast_mode": False, "torch_version": torch.__version__, "tensors": ",".join(tensors_hit)})


def test_reference_full_engine(benchmark):
    """Time fastgrad's full-recompute engine (the tutorial's loop, compiled), on a subset."""
    net, params, X, Y = make_case(**REFERENCE)
    idx = _peer_indices(benchmark, net, NAIVE_SUBSET)
    theta = net.flatten(params)
    numerical_flat(net, theta, X[:2], Y[:2], PEER_EPS, "full", indices=idx[:2])  # compile
    benchmark.group = REF_GROUP
    values = benchmark(numerical_flat, net, theta, X, Y, PEER_EPS, "full", indices=idx)[idx]
    exact = numerical_flat(net, theta, X, Y, EPS, "incremental", indices=idx)[idx]
    np.testing.assert_allclose(values, exact, rtol=1e-5, atol=1e-9)
    err = _subset_rel_error(values, _flat_backprop(net, params, X, Y)[idx])
    _info(benchmark, net, X, params, label="fastgrad full engine", engine="full", threads=numba.get_num_threads(),
          role="peer",
          extra={**_subset_info(net, idx), "eps": PEER_EPS, "max_rel_error_vs_backprop": err,
                 "flops_estimate": engine_flops(net, "full", X.shape[0], idx)})


def test_reference_accuracy_incremental_vs_full():
    """The default engine agrees with backprop to 1e-9 relative, and closer than the full engine."""
    net, params, X, Y = make_case(**REFERENCE)
    theta = net.flatten(params)
    analytic = _flat_backprop(net, params, X, Y)
    incremental = numerical_flat(net, theta, X, Y, EPS, "incremental")
    err_inc = _subset_rel_error(incremental, analytic)
    assert err_inc <= BACKPROP_RTOL, err_inc
    idx = spread_indices(net, NAIVE_SUBSET)
    full = numerical_flat(net, theta, X, Y, PEER_EPS, "full", indices=idx)[idx]
    err_full = _subset_rel_error(full, analytic[idx])
    err_inc_subset = _subset_rel_error(incremental[idx], analytic[idx])
    assert err_inc_subset <= err_full, (err_inc_subset, err_full)


# ------------------------------------------------------------------- big net
LARGE = dict(sizes=[3072, 512, 10], n_samples=128)
LARGE_GROUP = "large 3072-512-10 N=128"
LARGE_NAIVE_SUBSET = 16


@pytest.mark.parametrize("threads", [1, "all"])
def test_large_incremental(benchmark, threads, max_threads):
    """3072-512-10, N=128 (about 1.58 M parameters): full check."""
    n_threads = _threads(threads, max_threads)
    net, params, X, Y = make_case(**LARGE)
    benchmark.group = LARGE_GROUP
    err = _fastgrad_full_check(benchmark, net, params, X, Y, n_threads, rounds=3)
    _info(benchmark, net, X, params, label="fastgrad incremental (default)", engine="incremental",
          threads=n_threads, role="fastgrad",
          extra={"eps": EPS, "max_rel_error_vs_backprop": err,
                 "flops_estimate": engine_flops(net, "incremental", X.shape[0])})


def test_large_numpy_forward(benchmark):
    _numpy_forward(benchmark, LARGE_GROUP, LARGE)


def test_large_naive_loop(benchmark):
    """The naive loop on the large net, on a small subset."""
    net, params, X, Y = make_case(**LARGE)
    idx = _peer_indices(benchmark, net, LARGE_NAIVE_SUBSET)
    benchmark.group = LARGE_GROUP
    extra = _naive_subset(benchmark, net, params, X, Y, idx)
    _info(benchmark, net, X, params, label="naive NumPy loop", engine="naive-numpy-loop", threads=1,
          role="peer", extra=extra)


# ------------------------------------------------------------------ scaling
SCALING_GROUP = "scaling 784-H-10 N=64"
#: 784-H-10 has P = 795 H + 10 parameters: about 1.6e3, 4.8e3, 1e4, 3.2e4, 1e5, 3.2e5, 1e6.
SCALING_H = [2, 6, 13, 40, 126, 400, 1258]
#: The naive loop on a subset (size of the subset), for a few of those widths.
NAIVE_SCALING = {2: 200, 13: 200, 126: 64, 1258: 16}


@pytest.mark.parametrize("hidden_width", SCALING_H)
def test_scaling_incremental(benchmark, hidden_width, max_threads):
    """Time against P for a 1-hidden-layer net, default engine, all threads."""
    net, params, X, Y = make_case([784, hidden_width, 10], 64)
    benchmark.group = SCALING_GROUP
    err = _fastgrad_full_check(benchmark, net, params, X, Y, max_threads)
    _info(benchmark, net, X, params, label="fastgrad incremental (default)", engine="incremental",
          threads=max_threads, role="fastgrad",
          extra={"eps": EPS, "max_rel_error_vs_backprop": err, "hidden_width": hidden_width,
                 "flops_estimate": engine_flops(net, "incremental", X.shape[0])})


@pytest.mark.parametrize("hidden_width", list(NAIVE_SCALING))
def test_scaling_naive_loop(benchmark, hidden_width):
    """The naive loop on a subset, for a few widths (its full-check time grows like P^2)."""
    net, params, X, Y = make_case([784, hidden_width, 10], 64)
    idx = _peer_indices(benchmark, net, NAIVE_SCALING[hidden_width])
    benchmark.group = SCALING_GROUP
    extra = _naive_subset(benchmark, net, params, X, Y, idx)
    _info(benchmark, net, X, params, label="naive NumPy loop", engine="naive-numpy-loop", threads=1,
          role="peer", extra={**extra, "hidden_width": hidden_width})


# ---------------------------------------------------------------- deep net
DEEP = dict(sizes=[784, 256, 256, 256, 10], n_samples=64)
DEEP_GROUP = "deep 784-256-256-256-10 N=64"
#: "full": time the full check; "subset": time whole units only (``DEEP_UNIT_FRACTION``
#: of every layer's units, extrapolated by P); "auto": time the subset once and run
#: the full check when that predicts at most ``DEEP_FULL_BUDGET_S`` (else the subset).
DEEP_MODE = os.environ.get("FASTGRAD_BENCH_DEEP", "auto")
DEEP_FULL_BUDGET_S = 60.0
DEEP_UNIT_FRACTION = 1 / 64  # 4 units of each 256-wide layer, 1 output unit: about 5.5e3 parameters


def test_deep_incremental(benchmark, max_threads):
    """784-256-256-256-10: the default engine's full check (or whole units of every layer)."""
    assert DEEP_MODE in ("auto", "full", "subset"), DEEP_MODE
    net, params, X, Y = make_case(**DEEP)
    theta = net.flatten(params)
    idx = unit_indices(net, DEEP_UNIT_FRACTION)
    numerical_flat(net, theta, X[:2], Y[:2], EPS, "incremental", indices=idx[:2])  # compile
    analytic = _flat_backprop(net, params, X, Y)
    predicted = None
    if DEEP_MODE == "auto":
        t0 = time.perf_counter()
        with threads_context(max_threads):
            probe = numerical_flat(net, theta, X, Y, EPS, "incremental", indices=idx)[idx]
        predicted = (time.perf_counter() - t0) * net.n_params / len(idx)
        assert _subset_rel_error(probe, analytic[idx]) <= BACKPROP_RTOL
    full = DEEP_MODE == "full" or (DEEP_MODE == "auto" and predicted <= DEEP_FULL_BUDGET_S)
    benchmark.group = DEEP_GROUP
    extra = {"eps": EPS, "deep_mode": "full" if full else "whole-unit subset",
             "predicted_full_seconds_from_probe": predicted}
    if full:
        err = _fastgrad_full_check(benchmark, net, params, X, Y, max_threads, rounds=3)
        extra["flops_estimate"] = engine_flops(net, "incremental", X.shape[0])
    else:
        with threads_context(max_threads):
            values = benchmark.pedantic(numerical_flat, args=(net, theta, X, Y, EPS, "incremental"),
                                        kwargs=dict(indices=idx), rounds=3, iterations=1)[idx]
        err = _subset_rel_error(values, analytic[idx])
        assert err <= BACKPROP_RTOL, err
        extra.update(_subset_info(net, idx), units_fraction=DEEP_UNIT_FRACTION,
                     flops_estimate=engine_flops(net, "incremental", X.shape[0], idx))
    extra["max_rel_error_vs_backprop"] = err
    _info(benchmark, net, X, params, label="fastgrad incremental (default)", engine="incremental",
          threads=max_threads, role="fastgrad", extra=extra)


def test_deep_numpy_forward(benchmark):
    _numpy_forward(benchmark, DEEP_GROUP, DEEP)


def test_deep_naive_loop(benchmark):
    """The naive loop on the same deep net, on a subset."""
    net, params, X, Y = make_case(**DEEP)
    idx = _peer_indices(benchmark, net, NAIVE_SUBSET)
    benchmark.group = DEEP_GROUP
    extra = _naive_subset(benchmark, net, params, X, Y, idx)
    _info(benchmark, net, X, params, label="naive NumPy loop", engine="naive-numpy-loop", threads=1,
          role="peer", extra=extra)


def test_deep_unit_engine(benchmark, max_threads):
    """784-256-256-256-10: ``engine="unit"`` (numerical per-unit deltas), full check, beside the others."""
    net, params, X, Y = make_case(**DEEP)
    fastgrad.numerical_gradient(net, params, X[:2], Y[:2], engine="unit")  # compile
    benchmark.group = DEEP_GROUP
    with threads_context(max_threads):
        grads = benchmark.pedantic(fastgrad.numerical_gradient, args=(net, params, X, Y),
                                   kwargs=dict(engine="unit"), rounds=3, iterations=1)
    err = max_rel_error(grads, net.backprop(params, X, Y))
    assert err <= BACKPROP_RTOL, err
    exact = fastgrad.numerical_gradient(net, params, X, Y)
    assert max_rel_error(grads, exact) <= 1e-9  # agrees with the per-parameter engine
    _info(benchmark, net, X, params, label="fastgrad engine='unit'", engine="unit", threads=max_threads,
          role="peer", extra={"max_rel_error_vs_backprop": err})


# ------------------------------------------------------ np.dot, every group
#: Each group's np.dot reference: the forward pass's products of its nets, no activation, one BLAS thread.
DOT_CASES = [(REF_GROUP, REFERENCE), (LARGE_GROUP, LARGE), (DEEP_GROUP, DEEP)] + [
    (SCALING_GROUP, dict(sizes=[784, h, 10], n_samples=64)) for h in SCALING_H]


def _layer_dots(params, X):
    a = X
    for W in params[::2]:
        a = np.dot(a, W)
    return a


@pytest.mark.parametrize("group,case", DOT_CASES, ids=lambda c: "-".join(map(str, c["sizes"])) if isinstance(
    c, dict) else c.split()[0])
def test_numpy_dot_reference(benchmark, group, case):
    """What a blocked BLAS product reaches on the group's layer shapes (GFLOP/s: ``flops`` / median)."""
    net, params, X, _ = make_case(**case)
    benchmark.group = group
    with _peer_threads():
        out = benchmark(_layer_dots, params, X)
        n_blas = blas_threads()
    rows = X[:2]
    for W in params[::2]:  # the first rows again, by elementwise sums (no BLAS)
        rows = (rows[:, :, None] * W[None, :, :]).sum(axis=1)
    np.testing.assert_allclose(out[:2], rows, rtol=1e-9, atol=1e-9)
    shapes = ", ".join(f"({X.shape[0]},{a})@({a},{b})" for a, b in zip(net.sizes[:-1], net.sizes[1:]))
    _info(benchmark, net, X, params, label="np.dot, the layers' products", engine="np.dot", threads=1, role="blas",
          extra={"blas_threads": n_blas, "flops": forward_flops(net, X.shape[0]), "shapes": shapes})

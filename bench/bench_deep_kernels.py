"""The deep engines' kernels beside ``np.dot``, in GFLOP/s, measured in one run (issue 18).

Run timed:   pytest bench/bench_deep_kernels.py --benchmark-json=deep-kernels.json
Run in CI:   pytest bench --benchmark-disable      (each benchmark once, results asserted)

One group, ``deep kernels 784-256-256-256-10 N=64``, at 1 thread and at all
threads:

- ``np.dot`` of (64, 256) @ (256, 256), ``DOT_REPEATS`` times per call: the
  GFLOP/s reference, the shape of one deep layer's product over the batch;
- :func:`fastgrad._kernels.series.unit_series` (``engine="incremental"``)
  over every unit of layer 0 and of layer 1, every sample, in one call;
- :func:`fastgrad._kernels.series.unit_deltas` (``engine="unit"``) and
  :func:`fastgrad._kernels.series.unit_abs_series` (the unit engine's
  rounding budget) the same way;
- the whole ``fastgrad.numerical_gradient`` with ``engine="incremental"``
  and ``engine="unit"``.

Every kernel row records ``extra_info["flops"]`` (the multiply-adds of its
dense loops, see :func:`dense_flops`), ``gflops`` (flops / median) and
``ratio_to_np_dot``: its GFLOP/s over the ``np.dot`` row's of the same
thread count, measured earlier in the same run (the issue's target is
>= 0.7). Timed rows take the median of ``ROUNDS`` rounds. The machine is
shared: compare ratios from one run, not seconds across runs.

Every benchmark asserts what it timed: the kernels' ``e1`` against the
backprop gradient of the layer's biases, the unit deltas against the
series, the whole engines against backprop.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import fastgrad
from fastgrad._config import threads_context
from fastgrad._kernels.losses import loss_scale
from fastgrad._kernels.series import unit_abs_series, unit_deltas, unit_series
from fastgrad.bench import make_case, peer_threads
from fastgrad.engines import IncrementalState

GROUP = "deep kernels 784-256-256-256-10 N=64"
DEEP = dict(sizes=[784, 256, 256, 256, 10], n_samples=64)
#: Rounds of each timed row (the median is reported); under --benchmark-disable one call.
ROUNDS = 9
DOT_SHAPE = (64, 256, 256)
DOT_REPEATS = 64
UNIT_EPS = 1e-6  # the unit engine's step in the kernel rows (their D is held against the series' e1)
BACKPROP_RTOL = 1e-9

#: np.dot's GFLOP/s per thread count, from this run's np.dot rows (or measured on demand).
_DOT_GFLOPS: dict[int, float] = {}
_CASE: dict = {}


def _case():
    """The deep net, its parameters, batch, cached forward pass and incremental state (built once)."""
    if not _CASE:
        net, params, X, Y = make_case(**DEEP)
        theta = net.flatten(params)
        Z, A = net._forward(theta, X)
        _CASE.update(net=net, params=params, X=X, Y=Y, theta=theta, st=IncrementalState(net, X, Y, Z, A),
                     grads=net.backprop(params, X, Y))
    return _CASE


def _threads(threads, max_threads):
    return max_threads if threads == "all" else int(threads)


def dense_flops(sizes, layer, n_samples, n_units, per_product):
    """Flops of the dense loops of a per-unit kernel of ``layer``: what is compared with ``np.dot``.

    For every unit and sample, the kernels carry a change from layer
    ``layer + 1`` through each later dense product ``m`` (``sizes[m]`` inputs,
    ``sizes[m + 1]`` outputs, ``m = layer + 2 .. L``), one multiply and one add
    per stream and weight: ``per_product`` flops per weight, 8 for
    :func:`unit_series` (four streams: ``s1``, ``s2``, ``s3``, ``|s|``),
    4 for :func:`unit_deltas` (the + and - changes), 2 for
    :func:`unit_abs_series` (one stream). The activations' compositions and
    the output loss are not counted (their time is), so the GFLOP/s are a
    lower bound. ``np.dot`` of ``(m, k) @ (k, n)`` counts ``2 m k n``.
    """
    weights = sum(sizes[m] * sizes[m + 1] for m in range(layer + 2, len(sizes) - 1))
    return float(per_product * weights * n_samples * n_units)


def _dot_rate(n_threads):
    """np.dot's GFLOP/s at ``n_threads``: this run's np.dot row, or a median of a few calls when it did not run."""
    if n_threads not in _DOT_GFLOPS:
        m, k, n = DOT_SHAPE
        rng = np.random.default_rng(0)
        A, B, out = rng.normal(size=(m, k)), rng.normal(size=(k, n)), np.empty((m, n))
        with peer_threads(n_threads):
            times = []
            for _ in range(15):
                t0 = time.perf_counter()
                _repeated_dot(A, B, out, DOT_REPEATS)
                times.append(time.perf_counter() - t0)
        _DOT_GFLOPS[n_threads] = 2.0 * m * k * n * DOT_REPEATS / float(np.median(times)) / 1e9
    return _DOT_GFLOPS[n_threads]


def _repeated_dot(A, B, out, repeats):
    for _ in range(repeats):
        np.dot(A, B, out=out)
    return out


def _rate_info(benchmark, flops, n_threads, label, reference=True):
    """Record flops, GFLOP/s and the ratio to np.dot's (timed runs only: untimed ones have no median)."""
    info = {"label": label, "threads": n_threads, "flops": flops, "dtype": "float64", "sizes": "784-256-256-256-10",
            "n_samples": DEEP["n_samples"]}
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not getattr(benchmark, "disabled", False):
        gflops = flops / stats.stats.median / 1e9
        info["gflops"] = gflops
        if reference:
            info["np_dot_gflops"] = _dot_rate(n_threads)
            info["ratio_to_np_dot"] = gflops / info["np_dot_gflops"]
    benchmark.extra_info.update(info)
    return info


def _run(benchmark, fn, args, n_threads):
    rounds = 1 if getattr(benchmark, "disabled", False) else ROUNDS  # CI: the assertions, not the numbers
    fn(*args)  # compile (and warm the caches)
    with threads_context(n_threads):
        return benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1)


@pytest.mark.parametrize("threads", [1, "all"])
def test_np_dot(benchmark, threads, max_threads):
    """The reference: ``np.dot`` of a deep layer's shape, with BLAS at the same thread count as the kernels."""
    n_threads = _threads(threads, max_threads)
    m, k, n = DOT_SHAPE
    rng = np.random.default_rng(0)
    A, B, out = rng.normal(size=(m, k)), rng.normal(size=(k, n)), np.empty((m, n))
    benchmark.group = GROUP
    rounds = 1 if getattr(benchmark, "disabled", False) else 5 * ROUNDS
    with peer_threads(n_threads):
        C = benchmark.pedantic(_repeated_dot, args=(A, B, out, DOT_REPEATS), rounds=rounds, iterations=1)
    np.testing.assert_allclose(C[:2], (A[:2, :, None] * B[None, :, :]).sum(axis=1), rtol=1e-10, atol=1e-10)
    info = _rate_info(benchmark, 2.0 * m * k * n * DOT_REPEATS, n_threads,
                      f"np.dot ({m},{k})@({k},{n}) x{DOT_REPEATS}", reference=False)
    if "gflops" in info:
        _DOT_GFLOPS[n_threads] = info["gflops"]


def _outputs(N, B, k):
    return [np.empty((N, B)) for _ in range(k)]


def _bias_gradient_from_e1(case, layer, E1):
    """The layer's bias gradient from the per-sample ``e1`` (``scale * sum_n e1``), against backprop's."""
    net = case["net"]
    got = loss_scale(net.loss_code, case["X"].shape[0]) * E1.sum(axis=0)
    want = case["grads"][2 * layer + 1]
    err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    assert err <= BACKPROP_RTOL, err


@pytest.mark.parametrize("threads", [1, "all"])
@pytest.mark.parametrize("layer", [0, 1])
def test_unit_series(benchmark, layer, threads, max_threads):
    """``engine="incremental"``'s series of every unit of ``layer``, every sample, in one call."""
    n_threads = _threads(threads, max_threads)
    c = _case()
    net, theta, st = c["net"], c["theta"], c["st"]
    N = c["X"].shape[0]
    units = np.arange(net.sizes[layer + 1], dtype=np.int64)
    E1, E3, E1abs, lim = _outputs(N, units.size, 4)
    benchmark.group = GROUP
    _run(benchmark, unit_series, (theta, net.layout, net.loss_code, st.base, layer, units, 0, N, 1,
                                  E1, E3, E1abs, lim), n_threads)
    _bias_gradient_from_e1(c, layer, E1)
    assert np.all(E1abs >= np.abs(E1))
    _rate_info(benchmark, dense_flops(net.sizes, layer, N, units.size, 8), n_threads,
               f"unit_series layer {layer} (all units)")


@pytest.mark.parametrize("threads", [1, "all"])
@pytest.mark.parametrize("layer", [0, 1])
def test_unit_deltas(benchmark, layer, threads, max_threads):
    """``engine="unit"``'s direct deltas of every unit of ``layer``, every sample, in one call."""
    n_threads = _threads(threads, max_threads)
    c = _case()
    net, theta, st = c["net"], c["theta"], c["st"]
    N = c["X"].shape[0]
    units = np.arange(net.sizes[layer + 1], dtype=np.int64)
    (D,) = _outputs(N, units.size, 1)
    crossed = np.empty((N, units.size), dtype=np.int8)
    benchmark.group = GROUP
    _run(benchmark, unit_deltas, (theta, net.layout, net.loss_code, st.base, layer, units, 0, N, 1, UNIT_EPS,
                                  D, crossed), n_threads)
    assert not crossed.any()  # sigmoid: no kinks
    _bias_gradient_from_e1(c, layer, D)  # (a central difference at h = 1e-6 of a smooth function: 1e-12 off)
    _rate_info(benchmark, dense_flops(net.sizes, layer, N, units.size, 4), n_threads,
               f"unit_deltas layer {layer} (all units)")


@pytest.mark.parametrize("threads", [1, "all"])
def test_unit_abs_series(benchmark, threads, max_threads):
    """``engine="unit"``'s rounding budget: the absolute chain of every unit of layer 0."""
    n_threads = _threads(threads, max_threads)
    c = _case()
    net, theta, st = c["net"], c["theta"], c["st"]
    N = c["X"].shape[0]
    units = np.arange(net.sizes[1], dtype=np.int64)
    (E1abs,) = _outputs(N, units.size, 1)
    benchmark.group = GROUP
    _run(benchmark, unit_abs_series, (theta, net.layout, net.loss_code, st.base, 0, units, 0, N, 1, E1abs),
         n_threads)
    assert np.all(E1abs > 0.0)
    _rate_info(benchmark, dense_flops(net.sizes, 0, N, units.size, 2), n_threads,
               "unit_abs_series layer 0 (all units)")


@pytest.mark.parametrize("threads", [1, "all"])
@pytest.mark.parametrize("engine", ["incremental", "unit"])
def test_numerical_gradient(benchmark, engine, threads, max_threads):
    """The whole check, every parameter: the kernels above plus the assembly and the driver."""
    n_threads = _threads(threads, max_threads)
    c = _case()
    net, params, X, Y = c["net"], c["params"], c["X"], c["Y"]
    benchmark.group = GROUP
    grads = _run(benchmark, lambda: fastgrad.numerical_gradient(net, params, X, Y, engine=engine), (), n_threads)
    err = max(float(np.max(np.abs(n - a)) / np.max(np.abs(a))) for n, a in zip(grads, c["grads"]))
    assert err <= BACKPROP_RTOL, err
    sizes, N = net.sizes, X.shape[0]
    per = 8 if engine == "incremental" else 4
    # every layer's units: their kernels' dense loops (the assembly's 6 flops per parameter and sample not counted)
    flops = sum(dense_flops(sizes, layer, N, sizes[layer + 1], per) for layer in range(net.n_layers))
    _rate_info(benchmark, flops, n_threads, f"numerical_gradient engine={engine!r}")
    benchmark.extra_info["max_rel_error_vs_backprop"] = err

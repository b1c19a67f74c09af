"""Memory of a check per parameter (issue 12, item 11: at most 40 bytes per parameter).

Run timed:   pytest bench/bench_memory.py --benchmark-json=memory.json
Run in CI:   pytest bench/bench_memory.py --benchmark-disable   (each once, the limit asserted)

What a call allocates at its peak, traced with ``tracemalloc`` (which sees
NumPy's buffers), divided by the number of parameters, after a warm-up call
has compiled everything; and what the result keeps. ``check`` keeps, per
entry, the gradient checked, the numerical gradient, the budget and a
one-byte verdict (25 bytes); at its peak it also holds the flat parameters
and the budget's ingredients. Before this work a check peaked at ~76 bytes
per parameter (ratios, relative errors and masks were all kept).

Environment: ``FASTGRAD_BENCH_MEMORY_SIZES`` (default ``256-2048-1024-10``,
2.6 M parameters).
"""

from __future__ import annotations

import gc
import os
import tracemalloc

import numpy as np
import pytest

import fastgrad

SIZES = [int(s) for s in os.environ.get("FASTGRAD_BENCH_MEMORY_SIZES", "256-2048-1024-10").split("-")]
GROUP = f"memory {'-'.join(map(str, SIZES))}"
#: Bytes per parameter a check may use at its peak (issue 12, item 11).
CHECK_LIMIT = 40.0
#: ... and numerical_gradient (its result is one array of P doubles, plus the flat parameters).
NUMERICAL_LIMIT = 24.0


@pytest.fixture(scope="module")
def case():
    net = fastgrad.MLP(SIZES, hidden="tanh")
    params = net.init(seed=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, SIZES[0]))
    Y = rng.uniform(size=(8, SIZES[-1]))
    grads = net.backprop(params, X, Y)
    small = fastgrad.MLP([3, 4, 2], hidden="tanh")
    # compile outside the measurement (a compile allocates Python objects that tracemalloc counts), and the
    # kernels the big net runs: the parallel ones, which a small net would skip for their serial twins
    saved = fastgrad._threading.PARALLEL_MIN_SIZE, fastgrad._threading.PARALLEL_MIN_WORK
    fastgrad._threading.PARALLEL_MIN_SIZE = fastgrad._threading.PARALLEL_MIN_WORK = 0
    try:
        fastgrad.check(small, small.init(seed=0), X[:, :3], Y[:, :2])
        fastgrad.numerical_gradient(small, small.init(seed=0), X[:, :3], Y[:, :2])
    finally:
        fastgrad._threading.PARALLEL_MIN_SIZE, fastgrad._threading.PARALLEL_MIN_WORK = saved
    return net, params, X, Y, grads


def _traced(call):
    gc.collect()
    tracemalloc.start()
    try:
        result = call()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, current, peak


@pytest.mark.parametrize("grads", ["list", "backprop", "failing"])
def test_check_bytes_per_parameter(benchmark, case, grads):
    net, params, X, Y, g = case
    if grads == "failing":  # the largest tensor x1.5: every entry of it fails, and is diagnosed
        g = [x * 1.5 if x.size == max(y.size for y in g) else x for x in g]
    benchmark.group = GROUP
    result, kept, peak = benchmark.pedantic(
        _traced, args=(lambda: fastgrad.check(net, params, X, Y, None if grads == "backprop" else g),),
        rounds=1, iterations=1)
    P = net.n_params
    benchmark.extra_info.update(n_params=P, peak_bytes_per_param=peak / P, kept_bytes_per_param=kept / P)
    assert result.passed == (grads != "failing")
    assert peak / P <= CHECK_LIMIT, f"check peaked at {peak / P:.1f} B/param"
    assert kept / P <= 26.0, f"the result keeps {kept / P:.1f} B/param"


def test_numerical_gradient_bytes_per_parameter(benchmark, case):
    net, params, X, Y, _ = case
    benchmark.group = GROUP
    _, _, peak = benchmark.pedantic(_traced, args=(lambda: fastgrad.numerical_gradient(net, params, X, Y),),
                                    rounds=1, iterations=1)
    P = net.n_params
    benchmark.extra_info.update(n_params=P, peak_bytes_per_param=peak / P)
    assert peak / P <= NUMERICAL_LIMIT, f"numerical_gradient peaked at {peak / P:.1f} B/param"

"""The bench's cost model: its counts against loops counted here, its phases against the check, its rates.

No timing is asserted: whether the predictions fall within 0.5-2x of the
measured times is a benchmark result (``fastgrad bench``), not a test.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import fastgrad
from fastgrad import bench
from fastgrad._kernels.forward import BATCH_TILE
from fastgrad._kernels.tiles import TILE_COLUMNS
from fastgrad.bench import cost_model, phases
from fastgrad.checking import default_eps

#: A deep tiny net: every kind of series loop (a later layer, the output) and several layers of assembly.
SIZES = [3, 9, 17, 2]  # layers wider than a register tile (8 units) and narrower
N = 6


def _rates(**overrides):
    """Rates chosen here (not measured): each test sets the one it looks at."""
    base = dict(threads=1, dot_flops={"forward": 1e10, "assembly": 2e10}, cache_bytes=1e11, memory_bytes=1e10,
                chain_flops=1e9, exp_seconds=1e-9, launch_seconds=1e-6, call_seconds=1e-7, alloc_seconds=1e-8,
                page_seconds=1e-7, python_seconds=1e-4)
    return bench.MachineRates(**{**base, **overrides})


def test_forward_count_is_the_loops():
    """One multiply-add per sample, input and unit (tiles of 8 units; the rest scalar); W read once per task."""
    net = fastgrad.MLP(SIZES)
    tiled = left = 0
    for _n in range(N):
        for a, b in zip(SIZES[:-1], SIZES[1:]):
            for _i in range(a):
                for j in range(b):
                    if j < b - b % TILE_COLUMNS:
                        tiled += 1
                    else:
                        left += 1
    work = bench.phase_work(net, N, 1)["forward"]
    assert work.vector_flops == 2 * tiled
    assert 2 * (tiled + left) == bench.forward_flops(net, N)
    assert work.cache_bytes == 3 * tiled  # a quarter of a weight's load, an eighth of an input's
    U = sum(SIZES[1:])
    assert work.memory_bytes == 8 * net.n_params * math.ceil(N / BATCH_TILE) + 8 * N * SIZES[0] + 16 * N * U
    assert work.exps == N * U


def test_series_count_is_the_loops():
    """``add_scaled_series``: 4 multiply-adds per weight of every layer after the unit's next, per unit and sample."""
    net = fastgrad.MLP(SIZES)
    last = len(SIZES) - 2  # the output layer's index
    macs = 0
    for layer in range(last + 1):
        for _unit in range(SIZES[layer + 1]):
            for _n in range(N):
                if layer == last:
                    continue
                macs += 4 * SIZES[layer + 2]  # the rank-1 change of layer l+1: four rows
                m = layer + 1
                while m < last:  # as unit_series walks the later layers
                    macs += 4 * SIZES[m + 1] * SIZES[m + 2]
                    m += 1
    assert bench.phase_work(net, N, 1)["series"].vector_flops == 2 * macs


def test_assembly_count_is_the_loops_and_calls_cover_every_entry_once():
    net = fastgrad.MLP(SIZES)
    for threads in (1, 2, 4):
        calls = bench.incremental_calls(net, N, threads)
        seen = np.zeros(net.n_params, dtype=int)
        sampled = {layer: np.zeros((N, SIZES[layer + 1]), dtype=int) for layer in range(len(SIZES) - 1)}
        for c in calls:
            units = np.arange(c.start, c.start + c.size)
            if c.phase == "assembly":
                for i in range(c.lo, c.hi):
                    for j in units:
                        seen[net.offsets[2 * c.layer + 1] + j if i == SIZES[c.layer] else
                             net.offsets[2 * c.layer] + i * SIZES[c.layer + 1] + j] += 1
            else:
                sampled[c.layer][c.lo:c.hi, units] += 1
        assert (seen == 1).all()  # every parameter assembled once
        assert all((s == 1).all() for s in sampled.values())  # every unit's every sample: one series
    work = bench.phase_work(net, N, 1)["assembly"]
    # acc1 and acc3: two multiply-adds per entry and sample, in tiles of 8 units (the units left over: scalar)
    tiled = sum(2 * N * (a + 1) * (b - b % TILE_COLUMNS) for a, b in zip(SIZES[:-1], SIZES[1:]))
    assert tiled > 0
    assert work.vector_flops == 2 * tiled
    assert work.cache_bytes == 3 * tiled


def test_phases_compute_the_check():
    """The phases, run one by one with phases.py's calls, give numerical_gradient's values bit for bit."""
    net, params, X, Y = bench.make_case(SIZES, N)
    for threads in (1, 2):
        calls = bench.incremental_calls(net, N, threads)
        times, values = phases.one_round(net, params, X, Y, calls, default_eps("incremental", "central"))
        expected = np.concatenate([g.ravel() for g in fastgrad.numerical_gradient(net, params, X, Y,
                                                                                 threads=threads)])
        assert np.array_equal(values.view(np.int64), expected.view(np.int64))
        assert set(times) == set(bench.PHASES) | {"total"} and all(t >= 0 for t in times.values())


def test_prediction_is_work_over_the_measured_rates():
    net = fastgrad.MLP(SIZES)
    rates = _rates()
    pred = bench.predict(net, N, rates)
    assert pred.total == pytest.approx(sum(pred.seconds[p] for p in bench.PHASES))
    assert pred.seconds["overhead"] == rates.python_seconds
    # a memory 1000x slower: the forward pass becomes its bytes over the bandwidth, plus what is not roofline
    slow = _rates(memory_bytes=1e7)
    w = pred.work["forward"]
    fixed = (w.parallel_calls * slow.launch_seconds + w.serial_calls * slow.call_seconds
             + w.scalar_flops / slow.chain_flops + w.exps * slow.exp_seconds)
    assert bench.predict(net, N, slow).seconds["forward"] == pytest.approx(w.memory_bytes / 1e7 + fixed)
    # every rate counts: a slower one never makes a phase faster, and some phase slower
    for name, value in dataclasses.asdict(rates).items():
        if name in ("threads", "scaling", "dot_shapes"):
            continue
        if name == "dot_flops":
            changed = _rates(dot_flops={k: v / 1e4 for k, v in value.items()})
        elif name.endswith("seconds"):
            changed = _rates(**{name: value * 1e4})
        else:
            changed = _rates(**{name: value / 1e4})
        after = bench.predict(net, N, changed).seconds
        assert all(after[p] >= pred.seconds[p] for p in pred.seconds), name
        assert after["total"] > pred.total, name


def test_more_threads_use_the_measured_scaling():
    net, _, _, _ = bench.make_case([784, 64, 10], 64)
    one = bench.predict(net, 64, _rates())
    two = bench.predict(net, 64, _rates(threads=2, scaling=2.0, cache_bytes=2e11))
    assert two.seconds["assembly"] < one.seconds["assembly"]  # parallel calls at the measured 2x
    assert two.seconds["validate"] == one.seconds["validate"]  # serial


def test_measure_and_predict_on_a_tiny_net():
    """The run's rates are measured (finite, positive), and the prediction is computed from them."""
    net, params, X, Y = bench.make_case(SIZES, N)
    prediction, measured = bench.measure_and_predict(net, params, X, Y, 1, rounds=1)
    rates = prediction.rates
    for name in ("cache_bytes", "memory_bytes", "chain_flops", "exp_seconds", "launch_seconds", "call_seconds",
                 "alloc_seconds", "page_seconds", "python_seconds", "scaling"):
        value = getattr(rates, name)
        assert math.isfinite(value) and value > 0, name
    assert set(rates.dot_flops) == {"forward", "assembly"} and all(v > 0 for v in rates.dot_flops.values())
    assert prediction.seconds == bench.predict(net, N, rates).seconds
    table = bench.comparison(prediction, measured)
    assert table["total"]["ratio"] == pytest.approx(measured["total"] / prediction.total)
    assert cost_model.total_flops(net, N) > 0


def test_median_rates():
    a, b, c = _rates(memory_bytes=1.0), _rates(memory_bytes=3.0), _rates(memory_bytes=2.0,
                                                                      dot_flops={"forward": 5.0, "assembly": 1.0})
    m = bench.median_rates([a, b, c])
    assert m.memory_bytes == 2.0 and m.dot_flops["forward"] == 1e10 and m.dot_flops["assembly"] == 2e10

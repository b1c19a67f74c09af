"""Drawing a 9 M-parameter check: ``result.plot(path)`` and the JSON's picture grids (issue 17).

Run timed:   pytest bench/bench_plot.py --benchmark-json=plot.json
Run in CI:   pytest bench/bench_plot.py --benchmark-disable   (each once, the limit asserted)

Group ``plot 784-2900-2400-10``: one check of a 9,262,910-parameter net (N=2,
about 3 s once compiled, once per module) whose gradient has two bugs: a
dropped column of W1 (784 entries) and one entry of W2 off by 1e-3. Then:

* ``result.plot(path)``: the budget ratios derived from the result's arrays
  (reset before each round, so that every round pays for them, as a first
  plot does), the block maxima of every tensor (W2's 6.96 M entries in
  12 x 10 blocks), the figure and its PNG. Issue 17's limit: under 5 s,
  asserted on the first plot (``seconds_once``), which also imports matplotlib
  when nothing before it has;
* ``result.to_dict(pictures=True)`` and its JSON, what ``fastgrad check --json`` writes.

Each also checks that the picture shows both bugs: the column and the one
block are the failing cells.

Environment: ``FASTGRAD_BENCH_PLOT_SIZES`` (default ``784-2900-2400-10``).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

import fastgrad
from fastgrad import picture_grid

SIZES = [int(s) for s in os.environ.get("FASTGRAD_BENCH_PLOT_SIZES", "784-2900-2400-10").split("-")]
GROUP = f"plot {'-'.join(map(str, SIZES))}"
MAX_SECONDS = 5.0
COLUMN, ENTRY = 100, (1234 % SIZES[1], 567 % SIZES[2])


@pytest.fixture(scope="module")
def result():
    """A check of a large net with a dropped column in W1 and one wrong entry in W2."""
    net = fastgrad.MLP(SIZES)
    params = net.init(seed=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, SIZES[0]))
    Y = rng.uniform(size=(2, SIZES[-1]))
    grads = net.backprop(params, X, Y)
    grads[0][:, COLUMN] = 0.0
    grads[2][ENTRY] *= 1 + 1e-3
    result = fastgrad.check(net, params, X, Y, grads)
    assert {(f.tensor, f.index[1] if f.tensor == "W1" else f.index) for f in result.failures} == {
        ("W1", COLUMN), ("W2", ENTRY)}, str(result)
    return result


def _forget_ratios(result):
    """Drop the budget ratios a previous plot derived (kept on the result once read): each round derives them."""
    result.__dict__["_budget_ratio"] = None
    result.__dict__["_rel_error"] = None


def _shows_both_bugs(grids):
    w1, w2 = grids.tensors[0], grids.tensors[2]
    failing_w1 = np.argwhere(w1.flags & picture_grid.FAILING)
    assert set(failing_w1[:, 1]) == {COLUMN // w1.block[1]} and len(failing_w1) == w1.flags.shape[0]
    failing_w2 = [tuple(map(int, i)) for i in np.argwhere(w2.flags & picture_grid.FAILING)]
    assert failing_w2 == [(ENTRY[0] // w2.block[0], ENTRY[1] // w2.block[1])]


def test_plot_9m(benchmark, result, tmp_path):
    path = tmp_path / "plot.png"

    def plot():
        return result.plot(path)

    _forget_ratios(result)
    started = time.perf_counter()
    fig = plot()
    seconds = time.perf_counter() - started
    benchmark.group = GROUP
    benchmark.extra_info.update(n_params=result.n_params, seconds_once=seconds, png_bytes=path.stat().st_size)
    benchmark.pedantic(plot, setup=lambda: _forget_ratios(result), rounds=3, iterations=1)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert {ax.get_label() for ax in fig.axes} >= {"W1", "b1", "W2", "b2", "W3", "b3"}
    _shows_both_bugs(picture_grid.result_grids(result))
    assert seconds < MAX_SECONDS, f"result.plot() of {result.n_params:,} parameters: {seconds:.2f} s"


def test_pictures_json_9m(benchmark, result):
    def dump():
        return json.dumps(result.to_dict(pictures=True), allow_nan=False)

    started = time.perf_counter()
    text = dump()
    seconds = time.perf_counter() - started
    benchmark.group = GROUP
    benchmark.extra_info.update(n_params=result.n_params, seconds_once=seconds, json_bytes=len(text))
    benchmark.pedantic(dump, rounds=3, iterations=1)
    _shows_both_bugs(picture_grid.grids_from_dict(json.loads(text)))
    assert len(text) < 2_000_000  # at most 256 x 256 cells a tensor, 3 bytes a cell in base64
    assert seconds < MAX_SECONDS

"""The cost model on the quick sweep's nets: each phase of the default engine's check, predicted and measured.

Run timed:  pytest bench/bench_cost_model.py --benchmark-json=model.json && python bench/summarize.py model.json

For every net of ``fastgrad bench --quick`` (784-H-10, N=64) and 1 and all
threads, :func:`fastgrad.bench.measure_and_predict` measures the machine's
rates (np.dot on the phases' shapes, memory bandwidth, the L1 loop, launch
costs; :mod:`fastgrad.bench.rates`) and times each phase of the check
(:mod:`fastgrad.bench.phases`) in interleaved rounds, and predicts each phase
from its counted flops and bytes over those rates
(:mod:`fastgrad.bench.cost_model`). ``extra_info`` holds, per phase and in
total, the predicted and measured seconds and their ratio, and the rates;
``bench/summarize.py`` prints them. Whether the ratio falls within 0.5-2x is
the result, not an assertion. The benchmark's own time is the experiment's
and means nothing.
"""

from __future__ import annotations

import pytest

from fastgrad.bench import QUICK_HIDDEN, comparison, make_case, measure_and_predict

GROUP = "cost model (quick sweep nets)"
#: Interleaved rounds per net and thread count (timed run).
ROUNDS = 7
#: Under --benchmark-disable: the assertions on a small batch, one round.
UNTIMED_BATCH = 8


@pytest.mark.parametrize("threads", [1, "all"])
@pytest.mark.parametrize("hidden", QUICK_HIDDEN)
def test_cost_model_phases(benchmark, hidden, threads, max_threads):
    n_threads = max_threads if threads == "all" else threads
    untimed = getattr(benchmark, "disabled", False)
    batch, rounds = (UNTIMED_BATCH, 1) if untimed else (64, ROUNDS)
    net, params, X, Y = make_case([784, hidden, 10], batch)
    found = {}

    def experiment():
        found["prediction"], found["measured"] = measure_and_predict(net, params, X, Y, n_threads, rounds)

    benchmark.group = GROUP
    benchmark.pedantic(experiment, rounds=1, iterations=1)
    prediction, measured = found["prediction"], found["measured"]
    table = comparison(prediction, measured)
    assert all(c["predicted"] > 0 for c in table.values())
    assert prediction.total > 0 and measured["total"] > 0
    benchmark.extra_info.update(
        label=f"cost model, 784-{hidden}-10 N={batch}",
        role="cost_model",
        sizes="-".join(map(str, net.sizes)),
        n_params=net.n_params,
        n_samples=batch,
        threads=n_threads,
        rounds=rounds,
        phases=table,
        rates=prediction.rates.to_dict(),
    )

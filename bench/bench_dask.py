"""Sharded checks on Dask (issue 16): scheduling overhead per block, weak scaling, local vs a LocalCluster.

Run in CI:   pytest bench/bench_dask.py --benchmark-disable     (small sizes, one round, results asserted)
The table (``R=bench/results/epyc-2core-dask``)::

    pytest bench/bench_dask.py --benchmark-json=$R.json
    python bench/bench_dask.py $R.json > $R.md

One experiment in one process (``test_dask_report``), its figures in ``extra_info``:

- **overhead per block**: ``ROUNDS`` x ``fastgrad.dask_support.map_blocks`` of ``N_TRIVIAL`` blocks that do
  nothing, on ``LocalCluster(processes=True, n_workers=2, threads_per_worker=1)``: wall time per block
  (what a block must outweigh: fastgrad's blocks are sized to ~0.05 s of work, ``sharding.MIN_BLOCK_FLOPS``);
- **weak scaling**: the same per-worker work on 1 and on 2 workers (784-W-10 with W = ``WEAK_WIDTH`` per
  worker, N = 64, a full sharded check), blocks per second per worker; on this 2-core machine 2 workers are
  all of it, so the figure is the estimate to carry to a real cluster (per-worker rate x workers);
- **local vs cluster**: a full ``fastgrad.check`` of ``MLP_SIZES`` with ``workers=None`` (2 Numba threads)
  and ``workers=client`` (2 workers x 1 thread), interleaved, ``ROUNDS`` rounds, bitwise-equal results asserted;
  and ``fastgrad.check_function`` of a Python loss (:func:`tanh_layer_loss`, about 1 ms a call) on
  ``FN_ENTRIES`` sampled entries, the same way. The cluster is started with glibc's default malloc trimming
  (Dask's nannies set ``MALLOC_TRIM_THRESHOLD_=65536``, which made such an ``f`` 3x slower in its workers).

Timings are medians over the rounds, with their range; the machine is shared and noisy.
Environment: ``FASTGRAD_BENCH_DASK_ROUNDS`` (default 5; 1 under ``--benchmark-disable``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import pytest

import fastgrad
from fastgrad import dask_support, sharding

distributed = pytest.importorskip("distributed")
pytestmark = [pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning:distributed"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:distributed")]

GROUP = "dask: sharded checks"
FN_ENTRIES = 400
N_TRIVIAL = 200
WEAK_WIDTH = 256
MLP_SIZES = [784, 512, 512, 10]
N_SAMPLES = 64


def _nothing(block: Any) -> int:
    return 0


def tanh_layer_loss(params: list[np.ndarray], X: np.ndarray) -> float:
    """``sum(tanh(X W) v)``: a user's Python loss, about a millisecond a call at the bench's sizes."""
    return float(np.sum(np.tanh(X @ params[0]) @ params[1]))


def tanh_layer_grads(params: list[np.ndarray], X: np.ndarray) -> list[np.ndarray]:
    t = np.tanh(X @ params[0])
    return [X.T @ ((1.0 - t ** 2) * params[1][None, :]), t.sum(axis=0)]


def _cluster(n_workers: int) -> tuple[Any, Any]:
    import cloudpickle
    import dask

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import this file
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    cluster = distributed.LocalCluster(processes=True, n_workers=n_workers, threads_per_worker=1,
                                       dashboard_address=":0")
    return cluster, distributed.Client(cluster)


def _case(sizes: list[int]) -> tuple[fastgrad.MLP, list[np.ndarray], np.ndarray, np.ndarray]:
    net = fastgrad.MLP(sizes)
    rng = np.random.default_rng(0)
    return net, net.init(0), rng.normal(size=(N_SAMPLES, sizes[0])), rng.random((N_SAMPLES, sizes[-1]))


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _experiment(rounds: int, small: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds}
    sizes = [64, 96, 10] if small else MLP_SIZES
    width = 32 if small else WEAK_WIDTH
    # local vs cluster, and the overhead per block, on 2 workers
    cluster, client = _cluster(2)
    try:
        net, params, X, Y = _case(sizes)
        grads = net.backprop(params, X, Y)
        local = fastgrad.check(net, params, X, Y, grads)  # compiles here; the workers load the cache
        remote = fastgrad.check(net, params, X, Y, grads, workers=client)
        assert all(np.array_equal(a, b) for a, b in zip(local.numerical, remote.numerical))
        t_local, t_cluster = [], []
        for _ in range(rounds):
            t_local.append(_timed(lambda: fastgrad.check(net, params, X, Y, grads)))
            t_cluster.append(_timed(lambda: fastgrad.check(net, params, X, Y, grads, workers=client)))
        out["mlp"] = {"sizes": sizes, "n_params": net.n_params, "blocks": len(sharding.plan_blocks(
            net, N_SAMPLES, None, 2)), "local": _stats(t_local), "cluster": _stats(t_cluster)}
        rng = np.random.default_rng(1)
        d, h = (32, 16) if small else (256, 128)
        fparams = [rng.normal(size=(d, h)) / np.sqrt(d), rng.normal(size=h)]
        fX = rng.normal(size=(1024 if not small else 64, d))
        fgrads = tanh_layer_grads(fparams, fX)
        entries = 40 if small else FN_ENTRIES

        def fn(workers: Any) -> Any:
            return fastgrad.check_function(tanh_layer_loss, fparams, fgrads, args=(fX,), sample=entries // 2,
                                           seed=0, workers=workers)

        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(fn(None).numerical, fn(client).numerical))
        f_local, f_cluster = [], []
        for _ in range(rounds):
            f_local.append(_timed(lambda: fn(None)))
            f_cluster.append(_timed(lambda: fn(client)))
        call = min(_timed(lambda: tanh_layer_loss(fparams, fX)) for _ in range(20))
        out["function"] = {"shapes": [list(p.shape) for p in fparams], "entries": entries, "call_s": call,
                           "local": _stats(f_local), "cluster": _stats(f_cluster)}
        per_block = []
        for _ in range(rounds):
            per_block.append(_timed(lambda: dask_support.map_blocks(client, _nothing, {}, list(range(N_TRIVIAL))))
                             / N_TRIVIAL)
        out["overhead_per_block"] = _stats(per_block)
    finally:
        client.close()
        cluster.close()
    # weak scaling: per-worker work fixed
    weak = {}
    for workers in (1, 2):
        cluster, client = _cluster(workers)
        try:
            wnet, wparams, wX, wY = _case([784, width * workers, 10])
            fastgrad.check(wnet, wparams, wX, wY, workers=client)  # the workers load the kernels
            blocks = len(sharding.plan_blocks(wnet, N_SAMPLES, None, workers))
            times = [_timed(lambda: fastgrad.check(wnet, wparams, wX, wY, workers=client)) for _ in range(rounds)]
            s = _stats(times)
            weak[str(workers)] = {"n_params": wnet.n_params, "blocks": blocks, **s,
                                  "blocks_per_s_per_worker": blocks / s["median"] / workers}
        finally:
            client.close()
            cluster.close()
    out["weak"] = weak
    return out


def test_dask_report(benchmark, request):
    disabled = request.config.getoption("benchmark_disable", False)
    rounds = 1 if disabled else int(os.environ.get("FASTGRAD_BENCH_DASK_ROUNDS", "5"))
    benchmark.group = GROUP
    found: dict[str, Any] = {}
    benchmark.pedantic(lambda: found.update(_experiment(rounds, small=disabled)), rounds=1, iterations=1)
    benchmark.extra_info.update(found)
    assert found["overhead_per_block"]["median"] > 0 and found["weak"]["2"]["blocks"] >= 2


def _markdown(path: str) -> str:
    run = json.load(open(path))
    info = run["benchmarks"][0]["extra_info"]
    machine = run["machine_info"]
    m, w, o, f = info["mlp"], info["weak"], info["overhead_per_block"], info["function"]

    def ms(s: dict[str, float], scale: float = 1e3) -> str:
        return f"{s['median'] * scale:.3g} ({s['min'] * scale:.3g}–{s['max'] * scale:.3g})"

    lines = [
        "# Sharded checks on Dask (issue 16)", "",
        f"Machine: {machine.get('cpu', {}).get('brand_raw', '?')}, {machine.get('cpu_count')} cores, "
        f"numba {machine.get('numba_version')}, run {run['datetime']}, "
        f"commit {run['commit_info'].get('id', '?')[:10]}. "
        f"LocalCluster(processes=True, threads_per_worker=1); {info['rounds']} rounds; median (min–max).", "",
        "| measurement | value |", "|---|---|",
        f"| scheduling overhead per block (map of {N_TRIVIAL} empty blocks, 2 workers) | {ms(o)} ms |",
        f"| full check {'-'.join(map(str, m['sizes']))} (P = {m['n_params']:,}), N = {N_SAMPLES}, local, 2 threads "
        f"| {ms(m['local'])} ms |",
        f"| the same on LocalCluster, 2 workers x 1 thread ({m['blocks']} blocks) | {ms(m['cluster'])} ms |",
        f"| check_function, Python f of {f['call_s'] * 1e3:.2g} ms a call, {f['entries']} entries, local "
        f"| {ms(f['local'])} ms |",
        f"| the same on LocalCluster, 2 workers x 1 thread | {ms(f['cluster'])} ms |",
    ]
    for k, v in w.items():
        lines.append(f"| weak scaling, {k} worker(s): 784-{WEAK_WIDTH * int(k)}-10 (P = {v['n_params']:,}), "
                     f"{v['blocks']} blocks | {v['median'] * 1e3:.3g} ms, {v['blocks_per_s_per_worker']:.3g} "
                     f"blocks/s/worker |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(_markdown(sys.argv[1]))

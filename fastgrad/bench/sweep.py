"""The sweep: fastgrad's engines and methods on every net and thread count, then the peers on every net.

Compilation is measured apart from the steady state (:func:`measure_first_calls`):
the first call of each engine and method (Numba compiles or loads its cache)
against the median of a few warm calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import IO, Any

import numba
import numpy as np

import fastgrad

from .. import engines
from .._config import threads_context
from .._kernels.numgrad import differences_cost
from ..checking import default_eps
from ..model import MLP
from .cases import Case, forward_seconds, make_case, spread_indices
from .cost_model import comparison, measure_and_predict
from .machine import peer_threads
from .measure import PASSES_PER_PARAM, Row, subset_size, time_calls, tolerance_check
from .options import Options
from .peers import peer_row
from .rates import MachineRates

#: Max |numerical - backprop| / max |backprop| allowed, per (engine, method) of fastgrad.
FASTGRAD_RTOL = {
    ("incremental", "central"): 1e-9,  # exact central difference at h = 1e-8 (docs/guide.md, "Engines and accuracy")
    ("incremental", "richardson"): 1e-9,
    ("incremental", "complex"): 1e-9,
    ("full", "central"): 1e-6,  # h = 1e-4: truncation ~1e-9, cancellation ~1e-12 / |g|
    ("full", "richardson"): 1e-6,
    ("full", "complex"): 1e-9,
}
#: The net on which compilation (the first call in the process) is measured.
CALIBRATION_TINY = (2, 1, 1)


def _full_engine_floor(case: Case, method: str, threads: int) -> int:
    """Parameters enough for the full engine to give each of ``threads`` threads a chunk.

    The full engine splits its work into chunks that each start with a
    forward pass of the batch, and does not split work worth less than
    ``FULL_CHUNK_PASSES`` forward passes per chunk (see
    :func:`fastgrad.engines._full`). A smaller subset would run as one
    serial chunk: its time, extrapolated to every parameter, would misstate
    the thread scaling of a whole check.
    """
    per_param, per_chunk = differences_cost(case.net.layout, case.X.shape[0], engines.METHOD_CODES[method])
    return int(math.ceil(engines.FULL_CHUNK_PASSES * per_chunk * threads / max(float(np.mean(per_param)), 1.0)))


def fastgrad_row(case: Case, engine: str, method: str, threads: int, opts: Options) -> Row:
    """Time fastgrad's numerical gradient of every parameter (a subset for a slow full engine).

    Parameters
    ----------
    case : Case
        The net and batch.
    engine, method : str
        fastgrad's engine and difference method.
    threads : int
        Numba threads of the calls.
    opts : Options
        The run's options (repeats, subset budget, seed, every thread count tested).

    Returns
    -------
    Row
        The full check's time (extrapolated when the full engine was timed on a subset) and its verdict.
    """
    net, P = case.net, case.net.n_params
    tol = FASTGRAD_RTOL[(engine, method)]
    eps = default_eps(engine, method)
    idx = None
    if engine == "full":
        k = subset_size(case, PASSES_PER_PARAM["full"] * (2.0 if method == "richardson" else 1.0), opts.budget)
        k = max(k, _full_engine_floor(case, method, max(opts.threads)))  # the same subset for every thread count
        if k < P:
            idx = spread_indices(net, k, seed=opts.seed)
    if idx is None:
        def fn() -> Any:
            return fastgrad.numerical_gradient(net, case.params, case.X, case.Y, method=method, engine=engine,
                                               threads=threads)
        check = tolerance_check(case, tol)
    else:
        def fn() -> Any:
            with threads_context(threads):
                details = engines.numerical_details(net, case.theta, case.X, case.Y, eps, engine, method,
                                                    indices=idx, scaled=True, budget=False)
            return details.values[idx]
        check = tolerance_check(case, tol, idx)
    timing = time_calls(fn, check, opts.repeats, opts.budget)
    scale = P / len(idx) if idx is not None else 1.0
    return Row(
        net=case.label, sizes=list(net.sizes), n_params=P, batch=case.X.shape[0], kind="fastgrad",
        what=f"fastgrad {engine} {method}", engine=engine, method=method, peer=None, threads=threads,
        eps=eps, seconds=timing.median * scale, measured_seconds=timing.median, first_call_seconds=timing.first,
        warm_calls=len(timing.warm), subset=None if idx is None else int(len(idx)),
        forward_pass_seconds=case.forward_s, max_rel_error=timing.worst_error, tolerance=tol, passed=timing.ok,
        check=f"max |numerical - backprop| / max |backprop| <= {tol:g}",
    )


def measure_first_calls(opts: Options) -> list[dict[str, Any]]:
    """Compilation apart from the steady state: per engine and method, the first call vs warm calls.

    On the tiny calibration net, before anything else of fastgrad's has run
    in this process: the first call compiles the kernels (or loads them from
    Numba's on-disk cache); the warm median is what a call costs afterwards.

    Parameters
    ----------
    opts : Options
        The run's engines, methods, batch, seed and (first) thread count.

    Returns
    -------
    list of dict
        One JSON-ready dict per (engine, method).
    """
    out = []
    net, params, X, Y = make_case(CALIBRATION_TINY, opts.batch, opts.seed)
    for engine in opts.engines:
        for method in opts.methods:
            timing = time_calls(
                partial(fastgrad.numerical_gradient, net, params, X, Y, engine=engine, method=method,
                        threads=opts.threads[0]),
                lambda _: (None, True), max(3, opts.repeats), 0.5)
            out.append({"engine": engine, "method": method, "net": "-".join(map(str, CALIBRATION_TINY)),
                        "threads": opts.threads[0], "first_call_seconds": timing.first,
                        "warm_median_seconds": timing.median,
                        "compile_or_cache_load_seconds": max(0.0, timing.first - timing.median)})
    return out


def build_case(sizes: Sequence[int], opts: Options) -> Case:
    """Make one net of the sweep, its backprop gradient and a first estimate of its forward pass.

    Parameters
    ----------
    sizes : sequence of int
        Layer sizes.
    opts : Options
        The run's batch and seed.

    Returns
    -------
    Case
        Everything the net's rows share.
    """
    net, params, X, Y = make_case(sizes, opts.batch, opts.seed)
    theta = net.flatten(params)
    analytic = np.concatenate([g.ravel() for g in net.backprop(params, X, Y)])
    with peer_threads(1):  # a first estimate, to size the full engine's subsets
        fwd = forward_seconds(params, X, Y, repeats=3)
    return Case(net, params, X, Y, theta, analytic, float(np.max(np.abs(analytic))), fwd)


@dataclass
class SweepResult:
    """What a sweep measured."""

    rows: list[Row]
    models: dict[int, list[MachineRates]]  # thread count -> the machine rates the cost model used, per net
    first_calls: list[dict[str, Any]]
    peer_errors: list[str]  # peers that failed on a net, skipped there


def sweep(opts: Options, modules: dict[str, Any], out: IO[str], progress: Any = None) -> SweepResult:
    """Time fastgrad and the peers on every net of ``opts``.

    Parameters
    ----------
    opts : Options
        The run's options.
    modules : dict
        The peers that run, each with what :func:`fastgrad.bench.peers.peer_module` imported.
    out : file
        Where messages go (the cost model skipped, a peer that failed on a net).
    progress : callable, optional
        Called as ``progress(done, total)`` in parameters, with a ``label`` attribute set before.

    Returns
    -------
    SweepResult
        The rows (unsorted, speedups not yet computed), cost models, compile measurements and peer errors.

    Raises
    ------
    Exception
        Whatever the naive loop raises (a third-party peer that raises is skipped on that net instead).
    """
    cases = [tuple(s) for s in opts.sizes]
    fastgrad_steps = [(e, m, t) for e in opts.engines for m in opts.methods for t in opts.threads]
    total = sum(MLP(s).n_params for s in cases) * (len(fastgrad_steps) + len(modules))
    done = 0

    if progress is not None:
        progress.label = f"bench {'compile':<18} {'first calls':<26}"
        progress(0, total)
    first_calls = measure_first_calls(opts)
    models: dict[int, list[MachineRates]] = {}
    modelled = "incremental" in opts.engines and "central" in opts.methods and not numba.config.DISABLE_JIT
    if numba.config.DISABLE_JIT:
        print("NUMBA_DISABLE_JIT is set: the kernels run as plain Python, so these times say nothing about "
              "fastgrad's speed (cost model skipped)", file=out, flush=True)

    rows: list[Row] = []
    peer_errors: list[str] = []
    built = [build_case(sizes, opts) for sizes in cases]

    def advance(case: Case, label: str) -> None:
        if progress is not None:
            progress.label = f"bench {case.label:<18} {label:<26}"
            progress(done, total)

    # Phase 1: fastgrad, every net. Phase 2: the NumPy unit and the peers, every net. Kept apart
    # because a multi-threaded BLAS (or torch) keeps its threads spinning for a while after each call,
    # which slows the Numba threads that run next on a 2-core machine by up to 20x.
    for case in built:
        for engine, method, t in fastgrad_steps:
            advance(case, f"{engine} {method} {t} thr")
            row = fastgrad_row(case, engine, method, t, opts)
            if modelled and engine == "incremental" and method == "central":
                # the phases timed one by one, and predicted from the machine's rates measured between them
                prediction, measured = measure_and_predict(case.net, case.params, case.X, case.Y, t, opts.repeats)
                row.cost_model_seconds = prediction.total
                row.phases = comparison(prediction, measured)
                models.setdefault(t, []).append(prediction.rates)
            rows.append(row)
            done += case.net.n_params
    for case in built:
        advance(case, "one NumPy forward pass")
        with peer_threads(opts.peer_threads):
            case.forward_s = forward_seconds(case.params, case.X, case.Y,
                                             repeats=7 if case.net.n_params > 5e5 else 20)
        for row in rows:
            if row.net == case.label:
                row.forward_pass_seconds = case.forward_s
        for peer, module in modules.items():
            advance(case, peer)
            try:
                rows.append(peer_row(case, peer, module, opts))
            except Exception as exc:  # noqa: BLE001 - a third-party peer that breaks is skipped, and said so
                if peer == "naive":
                    raise
                message = f"{peer}: skipped on {case.label} ({type(exc).__name__}: {' '.join(str(exc).split())})"
                print(message, file=out, flush=True)
                peer_errors.append(message)
            done += case.net.n_params
    if progress is not None:
        progress(total, total)
    return SweepResult(rows, models, first_calls, peer_errors)

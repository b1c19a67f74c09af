"""The default engine's full check, phase by phase: each kernel called as the engine calls it, and timed.

:func:`fastgrad.numerical_gradient` with the default engine and method
(incremental, central, no error budget) runs, in order:

- ``validate``: ``model.flatten`` and ``model.batch``, which copy and scan
  the parameters and the batch (:mod:`fastgrad._validate`);
- ``forward``: :func:`fastgrad._kernels.forward.forward_batch`, once;
- ``base_state``: :func:`fastgrad._kernels.incremental.base_state` (every
  unit's Taylor coefficients), once, through
  :class:`fastgrad.engines.IncrementalState`;
- ``series``: :func:`fastgrad._kernels.series.unit_series` (the last hidden layer:
  :func:`fastgrad._kernels.series_lanes.unit_series_lanes`), per layer and
  block of units (and piece of samples), as :func:`incremental_calls` lists;
- ``assembly``: :func:`fastgrad._kernels.assemble.assemble_unit_params`
  (whose ``_assemble_rows`` does the rows' multiply-adds), per layer, block
  and piece of rows;
- ``overhead``: the rest, measured as the whole call's time less the
  phases above: the loss at the base point, the argument checks, and the
  driver's Python between kernel calls.

:func:`time_phases` runs them one by one, each round also timing the whole
call, and reports medians over the rounds. The kernels that are being
rewritten (``forward_batch``, the assembly) are each called from one small
function here (:func:`run_forward`, :func:`run_assembly`), the one place to
adapt when their arguments change.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import fastgrad

from .. import engines
from .._config import threads_context
from .._kernels.assemble import assemble_unit_params
from .._kernels.forward import empty_activations, forward_batch
from .._kernels.series import unit_series
from .._kernels.series_lanes import unit_series_lanes
from .._kernels.state import BaseState
from .._threading import launch
from ..checking import default_eps
from ..model import MLP

#: The phases, in the order a check runs them (``overhead`` is measured as what the others leave of the call).
PHASES = ("validate", "forward", "base_state", "series", "assembly", "overhead")
#: The phases timed one by one (``overhead`` is what they leave of the whole call).
TIMED_PHASES = PHASES[:-1]

_EMPTY = np.zeros(0)
_EMPTY_INT8 = np.zeros(0, dtype=np.int8)
_EVERY = np.zeros(0, dtype=np.bool_)


@dataclass(frozen=True)
class Call:
    """One kernel call of :func:`fastgrad.engines._incremental` on a full check.

    ``phase`` is ``"series"`` (``lo..hi``: samples, ``parts``: pieces per
    unit) or ``"assembly"`` (``lo..hi``: rows of ``W_l``, the bias last);
    ``start``, ``size``: the block's units; ``work``: the engine's estimate,
    which runs the serial twin below :data:`fastgrad._threading.PARALLEL_MIN_WORK`.
    """

    phase: str
    layer: int
    start: int
    size: int
    lo: int
    hi: int
    parts: int
    work: float


def incremental_calls(net: MLP, n_samples: int, threads: int) -> list[Call]:
    """The series and assembly calls of a full check, in order, by the engine's own blocking rules.

    Parameters
    ----------
    net : MLP
        The net.
    n_samples : int
        Batch size N.
    threads : int
        Numba threads of the check.

    Returns
    -------
    list of Call
        What :func:`fastgrad.engines._incremental` launches with ``want`` None.
    """
    calls = []
    for layer in range(net.n_layers):
        fan_out, rows = net.sizes[layer + 1], net.sizes[layer] + 1
        series_cost, assembly_cost = engines.unit_cost_parts(net, layer, n_samples)
        block = engines._unit_blocks(fan_out, series_cost + assembly_cost, threads)
        for start in range(0, fan_out, block):
            size = min(block, fan_out - start)
            parts = -(-threads // size)
            for lo, hi in engines._pieces(n_samples, series_cost * size, threads):
                calls.append(Call("series", layer, start, size, lo, hi, min(parts, hi - lo),
                                  series_cost * size * (hi - lo) / n_samples))
            for lo, hi in engines._pieces(rows, assembly_cost * size, threads):
                calls.append(Call("assembly", layer, start, size, lo, hi, 1, assembly_cost * size * (hi - lo) / rows))
    return calls


def run_forward(net: MLP, theta: np.ndarray, X: np.ndarray, Z: np.ndarray, A: np.ndarray) -> None:
    """The forward pass, as :meth:`fastgrad.MLP._forward` calls it (the one call of ``forward_batch`` here)."""
    forward_batch(theta, net.layout, X, Z, A)


def run_base_state(net: MLP, X: np.ndarray, Y: np.ndarray, Z: np.ndarray, A: np.ndarray) -> BaseState:
    """The base state, as :func:`fastgrad.engines._incremental` builds it."""
    return engines.IncrementalState(net, X, Y, Z, A).base


def run_series(net: MLP, theta: np.ndarray, base: BaseState, call: Call, units: np.ndarray,
               E: Sequence[np.ndarray]) -> None:
    """One series call, as :func:`fastgrad.engines._incremental` makes it (``E``: E1, E3, E1abs, lim).

    The last hidden layer's units go as lanes (:func:`unit_series_lanes`), the others one pair at a time.
    """
    if call.layer == net.n_layers - 2:
        launch(unit_series_lanes, call.work, theta, net.layout, net.loss_code, base, call.layer, units, call.lo,
               call.hi, E[0], E[1], E[2], E[3])
    else:
        launch(unit_series, call.work, theta, net.layout, net.loss_code, base, call.layer, units, call.lo, call.hi,
               call.parts, E[0], E[1], E[2], E[3])


def run_assembly(net: MLP, theta: np.ndarray, X: np.ndarray, base: BaseState, call: Call, units: np.ndarray,
                 E: Sequence[np.ndarray], eps: float, out: np.ndarray) -> None:
    """One assembly call of a full check without budget (the one call of ``assemble_unit_params`` here).

    As :func:`fastgrad.engines._incremental` makes it for
    :func:`fastgrad.numerical_gradient`: central, steps computed in the
    kernel from ``eps`` (scaled), every entry wanted, no budget arrays.
    """
    assemble_unit_params(theta, net.layout, net.loss_code, X, base, call.layer, units, E[0], E[1], E[2], E[3],
                         _EMPTY, float(eps), True, engines.METHOD_CODES["central"], _EVERY, False, call.lo, call.hi,
                         out, _EMPTY, _EMPTY, _EMPTY_INT8, _EMPTY_INT8, work=call.work, rows_wanted=None)


def one_round(net: MLP, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray, calls: list[Call],
              eps: float) -> tuple[dict[str, float], np.ndarray]:
    """Seconds of the whole call, then of each phase run alone (``overhead``: the difference), and the values.

    The values are the flat numerical gradient the phases computed: the
    same, bit for bit, as :func:`fastgrad.numerical_gradient`'s (the tests
    check it), which is how the phases are known to be the check's.
    """
    t0 = time.perf_counter()
    fastgrad.numerical_gradient(net, params, X, Y)
    whole = time.perf_counter() - t0
    times = dict.fromkeys(PHASES, 0.0)
    t0 = time.perf_counter()
    theta = net.flatten(params)
    Xa, Ya = net.batch(X, Y)
    times["validate"] = time.perf_counter() - t0
    assert Ya is not None
    Z, A = empty_activations(net.layout, Xa.shape[0])
    out = np.empty(net.n_params)
    t0 = time.perf_counter()
    run_forward(net, theta, Xa, Z, A)
    times["forward"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = run_base_state(net, Xa, Ya, Z, A)
    times["base_state"] = time.perf_counter() - t0
    N = Xa.shape[0]
    block: tuple[int, int] = (-1, -1)
    E: list[np.ndarray] = []
    units = np.zeros(0, dtype=np.int64)
    for call in calls:
        t0 = time.perf_counter()
        if (call.layer, call.start) != block:  # a new block: its outputs, as the engine allocates them
            block = (call.layer, call.start)
            units = np.arange(call.start, call.start + call.size, dtype=np.int64)
            E = [np.empty((N, call.size)) for _ in range(4)]
        if call.phase == "series":
            run_series(net, theta, base, call, units, E)
        else:
            run_assembly(net, theta, Xa, base, call, units, E, eps, out)
        times[call.phase] += time.perf_counter() - t0
    times["overhead"] = max(0.0, whole - sum(times[p] for p in TIMED_PHASES))
    times["total"] = whole
    return times, out


def time_phases(net: MLP, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray, threads: int,
                rounds: int = 7, between: Callable[[], Any] | None = None) -> dict[str, float]:
    """Median seconds of each phase of a full check (and of the whole call, ``total``) over interleaved rounds.

    Parameters
    ----------
    net, params, X, Y
        The check (default engine and method, default step).
    threads : int
        Numba threads.
    rounds : int, optional
        Rounds; each times the whole call, then every phase once.
    between : callable, optional
        Called before every round (the machine's rates are measured there,
        so that they meet the same load as the phases).

    Returns
    -------
    dict
        Phase name (:data:`PHASES`, and ``total``) to median seconds.
    """
    eps = default_eps("incremental", "central")
    with threads_context(threads):
        calls = incremental_calls(net, np.shape(X)[0], threads)
        one_round(net, params, X, Y, calls, eps)  # compile, warm the caches
        samples = []
        for _ in range(max(1, rounds)):
            if between is not None:
                between()
                # untimed: the threads of whatever ran in between (a parallel kernel's, which spin for a
                # while after it) would slow the round's first call alone, and so inflate ``overhead``
                fastgrad.numerical_gradient(net, params, X, Y)
            samples.append(one_round(net, params, X, Y, calls, eps)[0])
    return {k: float(statistics.median(s[k] for s in samples)) for k in samples[0]}

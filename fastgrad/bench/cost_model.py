"""The default engine's cost model: each phase's flops and bytes, counted from its loops, over measured rates.

A full check with the default engine (:mod:`.phases` lists its phases and
calls) is predicted phase by phase, call by call, as a roofline::

    t(call) = dispatch + allocations * alloc
              + max(vector_flops / dot_rate, cache_bytes / cache_rate, memory_bytes / bandwidth)
              + scalar_flops / chain_rate + exps * exp

with every rate measured on this machine in the same run
(:class:`.rates.MachineRates`): ``dispatch`` is an empty parallel kernel's
launch for a call that runs in parallel, an empty serial call for one below
:data:`fastgrad._threading.PARALLEL_MIN_WORK` (which runs the serial twin);
a parallel call's rates are the one-thread rates times the cache loop's
measured scaling. Nothing is fitted to fastgrad's own times.

Where the counts come from (N samples; ``s_0 .. s_L`` the layer sizes;
``P`` parameters; ``U`` hidden and output units; a layer ``l`` maps
``s_l`` inputs to ``s_{l+1}`` units):

``forward`` (``forward.forward_layers``)
    ``N sum_l s_l s_{l+1}`` multiply-adds in register tiles of 4 samples by
    8 units (:func:`fastgrad._kernels.forward.dense_rows`): per multiply-add
    a quarter of a weight's load and an eighth of an input's, 3 bytes
    through L1; a layer's units left over from tiles of eight are a scalar
    chain each (2 dependent flops per multiply-add); ``W`` is read from
    memory once per task of ``BATCH_TILE`` samples (``8 P ceil(N / 16)``
    bytes), ``X`` once and ``Z``, ``A`` written once; one activation (an
    ``exp`` for sigmoid, tanh, softplus, elu, gelu, silu) and ``ACT_FLOPS``
    more per unit and sample.
``base_state`` (``incremental.base_state``)
    per unit and sample the activation's Taylor coefficients (an ``exp``,
    ``TAYLOR_FLOPS``), reading ``Z``, ``A`` and writing four ``C``: 48 bytes.
``series`` (``series.unit_series``), per unit of layer ``l`` and sample
    the unit's own range (``change_limit``); unless ``l`` is the output layer,
    the rank-1 change of layer ``l + 1`` (4 ``set_scaled`` rows of ``s_{l+2}``),
    then per later layer ``m`` a ``compose`` and range per unit
    (``UNIT_FLOPS``) and ``add_scaled_series`` over ``s_{m+1} s_{m+2}``
    weights: 4 multiply-adds each, loading 4 series rows and ``w`` and
    storing 4 (72 bytes); then the loss's series, ``OUTPUT_FLOPS`` per
    output; an output unit: its closed form, ``OUTPUT_FLOPS``. Eight
    scratch rows allocated per task.
``assembly`` (``assemble._assemble_rows``), per row ``i`` of ``W_l`` and the bias
    the row's inputs (``N`` strided reads, a cache line each from ``X``)
    packed with their cubes and sizes (``ROW_SAMPLE_FLOPS`` per sample); per
    entry and sample two multiply-adds (``sum a e1``, ``sum a^3 e3``) in
    register tiles of 4 rows by 8 units (:mod:`fastgrad._kernels.row_products`),
    3 bytes through L1 each, the units left over from tiles of eight a
    scalar chain each; per entry the step and the value (``ENTRY_FLOPS``)
    and one 8-byte store, the result's first touch (a page fault per 4 KiB:
    ``page_seconds``); ten scratch arrays per task of 32 rows.
``validate`` (``_validate.flat_copy``, ``_validate.batch``)
    the parameters and the batch copied into fresh memory and scanned for
    NaN/inf in one pass (``copy.copy_count_nonfinite``): per element a
    load, a finiteness test and count (``COPY_FLOPS``) and a store: 16 bytes
    from memory, and the copies' pages touched first.
``overhead``
    the fixed Python cost of a call (``python_seconds``: a 1-1-1 net's whole
    check, whose kernels do next to no work).

Why three bounds and not ``np.dot``'s rate alone: the products keep their
sums in registers (bound by the multiply and add units, as ``np.dot``'s
blocked products are, so ``vector_flops / dot_rate``), but the series'
loops are unblocked (every multiply-add loads and stores its
accumulator), bound by the first-level cache's loads and stores, and the
small products of a thin layer by memory.

The scalar counts (``*_FLOPS``) are read off the loops for the sigmoid and
squared-error nets of the sweep (:func:`fastgrad.bench.make_case`): each
arithmetic operation, comparison and ``abs`` counts one; a division counts
``DIVIDE_FLOPS``, its latency in multiply-adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .._kernels.forward import BATCH_TILE
from .._kernels.tiles import TILE_COLUMNS
from .._threading import PARALLEL_MIN_SIZE, PARALLEL_MIN_WORK
from ..model import MLP
from .phases import PHASES, Call, incremental_calls, time_phases
from .rates import MachineRates, dot_shapes, measure_rates, median_rates

#: A division, in dependent multiply-adds (its latency, 13-15 cycles, over a multiply-add's 4).
DIVIDE_FLOPS = 4.0
#: The activation beside its ``exp`` (sigmoid: ``1 / (1 + e)``: an add and a division).
ACT_FLOPS = 1.0 + DIVIDE_FLOPS
#: Sigmoid's Taylor coefficients beside ``exp``: ``1 / (1 + e)``, ``s q``, and the three products of ``taylor``.
TAYLOR_FLOPS = 1.0 + DIVIDE_FLOPS + 14.0
#: A later unit's ``compose`` (9), its range (3 ``abs``, 2 adds, a division, a ``min``), its ``|f'|`` term (3).
UNIT_FLOPS = 9.0 + 6.0 + DIVIDE_FLOPS + 3.0
#: One output's loss series (squared error): range (as above), ``compose`` (9), ``e1``/``e3`` (7), ``abs_term`` (7).
OUTPUT_FLOPS = 6.0 + DIVIDE_FLOPS + 9.0 + 7.0 + 7.0
#: The unit's own range before the series (``change_limit``: a ``min`` and a division).
OWN_FLOPS = 1.0 + DIVIDE_FLOPS
#: Bytes through L1 per multiply-add of a 4 x 8 register tile: a quarter of an 8-byte load of one operand, an
#: eighth of the other's.
TILE_BYTES = 8.0 / 4 + 8.0 / 8
#: Per row and sample of the assembly: the input's cube (2), its size and the row's largest (2), the stores (1).
ROW_SAMPLE_FLOPS = 5.0
#: Per entry of the assembly: the step (``step_size``: ``max(1, |w|)``, a product, the representable step, 5),
#: the range test (3), the value and its truncation (5), the index (3).
ENTRY_FLOPS = 16.0
#: Per element copied by the validation: its finiteness test and the count (2), the loop (1).
COPY_FLOPS = 3.0
#: Scratch rows ``unit_series`` allocates per task; arrays ``_assemble_rows`` allocates per row (ten per task of
#: 32 rows).
SERIES_ALLOCS = 8
ROW_ALLOCS = 10.0 / 32.0
#: A page of fresh memory (its first write faults it in).
PAGE_BYTES = 4096.0


@dataclass
class Work:
    """What one phase (or call) does, in the units the rates divide."""

    vector_flops: float = 0.0  # in vectorisable multiply-add loops (2 per multiply-add)
    cache_bytes: float = 0.0  # those loops' loads and stores
    memory_bytes: float = 0.0  # what is read or written at least once
    scalar_flops: float = 0.0  # dependent scalar work
    exps: float = 0.0
    pages: float = 0.0  # fresh memory's first touch (a page fault each), 4 KiB pages
    allocations: float = 0.0
    parallel_calls: int = 0
    serial_calls: int = 0

    def __add__(self, other: Work) -> Work:
        return Work(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def forward_flops(net: MLP, n_samples: int) -> float:
    """Floating-point operations of one forward pass's matrix products (2 per multiply-add): ``2 N sum s_l s_{l+1}``."""
    sizes = net.sizes
    return 2.0 * n_samples * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def _units(net: MLP) -> int:
    return sum(net.sizes[1:])


def _forward_work(net: MLP, N: int) -> Work:
    s = net.sizes
    tiled = N * sum(a * (b - b % TILE_COLUMNS) for a, b in zip(s[:-1], s[1:]))  # multiply-adds in register tiles
    left = N * sum(a * (b % TILE_COLUMNS) for a, b in zip(s[:-1], s[1:]))  # the units left over: scalar chains
    U = _units(net)
    memory = 8.0 * net.n_params * math.ceil(N / BATCH_TILE) + 8.0 * N * s[0] + 16.0 * N * U
    elements = net.n_params + N * s[0] + 2 * N * U  # forward_batch is called directly: serial when small
    parallel = elements >= PARALLEL_MIN_SIZE
    scalar = ACT_FLOPS * N * U + 2.0 * left
    return Work(2.0 * tiled, TILE_BYTES * tiled, memory, scalar, N * U, 0, 0.0, int(parallel), int(not parallel))


def _base_state_work(net: MLP, N: int) -> Work:
    U, K = _units(net), net.sizes[-1]
    elements = 6 * N * U + 3 * N * K  # Z, A, the 4 C planes; Y, R, ysum
    parallel = elements >= PARALLEL_MIN_SIZE
    return Work(0.0, 0.0, 48.0 * N * U + 24.0 * N * K, TAYLOR_FLOPS * N * U, N * U, 0, 0.0, int(parallel),
                int(not parallel))


def _series_per_sample(net: MLP, layer: int) -> tuple[float, float, float]:
    """``(multiply-adds, cache bytes, scalar flops)`` of one unit of ``layer`` and one sample in ``unit_series``."""
    s, last = net.sizes, net.n_layers - 1
    if layer == last:
        return 0.0, 0.0, OWN_FLOPS + OUTPUT_FLOPS
    macs = 4.0 * s[layer + 2]  # set_scaled x 3 and set_scaled_abs
    cache = 16.0 * macs
    scalar = OWN_FLOPS + OUTPUT_FLOPS * s[-1]
    for m in range(layer + 1, last):
        inner = 4.0 * s[m + 1] * s[m + 2]
        macs += inner
        cache += 18.0 * inner  # 72 bytes per weight, 4 multiply-adds
        scalar += UNIT_FLOPS * s[m + 1]
    return macs, cache, scalar


def _call_work(net: MLP, call: Call, N: int) -> Work:
    parallel = call.work >= PARALLEL_MIN_WORK
    dispatch = Work(parallel_calls=int(parallel), serial_calls=int(not parallel))
    if call.phase == "series":
        macs, cache, scalar = _series_per_sample(net, call.layer)
        count = call.size * (call.hi - call.lo)
        return dispatch + Work(2.0 * macs * count, cache * count, 32.0 * count, scalar * count,
                               allocations=SERIES_ALLOCS * call.size * call.parts)
    rows, B = call.hi - call.lo, call.size
    tiled = 2.0 * N * rows * (B - B % TILE_COLUMNS)  # two products' multiply-adds in register tiles
    left = 2.0 * N * rows * (B % TILE_COLUMNS)  # the units left over from tiles of eight: scalar chains
    memory = 64.0 * N * rows if call.layer == 0 else 8.0 * N * rows  # a cache line per X[n, i]; A's rows are near
    memory += 8.0 * rows * B + 32.0 * N * B  # the entries; E1, E3 (and E1abs, lim read for lim_min) once
    # the result vector is fresh memory: the assembly's stores are its first touch
    pages = 8.0 * rows * B / PAGE_BYTES
    scalar = ROW_SAMPLE_FLOPS * N * rows + ENTRY_FLOPS * rows * B + 2.0 * left
    return dispatch + Work(2.0 * tiled, TILE_BYTES * tiled, memory, scalar, pages=pages,
                           allocations=ROW_ALLOCS * rows + 1)


def phase_work(net: MLP, n_samples: int, threads: int) -> dict[str, Work]:
    """Every phase's :class:`Work` in a full check of ``net`` on ``n_samples`` samples with ``threads`` threads.

    Parameters
    ----------
    net : MLP
        The net.
    n_samples : int
        Batch size N.
    threads : int
        Numba threads (the engine's blocks and which calls run in parallel depend on it).

    Returns
    -------
    dict
        Phase name (:data:`fastgrad.bench.phases.PHASES`) to its work; ``overhead`` is empty (a fixed cost).
    """
    N, s = n_samples, net.sizes
    work = {p: Work() for p in PHASES}
    copied = net.n_params + N * (s[0] + s[-1])  # theta, X, Y
    work["validate"] = Work(memory_bytes=16.0 * copied, scalar_flops=COPY_FLOPS * copied,
                            pages=8.0 * copied / PAGE_BYTES, serial_calls=3)
    work["forward"] = _forward_work(net, N)
    work["base_state"] = _base_state_work(net, N)
    for call in incremental_calls(net, N, threads):
        work[call.phase] = work[call.phase] + _call_work(net, call, N)
    return work


def _seconds(work: Work, rates: MachineRates, dot: float, parallel: bool) -> float:
    scale = rates.scaling if parallel else 1.0
    cache = rates.cache_bytes if parallel else rates.cache_bytes / rates.scaling
    roof = max(work.vector_flops / (dot * scale), work.cache_bytes / cache, work.memory_bytes / rates.memory_bytes)
    return (work.parallel_calls * rates.launch_seconds + work.serial_calls * rates.call_seconds
            + work.pages * rates.page_seconds
            + (work.allocations * rates.alloc_seconds + work.scalar_flops / rates.chain_flops
               + work.exps * rates.exp_seconds) / scale + roof)


@dataclass
class Prediction:
    """Predicted seconds of each phase (and ``total``), and the work they come from."""

    seconds: dict[str, float]
    work: dict[str, Work] = field(repr=False)
    rates: MachineRates = field(repr=False)

    @property
    def total(self) -> float:
        """Predicted seconds of the whole check."""
        return self.seconds["total"]


def predict(net: MLP, n_samples: int, rates: MachineRates) -> Prediction:
    """Predict every phase of a full check from its counted work and the measured rates (see the module docstring).

    Parameters
    ----------
    net : MLP
        The net.
    n_samples : int
        Batch size N.
    rates : MachineRates
        Measured at the check's thread count (:func:`fastgrad.bench.rates.measure_rates`).

    Returns
    -------
    Prediction
        Seconds per phase and in total.
    """
    N, threads = n_samples, rates.threads
    work = phase_work(net, N, threads)
    seconds = dict.fromkeys(PHASES, 0.0)
    seconds["overhead"] = rates.python_seconds
    seconds["validate"] = _seconds(work["validate"], rates, math.inf, False)
    for phase in ("forward", "base_state"):
        w = work[phase]
        seconds[phase] = _seconds(w, rates, rates.dot_flops.get("forward", math.inf), w.parallel_calls > 0)
    for call in incremental_calls(net, N, threads):  # each call at its own thread count
        dot = rates.dot_flops.get("assembly" if call.phase == "assembly" else "forward", math.inf)
        seconds[call.phase] += _seconds(_call_work(net, call, N), rates, dot, call.work >= PARALLEL_MIN_WORK)
    seconds["total"] = sum(seconds[p] for p in PHASES)
    return Prediction(seconds, work, rates)


def total_flops(net: MLP, n_samples: int, threads: int = 1) -> float:
    """Counted floating-point operations of a full check (vector and scalar; an ``exp`` not counted)."""
    work = phase_work(net, n_samples, threads)
    return sum(w.vector_flops + w.scalar_flops for w in work.values())


def comparison(predicted: Prediction, measured: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Per phase and ``total``: predicted and measured seconds and measured / predicted (JSON-ready)."""
    out = {}
    for phase in (*PHASES, "total"):
        p, m = predicted.seconds.get(phase, math.nan), measured.get(phase, math.nan)
        out[phase] = {"predicted": p, "measured": m, "ratio": m / p if p > 0 else None}
    return out



def measure_and_predict(net: MLP, params: list[np.ndarray], X: np.ndarray, Y: np.ndarray, threads: int,
                        rounds: int = 5) -> tuple[Prediction, dict[str, float]]:
    """Time every phase of a full check and predict it from the machine's rates, measured in between.

    Each round measures the rates (:func:`fastgrad.bench.rates.measure_rates`)
    then times the whole call and each phase
    (:func:`fastgrad.bench.phases.time_phases`); the prediction uses the
    rates' medians, the measurement the phases' medians.

    Parameters
    ----------
    net, params, X, Y
        The check.
    threads : int
        Numba threads.
    rounds : int, optional
        Interleaved rounds.

    Returns
    -------
    prediction : Prediction
        From the counted work and the median rates.
    measured : dict
        Median seconds per phase and ``total``.
    """
    shapes = dot_shapes(net.sizes, X.shape[0])
    taken: list[MachineRates] = []
    measured = time_phases(net, params, X, Y, threads, rounds,
                           between=lambda: taken.append(measure_rates(threads, shapes)))
    return predict(net, X.shape[0], median_rates(taken)), measured

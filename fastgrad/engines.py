"""Engines: how the numerical gradient of every parameter is computed.

``"full"`` recomputes the loss with two full forward passes per parameter
(O(N * P) each): the reference, and the tutorial's algorithm compiled.
``"incremental"`` runs the forward pass once and carries each
perturbation's *changes* through the layers after it, without cancellation:
per unit, the loss change as a polynomial of the unit's pre-activation
change, shared by all the unit's parameters
(:mod:`fastgrad._kernels.series`), and sample by sample where those
polynomials do not apply (:mod:`fastgrad._kernels.incremental`).

Both call their kernels block by block, in Python, so that progress can be
reported and Ctrl-C lands within a fraction of a second (a signal is seen
only between two calls): blocks are sized by their estimated work, and a
unit whose work alone is too much for one call has its samples (and its
parameters' rows) split over several calls. Block, chunk and call
boundaries never change the result, because every derivative is computed
by one thread, in a fixed order, into its own slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from ._kernels.activations import N_COEF
from ._kernels.assemble import (
    STATUS_ESTIMATE_NONFINITE,
    STATUS_LOSS_NONFINITE,
    STATUS_OK,
    STATUS_VALUE_NONFINITE,
    assemble_unit_params,
)
from ._kernels.forward import n_units
from ._kernels.incremental import base_state
from ._kernels.numgrad import differences_cost, full_differences
from ._kernels.series import unit_abs_series, unit_deltas, unit_series
from ._kernels.series_lanes import unit_series_lanes
from ._kernels.state import BaseState
from ._kernels.steps import parameter_steps_into
from ._kernels.tiles import TILE_COLUMNS
from ._scratch import take
from ._threading import launch
from .capabilities import ENGINES as ENGINES  # (re-exported: callers knew the engines from here)
from .capabilities import UNIT_MODE, kernel_codes, route
from .model import MLP

#: Floating-point work per kernel call: about a tenth of a second on one core.
BLOCK_FLOPS = 2e8
#: Most floating-point work per thread in one kernel call: about a quarter
#: of a second here (Ctrl-C and progress reports land between calls; see
#: ``tests/test_interrupt.py``). Blocks of cheap units stay at BLOCK_FLOPS
#: and CHUNKS_PER_THREAD; costlier units are split to fit.
CALL_FLOPS_PER_THREAD = 5e8
#: ``prange`` chunks per thread within a block (load balance).
CHUNKS_PER_THREAD = 4
#: The full engine's smallest chunk, in forward passes of the batch (each
#: chunk starts with one).
FULL_CHUNK_PASSES = 8.0

ProgressFn = Callable[[int, int], Any]


def full_param_cost(net: MLP, n_samples: int) -> float:
    """Floating-point work of one derivative by two full forward passes (the black-box loop).

    The full engine does less (it recomputes only the layers a parameter
    reaches, see :func:`fastgrad._kernels.numgrad.differences_cost`); the
    benchmarks count this work to compare with the naive loop.
    """
    return 4.0 * n_samples * (net.n_params + n_units(net.layout))


def unit_cost_parts(net: MLP, layer: int, n_samples: int) -> tuple[float, float]:
    """Estimated floating-point work of one unit of ``layer``: ``(series, assembly)``.

    The unit's loss-change series (three coefficient vectors and their
    absolute-value twin carried through every layer after ``layer + 1``:
    four times that suffix's forward pass, plus the compositions), and the
    assembly of its ``fan_in + 1`` parameters' derivatives (six operations
    per sample each). Both are proportional to ``n_samples``.
    """
    sizes = net.sizes
    L = net.n_layers
    series = 8.0 * sum(sizes[m] * sizes[m + 1] for m in range(layer + 2, L))
    series += 20.0 * sum(sizes[m + 1] for m in range(layer + 1, L)) + 20.0
    return series * n_samples, 6.0 * (sizes[layer] + 1) * n_samples


def unit_cost(net: MLP, layer: int, n_samples: int) -> float:
    """Estimated floating-point work of one unit of ``layer`` with the incremental engine (all of it)."""
    series, assembly = unit_cost_parts(net, layer, n_samples)
    return series + assembly


def _unit_blocks(n_units: int, cost: float, threads: int) -> int:
    """Return the units per block of a layer whose units cost ``cost`` each.

    BLOCK_FLOPS of work and CHUNKS_PER_THREAD units per thread, unless that makes a call longer than
    CALL_FLOPS_PER_THREAD per thread; then as many as fit, but at least ``threads`` (their samples are split
    further, see :func:`_pieces`); whole register tiles of the assembly when more than one.
    """
    block = max(threads * CHUNKS_PER_THREAD, int(BLOCK_FLOPS // cost))
    limit = CALL_FLOPS_PER_THREAD * threads
    if block * cost > limit:
        block = max(threads, int(limit // cost))
    if block > TILE_COLUMNS:  # whole register tiles: a block's units left over from tiles of 8 take the scalar loop
        block -= block % TILE_COLUMNS
    return max(1, min(block, n_units))


def _pieces(count: int, work: float, threads: int) -> list[tuple[int, int]]:
    """Split ``range(count)`` (samples or rows, ``work`` in all) into calls of CALL_FLOPS_PER_THREAD per thread."""
    limit = CALL_FLOPS_PER_THREAD * threads
    if work <= limit or count <= 1:
        return [(0, count)]
    step = max(1, int(count * limit // work))
    return [(lo, min(count, lo + step)) for lo in range(0, count, step)]


def _split_by_cost(cum: np.ndarray, lo: int, hi: int, parts: int) -> np.ndarray:
    """Boundaries splitting ``[lo, hi)`` into at most ``parts`` pieces of near-equal cost.

    ``cum`` is the cumulative cost over the whole order.
    """
    base = cum[lo - 1] if lo > 0 else 0.0
    targets = base + (cum[hi - 1] - base) * np.arange(1, parts) / parts
    inner = np.searchsorted(cum, targets, side="left") + 1
    return np.unique(np.concatenate(([lo], np.clip(inner, lo, hi), [hi]))).astype(np.int64)


def _blocks(cum: np.ndarray, block_flops: float = BLOCK_FLOPS) -> list[tuple[int, int]]:
    """Split an order into consecutive blocks of about ``block_flops`` work."""
    cuts = np.searchsorted(cum, np.arange(block_flops, cum[-1], block_flops), side="left") + 1
    edges = np.unique(np.concatenate(([0], np.clip(cuts, 0, cum.size), [cum.size])))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


class IncrementalState:
    """What the incremental engine reuses for every unit at one point.

    Built once per (parameters, batch): the forward pass, every unit's activation Taylor coefficients ``C``, the
    output residuals ``R`` and ``ysum`` (see :func:`fastgrad._kernels.incremental.base_state`); with ``keep``, in
    kept scratch (:mod:`fastgrad._scratch`), for a caller that lets them go nowhere.
    """

    def __init__(self, net: MLP, X: np.ndarray, Y: np.ndarray, Z: np.ndarray, A: np.ndarray,
                 keep: bool = False) -> None:
        self.Z, self.A = Z, A
        self.C = take("engines.C" if keep else None, (N_COEF,) + Z.shape)
        self.R = take("engines.R" if keep else None, Y.shape)
        self.ysum = take("engines.ysum" if keep else None, X.shape[0])
        base_state(net.layout, Z, A, Y, self.C, self.R, self.ysum)
        #: The same, as the one argument the incremental kernels take.
        self.base = BaseState(Z, A, self.C, self.R, Y, self.ysum)


def _wanted_units(net: MLP, want: np.ndarray | None, layer: int, every: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Units of ``layer`` with a wanted parameter, and how many each has (``every`` or no ``want``: all)."""
    fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
    if every or want is None:
        return np.arange(fan_out, dtype=np.int64), np.full(fan_out, fan_in + 1, dtype=np.int64)
    w_off, b_off = int(net.offsets[2 * layer]), int(net.offsets[2 * layer + 1])
    per_unit = want[w_off:w_off + fan_in * fan_out].reshape(fan_in, fan_out).sum(axis=0)
    per_unit += want[b_off:b_off + fan_out]
    units = np.flatnonzero(per_unit).astype(np.int64)
    return units, per_unit[units]


def _rows_wanted(net: MLP, want: np.ndarray, layer: int, chunk: np.ndarray) -> np.ndarray:
    """Rows of ``layer``'s ``W`` (row ``fan_in``: its bias) with a wanted entry among the units of ``chunk``.

    ``chunk`` is a run of the layer's wanted units, in order (a slice of
    :func:`_wanted_units`): the units between its first and last are in it
    or have no wanted entry, so the columns between them are read whole, a
    slice of ``want`` and no index. A sample of a 10^8-parameter net wants
    one entry of a unit's 8,193, and the kernel's reads of ``want`` at every
    row of every unit cost more than the sample's series.
    """
    fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
    w_off, b_off = int(net.offsets[2 * layer]), int(net.offsets[2 * layer + 1])
    columns = slice(int(chunk[0]), int(chunk[-1]) + 1)
    rows = np.empty(fan_in + 1, dtype=np.bool_)
    np.any(want[w_off:b_off].reshape(fan_in, fan_out)[:, columns], axis=1, out=rows[:fan_in])
    rows[fan_in] = want[b_off:b_off + fan_out][columns].any()
    return rows


#: The kernels' integer codes by :attr:`fastgrad.capabilities.Route.kernel_mode`: a difference method's name, or
#: ``"unit"`` for the unit engine's assembly (:func:`_incremental` is run with that mode as its ``method``).
#: Read from the capability table, which is the one place the codes are chosen.
METHOD_CODES = kernel_codes()


#: engine="unit": its truncation estimate, UNIT_TRUNCATION * h^2 * absum (the
#: series' e3, which would give it exactly, is not computed: a third of the work).
UNIT_TRUNCATION = 100.0


def _flag_units(net: MLP, layer: int, units: np.ndarray, want: np.ndarray | None, kink: np.ndarray) -> None:
    """Mark every wanted parameter (``want`` None: every parameter) of ``units`` of ``layer`` as kink-affected."""
    if units.size == 0:
        return
    fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
    w_off, b_off = int(net.offsets[2 * layer]), int(net.offsets[2 * layer + 1])
    flat = np.concatenate([(w_off + np.arange(fan_in)[:, None] * fan_out + units[None, :]).ravel(), b_off + units])
    kink[flat if want is None else flat[want[flat]]] = 1


@dataclass
class Numerical:
    """A numerical gradient and what its error budget is made of (all flat, (P,)).

    Attributes
    ----------
    values : ndarray of float64
        The numerical derivatives (NaN where not asked for).
    absum : ndarray of float64
        Size of the terms each derivative sums: ``scale * sum_n |e1| |a|``
        with every factor taken in absolute value (rounding budgets scale
        with it).
    trunc : ndarray of float64
        Estimated truncation error of the difference formula.
    kink : ndarray of bool
        True where a step crossed a relu/leaky_relu kink.
    steps : ndarray of float64
        The step used for each parameter (empty when the incremental
        engine computed each step in its kernel: no budget was asked for).
    status : ndarray of int8
        Per entry (empty when no budget was asked for): ``STATUS_OK`` (0),
        or why the value is not finite or its budget incomplete:
        ``STATUS_LOSS_NONFINITE`` (1): the loss at ``w +- h`` (or
        ``+- 2h``, which Richardson's value needs) is not finite in float64,
        so no difference of losses exists (value NaN with the incremental
        engine, NaN or inf with the full one); ``STATUS_VALUE_NONFINITE``
        (2): the losses are finite but the difference quotient is outside
        float64's range; ``STATUS_ESTIMATE_NONFINITE`` (3): the value is
        finite but the loss at the extra step that estimates its
        truncation (``+- 2h`` central, ``+- 4h`` Richardson) is not, so
        ``trunc`` lacks that estimate. A finite value never has a nonzero
        status other than 3. See :data:`STATUS_REASONS`.
    """

    values: np.ndarray
    absum: np.ndarray
    trunc: np.ndarray
    kink: np.ndarray
    steps: np.ndarray
    status: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))


#: What each nonzero :attr:`Numerical.status` means, for reports.
STATUS_REASONS = {
    STATUS_LOSS_NONFINITE: "the loss at w +- h is not finite (the perturbed forward pass overflows)",
    STATUS_VALUE_NONFINITE: "the difference quotient overflows float64 (the derivative is beyond 1.8e308)",
    STATUS_ESTIMATE_NONFINITE: "the loss at w +- 2h, which estimates the truncation error, is not finite",
}


def parameter_steps(theta: np.ndarray, eps: float, scaled: bool, method: str) -> np.ndarray:
    """Each parameter's step: ``eps``, or ``eps * max(1, |w|)`` when ``scaled``.

    Real steps are made exactly representable, ``h = fl(w + h) - w``, so that
    ``w + h`` is exactly the perturbed value (a step that vanishes there, for
    a huge ``|w|``, keeps its nominal size). The complex step needs no
    rounding: it moves only the imaginary part.
    """
    steps = np.empty_like(theta)
    parameter_steps_into(theta, float(eps), bool(scaled), method != "complex", steps)
    return steps


def _incremental(
    net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, steps: np.ndarray, method: str,
    want: np.ndarray | None, progress: ProgressFn | None, Z: np.ndarray, A: np.ndarray, budget: bool = True,
    eps: float = 0.0, scaled: bool = False,
) -> Numerical:
    """Run the incremental engine over the wanted entries (see :mod:`fastgrad._kernels.series`).

    ``want`` None: every entry. ``steps`` may be empty: the kernel then
    computes each step from ``eps`` and ``scaled`` (nothing P-sized is
    allocated for them). Without ``budget`` only the values are computed;
    ``absum``, ``trunc`` and ``kink`` are empty.
    """
    P = net.n_params
    total = P if want is None else int(np.count_nonzero(want))
    want_arg = np.zeros(0, dtype=np.bool_) if want is None else want
    # every wanted entry is written below; the others stay NaN
    out = np.empty(P) if total == P else np.full(P, np.nan)
    size = P if budget else 0
    absum = np.zeros(size)
    trunc = np.zeros(size)
    kink = np.zeros(size, dtype=np.int8)
    status = np.zeros(size, dtype=np.int8)
    st = IncrementalState(net, X, Y, Z, A, keep=True)  # (its arrays and the blocks' below never leave here)
    N = X.shape[0]
    threads = numba.get_num_threads()
    code = METHOD_CODES[method]
    done = 0
    for layer in range(net.n_layers):
        units, counts = _wanted_units(net, want, layer, every=total == P)
        sparse = want if want is not None and total < P else None  # (the kernel is told the rows it wants)
        series_cost, assembly_cost = unit_cost_parts(net, layer, N)
        block = _unit_blocks(units.size, series_cost + assembly_cost, threads)
        rows = net.sizes[layer] + 1
        for start in range(0, units.size, block):
            chunk = units[start:start + block]
            E1 = take("engines.E1", (N, chunk.size))
            E3 = take("engines.E3", (N, chunk.size))
            E1abs = take("engines.E1abs", (N, chunk.size))
            lim = take("engines.lim", (N, chunk.size))
            crossed = take("engines.crossed", (N, chunk.size), np.int8)
            # fewer units than threads: split each unit's samples between threads too
            parts = -(-threads // chunk.size)
            samples = _pieces(N, series_cost * chunk.size, threads)
            for n_lo, n_hi in samples:
                split = min(parts, n_hi - n_lo)
                work = series_cost * chunk.size * (n_hi - n_lo) / N  # (the serial twin below about 1 ms)
                if method == "unit":  # numerical per-unit deltas; the series only for the rounding budget
                    launch(unit_deltas, work, theta, net.layout, net.loss_code, st.base, layer, chunk, n_lo, n_hi,
                           split, float(eps), E1, crossed)
                    if budget:
                        launch(unit_abs_series, work, theta, net.layout, net.loss_code, st.base, layer, chunk, n_lo,
                               n_hi, split, E1abs)
                elif layer == net.n_layers - 2:  # the last hidden layer: a sample's units as lanes
                    launch(unit_series_lanes, work, theta, net.layout, net.loss_code, st.base, layer, chunk, n_lo,
                           n_hi, E1, E3, E1abs, lim)
                else:
                    launch(unit_series, work, theta, net.layout, net.loss_code, st.base, layer, chunk, n_lo, n_hi,
                           split, E1, E3, E1abs, lim)
                if progress is not None and len(samples) > 1:
                    progress(done, total)  # a long unit: show life, give Ctrl-C a chance
            if method == "unit":
                E3[:] = 0.0
                lim[:] = np.inf
            pieces = _pieces(rows, assembly_cost * chunk.size, threads)
            for rows_lo, rows_hi in pieces:
                assemble_unit_params(theta, net.layout, net.loss_code, X, st.base,
                                     layer, chunk, E1, E3, E1abs, lim, steps, float(eps), bool(scaled), code,
                                     want_arg, budget, rows_lo, rows_hi, out, absum, trunc, kink, status,
                                     work=assembly_cost * chunk.size * (rows_hi - rows_lo) / rows,
                                     rows_wanted=None if sparse is None else _rows_wanted(net, sparse, layer, chunk))
                if progress is not None and len(pieces) > 1 and rows_hi < rows:
                    progress(done, total)
            if method == "unit" and budget:
                _flag_units(net, layer, chunk[crossed.any(axis=0)], want, kink)
            done += int(counts[start:start + block].sum())
            if progress is not None:
                progress(done, total)
    if method == "unit" and budget:
        # delta(h) - delta = e3 h^2 + ...: bounded, heuristically, by UNIT_TRUNCATION x h^2 x the terms' size
        trunc += UNIT_TRUNCATION * steps * steps * absum
    return Numerical(out, absum, trunc, kink.view(np.bool_), steps, status)


def numerical_details(
    net: MLP,
    theta: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    eps: float,
    engine: str,
    method: str = "central",
    progress: ProgressFn | None = None,
    indices: np.ndarray | None = None,
    Z: np.ndarray | None = None,
    A: np.ndarray | None = None,
    scaled: bool = False,
    budget: bool = True,
    keep_steps: bool = True,
) -> Numerical:
    """Numerical derivatives of the parameters and their error-budget ingredients.

    Parameters
    ----------
    net, theta, X, Y
        Validated network, flat parameters and batch.
    eps : float
        Step (see :func:`parameter_steps`).
    engine : {"incremental", "full"}
    method : {"central", "richardson", "complex"}
    progress : callable, optional
        ``progress(done, total)`` after each block.
    indices : ndarray of int64, optional
        Flat indices to differentiate (default: all); other entries of the
        values are NaN.
    Z, A : ndarray, optional
        A forward pass already computed at ``theta``.
    scaled : bool
        Scale each step by ``max(1, |w|)``.
    budget : bool
        Also compute the budget ingredients (``absum``, ``trunc``, and with
        the incremental engines ``kink`` and ``steps``); without it they
        are empty arrays and only the values (and the full engine's kink
        flags and steps) are computed.
    keep_steps : bool
        With the incremental engine, return the steps as an array of P
        (else ``steps`` is empty: each step is computed where it is used,
        and a check holds one array of P fewer; only the full engine's
        budget needs them).

    Notes
    -----
    With the full engine, ``absum`` and ``trunc`` still come from the
    incremental engine's per-unit series (they are cheap), and only the
    values and kink flags from the full recomputation.
    """
    P = net.n_params
    want = None  # every entry
    if indices is not None:
        want = np.zeros(P, dtype=np.bool_)
        want[np.asarray(indices, dtype=np.int64)] = True
    if Z is None or A is None:
        Z, A = net._forward(theta, X)
    mode = route(engine, method).kernel_mode
    if mode == UNIT_MODE:  # the unit engine: per-unit deltas, assembled by the incremental engine's driver
        steps = np.full(P, float(eps)) if budget else np.zeros(0)
        return _incremental(net, theta, X, Y, steps, mode, want, progress, Z, A, budget, eps=float(eps))
    if engine == "incremental" and not (budget and keep_steps):  # the kernel computes each step itself
        return _incremental(net, theta, X, Y, np.zeros(0), method, want, progress, Z, A, budget, eps=float(eps),
                            scaled=scaled)
    steps = parameter_steps(theta, eps, scaled, method)
    if engine == "incremental":
        return _incremental(net, theta, X, Y, steps, method, want, progress, Z, A, budget)
    values, kink = _full(net, theta, X, Y, steps, method, np.ones(P, dtype=np.bool_) if want is None else want,
                         progress, Z)
    if not budget:
        return Numerical(values, np.zeros(0), np.zeros(0), kink, steps)
    series = _incremental(net, theta, X, Y, steps, "central", want, None, Z, A)
    # the full engine's values are differences of losses: a non-finite one means a non-finite loss
    # (or, with finite losses, an overflowing quotient: told apart by the series' own evaluation)
    status = np.zeros(P, dtype=np.int8)
    bad = ~np.isfinite(values)
    if want is not None:
        bad &= want
    status[bad] = np.where(series.status[bad] == STATUS_VALUE_NONFINITE, STATUS_VALUE_NONFINITE,
                           STATUS_LOSS_NONFINITE)
    # a finite value whose budget lost the series' truncation estimate
    status[~bad & (series.status != STATUS_OK)] = STATUS_ESTIMATE_NONFINITE
    return Numerical(values, series.absum, series.trunc, kink, steps, status)


def _full(
    net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, steps: np.ndarray, method: str,
    want: np.ndarray, progress: ProgressFn | None, Z: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The full engine: values and kink flags of the wanted entries."""
    order = np.flatnonzero(want).astype(np.int64)
    out = np.full(net.n_params, np.nan, dtype=np.float64)
    kink = np.zeros(net.n_params, dtype=np.int8)
    total = order.size
    if total == 0:
        return out, kink.astype(bool)
    per_param, per_chunk = differences_cost(net.layout, X.shape[0], METHOD_CODES[method])
    cum = np.cumsum(per_param[order])
    threads = numba.get_num_threads()
    # each chunk starts with a forward pass of the batch: keep chunks large
    # (FULL_CHUNK_PASSES of it), and two per thread in a call ...
    chunk_work = FULL_CHUNK_PASSES * per_chunk
    block_flops = max(BLOCK_FLOPS, 2.0 * chunk_work * threads)
    if 2.0 * (chunk_work + per_chunk) > CALL_FLOPS_PER_THREAD:
        # ... unless that makes a call too long for Ctrl-C: then one chunk per thread, as large as fits
        # (never less than a forward pass and one parameter: the call's floor on this net)
        chunk_work = max(CALL_FLOPS_PER_THREAD - per_chunk, float(per_param.max()))
        block_flops = chunk_work * threads
    units = n_units(net.layout)
    for lo, hi in _blocks(cum, block_flops):
        work = cum[hi - 1] - (cum[lo - 1] if lo > 0 else 0.0)
        parts = int(max(1, min(threads * CHUNKS_PER_THREAD, work // chunk_work)))
        bounds = _split_by_cost(cum, lo, hi, parts)
        launch(full_differences, work, theta, net.layout, net.loss_code, X, Y, steps, METHOD_CODES[method], Z,
               order, bounds, units, out, kink)
        if progress is not None:
            progress(hi, total)
    return out, kink.astype(bool)


def numerical_flat(
    net: MLP,
    theta: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    eps: float,
    engine: str,
    progress: ProgressFn | None = None,
    indices: np.ndarray | None = None,
    Z: np.ndarray | None = None,
    A: np.ndarray | None = None,
    method: str = "central",
) -> np.ndarray:
    """Numerical derivatives of the parameters, as one flat float64 vector (P,).

    :func:`numerical_details` without the budget ingredients; the same
    parameters.
    """
    return numerical_details(net, theta, X, Y, eps, engine, method, progress, indices, Z, A, budget=False).values

"""An MLP check's numerical derivatives in blocks over processes or a Dask cluster: ``workers=``.

``check``, ``numerical_gradient`` and ``Monitor`` take ``workers``: None
(this process, the default), an int (that many local processes, started
with ``spawn``), a map-like callable ``workers(function, iterable)``
(``executor.map``), or a ``dask.distributed.Client``
(:mod:`fastgrad.dask_support`).

The work is cut by *unit*: a unit's parameters (its column of ``W_l`` and
its bias) share its loss-change series, the engines' cost, so a block is a
range of units of one layer, sized by the engines' cost model
(:func:`fastgrad.engines.unit_cost`) so that there are enough blocks to
balance the workers and few enough that scheduling stays a small part of
the time (:func:`plan_blocks`). A block runs
:func:`fastgrad.engines.numerical_details` on its entries only, in its
worker, on the same inputs; every derivative is computed by one thread in a
fixed order whatever else is computed beside it, so the merged result is
bitwise the local one. The budget and the verdict are then made here, as
for a local check.

A block is described by ``(layer, first unit, end unit, entries)``, with
``entries`` None for all of the units' entries: a full check of a large net
sends no index arrays, the worker builds its block's indices itself.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import dask_support
from ._kernels.codes import B_OFF, FAN_IN, FAN_OUT, W_OFF
from .engines import Numerical, numerical_details, unit_cost
from .model import MLP

#: A block's least work (flops by the cost model): about 0.05 s of one core, so that Dask's ~1 ms per task is
#: under 5 % of the time.
MIN_BLOCK_FLOPS = 5e7
#: Blocks per worker at least (balance), and in all at most (a scheduler's per-task cost grows with their
#: number: Dask users report 100 k tasks taking a minute before any worker starts).
BLOCKS_PER_WORKER = 4
MAX_BLOCKS = 512

Block = tuple[int, int, int, "np.ndarray | None"]
ProgressFn = Callable[[int, int], Any]


#: (the validation of ``workers``, shared with ``check_function``: :func:`fastgrad.dask_support.validate_workers`)
validate = dask_support.validate_workers


def n_workers(workers: Any) -> int:
    """How many processes ``workers`` stands for (a map-like: unknown, taken as 4)."""
    if isinstance(workers, int):
        return workers
    if dask_support.is_client(workers):
        return max(1, len(dask_support.require_process_workers(workers)))
    return 4


def block_indices(net: MLP, block: Block) -> np.ndarray:
    """The flat entries of a block: its units' columns of ``W_l`` and their biases (or the given subset)."""
    layer, lo, hi, entries = block
    if entries is not None:
        return entries
    row = net.layout[layer]
    fan_in, fan_out, w_off, b_off = (int(row[c]) for c in (FAN_IN, FAN_OUT, W_OFF, B_OFF))
    columns = np.arange(lo, hi, dtype=np.int64)
    weights = (w_off + np.arange(fan_in, dtype=np.int64)[:, None] * fan_out + columns[None, :]).ravel()
    return np.sort(np.concatenate([weights, b_off + columns]))


def block_size(net: MLP, block: Block) -> int:
    """How many entries a block has (without building its indices)."""
    layer, lo, hi, entries = block
    if entries is not None:
        return int(entries.size)
    return (int(net.layout[layer, FAN_IN]) + 1) * (hi - lo)


def plan_blocks(net: MLP, n_samples: int, indices: np.ndarray | None, workers: int) -> list[Block]:
    """Blocks of whole units, layer by layer, of about equal cost (see the module docstring)."""
    per_layer = []
    for layer in range(net.n_layers):
        row = net.layout[layer]
        fan_in, fan_out, w_off, b_off = (int(row[c]) for c in (FAN_IN, FAN_OUT, W_OFF, B_OFF))
        if indices is None:
            units = np.arange(fan_out, dtype=np.int64)
            entries_of = None
        else:
            inside = indices[(indices >= w_off) & (indices < b_off + fan_out)]
            unit = np.where(inside < b_off, (inside - w_off) % fan_out, inside - b_off)
            order = np.argsort(unit, kind="stable")
            inside, unit = inside[order], unit[order]
            units = np.unique(unit)
            entries_of = (inside, unit)
        if units.size:
            per_layer.append((layer, units, entries_of, unit_cost(net, layer, n_samples)))
    total = sum(cost * units.size for _, units, _, cost in per_layer)
    target = int(min(MAX_BLOCKS, max(BLOCKS_PER_WORKER * workers, 1), max(1.0, total / MIN_BLOCK_FLOPS)))
    target = max(target, min(workers, sum(units.size for _, units, _, _ in per_layer)))
    block_cost = total / max(1, target)
    blocks: list[Block] = []
    for layer, units, entries_of, cost in per_layer:
        step = max(1, int(round(block_cost / cost)))
        for start in range(0, units.size, step):
            chosen = units[start:start + step]
            if entries_of is None:
                blocks.append((layer, int(chosen[0]), int(chosen[-1]) + 1, None))
            else:
                inside, unit = entries_of
                lo, hi = np.searchsorted(unit, chosen[0], "left"), np.searchsorted(unit, chosen[-1], "right")
                blocks.append((layer, int(chosen[0]), int(chosen[-1]) + 1, np.sort(inside[lo:hi])))
    return blocks


@dataclass(frozen=True)
class Settings:
    """What every block needs besides the model and the batch."""

    eps: float
    engine: str
    method: str
    scaled: bool
    budget: bool


#: A worker's last forward pass: weak references to ``(net, theta, X)``, and ``(Z, A)``. The blocks of one run
#: get the same scattered objects in a worker, so their forward pass is computed once. Weak references: a
#: long-lived worker does not keep a finished run's parameters alive (Dask frees them), and a live reference
#: that is the same object cannot be another run's array.
_forward_cache: list[tuple[Any, ...]] = []


def _forward(net: MLP, theta: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if _forward_cache and all(ref() is obj for ref, obj in zip(_forward_cache[0][:3], (net, theta, X))):
        return _forward_cache[0][3], _forward_cache[0][4]
    Z, A = net._forward(theta, X)
    _forward_cache[:] = [(weakref.ref(net), weakref.ref(theta), weakref.ref(X), Z, A)]
    return Z, A


def details_block(block: Block, net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray,
                  settings: Settings) -> tuple[np.ndarray, ...]:
    """One block, in a worker: its entries' values (and budget ingredients), as arrays over the block only."""
    idx = block_indices(net, block)
    Z, A = _forward(net, theta, X)
    d = numerical_details(net, theta, X, Y, settings.eps, settings.engine, settings.method, None, indices=idx,
                          Z=Z, A=A, scaled=settings.scaled, budget=settings.budget, keep_steps=False)
    parts = [idx, d.values[idx]]
    if settings.budget:
        parts += [d.absum[idx], d.trunc[idx], d.status[idx]]
    parts.append(d.kink[idx] if d.kink.size else np.zeros(0, dtype=bool))
    return tuple(parts)


def _merge(base: Numerical, results: list[tuple[np.ndarray, ...]], budget: bool) -> Numerical:
    """The blocks' entries written into the arrays of a local run that computed none of them."""
    for parts in results:
        idx, values = parts[0], parts[1]
        base.values[idx] = values
        if budget:
            base.absum[idx], base.trunc[idx], base.status[idx] = parts[2], parts[3], parts[4]
        if base.kink.size and parts[-1].size:
            base.kink[idx] = parts[-1]
    return base


_state: dict[str, Any] = {}  # a local worker process's model, point, batch and settings (set by _initialize)


def _initialize(net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, settings: Settings, threads: int) -> None:
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    _state.update(net=net, theta=theta, X=X, Y=Y, settings=settings)


def _local_block(block: Block) -> tuple[np.ndarray, ...]:
    return details_block(block, **_state)


def _carried_block(task: tuple[Block, MLP, np.ndarray, np.ndarray, np.ndarray, Settings]) -> tuple[np.ndarray, ...]:
    block, net, theta, X, Y, settings = task
    return details_block(block, net, theta, X, Y, settings)


def sharded_details(net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, eps: float, engine: str,
                    method: str, indices: np.ndarray | None, scaled: bool, budget: bool, workers: Any,
                    progress: ProgressFn | None = None, Z: np.ndarray | None = None,
                    A: np.ndarray | None = None) -> tuple[Numerical, list[str]]:
    """:func:`fastgrad.engines.numerical_details` over ``workers``; also the Dask workers lost during the run."""
    settings = Settings(float(eps), engine, method, bool(scaled), bool(budget))
    blocks = plan_blocks(net, X.shape[0], None if indices is None else np.asarray(indices, np.int64),
                         n_workers(workers))
    # the arrays a local run gives the entries it does not compute; the blocks fill in the rest
    base = numerical_details(net, theta, X, Y, eps, engine, method, None, indices=np.zeros(0, np.int64), Z=Z, A=A,
                             scaled=scaled, budget=budget, keep_steps=False)
    sizes = [block_size(net, b) for b in blocks]
    lost: list[str] = []
    if dask_support.is_client(workers):
        run = dask_support.map_blocks(workers, details_block, {"net": net, "theta": theta, "X": X, "Y": Y,
                                                               "settings": settings}, blocks, progress, sizes)
        results, lost = run.results, run.lost_workers
    elif callable(workers):
        results = []
        done, total = 0, sum(sizes)
        for size, parts in zip(sizes, workers(_carried_block, [(b, net, theta, X, Y, settings) for b in blocks])):
            results.append(parts)
            done += size
            if progress is not None:
                progress(done, total)
    else:
        results = _pool(net, theta, X, Y, settings, blocks, sizes, int(workers), progress)
    _forward_cache.clear()  # a map-like may have run blocks in this process: keep none of its forward pass
    return _merge(base, results, budget), lost


def _pool(net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, settings: Settings, blocks: list[Block],
          sizes: list[int], workers: int, progress: ProgressFn | None) -> list[tuple[np.ndarray, ...]]:
    """The blocks over ``workers`` local ``spawn`` processes, each with its share of this machine's cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    threads = max(1, math.floor(cores / workers))
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_initialize,
                                   initargs=(net, theta, X, Y, settings, threads))
    results = []
    done, total = 0, sum(sizes)
    try:
        futures = [executor.submit(_local_block, b) for b in blocks]
        for size, future in zip(sizes, futures):
            results.append(future.result())
            done += size
            if progress is not None:
                progress(done, total)
    except BrokenProcessPool as e:
        raise RuntimeError(f"workers: a worker process died ({e})") from None
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return results

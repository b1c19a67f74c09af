"""Evaluate a Python loss over processes: ``check_function(..., workers=N)`` or a map-like ``workers``.

With ``workers=N`` (N > 1) the wanted entries are cut into blocks, and a
pool of N ``spawn``-started processes evaluates them: the model (``f``, its
``args``, the parameters' structure), the flat point, the steps and the
multiples go to each worker once, in its initializer; a task is only its
block of indices. ``spawn`` is safe whatever the parent runs (threads, a
threading layer that is not fork-safe), at the price of each worker
importing fastgrad once; ``f`` must therefore be importable by reference
(a function defined at module level, not a lambda or a closure), and a
script's main code must sit under ``if __name__ == "__main__":``.

A map-like ``workers`` (SciPy's convention: ``workers(function, iterable)``,
e.g. ``concurrent.futures.ProcessPoolExecutor().map`` or a Dask client's
``map`` wrapped to return results) receives one task per block, each with
everything it needs (such a map has no initializer).

Every evaluation sees the original point with one entry moved, in whatever
process: the table, and so the numerical gradient, is bitwise the same as
with ``workers=None``.
"""

from __future__ import annotations

import copy
import multiprocessing
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from .loss_engine import NO_BATCH as _NO_BATCH
from .loss_engine import python_loss_table

#: Blocks per worker: enough for progress and balance, few enough that a task's overhead is nothing.
BLOCKS_PER_WORKER = 8

_state: dict[str, Any] = {}  # a worker's model, point, steps and multiples (set by _initialize)


def validate(workers: Any) -> Any:
    """``workers`` as given when valid (None, an int >= 1 or a callable); else ``TypeError``/``ValueError``."""
    if workers is None or callable(workers):
        return workers
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
        raise TypeError(f"workers must be None, a number of processes or a map-like callable "
                        f"workers(function, iterable), got {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return int(workers)


def _portable(model: Any) -> Any:
    """A copy of ``model`` without its ``workers`` (a pool or a map need not pickle), checked to pickle."""
    clone = copy.copy(model)
    clone.workers = None
    try:
        pickle.dumps(clone)
    except Exception as e:  # noqa: BLE001 - pickle raises several types
        raise TypeError(f"workers: f and args must be picklable to reach worker processes (a function defined at "
                        f"module level, not a lambda or closure): {type(e).__name__}: {e}; "
                        "or use workers=None") from None
    return clone


def _initialize(model: Any, theta: np.ndarray, steps: np.ndarray, multiples: np.ndarray) -> None:
    _state.update(model=model, theta=theta, steps=steps, multiples=multiples)


def _block(indices: np.ndarray) -> np.ndarray:
    return python_loss_table(_state["model"], _state["theta"], _NO_BATCH, _NO_BATCH, indices, _state["steps"],
                             _state["multiples"])


def _task(task: tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """One block for a map-like ``workers``: everything travels with it."""
    model, theta, indices, steps, multiples = task
    return python_loss_table(model, theta, _NO_BATCH, _NO_BATCH, indices, steps, multiples)


def loss_table(model: Any, theta: np.ndarray, indices: np.ndarray, steps: np.ndarray, multiples: np.ndarray,
               progress: Callable[[int, int], Any] | None = None) -> np.ndarray:
    """:meth:`fastgrad.function.FunctionModel.loss_table` over ``model.workers`` (see the module docstring)."""
    workers = model.workers
    portable = _portable(model)
    n_blocks = max(1, min(indices.size, BLOCKS_PER_WORKER * (workers if isinstance(workers, int) else 4)))
    blocks = [b for b in np.array_split(indices, n_blocks) if b.size]
    if not blocks:
        return np.empty((0, multiples.size))
    done = 0
    results: list[np.ndarray] = []
    if callable(workers):
        for block, rows in zip(blocks, workers(_task, [(portable, theta, b, steps, multiples) for b in blocks])):
            results.append(np.asarray(rows, dtype=np.float64).reshape(block.size, multiples.size))
            done += block.size
            if progress is not None:
                progress(done, indices.size)
        return np.concatenate(results)
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_initialize,
                                   initargs=(portable, theta, steps, multiples))
    try:
        futures = [executor.submit(_block, b) for b in blocks]
        for block, future in zip(blocks, futures):  # in order: the table's rows are the blocks' rows
            results.append(future.result())
            done += block.size
            if progress is not None:
                progress(done, indices.size)
    except BrokenProcessPool as e:
        raise RuntimeError(f"workers: a worker process died ({e}); f must be importable by reference in a new "
                           "process (defined at module level of an importable module, a script's main code under "
                           "if __name__ == '__main__')") from None
    except BaseException:  # Ctrl-C or f's own error: stop the rest now
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return np.concatenate(results)

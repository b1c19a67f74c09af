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

With ``workers=client`` (a ``dask.distributed.Client``, :func:`client_loss_table`)
the portable model, the flat point, the steps and the multiples (a jitted
``f``: ``f``, the parameter arrays, ``args`` and the offsets) are scattered
to every worker once, through :func:`fastgrad.dask_support.map_blocks`; a task
is only its block of indices, and runs there exactly what ``workers=None``
runs here on that block (the Python loop, or the jitted kernel on an index
subset). What crosses to the workers is serialised by Dask (cloudpickle), so
``f`` may be a closure or a function of a script. The blocks are sized from
the time of ``f`` at the point, evaluated twice here before the table (the
faster of the two; the two values also say whether ``f`` answers the same
twice): at least :data:`BLOCK_SECONDS` of work each, so that Dask's ~1 ms per
task stays a few per cent, at least :data:`MIN_BLOCKS_PER_WORKER` per worker
for balance, and at most :data:`MAX_BLOCKS` (the scheduler's cost grows with
the tasks). A table whose estimated work is under :data:`CLIENT_MIN_SECONDS`
(the noise probes' 16 evaluations of a fast ``f``, a small model) runs here:
the cluster's round trips would cost more than they save. A worker lost
during a run is recorded (:class:`DaskLog`) and reported by
:func:`annotate`: Dask recomputes its blocks elsewhere, which gives the same
bits for a deterministic ``f``; for an ``f`` whose two evaluations at the
point differed, the check fails with a note.

Every evaluation sees the original point with one entry moved, in whatever
process: the table, and so the numerical gradient, is bitwise the same as
with ``workers=None``.
"""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dask_support
from .loss_engine import NO_BATCH as _NO_BATCH
from .loss_engine import python_loss_table

#: Blocks per worker: enough for progress and balance, few enough that a task's overhead is nothing.
BLOCKS_PER_WORKER = 8

_state: dict[str, Any] = {}  # a worker's model, point, steps and multiples (set by _initialize)


#: (the validation of ``workers``, shared with MLP checks: :func:`fastgrad.dask_support.validate_workers`)
validate = dask_support.validate_workers


def _portable(model: Any, dask: bool = False) -> Any:
    """A copy of ``model`` without its ``workers`` (a pool or a map need not pickle), checked to pickle.

    ``dask``: checked with Dask's own serialisation (pickle, then cloudpickle: closures and a script's functions
    travel by value).
    """
    clone = copy.copy(model)
    clone.workers = None
    clone.dask_log = None
    try:
        if dask:
            from distributed.protocol import pickle as dask_pickle

            dask_pickle.dumps(clone)
        else:
            pickle.dumps(clone)
    except Exception as e:  # noqa: BLE001 - pickle raises several types
        if dask:
            raise TypeError(f"workers: f and args must be serialisable by Dask (cloudpickle) to reach its workers: "
                            f"{type(e).__name__}: {e}; or use workers=None") from None
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


# ---------------------------------------------------------------------- a dask.distributed Client
#: Dask: the estimated work of ``f`` in one block at least (Dask's ~1 ms per task is then ~2 % of it).
BLOCK_SECONDS = 0.05
#: Dask: blocks per worker at least, for balance (outranks :data:`BLOCK_SECONDS` for a small table).
MIN_BLOCKS_PER_WORKER = 2
#: Dask: blocks in all at most (a scheduler's cost grows with its tasks, before any of them runs).
MAX_BLOCKS = 256
#: Dask: a table whose estimated work is under this many seconds runs here (scatter and round trips cost more).
CLIENT_MIN_SECONDS = 0.1


@dataclass
class LostRun:
    """A run on the Client during which workers left: which, and the blocks Dask recomputed."""

    table: str  # "loss table", "noise probes", "complex steps"
    lost_workers: list[str]
    recomputed: list[int] | None  # block numbers (None: not known)
    blocks: list[np.ndarray]


@dataclass
class DaskLog:
    """What a check on a Client saw: ``f``'s time at the point, whether it answered the same twice, lost workers."""

    seconds: float
    deterministic: bool
    lost: list[LostRun] = field(default_factory=list)


def _dask_log(model: Any, theta: np.ndarray) -> DaskLog:
    """The model's :class:`DaskLog`, made at the first table: ``f`` timed at ``theta`` twice, its values compared."""
    log = getattr(model, "dask_log", None)
    if log is None:
        values, seconds = [], []
        for _ in range(2):
            start = time.perf_counter()
            values.append(np.float64(model.loss_at(theta, _NO_BATCH, _NO_BATCH)))
            seconds.append(time.perf_counter() - start)
        log = DaskLog(min(seconds), values[0].tobytes() == values[1].tobytes())
        model.dask_log = log
    return log


def worth_a_client(model: Any, theta: np.ndarray, evaluations: int) -> bool:
    """Whether a table of ``evaluations`` of ``f`` goes to the Client (see :data:`CLIENT_MIN_SECONDS`)."""
    return evaluations > 0 and evaluations * _dask_log(model, theta).seconds >= CLIENT_MIN_SECONDS


def client_blocks(n: int, seconds_per_entry: float, n_workers: int) -> int:
    """How many blocks ``n`` entries go in on a Client of ``n_workers`` (see the module docstring)."""
    by_cost = int(n * seconds_per_entry / BLOCK_SECONDS * (1.0 + 1e-9))  # (2000 x 4 ms / 50 ms: 160, not 159)
    return max(1, min(max(by_cost, MIN_BLOCKS_PER_WORKER * n_workers), MAX_BLOCKS, n))


def _current_key() -> Any:
    """The Dask key of the task running this (None outside a worker)."""
    try:
        from distributed import get_worker

        return get_worker().get_current_task()
    except Exception:  # noqa: BLE001 - not in a worker
        return None


def _python_rows(block: np.ndarray, model: Any, theta: np.ndarray, steps: np.ndarray,
                 multiples: np.ndarray) -> tuple[np.ndarray, Any]:
    """A Python ``f``'s rows of the table for ``block``, as ``workers=None`` computes them; and the task's key."""
    return python_loss_table(model, theta, _NO_BATCH, _NO_BATCH, block, steps, multiples), _current_key()


def _jitted_rows(block: np.ndarray, f: Any, arrays: tuple, args: tuple, offsets: np.ndarray, steps: np.ndarray,
                 multiples: np.ndarray) -> tuple[np.ndarray, Any]:
    """A jitted ``f``'s rows for ``block``: the same parallel kernel on the index subset (the same bits)."""
    from ._kernels.function_loop import loss_table as jitted_table

    return jitted_table(f, arrays, args, block, offsets, steps, multiples), _current_key()


def _python_complex(block: np.ndarray, model: Any, theta: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, Any]:
    """A Python ``f``'s complex steps for ``block``, as :meth:`FunctionModel.complex_table` computes them."""
    from .function import complex_loop

    return complex_loop(model, theta, block, h), _current_key()


def _jitted_complex(block: np.ndarray, f: Any, arrays_c: tuple, args: tuple, offsets: np.ndarray,
                    h: np.ndarray) -> tuple[np.ndarray, Any]:
    from ._kernels.function_loop import complex_table

    return complex_table(f, arrays_c, args, block, offsets, h), _current_key()


def _recomputed(client: Any, lost: list[str], keys: list[Any]) -> list[int] | None:
    """The blocks (numbers) the lost workers were running or held: the scheduler's remove-worker events."""
    try:
        wanted: set[Any] = set()
        for address in lost:
            for _, message in client.get_events(address):
                if isinstance(message, dict) and message.get("action") == "remove-worker":
                    wanted.update(message.get("processing-tasks", ()))
                    wanted.update(message.get("lost-computed-tasks", ()))
    except Exception:  # noqa: BLE001 - an older scheduler, events not kept: not known
        return None
    if any(key is None for key in keys):
        return None
    return [b for b, key in enumerate(keys) if key in wanted]


def _on_client(model: Any, table: str, task: Callable[..., Any], shared: dict[str, Any], indices: np.ndarray,
               seconds_per_entry: float, progress: Callable[[int, int], Any] | None) -> np.ndarray:
    """``task`` over blocks of ``indices`` on the model's Client, concatenated; lost workers logged."""
    client = model.workers
    n_workers = len(dask_support.require_process_workers(client))
    n_blocks = client_blocks(indices.size, seconds_per_entry, n_workers)
    blocks = [b for b in np.array_split(indices, n_blocks) if b.size]
    run = dask_support.map_blocks(client, task, shared, blocks, progress, [b.size for b in blocks])
    if run.lost_workers:
        keys = [key for _, key in run.results]
        model.dask_log.lost.append(LostRun(table, list(run.lost_workers), _recomputed(client, run.lost_workers, keys),
                                           blocks))
    return np.concatenate([rows for rows, _ in run.results])


def client_loss_table(model: Any, theta: np.ndarray, indices: np.ndarray, steps: np.ndarray, multiples: np.ndarray,
                      progress: Callable[[int, int], Any] | None = None) -> np.ndarray:
    """:meth:`fastgrad.function.FunctionModel.loss_table` on ``model.workers``, a Dask Client (module docstring)."""
    log = _dask_log(model, theta)
    if model.jitted:
        arrays = tuple(a.copy() for a in model.unflatten(theta))
        shared = dict(f=model.f, arrays=arrays, args=model.args, offsets=model.offsets, steps=steps,
                      multiples=multiples)
        _portable(model, dask=True)
        task: Callable[..., Any] = _jitted_rows
    else:
        shared = dict(model=_portable(model, dask=True), theta=theta, steps=steps, multiples=multiples)
        task = _python_rows
    table = "loss table" if multiples.size > 1 else "noise probes"
    return _on_client(model, table, task, shared, indices, multiples.size * log.seconds, progress)


def client_complex_table(model: Any, theta: np.ndarray, indices: np.ndarray, h: np.ndarray,
                         progress: Callable[[int, int], Any] | None = None) -> np.ndarray:
    """:meth:`fastgrad.function.FunctionModel.complex_table` on a Dask Client (the same code per block)."""
    log = _dask_log(model, theta)
    if model.jitted:
        arrays_c = tuple(a.astype(np.complex128) for a in model.unflatten(theta))
        shared = dict(f=model.f, arrays_c=arrays_c, args=model.args, offsets=model.offsets, h=h)
        _portable(model, dask=True)
        task: Callable[..., Any] = _jitted_complex
    else:
        shared = dict(model=_portable(model, dask=True), theta=theta, h=h)
        task = _python_complex
    return _on_client(model, "complex steps", task, shared, indices, log.seconds, progress)


#: The recomputed blocks a remark names at most (then how many in all).
SHOWN_BLOCKS = 8


def _ranges(blocks: list[np.ndarray], numbers: list[int]) -> str:
    """``"3 (entries 150-199), 7 (entries 350-399)"``: blocks and the flat entries they hold."""
    parts = []
    shown = numbers if len(numbers) <= SHOWN_BLOCKS else numbers[:SHOWN_BLOCKS]
    for b in shown:
        lo, hi = int(blocks[b][0]), int(blocks[b][-1])
        parts.append(f"{b} (entr{'y' if lo == hi else 'ies'} {lo}{'' if lo == hi else f'-{hi}'})")
    more = f", ... ({len(numbers)} blocks in all)" if len(numbers) > len(shown) else ""
    return ", ".join(parts) + more


def annotate(model: Any, result: Any) -> Any:
    """Report on ``result`` the workers lost during a check on a Client (see the module docstring).

    ``result.lost_workers`` lists them. A deterministic ``f`` (its two
    evaluations at the point gave the same bits): a remark in
    ``result.advice`` naming the recomputed blocks, whose values are the bits
    the lost worker would have given. Else a note in ``result.notes`` and
    ``result.passed`` False: recomputed values of an ``f`` that answers
    differently to the same call may differ from the first computation.
    """
    log = getattr(model, "dask_log", None)
    if log is None or not log.lost:
        return result
    lost = sorted({address for run in log.lost for address in run.lost_workers})
    result.lost_workers = lost
    said = []
    for run in log.lost:
        which = ("the blocks they ran or held (which is not known)" if run.recomputed is None
                 else f"block{'s' if len(run.recomputed) != 1 else ''} {_ranges(run.blocks, run.recomputed)} of "
                      f"{len(run.blocks)}" if run.recomputed else f"none of the {len(run.blocks)} blocks")
        said.append(f"{run.table}: {which}")
    workers = f"Dask worker{'s' if len(lost) > 1 else ''} {', '.join(lost)} left during the check; recomputed " \
              f"elsewhere: {'; '.join(said)}"
    if log.deterministic:
        result.advice.append(f"{workers}. f gave the same bits twice at params, so the recomputed values are "
                             "those of the first computation (as with workers=None)")
    else:
        result.notes.append(f"{workers}. f answered differently to the same call at params (nondeterministic): "
                            "the recomputed values may differ from a run without the loss, so this check is not "
                            "trusted; run it again, or make f deterministic")
        result.passed = False
    return result

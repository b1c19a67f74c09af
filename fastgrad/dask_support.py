"""Dask, optional: recognising a ``distributed.Client`` as ``workers=``, and running blocks of a check on it.

fastgrad does not schedule anything itself beyond one machine: given a
Client, it scatters what every block needs once (the model, the flat point,
the batch; ``broadcast=True``, so no block waits for a transfer), submits one
task per block, and gathers the results in order. Each block runs the same
code as the local run on the same inputs, so the result is bitwise the same
(fastgrad's derivatives do not depend on the blocking or the thread count).

Two things Dask leaves to its users matter for Numba kernels:

* **Process workers.** A Client whose workers are threads of the client's
  own process (``LocalCluster(processes=False)``, or ``Client(processes=False)``)
  would run fastgrad's parallel kernels from several threads of one process at
  once, which Numba's ``workqueue`` layer does not survive; such a Client is
  refused with the fix in the message (:func:`require_process_workers`).
* **Threads per worker.** Dask does not set ``NUMBA_NUM_THREADS``: each worker
  process would start one Numba thread per core of the machine, and two
  workers on one machine would fight over its cores. A task sets its Numba
  threads to its share of its machine's cores (the cores it may run on,
  divided by the fastgrad workers on that host; :func:`_share`).

A worker killed during a run is Dask's to handle: the scheduler recomputes its
blocks elsewhere, and since a block's result depends only on its inputs, the
result is still bitwise the same. fastgrad records which workers left during
the run (:class:`Run`): a caller whose model may not be deterministic (a
``check_function`` whose ``f`` answered differently to the same call) turns that
into a note instead of trusting the recomputed blocks silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INSTALL_HINT = 'workers: a dask.distributed Client needs Dask: pip install "fastgrad[dask]"'


def is_client(obj: Any) -> bool:
    """Whether ``obj`` looks like a ``dask.distributed.Client`` (without importing Dask)."""
    kind = type(obj)
    return kind.__name__ == "Client" and kind.__module__.split(".")[0] == "distributed" or (
        all(callable(getattr(obj, name, None)) for name in ("scatter", "submit", "gather", "scheduler_info"))
    )


def require_distributed() -> Any:
    """The ``distributed`` module, or the ImportError users should see."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return distributed


def _hosts(client: Any) -> dict[str, str]:
    """Worker address -> its host, from the scheduler."""
    workers = client.scheduler_info(n_workers=-1)["workers"] if _takes_n_workers(client) else \
        client.scheduler_info()["workers"]
    return {address: str(info.get("host", address)) for address, info in workers.items()}


def _takes_n_workers(client: Any) -> bool:
    try:
        import inspect

        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


def require_process_workers(client: Any) -> dict[str, str]:
    """Refuse a Client without workers or with workers in this process's threads; return address -> host."""
    hosts = _hosts(client)
    if not hosts:
        raise ValueError("workers: the Dask client has no workers (wait for them: client.wait_for_workers(n))")
    inproc = [a for a in hosts if a.startswith("inproc://")]
    if inproc or any(pid == os.getpid() for pid in client.run(os.getpid).values()):
        raise ValueError("workers: this Dask client's workers are threads of this process (processes=False): "
                         "fastgrad's parallel Numba kernels need process workers; use "
                         "LocalCluster(processes=True, threads_per_worker=1) or dask-worker processes")
    return hosts


def validate_workers(workers: Any) -> Any:
    """``workers`` as given when valid (None, an int >= 1, a map-like callable or a Dask Client); else an error.

    A Client (or an object that looks like one) needs Dask (``ImportError``
    with the ``pip install``) and process workers (``ValueError``: see
    :func:`require_process_workers`), both said before any work starts.
    """
    if workers is None:
        return workers
    if is_client(workers):
        require_distributed()
        require_process_workers(workers)
        return workers
    if callable(workers):
        return workers
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
        raise TypeError(f"workers must be None, a number of processes, a map-like callable "
                        f"workers(function, iterable) or a dask.distributed Client, got {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return int(workers)


def _share(workers_on_host: int) -> int:
    """Numba threads for one task: this process's cores over the fastgrad workers on its host (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers_on_host))


def _run_block(task: Callable[..., Any], shared: dict[str, Any], block: Any, per_host: dict[str, int]) -> Any:
    """A block on a worker: its Numba threads set to its share of the host, then ``task(block, **shared)``."""
    import numba

    from ._config import threads_context

    try:
        from distributed import get_worker

        host = get_worker().address.split("://")[-1].rsplit(":", 1)[0]
    except Exception:  # noqa: BLE001 - not in a worker (a test calling it directly): this machine's cores
        host = ""
    threads = min(numba.config.NUMBA_NUM_THREADS, _share(per_host.get(host, 1)))
    with threads_context(threads):
        return task(block, **shared)


@dataclass
class Run:
    """What a run on a Client gave: the blocks' results in order, and the workers that left during it."""

    results: list[Any]
    lost_workers: list[str] = field(default_factory=list)
    blocks: int = 0


def map_blocks(client: Any, task: Callable[..., Any], shared: dict[str, Any], blocks: Sequence[Any],
               progress: Callable[[int, int], Any] | None = None,
               sizes: Sequence[int] | None = None) -> Run:
    """Run ``task(block, **shared)`` for every block on the Client's workers; results in the blocks' order.

    ``shared`` is scattered once to every worker (``broadcast=True``); a
    task carries only its block. ``progress(done, total)`` is called as
    blocks finish, in order, with ``sizes`` (entries per block) counted.
    Ctrl-C (or any error) cancels the blocks not yet run.
    """
    require_distributed()
    hosts = require_process_workers(client)
    per_host: dict[str, int] = {}
    for address, host in hosts.items():
        key = address.split("://")[-1].rsplit(":", 1)[0]
        per_host[key] = per_host.get(key, 0) + 1
    scattered = {name: client.scatter(value, broadcast=True, hash=False) for name, value in shared.items()}
    before = set(hosts)
    futures = [client.submit(_run_block, task, scattered, block, per_host, pure=False) for block in blocks]
    sizes = list(sizes) if sizes is not None else [1] * len(futures)
    total, done = sum(sizes), 0
    results = []
    try:
        for future, size in zip(futures, sizes):
            results.append(future.result())
            done += size
            if progress is not None:
                progress(done, total)
    except BaseException:
        client.cancel(futures)
        raise
    after = set(_hosts(client))
    lost = sorted(before - after)
    return Run(results, lost, len(futures))

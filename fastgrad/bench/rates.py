"""What this machine gives, measured in the run: the physical rates the cost model (:mod:`.cost_model`) divides by.

Each rate is a small experiment, run just before the phases it predicts:

- ``dot_flops``: ``np.dot`` GFLOP/s on the shapes of the check's own
  products (the forward pass's ``(N, fan_in) @ (fan_in, fan_out)``, the
  assembly's ``(fan_in + 1, N) @ (N, fan_out)``), on one BLAS thread, best of
  a few: the multiply-add rate a blocked product reaches on this core;
- ``cache_bytes``: bytes per second through the first-level cache of an
  unblocked ``y += g x`` loop over rows that stay in L1 (two loads and a
  store per multiply-add), compiled by Numba, at the phase's thread count.
  fastgrad's inner loops are of this kind (every multiply-add loads and
  stores its accumulator row), so this, not ``np.dot``'s rate, bounds them;
- ``memory_bytes``: a copy of a 64 MiB array (read and write counted),
  far beyond the 32 MiB L3: main-memory bandwidth;
- ``chain_flops``: a dependent multiply-add chain compiled by Numba (each
  step waits for the last): the rate of the scalar code around the loops
  (the activations' series, the loss's terms), which is latency-bound;
- ``exp_seconds``: one ``exp`` in compiled code (the activations);
- ``launch_seconds``: an empty ``parallel=True`` kernel called from Python
  (dispatch, waking the threads, joining them); ``call_seconds``: an empty
  serial one; ``alloc_seconds``: a small ``np.empty`` inside compiled code
  (the kernels allocate their scratch rows per task and per row);
  ``page_seconds``: the first write to a page of fresh memory (a fault,
  the kernel's zeroing): the validated copies and the result are fresh;
- ``python_seconds``: a whole check of a 1-1-1 net on one sample, which
  does no arithmetic worth the name: the fixed Python cost of a call
  (validation, dispatch, the driver's loop).

At more than one thread the per-thread rates are multiplied by what the
cache loop's own parallel run gave in the same minute (``scaling``), so
that a shared machine's second core is credited as it was measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numba import njit, prange

import fastgrad

from .._config import threads_context
from .machine import peer_threads

#: Doubles in each task's two rows of the cache loop (8 KB per task: within any L1 here, 32 KB per core).
CACHE_ROW = 512
#: Tasks of the cache loop per thread (several: no thread waits for a straggler).
CACHE_TASKS_PER_THREAD = 8
#: Bytes of each array of the bandwidth copy (twice the 32 MiB L3).
BANDWIDTH_BYTES = 64 << 20
#: Bytes of the fresh array whose pages are touched once each (large: the allocator maps it afresh every time).
PAGE_TEST_BYTES = 32 << 20
#: Timed calls of each experiment; the fastest counts (the others met a busy machine).
BEST_OF = 5


@njit(parallel=True, cache=True)
def _cache_axpy(rows: np.ndarray, sweeps: int) -> None:  # (Numba ignores the annotations)
    for t in prange(rows.shape[0]):
        x = rows[t, 0]
        y = rows[t, 1]
        g = 1e-9 * (t + 1)
        for _ in range(sweeps):
            for k in range(x.shape[0]):
                y[k] += g * x[k]


@njit(cache=True)
def _chain(steps: int) -> float:
    x = 1.0
    acc = 0.0
    for _ in range(steps):
        x = x * 0.999999 + 1e-6
        acc += x
    return acc


@njit(cache=True)
def _exps(z: np.ndarray, out: np.ndarray, reps: int) -> None:
    for _ in range(reps):
        for i in range(z.shape[0]):
            out[i] = np.exp(-z[i])


@njit(cache=True)
def _allocs(count: int, width: int) -> float:
    s = 0.0
    for i in range(count):
        a = np.empty(width)
        a[0] = i
        s += a[0]
    return s


@njit(parallel=True, cache=True)
def _empty_parallel(out: np.ndarray) -> None:
    for t in prange(out.shape[0]):
        out[t] = t


@njit(cache=True)
def _empty_serial(out: np.ndarray) -> None:
    out[0] = 0.0


def best_seconds(fn: Callable[[], Any], repeats: int = BEST_OF) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (after one untimed call that compiles or warms it)."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return float(best)


@dataclass
class MachineRates:
    """The rates one thread count was measured at (see the module docstring); seconds, bytes and flops."""

    threads: int
    dot_flops: dict[str, float]  # per phase ("forward", "assembly"): np.dot on its shapes, one BLAS thread, flops/s
    cache_bytes: float  # unblocked axpy in L1, bytes per second, at ``threads``
    memory_bytes: float  # 64 MiB copy, bytes per second (read + write)
    chain_flops: float  # dependent scalar multiply-adds, flops per second, one thread
    exp_seconds: float  # one compiled exp
    launch_seconds: float  # an empty parallel kernel's call
    call_seconds: float  # an empty serial kernel's call
    alloc_seconds: float  # one small np.empty in compiled code
    page_seconds: float  # the first write to a fresh 4 KiB page (the fault and the zeroing)
    python_seconds: float  # a whole check of a 1-1-1 net, N = 1
    scaling: float = 1.0  # cache loop at ``threads`` / at one thread, same minute
    dot_shapes: str = ""  # the np.dot shapes measured

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _memory_bytes() -> float:
    """Bytes per second of a copy far beyond the caches (read and write counted)."""
    src = np.ones(BANDWIDTH_BYTES // 8)
    dst = np.empty_like(src)
    return 2.0 * src.nbytes / best_seconds(lambda: np.copyto(dst, src), 3)


def _dot_flops(shapes: Sequence[tuple[int, int, int]]) -> float:
    """Best np.dot rate (flops/s) over ``shapes`` ``(m, k, n)``, one BLAS thread, repeated to a millisecond or so."""
    rng = np.random.default_rng(0)
    total_flops = 0.0
    total_seconds = 0.0
    with peer_threads(1):
        for m, k, n in shapes:
            A, B = rng.normal(size=(m, k)), rng.normal(size=(k, n))
            out = np.empty((m, n))
            reps = max(1, int(2e6 // max(1, 2 * m * k * n)))

            def run(A: np.ndarray = A, B: np.ndarray = B, out: np.ndarray = out, reps: int = reps) -> None:
                for _ in range(reps):
                    np.dot(A, B, out=out)

            total_seconds += best_seconds(run)
            total_flops += 2.0 * m * k * n * reps
    return total_flops / total_seconds


def _cache_bytes(threads: int) -> float:
    """Bytes per second of the L1 axpy loop at ``threads`` threads (24 bytes per multiply-add)."""
    rows = np.ones((CACHE_TASKS_PER_THREAD * threads, 2, CACHE_ROW))
    sweeps = 200
    with threads_context(threads):
        seconds = best_seconds(lambda: _cache_axpy(rows, sweeps))
    return 24.0 * rows.shape[0] * CACHE_ROW * sweeps / seconds


def dot_shapes(sizes: Sequence[int], n_samples: int) -> dict[str, list[tuple[int, int, int]]]:
    """The check's products as ``(m, k, n)``, per phase.

    ``forward``: each layer's ``(N, fan_in) @ (fan_in, fan_out)``;
    ``assembly``: each layer's ``(fan_in + 1, N) @ (N, fan_out)`` (a row of
    inputs times every unit's ``e1``: the sums the assembly forms).
    """
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return {"forward": [(n_samples, a, b) for a, b in pairs], "assembly": [(a + 1, n_samples, b) for a, b in pairs]}


def measure_rates(threads: int, shapes: dict[str, list[tuple[int, int, int]]]) -> MachineRates:
    """Measure every rate of :class:`MachineRates` for ``threads`` Numba threads.

    Parameters
    ----------
    threads : int
        Numba threads of the phases the rates will predict.
    shapes : dict
        Per phase, the ``(m, k, n)`` of its ``np.dot`` experiment (:func:`dot_shapes`).

    Returns
    -------
    MachineRates
        Measured now, on this machine.
    """
    one = _cache_bytes(1)
    many = _cache_bytes(threads) if threads > 1 else one
    memory = _memory_bytes()
    steps = 1 << 20
    chain = 2.0 * steps / best_seconds(lambda: _chain(steps))
    z = np.linspace(-3.0, 3.0, CACHE_ROW)
    e = np.empty_like(z)
    exp_seconds = best_seconds(lambda: _exps(z, e, 200)) / (200 * z.size)
    alloc_seconds = best_seconds(lambda: _allocs(1 << 16, 64)) / (1 << 16)

    def touch() -> None:
        fresh = np.empty(PAGE_TEST_BYTES // 8)
        fresh[::512] = 1.0

    page_seconds = best_seconds(touch, 3) / (PAGE_TEST_BYTES / 4096)
    flag = np.zeros(max(2, threads))
    with threads_context(threads):
        launch = best_seconds(lambda: _empty_parallel(flag), 50)
    call = best_seconds(lambda: _empty_serial(flag), 50)
    tiny = fastgrad.MLP([1, 1, 1])
    params = tiny.init(seed=0)
    X, Y = np.ones((1, 1)), np.ones((1, 1))
    with threads_context(threads):
        python = best_seconds(lambda: fastgrad.numerical_gradient(tiny, params, X, Y), 20)
    return MachineRates(
        threads=threads, dot_flops={phase: _dot_flops(s) for phase, s in shapes.items()}, cache_bytes=many,
        memory_bytes=memory, chain_flops=chain, exp_seconds=exp_seconds, launch_seconds=launch, call_seconds=call,
        alloc_seconds=alloc_seconds, page_seconds=page_seconds, python_seconds=python, scaling=many / one,
        dot_shapes="; ".join(f"{phase} " + ", ".join(f"({m},{k})@({k},{n})" for m, k, n in s)
                             for phase, s in shapes.items()))


def median_rates(taken: Sequence[MachineRates]) -> MachineRates:
    """The median of each rate over several measurements (rounds interleaved with the phases they predict).

    Parameters
    ----------
    taken : sequence of MachineRates
        At least one, all at the same thread count and shapes.

    Returns
    -------
    MachineRates
        Field by field medians (``dot_flops`` phase by phase).
    """
    first = taken[0]
    values: dict[str, Any] = {}
    for name, value in first.to_dict().items():
        if isinstance(value, float):
            values[name] = float(np.median([getattr(t, name) for t in taken]))
        elif isinstance(value, dict):
            values[name] = {k: float(np.median([t.dot_flops[k] for t in taken])) for k in value}
        else:
            values[name] = value
    return MachineRates(**values)

"""The machine a run measured, and the thread limits of the peers (NumPy's OpenBLAS, torch).

NumPy exposes no way to set its BLAS's threads; OpenBLAS has one in its C API,
found here through the libraries this process has loaded. A peer that runs
its products on every core while fastgrad is given one would not compare
like with like, and a spinning BLAS thread slows the Numba threads that run
next, so every peer runs inside :func:`peer_threads`.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import platform
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

import fastgrad

if TYPE_CHECKING:
    from .options import Options

#: (prefix, suffix) of OpenBLAS's thread functions in the builds NumPy ships or links.
_OPENBLAS_NAMES = (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"), ("openblas", ""))


def openblas_thread_functions() -> tuple[Any, Any] | None:
    """Find the thread functions of the OpenBLAS NumPy loaded (via /proc/self/maps).

    Returns
    -------
    tuple or None
        ``(get, set)``: ``get()`` returns the thread count, ``set(n)`` sets it;
        None when no OpenBLAS is loaded (another BLAS, or not Linux).
    """
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in _OPENBLAS_NAMES:
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                put.argtypes = [ctypes.c_int]
                return get, put
    return None


def blas_threads() -> int | None:
    """Threads NumPy's BLAS uses now (OpenBLAS only), or None when unknown.

    Returns
    -------
    int or None
        The count, or None when NumPy's BLAS is not OpenBLAS.
    """
    funcs = openblas_thread_functions()
    return int(funcs[0]()) if funcs else None


@contextlib.contextmanager
def peer_threads(n: int, torch: Any = None) -> Iterator[None]:
    """Limit OpenBLAS (when NumPy uses it) and torch to ``n`` threads in the body.

    Parameters
    ----------
    n : int
        Threads in the body; the previous counts are restored after it.
    torch : module, optional
        The torch module, when the body runs torch (it keeps its own thread pool).
    """
    funcs = openblas_thread_functions()
    previous_blas = int(funcs[0]()) if funcs else None
    previous_torch = torch.get_num_threads() if torch is not None else None
    if funcs:
        funcs[1](int(n))
    if torch is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if funcs and previous_blas is not None:
            funcs[1](previous_blas)
        if torch is not None:
            torch.set_num_threads(previous_torch)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(opts: Options) -> dict[str, Any]:
    """Return what decides the speed: cpu, cores, versions, threads.

    Parameters
    ----------
    opts : Options
        The run's options (the thread counts tested).

    Returns
    -------
    dict
        JSON-ready; the peers' versions for those imported in this process.
    """
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "fastgrad_version": fastgrad.__version__,
        "numba_version": numba.__version__,
        "numpy_version": np.__version__,
        "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
        "threads_tested": list(opts.threads),
        "peer_threads": opts.peer_threads,
        "blas_threads_default": blas_threads(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    for name in ("torch", "scipy", "jax"):
        module = sys.modules.get(name)
        if module is not None:
            info[f"{name}_version"] = getattr(module, "__version__", "?")
    try:
        info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        info["numba_threading_layer"] = None
    return info

"""Defaults, ``FASTGRAD_*`` environment switches and the thread context."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numba

#: Default central-difference step of the ``"full"`` engine (the tutorial's
#: float64 choice: there, E(w+h) - E(w-h) loses digits to cancellation as h
#: shrinks, and 1e-4 balances that against truncation).
DEFAULT_EPS = 1e-4
#: Default step of the ``"incremental"`` engine: it has no cancellation, so the
#: step can shrink until truncation (~h^2) is below rounding; 1e-8 is there
#: (measured: see README, "Accuracy").
DEFAULT_EPS_INCREMENTAL = 1e-8
#: Default step of the Richardson extrapolation with the full engine (fourth
#: order: truncation ~h^4 meets rounding ~u/h near 1e-3).
DEFAULT_EPS_RICHARDSON = 1e-3
#: ... and with the incremental engine, which has no cancellation: small
#: enough for its series, which remove the h^2 term exactly.
DEFAULT_EPS_RICHARDSON_INCREMENTAL = 1e-5
#: Default complex step (nothing is subtracted, so it only has to be tiny).
DEFAULT_EPS_COMPLEX = 1e-20
#: Budget verdict: an entry fails when its error exceeds this many budgets.
DEFAULT_SAFETY = 10.0
#: Default engine.
DEFAULT_ENGINE = "incremental"
#: Default relative tolerance of :func:`fastgrad.check`.
DEFAULT_RTOL = 1e-5
#: Default absolute tolerance of :func:`fastgrad.check`.
DEFAULT_ATOL = 1e-8


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off", "")


#: Whether compiled kernels are cached on disk (``FASTGRAD_CACHE=0`` turns it off).
CACHE = _env_flag("FASTGRAD_CACHE", True)


@contextlib.contextmanager
def threads_context(threads: int | None) -> Iterator[None]:
    """Run the body with ``threads`` Numba threads, restoring the old count.

    Parameters
    ----------
    threads : int or None
        Number of threads, between 1 and ``numba.config.NUMBA_NUM_THREADS``.
        ``None`` leaves the current setting alone.
    """
    if threads is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(previous)

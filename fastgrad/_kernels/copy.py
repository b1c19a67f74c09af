"""Copies and finiteness scans of large arrays, in parallel.

Every call starts with copying the caller's parameters and batch (fastgrad
never works on, or returns, the caller's arrays). Done by NumPy on one
thread, that copy, the scan for NaN/inf and the first touch of the new
pages cost as much as the rest of a small check.
"""

import math

from numba import prange

from ._jit import jit


@jit(parallel=True)
def copy_count_nonfinite(src, dst):
    """Copy ``src`` into ``dst`` (both 1-D, the same length); return how many entries are NaN or infinite."""
    bad = 0
    for i in prange(src.shape[0]):
        x = src[i]
        dst[i] = x
        if not math.isfinite(x):
            bad += 1
    return bad


@jit(parallel=True)
def count_nonfinite(x):
    """How many entries of the 1-D ``x`` are NaN or infinite."""
    bad = 0
    for i in prange(x.shape[0]):
        if not math.isfinite(x[i]):
            bad += 1
    return bad

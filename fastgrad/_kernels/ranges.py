"""Splitting index ranges into contiguous chunks for ``prange``."""

import numpy as np

from ._jit import jit


@jit()
def chunk_bounds(start, stop, n_chunks):
    """Split ``[start, stop)`` into ``n_chunks`` contiguous, near-equal ranges.

    Parameters
    ----------
    start, stop : int
        The index range, ``start <= stop``.
    n_chunks : int
        Number of chunks, >= 1.

    Returns
    -------
    bounds : ndarray of int64, shape (n_chunks + 1,)
        Chunk ``c`` is ``[bounds[c], bounds[c + 1])``; empty chunks are allowed.
    """
    bounds = np.empty(n_chunks + 1, dtype=np.int64)
    total = stop - start
    base = total // n_chunks
    extra = total % n_chunks
    bounds[0] = start
    for c in range(n_chunks):
        bounds[c + 1] = bounds[c] + base + (1 if c < extra else 0)
    return bounds

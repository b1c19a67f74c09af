"""Per-parameter central differences, by full recomputation of the loss."""

import numpy as np
from numba import prange

from ._jit import jit
from .loss import batch_loss


@jit(parallel=True)
def central_diff_full(theta, layout, loss_code, X, Y, eps, order, bounds, n_units, out):
    """Central differences ``(E(w + eps) - E(w - eps)) / (2 eps)`` of chosen parameters.

    Parameters
    ----------
    theta : ndarray of float64, shape (P,)
        Flat parameters; read only (each chunk perturbs its own copy).
    layout : ndarray of int64, shape (L, N_COLS)
    loss_code : int
    X : ndarray of float64, shape (N, D)
    Y : ndarray of float64, shape (N, K)
    eps : float
        Step, > 0.
    order : ndarray of int64
        Flat parameter indices.
    bounds : ndarray of int64, shape (n_chunks + 1,)
        Chunk ``c`` handles ``order[bounds[c]:bounds[c + 1]]``; any chunking
        gives the same result.
    n_units : int
        Width ``U`` of a per-sample activation row.
    out : ndarray of float64, shape (P,)
        Written at ``out[p]`` for every handled parameter ``p``.

    Notes
    -----
    Each chunk owns a copy of ``theta`` and its activation buffers, and each
    derivative goes to its own slot, so threads never share writable memory.
    A perturbed entry is restored by assigning the saved value, and every
    loss is a serial sum over samples in order: the result is bitwise the same
    for any thread count and any ``n_chunks``. Each loss costs a full forward
    pass of the batch: O(N * P) per parameter.
    """
    for c in prange(bounds.shape[0] - 1):
        th = theta.copy()
        z = np.empty((X.shape[0], n_units), dtype=np.float64)
        a = np.empty((X.shape[0], n_units), dtype=np.float64)
        for b in range(bounds[c], bounds[c + 1]):
            p = order[b]
            saved = th[p]
            th[p] = saved + eps
            e_plus = batch_loss(th, layout, loss_code, X, Y, z, a)
            th[p] = saved - eps
            e_minus = batch_loss(th, layout, loss_code, X, Y, z, a)
            th[p] = saved
            out[p] = (e_plus - e_minus) / (2.0 * eps)

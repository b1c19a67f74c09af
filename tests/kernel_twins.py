"""Compiled reference kernels that only the tests use: the plain forms the fast kernels are compared with.

:func:`central_diff_full` is the black-box loop (two whole forward passes of
the batch per parameter); :func:`complex_batch_loss` the complex step done
plainly (a whole complex forward pass over complex128 parameters). They
were in the package, which does not call them.
"""

import numpy as np
from numba import prange

from fastgrad._kernels._jit import jit
from fastgrad._kernels.complex_forward import complex_forward_rows, complex_sample_loss
from fastgrad._kernels.forward import SAMPLE_TILE, forward_rows
from fastgrad._kernels.loss import loss_from_activations
from fastgrad._kernels.losses import loss_scale


@jit()
def batch_loss(theta, layout, loss_code, X, Y, Z, A):
    """Loss ``E`` of the whole batch, serially, using scratch ``Z``/``A`` (N, U); samples summed in order."""
    N = X.shape[0]
    for lo in range(0, N, SAMPLE_TILE):
        forward_rows(theta, layout, X, lo, min(N, lo + SAMPLE_TILE), Z, A)
    return loss_from_activations(Z, A, Y, layout, loss_code)


@jit(parallel=True)
def central_diff_full(theta, layout, loss_code, X, Y, eps, order, bounds, n_units, out):
    """Central differences ``(E(w + eps) - E(w - eps)) / (2 eps)`` of chosen parameters.

    Arguments as :func:`fastgrad._kernels.numgrad.full_differences` (``theta`` read only: each chunk perturbs
    its own copy), with one step ``eps`` (> 0) for every parameter and no method or kink flags.

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


@jit()
def complex_batch_loss(theta_c, layout, loss_code, X, Y, Zc, Ac):
    """Complex loss ``E(theta_c)`` of the batch, serially (the plain version).

    Parameters
    ----------
    theta_c : ndarray of complex128, shape (P,)
        Flat parameters; read only. ``Im E(w + i h e_p) / h`` is the complex
        step derivative of parameter ``p``.
    layout : ndarray of int64, shape (L, N_COLS)
    loss_code : int
    X : ndarray of float64, shape (N, D)
    Y : ndarray of float64, shape (N, K)
    Zc, Ac : ndarray of complex128, shape (N, U)
        Scratch, written: pre-activations and activations (a softmax output
        layer's activations are not written).

    Returns
    -------
    complex
        The loss, scaled as :func:`fastgrad._kernels.loss.loss_scale`.

    Notes
    -----
    Same tiling and summation order as
    :func:`fastgrad._kernels.forward.forward_rows` (bias first, then inputs
    in order, exact zero inputs skipped), samples summed in order, so with
    a real ``theta_c`` the real parts are bitwise the real forward pass.
    """
    N = X.shape[0]
    for lo in range(0, N, SAMPLE_TILE):
        complex_forward_rows(theta_c, layout, X, lo, min(N, lo + SAMPLE_TILE), Zc, Ac)
    total = 0j
    for n in range(N):
        total += complex_sample_loss(Zc[n], Ac[n], Y[n], layout, loss_code)
    return total * loss_scale(loss_code, N)

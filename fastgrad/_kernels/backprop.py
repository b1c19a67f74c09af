"""Backpropagation of the loss through the network."""

from numba import prange

from ._jit import jit
from .activations import derivative
from .codes import ACT, FAN_OUT, U_OFF, W_OFF
from .dense import add_scaled, layer_geometry
from .losses import output_deltas


@jit()
def sample_deltas(theta, layout, loss_code, n_samples, z, a, y, d_out):
    """Write dE/dz for every unit of one sample into ``d_out`` (U,).

    ``z``/``a`` are the sample's cached forward values; ``n_samples`` gives
    the batch-mean scale of ``mse`` and ``cross_entropy``.
    """
    last = layout.shape[0] - 1
    output_deltas(loss_code, z, a, y, layout[last, U_OFF], layout[last, FAN_OUT], layout[last, ACT], n_samples, d_out)
    for l in range(last - 1, -1, -1):
        u_off = layout[l, U_OFF]
        next_off = layout[l + 1, U_OFF]
        next_count = layout[l + 1, FAN_OUT]
        w_next = layout[l + 1, W_OFF]
        act = layout[l, ACT]
        for j in range(layout[l, FAN_OUT]):
            s = 0.0
            row = w_next + j * next_count
            for k in range(next_count):
                s += theta[row + k] * d_out[next_off + k]
            u = u_off + j
            d_out[u] = s * derivative(z[u], a[u], act)


@jit(parallel=True)
def backprop_batch(theta, layout, loss_code, X, Y, Z, A, D_out, grad_out):
    """Gradient of ``E`` with respect to ``theta``.

    Parameters
    ----------
    theta : ndarray of float64, shape (P,)
    layout : ndarray of int64, shape (L, N_COLS)
    loss_code : int
    X : ndarray of float64, shape (N, D)
    Y : ndarray of float64, shape (N, K)
    Z, A : ndarray of float64, shape (N, U)
        Cached forward pass (from ``forward_batch``); read only.
    D_out : ndarray of float64, shape (N, U)
        Scratch, written: dE/dz of every unit and sample.
    grad_out : ndarray of float64, shape (P,)
        Written: the gradient, laid out like ``theta``.

    Notes
    -----
    Deltas are computed in parallel over samples; each gradient entry is a
    sum over samples in order, parallel over rows of ``W``, so the result is
    bitwise independent of the thread count.
    """
    n_samples = X.shape[0]
    for n in prange(n_samples):
        sample_deltas(theta, layout, loss_code, n_samples, Z[n], A[n], Y[n], D_out[n])
    for l in range(layout.shape[0]):
        fan_in, fan_out, w_off, b_off, u_off, prev = layer_geometry(layout, l)
        for i in prange(fan_in):
            row = w_off + i * fan_out
            for j in range(fan_out):
                grad_out[row + j] = 0.0
            for n in range(n_samples):
                ai = X[n, i] if l == 0 else A[n, prev + i]
                add_scaled(grad_out[row:row + fan_out], ai, D_out[n, u_off:u_off + fan_out])
        for j in range(fan_out):
            s = 0.0
            for n in range(n_samples):
                s += D_out[n, u_off + j]
            grad_out[b_off + j] = s

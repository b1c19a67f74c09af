"""Losses: per-sample terms and the batch total."""

import math

from ._jit import jit
from .codes import CROSS_ENTROPY, FAN_OUT, HALF_SSE, MSE, U_OFF
from .forward import SAMPLE_TILE, forward_rows


@jit(inline=True)
def _logsumexp(z, start, count):
    """``log sum_k exp(z_k)`` over ``z[start:start + count]``, shifted by the largest so that nothing overflows."""
    zmax = z[start]
    for k in range(1, count):
        zmax = max(zmax, z[start + k])
    s = 0.0
    for k in range(count):
        s += math.exp(z[start + k] - zmax)
    return zmax + math.log(s)


@jit()
def sample_loss(z, a, y, layout, loss_code):
    """One sample's unscaled loss term.

    For the squared-error losses this is ``sum_k (y_k - x_k)^2``; for
    cross-entropy ``-sum_k y_k log softmax(z)_k``, computed from the output
    pre-activations as ``sum_k y_k (logsumexp(z) - z_k)`` so that no log of
    a rounded-to-zero probability is taken.
    """
    last = layout.shape[0] - 1
    start = layout[last, U_OFF]
    count = layout[last, FAN_OUT]
    total = 0.0
    if loss_code == CROSS_ENTROPY:
        lse = _logsumexp(z, start, count)
        for k in range(count):
            total += y[k] * (lse - z[start + k])
    else:
        for k in range(count):
            r = y[k] - a[start + k]
            total += r * r
    return total


@jit()
def sample_loss_magnitude(z, a, y, layout, loss_code):
    """The size of the numbers one sample's loss term is computed from (for its rounding).

    :func:`sample_loss` rounds at the scale of its operands, not of its
    result: ``lse - z_k`` of a confident classifier is ~1e-7 computed from
    logits of order 1..1e4, and ``(y - x)^2`` of a good fit is a square of a
    difference of two larger numbers. Cross-entropy: ``sum_k |y_k| (|lse| +
    |z_k|)``; squared errors: ``sum_k (2 |y_k - x_k| (|y_k| + |x_k|) +
    (y_k - x_k)^2)``.
    """
    last = layout.shape[0] - 1
    start = layout[last, U_OFF]
    count = layout[last, FAN_OUT]
    total = 0.0
    if loss_code == CROSS_ENTROPY:
        lse = _logsumexp(z, start, count)
        for k in range(count):
            total += abs(y[k]) * (abs(lse) + abs(z[start + k]))
    else:
        for k in range(count):
            r = y[k] - a[start + k]
            total += 2.0 * abs(r) * (abs(y[k]) + abs(a[start + k])) + r * r
    return total


@jit()
def loss_magnitude(Z, A, Y, layout, loss_code):
    """:func:`sample_loss_magnitude` over the batch, scaled like ``E``: the scale of ``E``'s rounding."""
    total = 0.0
    for n in range(Z.shape[0]):
        total += sample_loss_magnitude(Z[n], A[n], Y[n], layout, loss_code)
    return total * loss_scale(loss_code, Z.shape[0])


@jit()
def loss_scale(loss_code, n_samples):
    """Factor turning the sum of sample terms into the loss ``E``."""
    if loss_code == MSE or loss_code == CROSS_ENTROPY:
        return 1.0 / n_samples
    if loss_code == HALF_SSE:
        return 0.5
    return 1.0


@jit()
def batch_loss(theta, layout, loss_code, X, Y, Z, A):
    """Loss ``E`` of the whole batch, serially, using scratch ``Z``/``A`` (N, U).

    Samples are summed in order, so the value does not depend on threads.
    """
    N = X.shape[0]
    for lo in range(0, N, SAMPLE_TILE):
        forward_rows(theta, layout, X, lo, min(N, lo + SAMPLE_TILE), Z, A)
    return loss_from_activations(Z, A, Y, layout, loss_code)


@jit()
def loss_from_activations(Z, A, Y, layout, loss_code):
    """Loss ``E`` from a batch's cached activations (N, U), samples in order."""
    total = 0.0
    for n in range(Z.shape[0]):
        total += sample_loss(Z[n], A[n], Y[n], layout, loss_code)
    return total * loss_scale(loss_code, Z.shape[0])

"""The loss of a batch: per-sample terms (each loss's own, :mod:`.losses`) summed in order, and scaled."""

from ._jit import jit
from .codes import FAN_OUT, U_OFF
from .losses import loss_scale, sample_magnitude, sample_term


@jit(inline=True)
def sample_loss(z, a, y, layout, loss_code):
    """One sample's unscaled loss term (the loss module's ``sample_value`` over the output units).

    For the squared-error losses this is ``sum_k (y_k - x_k)^2``; for
    cross-entropy ``sum_k y_k (logsumexp(z) - z_k)``, from the logits.
    """
    last = layout.shape[0] - 1
    return sample_term(loss_code, z, a, y, layout[last, U_OFF], layout[last, FAN_OUT])


@jit()
def loss_magnitude(Z, A, Y, layout, loss_code):
    """The size of the numbers ``E`` is computed from, scaled like ``E``: the scale of ``E``'s rounding.

    A sample's term rounds at the scale of its operands, not of its result: ``lse - z_k`` of a confident
    classifier is ~1e-7 computed from logits of order 1..1e4, and ``(y - x)^2`` of a good fit is a square of a
    difference of two larger numbers (each loss module's ``sample_magnitude``).
    """
    last = layout.shape[0] - 1
    start, count = layout[last, U_OFF], layout[last, FAN_OUT]
    total = 0.0
    for n in range(Z.shape[0]):
        total += sample_magnitude(loss_code, Z[n], A[n], Y[n], start, count)
    return total * loss_scale(loss_code, Z.shape[0])


@jit()
def loss_from_activations(Z, A, Y, layout, loss_code):
    """Loss ``E`` from a batch's cached activations (N, U), samples in order."""
    total = 0.0
    for n in range(Z.shape[0]):
        total += sample_loss(Z[n], A[n], Y[n], layout, loss_code)
    return total * loss_scale(loss_code, Z.shape[0])

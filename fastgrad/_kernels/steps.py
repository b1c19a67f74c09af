"""Per-parameter steps, in parallel (a serial NumPy pass over a large P costs as much as the check)."""

from numba import prange

from ._jit import jit


@jit(parallel=True)
def parameter_steps_into(theta, eps, scaled, representable, steps_out):
    """Write each parameter's step.

    ``h = eps * max(1, |w|)`` when ``scaled``, else ``eps``; when
    ``representable``, ``h = fl(w + h) - w`` (kept nominal if that vanishes).
    Elementwise, so any thread count gives the same bits.
    """
    for p in prange(theta.shape[0]):
        w = theta[p]
        h = eps * max(1.0, abs(w)) if scaled else eps
        if representable:
            exact = (w + h) - w
            if exact > 0.0:
                h = exact
        steps_out[p] = h

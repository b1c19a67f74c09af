"""Per-parameter steps, in parallel (a serial NumPy pass over a large P costs as much as the check)."""

from numba import prange

from ._jit import jit


@jit(inline=True)
def step_size(w, eps, scaled, representable):
    """The step of a parameter of value ``w``.

    ``h = eps * max(1, |w|)`` when ``scaled``, else ``eps``; when
    ``representable``, ``h = fl(w + h) - w`` (kept nominal if that vanishes).
    """
    h = eps * max(1.0, abs(w)) if scaled else eps
    if representable:
        exact = (w + h) - w
        if exact > 0.0:
            h = exact
    return h


@jit(parallel=True)
def parameter_steps_into(theta, eps, scaled, representable, steps_out):
    """Write each parameter's step (:func:`step_size`) into ``steps_out``.

    Elementwise, so any thread count gives the same bits.
    """
    for p in prange(theta.shape[0]):
        steps_out[p] = step_size(theta[p], eps, scaled, representable)

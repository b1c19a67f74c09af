"""What the activation modules share: the Taylor range and the polynomial inside it.

Not an activation (the registry in ``__init__`` skips modules whose name starts with ``_``).
"""

from .._jit import jit

#: Largest ``|d|`` for which a smooth activation's change ``f(z + d) - f(z)`` is its Taylor polynomial to
#: ``d**4`` (the fifth-order remainder is below ``2e-17`` of the first-order term there).
SERIES_MAX = 1e-4
#: Number of Taylor coefficients kept per unit and sample.
N_COEF = 4
#: Largest argument for which ``exp``/``expm1`` are used as they are (``exp(709.78...)`` overflows float64).
EXP_MAX = 709.0


@jit(inline=True)
def polynomial(d, c1, c2, c3, c4):
    """``c1 d + c2 d^2 + c3 d^3 + c4 d^4`` (Horner): a smooth activation's change for ``|d| <= SERIES_MAX``."""
    return d * (c1 + d * (c2 + d * (c3 + d * c4)))


@jit(inline=True)
def change_limit(z, bound):
    """Largest ``|s|`` keeping a change ``|d| <= |s| bound`` in a smooth activation's series range."""
    return SERIES_MAX / bound

"""``relu``: ``max(z, 0)``; ``relu'(0) = 0``."""

from .._jit import jit
from . import _piecewise

CODE = 3
NAME = "relu"
#: The derivative jumps at 0: a step across it gets the kink verdict.
KINK = True


@jit(inline=True)
def value(z):
    """The activation."""
    return _piecewise.value(z, 0.0)


@jit(inline=True)
def derivative(z, a):
    """The slope of the piece z is on."""
    return _piecewise.derivative(z, 0.0)


@jit(inline=True)
def taylor(z, a):
    """f^(m)(z) / m! for m = 1..4: the piece's slope, then zeros."""
    return _piecewise.derivative(z, 0.0), 0.0, 0.0, 0.0


@jit(inline=True)
def change(z, d, c1, c2, c3, c4):
    """f(z + d) - f(z), piece by piece."""
    return _piecewise.change(z, d, 0.0)


@jit(inline=True)
def change_limit(z, bound):
    """Half the distance to the kink, in units of bound."""
    return _piecewise.change_limit(z, bound)


@jit(inline=True)
def complex_value(x, y):
    """The piece the real part is on."""
    return _piecewise.complex_value(x, y, 0.0)

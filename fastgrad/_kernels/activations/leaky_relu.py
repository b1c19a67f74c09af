"""``leaky_relu``: ``z`` above 0, ``0.01 z`` at or below; ``leaky_relu'(0) = 0.01``."""

from .._jit import jit
from . import _piecewise

CODE = 4
NAME = "leaky_relu"
#: The derivative jumps at 0: a step across it gets the kink verdict.
KINK = True
#: Slope for negative inputs.
SLOPE = 0.01


@jit(inline=True)
def value(z):
    """The activation."""
    return _piecewise.value(z, SLOPE)


@jit(inline=True)
def derivative(z, a):
    """The slope of the piece z is on."""
    return _piecewise.derivative(z, SLOPE)


@jit(inline=True)
def taylor(z, a):
    """f^(m)(z) / m! for m = 1..4: the piece's slope, then zeros."""
    return _piecewise.derivative(z, SLOPE), 0.0, 0.0, 0.0


@jit(inline=True)
def change(z, d, c1, c2, c3, c4):
    """f(z + d) - f(z), piece by piece."""
    return _piecewise.change(z, d, SLOPE)


@jit(inline=True)
def change_limit(z, bound):
    """Half the distance to the kink, in units of bound."""
    return _piecewise.change_limit(z, bound)


@jit(inline=True)
def complex_value(x, y):
    """The piece the real part is on."""
    return _piecewise.complex_value(x, y, SLOPE)

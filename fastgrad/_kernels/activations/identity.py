"""``identity``: ``f(z) = z``."""

import math

from .._jit import jit

CODE = 0
NAME = "identity"
#: ``f(z + d) - f(z)`` is ``d`` itself.
LINEAR = True


@jit(inline=True)
def value(z):
    """``z``."""
    return z


@jit(inline=True)
def derivative(z, a):
    """1."""
    return 1.0


@jit(inline=True)
def taylor(z, a):
    """``f^(m)(z) / m!`` for m = 1..4."""
    return 1.0, 0.0, 0.0, 0.0


@jit(inline=True)
def change(z, d, c1, c2, c3, c4):
    """``f(z + d) - f(z)``, exactly."""
    return d


@jit(inline=True)
def change_limit(z, bound):
    """Largest ``|s|`` keeping a change ``|d| <= |s| bound`` in the series' range: no limit."""
    return math.inf


@jit(inline=True)
def complex_value(x, y):
    """``f(x + i y)`` as ``(re, im)``."""
    return x, y

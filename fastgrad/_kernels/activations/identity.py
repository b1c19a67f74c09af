"""``identity``: ``f(z) = z``."""

import math

from .._jit import jit

CODE = 0
NAME = "identity"
#: ``f(z + d) - f(z)`` is ``d`` itself.
LINEAR = True
#: The derivative jumps at 0 (a step across it gets the kink verdict).
KINK = False
#: The change's Taylor polynomial holds only on one side of 0 (the series must not step across it).
PIECEWISE = False
#: Every change ``|d| <= SERIES_MAX`` is the Taylor polynomial, wherever ``z`` is.
SERIES = False
#: Absolute error, in roundoffs, of the derivative a user's backprop computes (exact here).
SLACK = 0.0
#: No curvature: the derivative does not inherit the pre-activation's rounding.
CURVED = False


@jit()
def value(z):
    """``z``."""
    return z


@jit()
def derivative(z, a):
    """1."""
    return 1.0


@jit()
def taylor(z, a):
    """``f^(m)(z) / m!`` for m = 1..4."""
    return 1.0, 0.0, 0.0, 0.0


@jit()
def change(z, d, c1, c2, c3, c4):
    """``f(z + d) - f(z)``, exactly."""
    return d


@jit()
def change_limit(z, bound):
    """Largest ``|s|`` keeping a change ``|d| <= |s| bound`` in the series' range: no limit."""
    return math.inf


@jit()
def complex_value(x, y):
    """``f(x + i y)`` as ``(re, im)``."""
    return x, y

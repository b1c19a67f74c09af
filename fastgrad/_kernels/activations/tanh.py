"""``tanh``: ``f(z) = tanh(z) = 2 sigmoid(2 z) - 1``."""

import math

from .._jit import jit
from . import _series
from .sigmoid import exact_change as sigmoid_change
from .sigmoid import value as sigmoid

CODE = 2
NAME = "tanh"
SERIES = True
#: ``1 - t^2`` formed from the activation loses relative accuracy in saturation.
SLACK = 1.0
#: Curved: its derivative inherits a relative error of up to 2 u s from a pre-activation rounded at scale s.
CURVED = True


@jit(inline=True)
def value(z):
    """``tanh(z)``."""
    return math.tanh(z)


@jit(inline=True)
def derivative(z, a):
    """``1 - t^2`` from the activation ``a = t``."""
    return 1.0 - a * a


@jit(inline=True)
def taylor(z, a):
    """``f^(m)(z) / m!`` for m = 1..4; ``1 - tanh^2`` as ``4 s(2z) s(-2z)``, accurate in saturation."""
    t = a
    t1 = 4.0 * sigmoid(2.0 * z) * sigmoid(-2.0 * z)
    return t1, -t * t1, t1 * (6.0 * t * t - 2.0) / 6.0, t * t1 * (16.0 - 24.0 * t * t) / 24.0


@jit(inline=True)
def exact_change(z, d):
    """``f(z + d) - f(z)`` for any ``d``, as ``2 (s(2(z+d)) - s(2z))`` (sigmoid's cancellation-free change)."""
    # 2z and 2d may overflow to inf: s(+-inf) is 1 or 0, the limit
    return 2.0 * sigmoid_change(2.0 * z, 2.0 * d, 2.0 * (z + d))


change_limit = _series.change_limit


@jit(inline=True)
def complex_value(x, y):
    """``tanh(x + i y)`` as ``(re, im)``; ``y == 0`` gives the real value exactly.

    ``tanh(x + i y) = (t + i s) / (1 + i t s)``, ``t = tanh x``,
    ``s = tan y``, i.e. ``(t (1 + s^2) + i s sech^2 x) / (1 + t^2 s^2)``,
    with ``sech^2 x = 4 e / (1 + e)^2``, ``e = exp(-2|x|)``.
    """
    if y == 0.0:
        return math.tanh(x), 0.0
    t = math.tanh(x)
    s = math.tan(y)
    e = math.exp(-2.0 * abs(x))
    sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e))
    den = 1.0 + (t * s) * (t * s)
    return t * (1.0 + s * s) / den, s * sech2 / den

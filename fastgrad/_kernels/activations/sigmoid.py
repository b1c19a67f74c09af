"""``sigmoid``: the logistic function ``f(z) = 1 / (1 + exp(-z))``."""

import math

from .._jit import jit
from . import _series

CODE = 1
NAME = "sigmoid"
SERIES = True
#: ``s (1 - s)`` formed from the activation loses relative accuracy in saturation: about one roundoff absolute.
SLACK = 1.0
#: Curved: its derivative inherits a relative error of up to 2 u s from a pre-activation rounded at scale s.
CURVED = True


@jit(inline=True)
def value(z):
    """Logistic function, without overflow for large ``|z|``."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@jit(inline=True)
def derivative(z, a):
    """``s (1 - s)`` from the activation ``a = s``."""
    return a * (1.0 - a)


@jit(inline=True)
def taylor(z, a):
    """``f^(m)(z) / m!`` for m = 1..4, from ``s = sigmoid(z)`` and ``q = sigmoid(-z)`` (each computed directly).

    ``s q`` keeps its relative accuracy in saturation, where ``1 - s`` would not.
    """
    s = a
    q = value(-z)
    s1 = s * q
    return s1, s1 * (q - s) / 2.0, s1 * (1.0 - 6.0 * s1) / 6.0, s1 * (q - s) * (1.0 - 12.0 * s1) / 24.0


@jit(inline=True)
def exact_change(z, d, zd=math.nan):
    """``s(z + d) - s(z)`` for any ``d``, finite for any finite ``z``, ``d``.

    ``s(z+d) - s(z) = -expm1(-d) s(-z) s(z+d) = expm1(d) s(z) s(-(z+d))``:
    the first form for ``d > 0``, the second for ``d < 0``, so that the
    ``expm1`` factor is in (-1, 0) and every factor is at most 1 in size
    (the other choice overflows for ``|d| > 709``, giving inf * 0, and loses
    digits to a subnormal ``s`` long before). Each factor has a small
    relative error. ``zd``: ``z + d`` as the caller rounded it (NaN:
    ``fl(z + d)``).
    """
    if math.isnan(zd):
        zd = z + d
    if d > 0.0:
        return -math.expm1(-d) * value(-z) * value(zd)
    return math.expm1(d) * value(z) * value(-zd)


change_limit = _series.change_limit


@jit(inline=True)
def complex_value(x, y):
    """``f(x + i y)`` as ``(re, im)``; ``y == 0`` gives the real value exactly.

    With ``q = exp(-|x|)`` and ``u = q (cos y +- i sin y)`` (never overflows):
    ``1 / (1 + exp(-z))`` for ``x >= 0``, ``exp(z) / (1 + exp(z))`` for
    ``x < 0``; both have imaginary part ``q sin y / |1 + u|^2``.
    """
    if y == 0.0:
        return value(x), 0.0
    q = math.exp(-abs(x))
    c = q * math.cos(y)
    s = q * math.sin(y)
    den = (1.0 + c) * (1.0 + c) + s * s
    if x >= 0.0:
        return (1.0 + c) / den, s / den
    return (c + q * q) / den, s / den

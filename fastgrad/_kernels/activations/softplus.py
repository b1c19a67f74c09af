"""``softplus``: ``f(z) = log(1 + exp(z))``."""

import math

from .._jit import jit
from . import _series
from ._series import EXP_MAX
from .sigmoid import value as sigmoid

CODE = 5
NAME = "softplus"
SERIES = True
#: Its derivative ``sigmoid(z)`` is usually computed on its own, but may be formed as ``1 - sigmoid(-z)``.
SLACK = 1.0
#: Curved: its derivative inherits a relative error of up to 2 u s from a pre-activation rounded at scale s.
CURVED = True


@jit(inline=True)
def value(z):
    """``log(1 + exp(z))`` without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@jit(inline=True)
def derivative(z, a):
    """``sigmoid(z)``."""
    return sigmoid(z)


@jit(inline=True)
def taylor(z, a):
    """``f^(m)(z) / m!`` for m = 1..4, from ``s = sigmoid(z)`` and ``q = sigmoid(-z)`` (each computed directly)."""
    s = sigmoid(z)
    q = sigmoid(-z)
    s1 = s * q
    return s, s1 / 2.0, s1 * (q - s) / 6.0, s1 * (1.0 - 6.0 * s1) / 24.0


@jit(inline=True)
def exact_change(z, d):
    """``softplus(z + d) - softplus(z)`` for any ``d``, without cancellation or overflow."""
    if d > EXP_MAX or (d > 0.0 and z < -EXP_MAX):
        # expm1(d) overflows, or s(z) has underflowed (to a subnormal or 0,
        # although s(z) expm1(d) may be large). Then either the change is
        # d plus at most log 2 in size (z > 0), or the old value is below
        # log 2 and e^(z + d) / e^z-fold smaller than the new one: no
        # cancellation either way.
        if z > 0.0:
            return d + (math.log1p(math.exp(-(z + d))) - math.log1p(math.exp(-z)))
        return value(z + d) - value(z)
    # softplus(z+d) - softplus(z) = log1p(s(z) * expm1(d)); |x| < 8.3e307
    x = sigmoid(z) * math.expm1(d)
    if x > -0.5:
        return math.log1p(x)
    # x near -1 (d << 0, z >> 0) would cancel inside log1p; the change is
    # then at least log(2) in size. With softplus(u) = u + softplus(-u):
    if z > 0.0 and z + d > 0.0:
        return d + (math.log1p(math.exp(-(z + d))) - math.log1p(math.exp(-z)))
    return value(z + d) - value(z)


change_limit = _series.change_limit


@jit(inline=True)
def _clog1p(ur, ui):
    """``log(1 + u)`` for complex ``u = ur + i ui`` with ``|u| <= 1``, as ``(re, im)``.

    ``|1 + u|^2 = 1 + ur (2 + ur) + ui^2``, so the real part is a ``log1p``
    and stays accurate when ``|u|`` is tiny.
    """
    return 0.5 * math.log1p(ur * (2.0 + ur) + ui * ui), math.atan2(ui, 1.0 + ur)


@jit(inline=True)
def complex_value(x, y):
    """``log(1 + exp(x + i y))`` as ``(re, im)``; ``y == 0`` gives the real value exactly.

    ``log1p(exp(z))`` for ``x <= 0``; ``z + log1p(exp(-z))`` for ``x > 0``.
    """
    if y == 0.0:
        return value(x), 0.0
    q = math.exp(-abs(x))
    if x > 0.0:
        lr, li = _clog1p(q * math.cos(y), -q * math.sin(y))
        return x + lr, y + li
    return _clog1p(q * math.cos(y), q * math.sin(y))

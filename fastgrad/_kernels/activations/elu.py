"""``elu`` (alpha = 1): ``f(z) = z`` for ``z > 0``, ``exp(z) - 1`` at or below.

Its derivative is continuous at 0 (1 on both sides), so a step across 0 is
no kink: the central difference still converges, at first order in the
step there (``f''`` jumps from 1 to 0), which its truncation estimate
(``|D(h) - D(2h)| / 3``) sees. Its Taylor series hold on one side of 0
only, so the series engine keeps every step on one side (its
``change_limit``) and the direct path takes the rest.
"""

import math

from .._jit import jit
from ._series import SERIES_MAX

CODE = 7
NAME = "elu"
#: A backprop forms the derivative as ``a + 1`` or ``exp(z)``: about one roundoff of 1 absolute.
SLACK = 1.0
#: Curved below 0: its derivative inherits a relative error of up to ``u s`` from the pre-activation's rounding.
CURVED = True


@jit(inline=True)
def value(z):
    """``z`` above 0, ``expm1(z)`` at or below."""
    return z if z > 0.0 else math.expm1(z)


@jit(inline=True)
def derivative(z, a):
    """1 above 0, ``exp(z)`` at or below (not ``a + 1``, which loses ``exp(z)``'s digits for ``z << 0``)."""
    return 1.0 if z > 0.0 else math.exp(z)


@jit(inline=True)
def taylor(z, a):
    """``f^(m)(z) / m!`` for m = 1..4 on ``z``'s side of 0."""
    if z > 0.0:
        return 1.0, 0.0, 0.0, 0.0
    e = math.exp(z)
    return e, e / 2.0, e / 6.0, e / 24.0


@jit(inline=True)
def change(z, d, c1, c2, c3, c4):
    """``f(z + d) - f(z)`` without cancellation or overflow, for any ``d``.

    Both at or below 0: ``e^(z+d) - e^z``, as ``expm1(d) e^z`` for ``d < 0``
    and ``-expm1(-d) e^(z+d)`` for ``d > 0`` (a factor in (-1, 1) times one
    at most 1: nothing overflows, nothing cancels). Across 0 the two pieces
    have opposite signs, so their difference does not cancel either.
    """
    zn = z + d
    if z > 0.0 and zn > 0.0:
        return d
    if z <= 0.0 and zn <= 0.0:
        if d > 0.0:
            return -math.expm1(-d) * math.exp(zn)
        return math.expm1(d) * math.exp(z)
    return value(zn) - value(z)


@jit(inline=True)
def change_limit(z, bound):
    """Largest ``|s|`` keeping a change ``|d| <= |s| bound`` in the range of the series at ``z``.

    Half the distance to 0 (the series stay on ``z``'s side); below 0, where ``exp`` curves, also within
    ``SERIES_MAX`` like any smooth activation (above 0 the piece is linear: its series are exact).
    """
    if z > 0.0:
        return 0.5 * z / bound
    return min(0.5 * abs(z), SERIES_MAX) / bound


@jit(inline=True)
def complex_value(x, y):
    """``f(x + i y)`` as ``(re, im)``: the piece the real part is on; ``y == 0`` gives the real value exactly.

    Below 0, ``exp(x + i y) - 1 = (expm1(x) cos y - 2 sin^2(y / 2)) + i e^x sin y``
    (``cos y - 1`` written without cancellation).
    """
    if x > 0.0:
        return x, y
    if y == 0.0:
        return math.expm1(x), 0.0
    half = math.sin(0.5 * y)
    return math.expm1(x) * math.cos(y) - 2.0 * half * half, math.exp(x) * math.sin(y)

"""What relu and leaky_relu share: a piecewise-linear ``f(z) = z`` for ``z > 0``, ``slope z`` below.

Not an activation (the registry in ``__init__`` skips modules whose name starts with ``_``). At ``z == 0``
the left piece holds: ``relu'(0) = 0``, ``leaky_relu'(0) = slope`` (the ``z > 0`` test decides).
"""

from .._jit import jit


@jit(inline=True)
def value(z, slope):
    """``z`` above 0, ``slope z`` at or below (``+0.0`` for relu: not ``0 * z``, whose sign follows ``z``)."""
    if z > 0.0:
        return z
    return 0.0 if slope == 0.0 else slope * z


@jit(inline=True)
def derivative(z, slope):
    """1 above 0, ``slope`` at or below."""
    return 1.0 if z > 0.0 else slope


@jit(inline=True)
def change(z, d, slope):
    """``f(z + d) - f(z)`` exactly (within 2 ulp when the step crosses 0: the two pieces are rounded separately)."""
    zn = z + d
    if z > 0.0 and zn > 0.0:
        return d
    if z <= 0.0 and zn <= 0.0:
        return slope * d
    return value(zn, slope) - value(z, slope)


@jit(inline=True)
def change_limit(z, bound):
    """Largest ``|s|`` keeping a change ``|d| <= |s| bound`` on ``z``'s side of the kink: half the distance."""
    return 0.5 * abs(z) / bound


@jit(inline=True)
def complex_value(x, y, slope):
    """``f(x + i y)``: the piece the real part is on (the left one at ``x == 0``)."""
    if x > 0.0:
        return x, y
    if slope == 0.0:
        return 0.0, 0.0
    return slope * x, slope * y

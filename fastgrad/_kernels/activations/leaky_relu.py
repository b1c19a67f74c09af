"""``leaky_relu``: ``z`` above 0, ``slope z`` at or below; ``leaky_relu'(0) = slope`` (0.01 unless chosen).

The slope is a parameter of the activation, and it travels in the
activation's code, so that every kernel that dispatches on a code (dozens
of call sites, see :mod:`fastgrad._kernels.activations`) serves any slope
without another argument: ``CODE`` (4) is the default slope 0.01; any
other slope ``s`` is the code ``encode(s)``, the bit pattern of the float64
``s``, which for a positive normal float is at least ``2**52`` and so never
collides with a small code (``CODE_TEST``). The kernels decode it exactly
(:func:`slope_of`): the slope the forward pass uses is bit for bit the
float the user gave.
"""

import math

import numpy as np

from .._jit import jit
from . import _piecewise

CODE = 4
NAME = "leaky_relu"
#: The derivative jumps at 0: a step across it gets the kink verdict.
KINK = True
#: Slope for negative inputs of the default code.
SLOPE = 0.01
#: Codes at least this large are slopes' bit patterns (every positive normal float64's is).
PARAM_CODES = 1 << 52
#: The registry's extra test: such a code is this activation with its slope.
CODE_TEST = f"code >= {PARAM_CODES}"


def encode(slope: float) -> int:
    """The activation code of ``leaky_relu`` with this slope (``ValueError`` unless a positive normal float)."""
    s = float(slope)
    if not (math.isfinite(s) and s >= float(np.finfo(np.float64).tiny)):
        hint = " (slope 0 is hidden='relu')" if s == 0.0 else ""
        raise ValueError(f"leaky_slope must be a positive finite float (a normal float64), got {slope!r}{hint}")
    if s == SLOPE:
        return CODE
    return int(np.float64(s).view(np.int64))


def base_code(code: int) -> int:
    """``CODE`` for any of this activation's codes (the registries' tables are keyed by it)."""
    return CODE if code >= PARAM_CODES else code


@jit(inline=True)
def slope_of(code):
    """The slope a code stands for: ``SLOPE`` for ``CODE``, else the float whose bit pattern the code is.

    Rebuilt exactly from sign-free fields: ``(1 + m / 2**52) * 2**(e - 1023)``
    (the mantissa fraction and the sum are exact in float64, and so is
    ``ldexp``).
    """
    if code == CODE:
        return SLOPE
    m = code & ((1 << 52) - 1)
    e = (code >> 52) & 0x7FF
    return math.ldexp(1.0 + m / 4503599627370496.0, e - 1023)


@jit(inline=True)
def value(z, code):
    """The activation."""
    return _piecewise.value(z, slope_of(code))


@jit(inline=True)
def derivative(z, a, code):
    """The slope of the piece z is on."""
    return _piecewise.derivative(z, slope_of(code))


@jit(inline=True)
def taylor(z, a, code):
    """f^(m)(z) / m! for m = 1..4: the piece's slope, then zeros."""
    return _piecewise.derivative(z, slope_of(code)), 0.0, 0.0, 0.0


@jit(inline=True)
def change(z, d, c1, c2, c3, c4, code):
    """f(z + d) - f(z), piece by piece."""
    return _piecewise.change(z, d, slope_of(code))


@jit(inline=True)
def change_limit(z, bound):
    """Half the distance to the kink, in units of bound."""
    return _piecewise.change_limit(z, bound)


@jit(inline=True)
def complex_value(x, y, code):
    """The piece the real part is on."""
    return _piecewise.complex_value(x, y, slope_of(code))

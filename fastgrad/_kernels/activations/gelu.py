"""``gelu`` (exact, erf form): ``f(z) = z Phi(z)``, ``Phi(z) = erfc(-z / sqrt 2) / 2`` the normal CDF.

Non-monotone: a minimum ``f(-0.7518) = -0.1700``; ``f'`` ranges over
``[-0.129, 1.129]`` (above 1 near ``z = 1.4``). Nothing in the engines
assumes ``|f'| <= 1`` or a sign of ``f'`` (they use ``|f'| + SLACK`` as a
size), and ``|f''| <= 2 phi(0) = 0.80`` keeps the ``CURVED`` bound of
:mod:`fastgrad._kernels.rounding` (``|f''| <= 2 (|f'| + SLACK)``).

Accuracy, with ``phi`` the normal density: ``z^2`` and ``z / sqrt 2`` are
formed with their rounding errors recovered (Dekker's exact product), so
``phi(z)`` and ``Phi(z)`` keep a few ulps of relative accuracy for the
exact float ``z`` (rounding the argument alone would cost ``u z^2``
relatively, ~1400 ulps at ``z = -38``). Below ``z ~ -38.5`` ``phi``
underflows to 0 and ``Phi`` goes subnormal, then 0: gelu saturates to ``-0.0``
gracefully, never NaN.
"""

import math

import numpy as np

from .._jit import jit
from . import _series

CODE = 8
NAME = "gelu"
SERIES = True
#: A backprop forms ``Phi(z) + z phi(z)`` with ``Phi = (1 + erf(z / sqrt 2)) / 2``, which loses ``Phi``'s digits
#: for ``z << 0``: about one roundoff of 1 absolute (like ``s (1 - s)`` for sigmoid).
SLACK = 1.0
#: Curved: its derivative inherits the pre-activation's rounding; ``|f''| <= 0.80`` (see the module docstring).
CURVED = True

#: ``1 / sqrt 2`` as a double-double: its low part recovers what rounding ``z / sqrt 2`` loses.
_RSQRT2_HI = 0.7071067811865476
_RSQRT2_LO = -4.833646656726457e-17
#: ``1 / sqrt(2 pi)`` and ``sqrt 2``.
_RSQRT_2PI = 0.3989422804014327
_SQRT2 = 1.4142135623730951
#: Beyond this ``|z|``, ``exp(-z^2 / 2)`` is 0 in float64 (``z^2 / 2 > 745.2``); below it Dekker's split is in range.
_PDF_ZERO = 39.0
#: Veltkamp's splitter for float64 (2^27 + 1): splits a double into two 26-bit halves.
_SPLIT = 134217729.0
#: Gauss-Legendre rule (12 nodes on [-1, 1]) for ``Phi(z + d) - Phi(z)`` over a short span (see ``cdf_change``).
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(12)


@jit(inline=True)
def _product_error(a, b, p):
    """``a b - p`` exactly, for ``p = fl(a b)`` (Dekker's two-product; ``|a|, |b| < 1e150``)."""
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


@jit(inline=True)
def pdf(z):
    """``phi(z) = exp(-z^2 / 2) / sqrt(2 pi)``, with ``z^2 = hi + lo`` exact: ``exp(-hi/2) (1 - lo/2)``.

    ``hi / 2`` is exact, so the only roundings are ``exp``'s and a few
    multiplications: a few ulps, where ``exp(-fl(z^2) / 2)`` would be off by up
    to ``u z^2 / 2`` relatively.
    """
    if not abs(z) < _PDF_ZERO:  # also NaN: 0 * ... would hide it, but the caller's value() carries the NaN
        return 0.0
    hi = z * z
    lo = _product_error(z, z, hi)
    return _RSQRT_2PI * (math.exp(-0.5 * hi) * (1.0 - 0.5 * lo))


@jit(inline=True)
def cdf(z):
    """``Phi(z) = erfc(-z / sqrt 2) / 2``, relatively accurate for the exact ``z`` in both tails.

    ``z / sqrt 2 = s + e`` with ``s = fl(z * RSQRT2_HI)`` and ``e`` its
    recovered rounding (plus the constant's low part); ``erfc`` is taken at
    ``s`` and the first-order correction ``e sqrt(2) phi(z)`` added
    (``dPhi = phi dz``; the second-order term is ``~ z e^2 phi``, below 1e-30
    relatively). ``erfc`` of a large positive argument underflows gracefully.
    """
    s = z * _RSQRT2_HI
    base = 0.5 * math.erfc(-s)
    if not abs(z) < _PDF_ZERO:
        return base
    e = _product_error(z, _RSQRT2_HI, s) + z * _RSQRT2_LO
    return base + e * _SQRT2 * pdf(z)


@jit(inline=True)
def value(z):
    """``z Phi(z)``; ``Phi`` is 1 for ``z >> 0`` and 0 for ``z << 0``, so nothing overflows.

    Where ``Phi`` has underflowed to 0 the value is ``-0.0`` (``-inf * 0`` would be NaN for ``z = -inf``).
    """
    p = cdf(z)
    if p == 0.0:
        return -0.0
    return z * p


@jit(inline=True)
def derivative(z, a):
    """``Phi(z) + z phi(z)`` (``phi(z) = 0`` for ``|z| >= 39``, so ``z phi`` never overflows).

    The two terms cancel only near the minimum (``f'(-0.7518) = 0``): an
    absolute error of a few ulps of ``Phi(z) + |z| phi(z)``; elsewhere relative.
    """
    return cdf(z) + z * pdf(z)


@jit(inline=True)
def taylor(z, a):
    """``f^(m)(z) / m!`` for m = 1..4: ``phi`` times a polynomial (``f'' = phi (2 - z^2)``, ...).

    ``f''' = phi (z^3 - 4 z)``, ``f'''' = phi (-z^4 + 7 z^2 - 4)``. In the
    tails ``phi`` carries the size and the polynomial's leading term dominates
    (no cancellation); each polynomial cancels only near its own roots, where
    the error stays a few ulps of ``phi`` times the sum of its terms' sizes.
    """
    p = pdf(z)
    if p == 0.0:  # |z| >= 39: phi is 0, and z^2 may overflow (0 * inf would be NaN)
        return cdf(z), 0.0, 0.0, 0.0
    z2 = z * z
    c1 = cdf(z) + z * p
    c2 = 0.5 * p * (2.0 - z2)
    c3 = p * z * (z2 - 4.0) / 6.0
    c4 = p * ((7.0 - z2) * z2 - 4.0) / 24.0
    return c1, c2, c3, c4


@jit(inline=True)
def _quadrature_change(z, d):
    """``Phi(z + d) - Phi(z)`` as ``phi(z) int_0^d exp(-t (z + t / 2)) dt`` by Gauss-Legendre.

    For a span ``|d| max(|z|, |z + d|, 1) <= 1`` the exponent moves by at most
    about 1.5 over the interval: 12 nodes integrate it to far below a roundoff
    (measured against mpmath in tests/test_gelu_silu.py). ``z`` enters only
    exactly (``phi(z)``) and through ``t z`` (at most ~1, rounded relatively),
    so the result has a few ulps of relative error, where the difference of two
    ``erfc`` values would lose the digits the two share.
    """
    half = 0.5 * d
    total = 0.0
    for k in range(_GL_NODES.shape[0]):
        t = half * (1.0 + _GL_NODES[k])
        total += _GL_WEIGHTS[k] * math.exp(-t * (z + 0.5 * t))
    return pdf(z) * (half * total)


@jit(inline=True)
def cdf_change(z, d, zd):
    """``Phi(z + d) - Phi(z)`` with a few ulps of relative error (``zd``: ``z + d`` as rounded by the caller).

    * Short span (``|d| max(|z|, |zd|, 1) <= 1``): quadrature of ``phi``.
    * Longer spans on one side of 0: the two tail probabilities on that side,
      ``Q(z) - Q(zd)`` above 0 (``Q(x) = Phi(-x)``) or ``Phi(zd) - Phi(z)``
      below. The smaller tail is then at most ``~e^-1/2`` of the larger (the
      tail shrinks by ``e^-(x dx)`` over ``dx``): they cancel by at most a
      factor ~3.
    * Across 0: ``(erf(zd / sqrt 2) - erf(z / sqrt 2)) / 2``, two terms of
      opposite signs: no cancellation (``erf(t) / t`` is flat, so rounding
      ``t`` costs at most a roundoff).
    """
    span = abs(d) * max(abs(z), abs(zd), 1.0)
    if span <= 1.0:
        return _quadrature_change(z, d)
    if z >= 0.0 and zd >= 0.0:
        return cdf(-z) - cdf(-zd)
    if z <= 0.0 and zd <= 0.0:
        return cdf(zd) - cdf(z)
    return 0.5 * (math.erf(zd * _RSQRT2_HI) - math.erf(z * _RSQRT2_HI))


@jit(inline=True)
def exact_change(z, d):
    """``f(z + d) - f(z)`` for any ``d`` (used for ``|d| > SERIES_MAX``), with ``y = z + d``.

    * ``z``, ``y`` on opposite sides of 0 (or one of them 0): ``f(y)`` and
      ``f(z)`` have opposite signs (``f(x)`` has the sign of ``x``), so
      ``f(y) - f(z)`` adds two sizes: no cancellation.
    * Same side: ``f(y) - f(z) = d Phi(far) + near (Phi(y) - Phi(z))``, with
      ``near`` the end closer to 0 and ``far`` the other (both identities
      ``y Phi(y) - z Phi(z) = d Phi(y) + z dPhi = d Phi(z) + y dPhi`` hold);
      ``dPhi`` from :func:`cdf_change`, relatively accurate. Above 0 both
      terms have the sign of ``d``: no cancellation. Below 0 they have
      opposite signs; their sizes are ``|d| Phi(far) <= |d| Phi(xi)`` and
      ``|near dPhi| = |d| |near| phi(xi) <= |d| |xi| phi(xi)`` for some
      ``xi`` between ``z`` and ``y``, so the error is a few ulps of
      ``|d| max_xi (Phi(xi) + |xi| phi(xi))``: what an error of a few ulps in
      ``f'``'s two terms along the step gives. They cancel only where they
      should, when the step reaches towards the minimum (``f'`` has a root
      there; the exact change may be 0 when ``z`` and ``y`` straddle it);
      in the tail the cancellation factor is ``(|z| + 1) / (|z| - 1)``.

    Nothing overflows: every factor is ``|d|``, ``|z|`` or ``|y|`` times a
    number at most 1.
    """
    zd = z + d
    if (z > 0.0) != (zd > 0.0) or z == 0.0 or zd == 0.0:
        return value(zd) - value(z)
    dphi = cdf_change(z, d, zd)
    if abs(z) <= abs(zd):
        return d * cdf(zd) + z * dphi
    return d * cdf(z) + zd * dphi


change_limit = _series.change_limit


@jit(inline=True)
def complex_value(x, y):
    """``f(x + i y)`` as ``(re, im)`` from the Taylor series at ``x``; ``y == 0`` gives the real value exactly.

    Numba has no complex ``erf``. ``f(x + i y) = f(x) + sum_m c_m (i y)^m``:
    ``re = f(x) - c2 y^2 + c4 y^4``, ``im = c1 y - c3 y^3``, dropping the
    ``c5 y^5`` and ``c6 y^6`` terms: ``c_m ~ phi(x) x^(m-1) / m!`` in the tails
    and ``|c5| <= 0.024``, so they are about ``((|x| + 1) y)^4 / 120`` of
    ``c1 y``. The complex step moves pre-activations by ``|y| <= 1e-20
    max(1, |w|)`` times the chain's derivatives: ~1e-70 of ``c1 y``, far
    below a roundoff. For any ``|(|x| + 1) y| < 1`` they are also
    ``~((|x| + 1) y)^2 / 20`` of the complex step's own truncation ``c3 y^2``,
    which the method's error estimate already has to cover.
    """
    a = value(x)
    if y == 0.0:
        return a, 0.0
    c1, c2, c3, c4 = taylor(x, a)
    y2 = y * y
    return a + y2 * (c4 * y2 - c2), y * (c1 - c3 * y2)

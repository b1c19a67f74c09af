"""``silu`` (swish with beta = 1): ``f(z) = z sigmoid(z)``.

Non-monotone: a minimum ``f(-1.2785) = -0.2785``; ``f'`` ranges over
``[-0.100, 1.100]`` (above 1 near ``z = 2.4``). Nothing in the engines
assumes ``|f'| <= 1`` or a sign of ``f'`` (they use ``|f'| + SLACK`` as a
size), and ``|f''| <= 1/2`` keeps the ``CURVED`` bound of
:mod:`fastgrad._kernels.rounding` (``|f''| <= 2 (|f'| + SLACK)``).

Every kernel is built on :mod:`.sigmoid`'s (``s(z)`` and ``s(-z)`` each
computed directly, so ``1 - s`` never loses digits).
"""

from .._jit import jit
from . import _series
from .sigmoid import complex_value as sigmoid_complex
from .sigmoid import exact_change as sigmoid_change
from .sigmoid import taylor as sigmoid_taylor
from .sigmoid import value as sigmoid

CODE = 9
NAME = "silu"
SERIES = True
#: A backprop forms ``s (1 + z (1 - s))`` (PyTorch's silu_backward) with ``1 - s`` from a rounded ``s``: an
#: absolute error of about ``|z| u`` while ``1 - s(z)`` is above a roundoff, measured up to 16 roundoffs (float32,
#: ``z ~ 16.6``) and 36 (float64, ``z ~ 36.7``; tests/test_gelu_silu.py). The budget multiplies ``|f'| + SLACK``
#: by ``L + 2 + sqrt(N) >= 4``: ``4 (1 + 8) = 36`` covers the worst case on its own, before the safety factor.
SLACK = 8.0
#: Curved: its derivative inherits the pre-activation's rounding; ``|f''| <= 1/2`` (see the module docstring).
CURVED = True


@jit(inline=True)
def value(z):
    """``z s(z)``; ``s`` is 0 or 1 in saturation, so nothing overflows (``-0.0`` where ``s(z)`` underflows)."""
    s = sigmoid(z)
    if s == 0.0:
        return -0.0
    return z * s


@jit(inline=True)
def derivative(z, a):
    """``s(z) (1 + z s(-z))``: ``s(-z)`` computed directly, never as ``1 - s(z)``.

    The factor ``1 + z s(-z)`` cancels only near the minimum (its root,
    ``z = -1.2785``); in the left tail it is ``~ 1 + z``, no cancellation.
    ``z s(-z)`` is at most ``|z|`` and ``s(z)`` 0 where ``|z|`` is huge: no
    overflow, ``-0.0`` at ``z = -1e308``.
    """
    return sigmoid(z) * (1.0 + z * sigmoid(-z))


@jit(inline=True)
def taylor(z, a):
    """``f^(m)(z) / m!`` for m = 1..4: ``z s_m + s_(m-1)`` (Leibniz), ``s_m = s^(m)(z) / m!`` (``s_0 = s``).

    Each ``s_m`` is a product of ``s(z) s(-z)`` and a bounded factor, so the
    two terms have the same size in both tails, ``~ e^-|z| (|z| +- m) / m!``:
    they cancel only near the coefficient's roots (``z ~ -m`` or ``z ~ m``),
    leaving a few ulps of ``(|z| + 1) s(z) s(-z)`` there.
    """
    s = sigmoid(z)
    s1, s2, s3, s4 = sigmoid_taylor(z, s)
    return z * s1 + s, z * s2 + s1, z * s3 + s2, z * s4 + s3


@jit(inline=True)
def exact_change(z, d):
    """``f(z + d) - f(z)`` for any ``d`` (used for ``|d| > SERIES_MAX``), with ``y = z + d``.

    * ``z``, ``y`` on opposite sides of 0 (or one of them 0): ``f(y)`` and
      ``f(z)`` have opposite signs, so ``f(y) - f(z)`` adds two sizes.
    * Same side: ``f(y) - f(z) = d s(far) + near (s(y) - s(z))``, ``near``
      the end closer to 0, ``far`` the other (``y s(y) - z s(z)`` is both
      ``d s(y) + z ds`` and ``d s(z) + y ds``); ``ds`` is
      :func:`.sigmoid.exact_change`, relatively accurate. Above 0 both terms
      have the sign of ``d``: no cancellation. Below 0 they have opposite
      signs; their sizes are ``|d| s(far) <= |d| s(xi)`` and
      ``|near ds| = |d| |near| s'(xi) <= |d| |xi| s'(xi)`` for some ``xi``
      between ``z`` and ``y``: the error is a few ulps of
      ``|d| max_xi (s(xi) + |xi| s'(xi))``, what a few ulps in ``f'``'s two
      terms along the step give. They cancel only towards the minimum
      (``f'`` has a root there; the exact change may be 0 when ``z`` and
      ``y`` straddle it); in the left tail by a factor
      ``(|z| + 1) / (|z| - 1)``.

    Nothing overflows: each term is ``|d|``, ``|z|`` or ``|y|`` times a number at most 1.
    """
    zd = z + d
    if (z > 0.0) != (zd > 0.0) or z == 0.0 or zd == 0.0:
        return value(zd) - value(z)
    ds = sigmoid_change(z, d, zd)
    if abs(z) <= abs(zd):
        return d * sigmoid(zd) + z * ds
    return d * sigmoid(z) + zd * ds


change_limit = _series.change_limit


@jit(inline=True)
def complex_value(x, y):
    """``(x + i y) s(x + i y)`` as ``(re, im)``, exactly from sigmoid's complex value; ``y == 0`` gives the real one.

    ``im = x si + y sr`` cancels only where ``f'(x) = 0`` (``si ~ y s'(x)``):
    a few ulps of ``|y| (s + |x| s')``, as for the real derivative.
    """
    if y == 0.0:
        return value(x), 0.0
    sr, si = sigmoid_complex(x, y)
    if sr == 0.0 and si == 0.0:  # s(x + i y) underflowed (x << 0): 0, not inf * 0
        return -0.0, 0.0
    return x * sr - y * si, x * si + y * sr

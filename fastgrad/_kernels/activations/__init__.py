"""Activations: one module each, and the dispatchers the kernels call with an activation code.

Each activation is one module of this package (``sigmoid.py``, ``elu.py``, ...)
that owns everything about it: ``CODE`` and ``NAME``; its properties, each
False (or 0) when not given: ``KINK`` (the derivative jumps at 0), ``SERIES``
(every change ``|d| <= SERIES_MAX`` is its Taylor polynomial), ``LINEAR``
(``f(z + d) - f(z) = d``), ``SLACK`` (roundoffs of absolute error in a
backprop's derivative), ``CURVED`` (its derivative inherits the
pre-activation's rounding), ``OUTPUT_ONLY``; and the kernels ``value(z)``,
``derivative(z, a)``, ``taylor(z, a)`` (``f^(m)(z) / m!``, m = 1..4),
``change(z, d, c1, c2, c3, c4)`` (``f(z + d) - f(z)`` without
cancellation, given the Taylor coefficients at ``z``; an activation with
``SERIES`` gives ``exact_change(z, d)`` instead, for steps beyond
``SERIES_MAX``, and the dispatcher uses its Taylor polynomial below),
``change_limit(z, bound)`` and ``complex_value(x, y)``. Softmax, which is
not elementwise, has ``layer_value`` instead.

Adding an activation is adding its module (and its NumPy twin in
``tests/reference.py``): this file finds the modules, and
:mod:`fastgrad._kernels._registry` writes each dispatcher below as a chain of ``if code == CODE: return module.fn(...)``
over them, ending in ``raise``, so an unknown code (or a function an
activation does not have, such as softmax's derivative) raises instead of
falling through to a plausible wrong answer. The generated source is shown
by ``python -c "from fastgrad._kernels import activations as a; print(a.SOURCE)"``.
"""

import math

from .._jit import jit
from .._registry import Dispatchers, discover
from ._series import EXP_MAX, N_COEF, SERIES_MAX, polynomial

MODULES = discover(__name__, __path__)

#: Activation name -> code, every activation.
CODES = {m.NAME: m.CODE for m in MODULES}
#: Names allowed in hidden layers (and as output); the rest are output-only.
HIDDEN = {m.NAME: m.CODE for m in MODULES if not getattr(m, "OUTPUT_ONLY", False)}
OUTPUT_ONLY = {m.NAME: m.CODE for m in MODULES if getattr(m, "OUTPUT_ONLY", False)}
def base_code(code: int) -> int:
    """The registered ``CODE`` of an activation code (a code may carry a parameter: leaky_relu's slope).

    Python-side tables (``SLACK``, ``CURVED_CODES``) are keyed by it.
    """
    for m in MODULES:
        if getattr(m, "CODE_TEST", None):
            code = m.base_code(code)
    return int(code)


#: Codes whose derivative inherits the pre-activation's rounding (see :mod:`fastgrad._kernels.rounding`).
CURVED_CODES = frozenset(m.CODE for m in MODULES if getattr(m, "CURVED", False))
#: Code -> absolute error, in roundoffs, of a backprop's derivative.
SLACK = {m.CODE: float(getattr(m, "SLACK", 0.0)) for m in MODULES}

_dispatchers = Dispatchers("activations", MODULES, __file__)
_make = _dispatchers.make


def _loop(m):
    if hasattr(m, "value"):
        return "for j in range(start, start + count):\n    a[j] = {m}.value(z[j]{p})\nreturn"
    return "{m}.layer_value(z, a, start, start + count)\nreturn"


#: ``a[start:start + count] = act(z[start:start + count])`` for one sample's layer (softmax included).
activate = _make("activate(z, a, start, count, code)", _loop)
#: ``f'(z)`` (``a = f(z)`` passed to save work); raises for softmax.
derivative = _make("derivative(z, a, code)", lambda m: "return {m}.derivative(z, a{p})", need="derivative")
#: ``(c1, c2, c3, c4)``: ``f^(m)(z) / m!``.
taylor = _make("taylor(code, z, a)", lambda m: "return {m}.taylor(z, a{p})", need="taylor")
#: ``f(z + d) - f(z)`` without cancellation, from the Taylor coefficients ``c1..c4`` at ``z``.
def _change(m):
    if getattr(m, "SERIES", False):  # the Taylor polynomial near z, the module's closed form beyond
        return ("if abs(d) <= SERIES_MAX:\n    return polynomial(d, c1, c2, c3, c4)\n"
                "return {m}.exact_change(z, d{p})")
    return "return {m}.change(z, d, c1, c2, c3, c4{p})"


#: ``f(z + d) - f(z)`` without cancellation, from the Taylor coefficients ``c1..c4`` at ``z``: for an
#: activation with ``SERIES``, its Taylor polynomial for ``|d| <= SERIES_MAX`` and its ``exact_change`` beyond;
#: for any other, its ``change``.
act_delta = _make("act_delta(code, z, d, c1, c2, c3, c4)", _change, head="if d == 0.0:\n    return 0.0",
                  need=lambda m: hasattr(m, "change") or hasattr(m, "exact_change"),
                  SERIES_MAX=SERIES_MAX, polynomial=polynomial)
#: Largest ``|s|`` keeping a change ``|dz| <= |s| bound`` in the range of the series at ``z``.
change_limit = _make("change_limit(code, z, bound)", lambda m: "return {m}.change_limit(z, bound)",
                     head="if bound == 0.0:\n    return math.inf", need="change_limit", math=math)
#: ``f(x + i y)`` as ``(re, im)``; ``y == 0`` gives the real activation exactly.
cact = _make("cact(x, y, code)", lambda m: "return {m}.complex_value(x, y{p})", need="complex_value")
#: Absolute error, in roundoffs, of a backprop's derivative (``SLACK``).
slack = _make("slack(code)", lambda m: f"return {SLACK[m.CODE]!r}")
#: Whether a step across 0 is a kink (``KINK``).
has_kink = _make("has_kink(code)", lambda m: f"return {bool(getattr(m, 'KINK', False))}")
#: Whether ``f(z + d) - f(z)`` is ``d`` itself (``LINEAR``: identity).
is_linear = _make("is_linear(code)", lambda m: f"return {bool(getattr(m, 'LINEAR', False))}")
#: Whether every change ``|d| <= SERIES_MAX`` is the Taylor polynomial (``SERIES``).
has_series = _make("has_series(code)", lambda m: f"return {bool(getattr(m, 'SERIES', False))}")


@jit(inline=True)
def step_changes(code, z, t, c1, c2, c3, c4):
    """``(f(z + t) - f(z), f(z - t) - f(z), crossed)``: a unit's changes under ``+-t``; was a kink crossed."""
    gp = act_delta(code, z, t, c1, c2, c3, c4)
    gm = act_delta(code, z, -t, c1, c2, c3, c4)
    crossed = has_kink(code) and t != 0.0 and ((z > 0.0) != (z + t > 0.0) or (z > 0.0) != (z - t > 0.0))
    return gp, gm, crossed


@jit()
def layer_change(code, Z, C, n, u_off, count, dz, da):
    """``da[k] = f(z + dz[k]) - f(z)`` for the units ``u_off..u_off+count`` of sample ``n``.

    Returns whether a step crosses a kink of the activation (``z > 0``
    differs from ``z + dz > 0``). When every change is in the Taylor range
    of an activation whose series hold everywhere, one branch-free
    (vectorisable) loop evaluates the polynomials.
    """
    if is_linear(code):
        for k in range(count):
            da[k] = dz[k]
        return False
    if has_series(code):
        big = 0.0
        for k in range(count):
            big = max(big, abs(dz[k]))
        if big <= SERIES_MAX:
            # slices, not C[., n, u_off + k]: a signed index's wraparound check keeps LLVM from vectorizing
            c1, c2 = C[0, n, u_off:u_off + count], C[1, n, u_off:u_off + count]
            c3, c4 = C[2, n, u_off:u_off + count], C[3, n, u_off:u_off + count]
            for k in range(count):
                d = dz[k]
                da[k] = d * (c1[k] + d * (c2[k] + d * (c3[k] + d * c4[k])))
            return False
    crossed = False
    kinked = has_kink(code)
    for k in range(count):
        u = u_off + k
        z = Z[n, u]
        da[k] = act_delta(code, z, dz[k], C[0, n, u], C[1, n, u], C[2, n, u], C[3, n, u])
        if kinked and dz[k] != 0.0 and (z > 0.0) != (z + dz[k] > 0.0):
            crossed = True
    return crossed


@jit(inline=True)
def compose(c1, c2, c3, u1, u2, u3):
    """Coefficients of ``f(z + u(s)) - f(z)`` to ``s^3``, ``u(s) = u1 s + u2 s^2 + u3 s^3``.

    ``c1..c3`` are ``f``'s Taylor coefficients at ``z``.
    """
    r1 = c1 * u1
    r2 = c1 * u2 + c2 * u1 * u1
    r3 = c1 * u3 + 2.0 * c2 * u1 * u2 + c3 * u1 * u1 * u1
    return r1, r2, r3


#: The generated source of the dispatchers above.
SOURCE = _dispatchers.source


__all__ = ["CODES", "base_code",
           "CURVED_CODES", "EXP_MAX", "HIDDEN", "MODULES", "N_COEF", "OUTPUT_ONLY", "SERIES_MAX", "SLACK",
           "act_delta", "activate", "cact", "change_limit", "derivative", "has_kink", "has_series", "is_linear",
           "slack", "step_changes", "layer_change", "compose", "taylor"]

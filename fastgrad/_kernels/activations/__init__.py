"""Activations: one module each, and the dispatchers the kernels call with an activation code.

Each activation is one module of this package (``sigmoid.py``, ``elu.py``, ...)
that owns everything about it: ``CODE`` and ``NAME``; its properties
(``KINK``: the derivative jumps at 0; ``PIECEWISE``: its Taylor series hold
on one side of 0 only; ``SERIES``: every change ``|d| <= SERIES_MAX`` is its
Taylor polynomial; ``SLACK``: roundoffs of absolute error in a backprop's
derivative; ``CURVED``: its derivative inherits the pre-activation's
rounding; ``LINEAR``: ``f(z + d) - f(z) = d``, optional; ``OUTPUT_ONLY``); and the kernels ``value(z)``,
``derivative(z, a)``, ``taylor(z, a)`` (``f^(m)(z) / m!``, m = 1..4),
``change(z, d, c1, c2, c3, c4)`` (``f(z + d) - f(z)`` without
cancellation, given the Taylor coefficients at ``z``),
``change_limit(z, bound)`` and ``complex_value(x, y)``. Softmax, which is
not elementwise, has ``layer_value`` instead.

Adding an activation is adding its module (and its NumPy twin in
``tests/reference.py``): this file finds the modules, and writes each
dispatcher below as a chain of ``if code == CODE: return module.fn(...)``
over them, ending in ``raise``, so an unknown code (or a function an
activation does not have, such as softmax's derivative) raises instead of
falling through to a plausible wrong answer. The generated source is shown
by ``python -c "from fastgrad._kernels import activations as a; print(a.SOURCE)"``.
"""

import importlib
import math
import pkgutil

from .._jit import jit
from ._series import EXP_MAX, N_COEF, SERIES_MAX

MODULES = tuple(sorted(
    (importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)
     if not info.name.startswith("_")),
    key=lambda module: module.CODE,
))
if len({m.CODE for m in MODULES}) != len(MODULES) or len({m.NAME for m in MODULES}) != len(MODULES):
    raise ImportError(f"fastgrad activations: duplicate CODE or NAME among {[m.__name__ for m in MODULES]}")

#: Activation name -> code, every activation.
CODES = {m.NAME: m.CODE for m in MODULES}
#: Names allowed in hidden layers (and as output); the rest are output-only.
HIDDEN = {m.NAME: m.CODE for m in MODULES if not getattr(m, "OUTPUT_ONLY", False)}
OUTPUT_ONLY = {m.NAME: m.CODE for m in MODULES if getattr(m, "OUTPUT_ONLY", False)}
#: Codes whose derivative inherits the pre-activation's rounding (see :mod:`fastgrad._kernels.rounding`).
CURVED_CODES = frozenset(m.CODE for m in MODULES if m.CURVED)
#: Code -> absolute error, in roundoffs, of a backprop's derivative.
SLACK = {m.CODE: m.SLACK for m in MODULES}

_NAMESPACE = {"math": math, **{f"_{m.NAME}": m for m in MODULES}}
_SOURCES: list[str] = []


def _dispatcher(signature, body, head="", need=None):
    """Compile ``def signature:`` + ``head`` + one ``if code == CODE:`` branch per module + ``raise``.

    ``body(m)`` is the branch's code for module ``m`` with ``{m}`` standing for the module; modules without
    the function ``need`` get no branch.
    """
    name = signature.split("(")[0]
    lines = [f"def {signature}:"] + (["    " + line for line in head.splitlines()] if head else [])
    for m in MODULES:
        if need is not None and not hasattr(m, need):
            continue
        lines.append(f"    if code == {m.CODE}:  # {m.NAME}")
        lines += ["        " + line.replace("{m}", f"_{m.NAME}") for line in body(m).splitlines()]
    lines.append(f'    raise ValueError("fastgrad.{name}: unknown activation code (or not defined for it)")')
    source = "\n".join(lines) + "\n"
    _SOURCES.append(source)
    # compiled with this file's name: Numba caches a function next to its source file, and the cache key
    # includes the bytecode, so adding a module (a new branch) does not load a stale entry
    exec(compile(source, __file__, "exec"), _NAMESPACE)
    function = _NAMESPACE[name]
    function.__module__ = __name__
    return jit()(function)


def _loop(m):
    if hasattr(m, "value"):
        return "for j in range(start, start + count):\n    a[j] = {m}.value(z[j])\nreturn"
    return "{m}.layer_value(z, a, start, start + count)\nreturn"


#: ``a[start:start + count] = act(z[start:start + count])`` for one sample's layer (softmax included).
activate = _dispatcher("activate(z, a, start, count, code)", _loop)
#: ``f'(z)`` (``a = f(z)`` passed to save work); raises for softmax.
derivative = _dispatcher("derivative(z, a, code)", lambda m: "return {m}.derivative(z, a)", need="derivative")
#: ``(c1, c2, c3, c4)``: ``f^(m)(z) / m!``.
taylor = _dispatcher("taylor(code, z, a)", lambda m: "return {m}.taylor(z, a)", need="taylor")
#: ``f(z + d) - f(z)`` without cancellation, from the Taylor coefficients ``c1..c4`` at ``z``.
act_delta = _dispatcher("act_delta(code, z, d, c1, c2, c3, c4)", lambda m: "return {m}.change(z, d, c1, c2, c3, c4)",
                        head="if d == 0.0:\n    return 0.0", need="change")
#: Largest ``|s|`` keeping a change ``|dz| <= |s| bound`` in the range of the series at ``z``.
change_limit = _dispatcher("change_limit(code, z, bound)", lambda m: "return {m}.change_limit(z, bound)",
                           head="if bound == 0.0:\n    return math.inf", need="change_limit")
#: ``f(x + i y)`` as ``(re, im)``; ``y == 0`` gives the real activation exactly.
cact = _dispatcher("cact(x, y, code)", lambda m: "return {m}.complex_value(x, y)", need="complex_value")
#: Absolute error, in roundoffs, of a backprop's derivative (``SLACK``).
slack = _dispatcher("slack(code)", lambda m: f"return {float(m.SLACK)!r}")
#: Whether a step across 0 is a kink (``KINK``).
has_kink = _dispatcher("has_kink(code)", lambda m: f"return {bool(m.KINK)}")
#: Whether ``f(z + d) - f(z)`` is ``d`` itself (``LINEAR``: identity).
is_linear = _dispatcher("is_linear(code)", lambda m: f"return {bool(getattr(m, 'LINEAR', False))}")
#: Whether every change ``|d| <= SERIES_MAX`` is the Taylor polynomial (``SERIES``).
has_series = _dispatcher("has_series(code)", lambda m: f"return {bool(m.SERIES)}")

SOURCE = "\n".join(_SOURCES)

__all__ = ["CODES", "CURVED_CODES", "EXP_MAX", "HIDDEN", "MODULES", "N_COEF", "OUTPUT_ONLY", "SERIES_MAX", "SLACK",
           "act_delta", "activate", "cact", "change_limit", "derivative", "has_kink", "has_series", "is_linear",
           "slack", "taylor"]

"""The engine capability table: which engine serves which method for which kind of model.

An *engine* is how the perturbed losses are evaluated (``"incremental"``,
``"full"``, ``"unit"``); a *method* is the difference formula applied to
them (``"central"``, ``"richardson"``, ``"complex"``, and, for
:func:`fastgrad.check` only, ``"directional"``). The two are separate
arguments of the public functions and separate concepts here; the kernels
receive one integer per (engine, method) pair, :attr:`Route.kernel_code`,
which is the method's code from :mod:`fastgrad._kernels.codes`, except for
the unit engine, whose assembly kernel takes its own mode,
``UNIT_DELTAS``. Every public entry point resolves its ``engine`` and
``method`` through :func:`resolve`, so that the allowed combinations and
their error messages live in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import _validate
from ._config import (
    DEFAULT_EPS,
    DEFAULT_EPS_COMPLEX,
    DEFAULT_EPS_INCREMENTAL,
    DEFAULT_EPS_RICHARDSON,
    DEFAULT_EPS_RICHARDSON_INCREMENTAL,
)
from ._kernels import codes
from ._kernels.codes import UNIT_DELTAS

ENGINES = ("incremental", "full", "unit")
#: The difference methods of :func:`fastgrad.numerical_gradient` and :class:`fastgrad.Monitor`.
METHODS = ("central", "richardson", "complex")
#: :func:`fastgrad.check` also takes method="directional" (projections and bisection).
CHECK_METHODS = METHODS + ("directional",)

#: A :class:`fastgrad.MLP`: its layout reaches the compiled kernels.
MLP_KIND = "mlp"
#: A model known only through its loss and analytic gradient (:class:`fastgrad.protocol.Model`'s
#: ``loss_at`` and ``gradient_at``), :func:`fastgrad.check_function`'s.
FUNCTION_KIND = "function"
KINDS = (MLP_KIND, FUNCTION_KIND)

#: The name under which :func:`fastgrad.engines.numerical_details` hands the unit engine to the
#: incremental engine's driver (whose kernels assemble the unit engine's derivatives too).
UNIT_MODE = "unit"


@dataclass(frozen=True)
class Route:
    """One row of the table: an engine, a method, the model kinds it serves, and what the kernels receive.

    Attributes
    ----------
    engine, method : str
    kinds : tuple of str
        The model kinds (:data:`KINDS`) this pair serves.
    kernel_code : int or None
        The integer the kernels take for this pair (None: ``"directional"``
        has no kernel of its own; it drives the incremental engine's).
    kernel_mode : str
        The key of that code in :data:`fastgrad.engines.METHOD_CODES`, the
        name the incremental engine's driver is run with: the method, or
        :data:`UNIT_MODE` for the unit engine.
    """

    engine: str
    method: str
    kinds: tuple[str, ...]
    kernel_code: int | None
    kernel_mode: str = ""

    def __post_init__(self) -> None:  # noqa: D105 - the kernel mode defaults to the method
        if not self.kernel_mode:
            object.__setattr__(self, "kernel_mode", self.method)

    def serves(self, kind: str) -> bool:
        """Whether this pair can check a model of ``kind``."""
        return kind in self.kinds


_MLP_ONLY = (MLP_KIND,)
_ANY_MODEL = (MLP_KIND, FUNCTION_KIND)

#: Engines x methods x model kinds. The incremental and unit engines (and the
#: incremental engine's directional search, by complex passes) need an MLP's
#: layout; the full engine's real-step methods only need the loss, so a model
#: known by its loss (and gradient) is served by them, by the complex step
#: when its loss takes complex parameters (:func:`fastgrad.check_function`
#: tries, and says when it does not), and by the full engine's directional
#: search: an MLP's by complex passes (:mod:`fastgrad.directional`), any
#: other model's by central differences of its loss along the projections
#: (:mod:`fastgrad.function_directional`).
TABLE: dict[tuple[str, str], Route] = {
    (r.engine, r.method): r
    for r in (
        Route("incremental", "central", _MLP_ONLY, codes.CENTRAL),
        Route("incremental", "richardson", _MLP_ONLY, codes.RICHARDSON),
        Route("incremental", "complex", _MLP_ONLY, codes.COMPLEX),
        Route("incremental", "directional", _MLP_ONLY, None),
        Route("full", "central", _ANY_MODEL, codes.CENTRAL),
        Route("full", "richardson", _ANY_MODEL, codes.RICHARDSON),
        Route("full", "complex", _ANY_MODEL, codes.COMPLEX),
        Route("full", "directional", _ANY_MODEL, None),
        Route("unit", "central", _MLP_ONLY, UNIT_DELTAS, kernel_mode=UNIT_MODE),
    )
}

#: Why an engine does not take a method, for the message (engines missing here take every method).
_ENGINE_LIMITS = {"unit": "differentiates each unit by a central difference"}


def kernel_codes() -> dict[str, int]:
    """Every kernel code by its :attr:`Route.kernel_mode` (the integers the kernels are passed)."""
    out: dict[str, int] = {}
    for route in TABLE.values():
        if route.kernel_code is not None:
            # one mode, one integer, whichever engine runs it: the table must not disagree with itself
            if out.setdefault(route.kernel_mode, route.kernel_code) != route.kernel_code:
                raise RuntimeError(f"capability table: two kernel codes for mode {route.kernel_mode!r}")
    return out


def supported(kind: str, methods: Sequence[str] = CHECK_METHODS) -> dict[str, tuple[str, ...]]:
    """Return the methods (among ``methods``) each engine serves for ``kind``; engines serving none left out."""
    out: dict[str, tuple[str, ...]] = {}
    for engine in ENGINES:
        served = tuple(m for m in methods if (engine, m) in TABLE and TABLE[engine, m].serves(kind))
        if served:
            out[engine] = served
    return out


def route(engine: str, method: str) -> Route:
    """Return the row of a validated ``(engine, method)``; ``ValueError`` when the engine does not take the method."""
    found = TABLE.get((engine, method))
    if found is None:
        takers = [e for e in ENGINES if (e, method) in TABLE]
        why = _ENGINE_LIMITS.get(engine, "does not take this method")
        raise ValueError(f"engine={engine!r} {why}; method={method!r} needs engine="
                         + " or ".join(repr(e) for e in takers))
    return found


def resolve(engine: object, method: object, kind: str, methods: Sequence[str] = METHODS) -> Route:
    """Validate ``engine`` and ``method`` for a model of ``kind``; return their row of the table.

    Parameters
    ----------
    engine, method : object
        The user's arguments.
    kind : str
        The model's kind (:attr:`fastgrad.protocol.Model.kind`).
    methods : sequence of str
        The methods the calling entry point takes (:data:`METHODS`, or
        :data:`CHECK_METHODS` for :func:`fastgrad.check`).

    Raises
    ------
    ValueError
        An unknown method or engine, an engine that does not take the
        method, or a pair that does not serve this kind of model; the
        message names the argument and the values allowed.
    """
    _validate.choice(method, methods, "method")
    _validate.choice(engine, ENGINES, "engine")
    assert isinstance(engine, str) and isinstance(method, str)  # (choice checked both)
    if kind not in KINDS:
        raise ValueError(f"the model's kind must be one of {', '.join(map(repr, KINDS))}; got {kind!r}")
    found = route(engine, method)
    if not found.serves(kind):
        allowed = supported(kind, methods)
        options = "; ".join(f"engine={e!r} with method " + " or ".join(map(repr, ms)) for e, ms in allowed.items())
        raise ValueError(f"engine={engine!r} with method={method!r} needs a fastgrad.MLP; a model of kind {kind!r} "
                         f"is served by {options or 'no engine'}")
    return found


def default_eps(engine: str, method: str, kind: str = MLP_KIND) -> float:
    """Return the default step of a method and engine (see docs/guide.md, "How fastgrad decides").

    A model known by its loss takes its directional projections by real
    differences, at ``method="central"``'s step (:mod:`fastgrad.function_projections`).
    """
    if method == "directional" and kind == FUNCTION_KIND:
        return DEFAULT_EPS
    if method in ("complex", "directional"):
        return DEFAULT_EPS_COMPLEX
    if method == "richardson":
        return DEFAULT_EPS_RICHARDSON if engine == "full" else DEFAULT_EPS_RICHARDSON_INCREMENTAL
    return DEFAULT_EPS if engine == "full" else DEFAULT_EPS_INCREMENTAL

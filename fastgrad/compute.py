"""The compute step of a check: the loss, the numerical gradient, its error budget and the gradient to check.

:func:`fastgrad.check` resolves its inputs (:mod:`fastgrad.checking`),
then calls :func:`compute`, which runs the backend of the model's kind:
an MLP's compiled kernels (:mod:`fastgrad.engines`,
:mod:`fastgrad.budget`, :mod:`fastgrad.directional`), or, for a model
known only by its loss, differences of that loss
(:mod:`fastgrad.loss_engine`). Which engine and method may reach which
backend is the capability table's decision (:mod:`fastgrad.capabilities`),
made before anything here runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._config import DEFAULT_EPS_INCREMENTAL
from ._kernels import _ahead as ahead
from ._kernels.loss import loss_from_activations
from .budget import NEGLIGIBLE_BUDGET, error_budget, step_reach
from .capabilities import FUNCTION_KIND, MLP_KIND, Route
from .directional import directional_search
from .engines import Numerical, numerical_details
from .loss_engine import loss_difference_budget, loss_differences
from .model import MLP
from .protocol import Model
from .sampling import sample_mask
from .sharding import sharded_details

ProgressFn = Callable[[int, int], Any]


@dataclass(frozen=True)
class Prepared:
    """The validated arguments every checker starts from.

    Attributes
    ----------
    theta : ndarray, shape (P,)
        The parameters, flat (a private copy).
    X, Y : ndarray
        The batch and targets (float64 copies).
    eps : float
        The step.
    scaled : bool
        Whether each step is ``eps * max(1, |w|)`` (the default steps) or ``eps`` as given.
    threads : int or None
        Numba threads for the call.
    route : Route
        The (engine, method) row of the capability table.
    """

    theta: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    eps: float
    scaled: bool
    threads: int | None
    route: Route
    #: ``workers=``: None (this process), a process count, a map-like or a Dask Client (:mod:`fastgrad.sharding`).
    workers: Any = None

    @property
    def n_samples(self) -> int:
        """Rows of the batch."""
        return int(self.X.shape[0])


#: ``given`` of :class:`CheckInputs` when the user's gradient list is copied only after the numerical gradient.
LATER = np.zeros(0)


@dataclass(frozen=True)
class CheckInputs:
    """Everything :func:`fastgrad.check` resolved before computing (see :func:`fastgrad.checking._resolve`).

    Attributes
    ----------
    prepared : Prepared
    by_budget : bool
        The error-budget verdict (False: fixed ``rtol``/``atol``).
    rtol, atol, safety : float
    checked : ndarray of bool or None
        The entries to check (None: all).
    given : ndarray or None
        The user's gradient, flat; :data:`LATER` for a list copied after the
        numerical gradient; None to check the model's own backprop.
    notes : list of str
        What calling the user's gradient callable showed.
    user_u : float
        Unit roundoff of the coarsest dtype among the user's arrays.
    """

    prepared: Prepared
    by_budget: bool
    rtol: float
    atol: float
    safety: float
    checked: np.ndarray | None
    given: np.ndarray | None
    notes: list[str]
    user_u: float

    @property
    def indices(self) -> np.ndarray | None:
        """Flat indices of the entries to check (None: all)."""
        return None if self.checked is None else np.flatnonzero(self.checked)


@dataclass
class Computed:
    """What the compute step gives the judge.

    ``details`` keeps only the values and kink flags (what the budget was
    made of is freed once the budget exists); ``entry_budget`` is the error
    budget of every entry; ``reach`` what :func:`fastgrad.budget.judge`
    needs to flag steps that move a pre-activation too far (None: no such
    flag).
    """

    loss: float
    details: Numerical
    entry_budget: np.ndarray
    analytic: np.ndarray
    checked: np.ndarray | None
    forward_passes: int | None = None
    disagreeing: list[str] = field(default_factory=list)
    reach: tuple[np.ndarray, float, bool, float] | None = None
    #: Dask workers that left during the run (their blocks were recomputed elsewhere).
    lost_workers: list[str] = field(default_factory=list)


def finite_loss(loss: float, sizes: str = "") -> float:
    """``loss``, or ``ValueError`` when it is not finite (``sizes``: what overflowed it, for the message)."""
    if not np.isfinite(loss):
        raise ValueError(
            f"params, X, Y: the loss is {loss} at these params, X and Y: the forward pass overflows{sizes}; "
            "a gradient check needs a finite loss (rescale X, or check the params)"
        )
    return loss


def _mlp_loss(net: MLP, Z: np.ndarray, A: np.ndarray, Y: np.ndarray, X: np.ndarray, theta: np.ndarray) -> float:
    """Return the MLP's loss at the base point; ``ValueError`` when not finite, with the sizes that overflowed it."""
    loss = net.total_loss(float(loss_from_activations(Z, A, Y, net.layout, net.loss_code)), theta, X.shape[0])
    sizes = ""
    if not np.isfinite(loss):
        sizes = (f" (largest |X| {float(np.max(np.abs(X))):.3g}, largest |param| "
                 f"{float(np.max(np.abs(theta))):.3g}, largest |pre-activation| {float(np.max(np.abs(Z))):.3g})")
    return finite_loss(loss, sizes)


def _given_or(model: Model, grads: Any, given: np.ndarray | None, own: Callable[[], np.ndarray]) -> np.ndarray:
    """Return the gradient to check, flat: the model's own (``own()``), the callable's answer, or a copy of the list."""
    if given is None:
        return own()
    if given is LATER:
        return model.flatten(grads, "grads")
    return given


# ----------------------------------------------------------------- MLP: the kernels
def _whole_loss(net: MLP, values: np.ndarray, budget: np.ndarray | None, theta: np.ndarray, n_samples: int,
                user_u: float) -> None:
    """The kernels' data-term values (and budget) -> the whole loss's: reduction, scale, L2 (in place).

    See :mod:`fastgrad.conventions`: exact, because every difference
    formula is linear in the loss and differentiates ``c w^2`` exactly.
    """
    c = net.conventions
    if c.plain:
        return
    c.gradient_into(values, theta, net.layout, n_samples, net.sizes[-1])
    if budget is not None:
        c.budget_into(budget, theta, net.layout, n_samples, net.sizes[-1], user_u)


def _directional(
    net: MLP, p: Prepared, g: np.ndarray, user_u: float, safety: float, seed: int | None, Z: np.ndarray,
    A: np.ndarray, loss: float,
) -> tuple[Numerical, np.ndarray, np.ndarray, int, list[str]]:
    """``method="directional"``: weighted projections, bisection, and the entries they leave checked one by one.

    The entries the bisection narrows a disagreement down to, and those
    whose projection budget cannot tell their value from zero
    (:func:`fastgrad.directional.directional_search`), are checked by
    central differences with the incremental engine, so that each gets
    exactly the value, budget and verdict ``method="central"`` would give
    it (an unresolved one may be inconclusive there too, and is then
    listed as such); so is each tensor's largest entry, from which the
    verdict takes the tensor's scale. Every other entry is vouched for by a projection: its
    ``budget`` is what that projection vouches for (an error of more than
    ``safety`` times it in that entry alone would have made it disagree),
    its numerical value is NaN and it is not ``checked``.
    """
    theta, X, Y = p.theta, p.X, p.Y
    found = directional_search(net, theta, X, Y, g, user_u, safety, seed, Z, A, NEGLIGIBLE_BUDGET)
    # each tensor's largest |g| too: the verdict takes a tensor's scale (the floor for the user's rounding,
    # the negligible budget) from its checked entries, and it must be the tensor's, as method="central" has it
    largest = np.array([lo + int(np.argmax(np.where(np.isfinite(g[lo:hi]), np.abs(g[lo:hi]), -1.0)))
                        for lo, hi in zip(net.offsets[:-1], net.offsets[1:]) if hi > lo], dtype=np.int64)
    # a mask, not np.union1d: its sort of tens of millions of indices took minutes on a 10^8-parameter net
    checked = np.zeros(net.n_params, dtype=bool)
    checked[np.asarray(found.leaves, dtype=np.int64)] = True
    checked[found.unresolved] = True
    checked[largest] = True
    entries = np.flatnonzero(checked).astype(np.int64)
    details = numerical_details(net, theta, X, Y, DEFAULT_EPS_INCREMENTAL, "incremental", "central", None,
                                indices=entries, Z=Z, A=A, scaled=True)
    entry_budget = error_budget(net, details, theta, X, Z, A, Y, loss, "incremental", "central", user_u)
    _whole_loss(net, details.values, entry_budget, theta, X.shape[0], user_u)
    np.copyto(entry_budget, found.budget, where=~checked)  # (the projections' budgets are the whole loss's)
    return details, entry_budget, checked, found.evaluations, found.failed_tensors


def _with_kernels(net: MLP, inputs: CheckInputs, grads: Any, progress: ProgressFn | None,
                  seed: int | None) -> Computed:
    """Check an MLP: its forward pass, the engine's kernels, the per-entry budget and its backprop."""
    p = inputs.prepared
    engine, method = p.route.engine, p.route.method
    with ahead.computing(f"check/{engine}/{method}"):
        return _mlp_check(net, inputs, grads, progress, seed, engine, method)


def _mlp_check(net: MLP, inputs: CheckInputs, grads: Any, progress: ProgressFn | None, seed: int | None,
               engine: str, method: str) -> Computed:
    p = inputs.prepared
    Z, A = net._forward(p.theta, p.X)
    loss = _mlp_loss(net, Z, A, p.Y, p.X, p.theta)

    def own() -> np.ndarray:
        return net._backprop_flat(p.theta, p.X, p.Y, Z, A)

    if method == "directional":
        analytic = _given_or(net, grads, inputs.given, own)
        details, entry_budget, checked, passes, disagreeing = _directional(
            net, p, analytic, inputs.user_u, inputs.safety, seed, Z, A, loss)
        return Computed(loss, details, entry_budget, analytic, checked, passes, disagreeing)
    lost: list[str] = []
    if p.workers is not None:
        details, lost = sharded_details(net, p.theta, p.X, p.Y, p.eps, engine, method, inputs.indices, p.scaled, True,
                                     p.workers, progress, Z, A)
    else:
        details = numerical_details(net, p.theta, p.X, p.Y, p.eps, engine, method, progress,
                                    indices=inputs.indices, Z=Z, A=A, scaled=p.scaled, keep_steps=False)
    entry_budget = error_budget(net, details, p.theta, p.X, Z, A, p.Y, loss, engine, method, inputs.user_u,
                                in_place=True)
    _whole_loss(net, details.values, entry_budget, p.theta, p.n_samples, inputs.user_u)
    # what the budget was made of is spent: free it before the gradient is computed (item 11)
    details = Numerical(details.values, np.zeros(0), np.zeros(0), details.kink, np.zeros(0))
    analytic = _given_or(net, grads, inputs.given, own)
    reach = step_reach(net, p.X, A, p.eps, p.scaled, engine, method) if inputs.by_budget else None
    return Computed(loss, details, entry_budget, analytic, inputs.checked, reach=reach, lost_workers=lost)


def _mlp_values(net: MLP, p: Prepared, indices_of: Callable[[], np.ndarray | None],
                progress: ProgressFn | None) -> np.ndarray:
    """Compute an MLP's numerical gradient alone (no budget), flat."""
    with ahead.computing(f"values/{p.route.engine}/{p.route.method}"):
        Z, A = net._forward(p.theta, p.X, keep=True)  # (used here only)
        _mlp_loss(net, Z, A, p.Y, p.X, p.theta)
        if p.workers is not None:
            values = sharded_details(net, p.theta, p.X, p.Y, p.eps, p.route.engine, p.route.method, indices_of(),
                                     p.scaled, False, p.workers, progress, Z, A)[0].values
        else:
            values = numerical_details(net, p.theta, p.X, p.Y, p.eps, p.route.engine, p.route.method, progress,
                                       indices=indices_of(), Z=Z, A=A, scaled=p.scaled, budget=False).values
        _whole_loss(net, values, None, p.theta, p.n_samples, 0.0)
        return values


# ------------------------------------------------------- a model known by its loss
def _from_loss(model: Model, inputs: CheckInputs, grads: Any, progress: ProgressFn | None,
               seed: int | None) -> Computed:
    """Check a model of kind "function": differences of its loss (the full engine), its own gradient.

    ``method="directional"``: per-tensor projections of the loss, bisection,
    and the entries they leave checked one by one
    (:mod:`fastgrad.function_directional`); ``forward_passes`` counts the
    evaluations of the loss.
    """
    p = inputs.prepared
    if p.route.method == "directional":
        from . import function_directional

        counted = function_directional.Counted(model)
        loss = finite_loss(float(counted.loss_at(p.theta, p.X, p.Y)))
        analytic = _given_or(model, grads, inputs.given, lambda: model.gradient_at(p.theta, p.X, p.Y))
        found = function_directional.directional_check(counted, p.theta, p.X, p.Y, analytic, loss, inputs.user_u,
                                                       inputs.safety, seed)
        return Computed(loss, found.details, found.entry_budget, analytic, found.checked, found.evaluations,
                        found.failed_tensors)
    loss = finite_loss(float(model.loss_at(p.theta, p.X, p.Y)))
    details = loss_differences(model, p.theta, p.X, p.Y, p.eps, p.scaled, p.route.method, inputs.indices, progress,
                               loss=loss)
    entry_budget = loss_difference_budget(model, details, loss, p.route.method, inputs.user_u)
    details = Numerical(details.values, np.zeros(0), np.zeros(0), details.kink, np.zeros(0))
    analytic = _given_or(model, grads, inputs.given, lambda: model.gradient_at(p.theta, p.X, p.Y))
    return Computed(loss, details, entry_budget, analytic, inputs.checked)


def _loss_values(model: Model, p: Prepared, indices_of: Callable[[], np.ndarray | None],
                 progress: ProgressFn | None) -> np.ndarray:
    """Compute the numerical gradient of a model of kind "function" alone, flat."""
    finite_loss(float(model.loss_at(p.theta, p.X, p.Y)))
    return loss_differences(model, p.theta, p.X, p.Y, p.eps, p.scaled, p.route.method, indices_of(), progress,
                            error_terms=False).values


#: The compute backend of every model kind (the capability table decides which engines reach them).
_CHECKS: dict[str, Callable[..., Computed]] = {MLP_KIND: _with_kernels, FUNCTION_KIND: _from_loss}
_VALUES: dict[str, Callable[..., np.ndarray]] = {MLP_KIND: _mlp_values, FUNCTION_KIND: _loss_values}


def compute(model: Model, inputs: CheckInputs, grads: Any, progress: ProgressFn | None,
            seed: int | None) -> Computed:
    """Run the compute step of :func:`fastgrad.check` by the backend of the model's kind."""
    return _CHECKS[model.kind](model, inputs, grads, progress, seed)


def numerical_values(model: Model, p: Prepared, sample: Any, seed: Any, progress: ProgressFn | None) -> np.ndarray:
    """Compute the numerical gradient of :func:`fastgrad.numerical_gradient`, flat (NaN outside ``sample``)."""

    def indices_of() -> np.ndarray | None:  # drawn after the loss is known finite (the order errors come in)
        return None if sample is None else np.flatnonzero(sample_mask(model, sample, seed))

    return _VALUES[model.kind](model, p, indices_of, progress)

"""The full engine for a model known only by its loss: differences of :meth:`~fastgrad.protocol.Model.loss_at`.

For a model of kind ``"function"`` (see :mod:`fastgrad.capabilities`)
every wanted parameter is moved by ``+-h`` and ``+-2h`` (Richardson: also
``+-4h``) and the loss evaluated there: by the model's own ``loss_table``
when it has one (:class:`fastgrad.function.FunctionModel`: a parallel
Numba kernel for a jitted loss, processes, or a Python loop), else by
``loss_at`` in a Python loop over a private copy of the flat vector. The
values come from that table in one vectorized pass, the same whoever
filled it.

The error budget, for a loss seen from the outside: the truncation
estimated from the difference at twice the step; the evaluations' own
spread (the disagreement of the second differences at ``h`` and ``2h``,
which a smooth loss keeps at its fourth derivative times ``h^4``); the
cancellation of ``E(w + h) - E(w - h)`` at the size of the losses seen, or at the noise the
evaluations show when that is larger (:data:`NOISE_PROBES`). How
much rounding a user's loss carries is not known; it is taken as
:data:`LOSS_ROUNDING_ULPS` roundoffs per stage of the model
(:attr:`~fastgrad.protocol.ModelBase.depth`). An entry whose second
differences disagree beyond rounding and beyond :data:`KINK_INCONSISTENCY`
of their size has a kink or a jump within reach: ``kink``, inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._kernels.assemble import STATUS_ESTIMATE_NONFINITE, STATUS_LOSS_NONFINITE, STATUS_OK, STATUS_VALUE_NONFINITE
from .engines import Numerical, parameter_steps
from .protocol import Model, hook

#: The batch of a model whose data travel in its own arguments (check_function's): one empty "sample".
NO_BATCH = np.zeros((1, 0))
#: Roundoffs of relative error assumed per stage of a model in each loss it returns (see the module docstring).
LOSS_ROUNDING_ULPS = 4.0

ProgressFn = Callable[[int, int], Any]


#: Second differences at h and 2h of a smooth loss agree as ``S(2h) = 4 S(h)`` up to ``E'''' h^4``: an entry whose
#: two disagree by more than this fraction of their size (and by more than rounding) has a kink or a jump within
#: reach of its steps, and its difference quotient is not the derivative: inconclusive, never failed.
KINK_INCONSISTENCY = 0.1
#: ... and it must exceed this many times the noise of the evaluations (below).
KINK_NOISE_SIGMAS = 4.0
#: ... and this many roundoffs of the largest loss seen (below it, second differences are rounding alone).
KINK_NOISE_ULPS = 64.0
#: The noise of ``f``'s evaluations (``sigma``): the rounding of a loss that sums large terms to a small total
#: is far above ``u |E|``, and a loss known from the outside does not say how far. It is measured: at
#: :data:`NOISE_PROBES` of the entries (evenly spaced), ``f`` is evaluated once more, the entry moved by a
#: step :data:`PROBE_SHRINK` times smaller, where the change the derivative and the curvature predict is
#: known to far below rounding; what the evaluation differs from ``E + E' d + S(h) (d/h)^2 / 2`` by is
#: noise. ``sigma`` is the largest such difference (rounding is quantized, not Gaussian: its largest value
#: is what a difference quotient meets). Entries whose second differences already look like a kink are not
#: probed (a probe beside a kink measures the kink). (The disagreement of the second differences themselves
#: is no measure of it: with Richardson's larger step it is mostly the fourth derivative times ``h^4``.)
NOISE_PROBES = 16
PROBE_SHRINK = 2.0**-10
#: The evaluations' own spread enters the budget as ``SPREAD x |S(2h) - 4 S(h)| / h``: the noise that
#: difference shows, carried to a difference quotient (0.71/8.4 per unit of noise for central, 1.06/8.4 for
#: Richardson, rounded up).
SPREAD = 0.15


def _multiples(method: str, error_terms: bool) -> np.ndarray:
    """The steps, in units of ``h``, at which the loss is evaluated (the truncation estimate needs one size more)."""
    reach: tuple[int, ...] = (1, 2) if method == "central" else (1, 2, 4)
    if not error_terms:
        reach = reach[:-1]
    return np.array([m for k in reach for m in (k, -k)], dtype=np.float64)


def python_loss_table(model: Model, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, indices: np.ndarray,
                  steps: np.ndarray, multiples: np.ndarray, progress: ProgressFn | None = None) -> np.ndarray:
    """``model.loss_at`` at every perturbed point, for a model without a ``loss_table`` of its own."""
    point = theta.copy()  # moved one entry at a time; the caller's vector is never touched
    out = np.empty((indices.size, multiples.size))
    for r, i in enumerate(indices.tolist()):
        w = point[i]
        for k, m in enumerate(multiples.tolist()):
            point[i] = w + m * steps[i]
            out[r, k] = float(model.loss_at(point, X, Y))
        point[i] = w
        if progress is not None:
            progress(r + 1, indices.size)
    return out


def loss_differences(
    model: Model, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, eps: float, scaled: bool, method: str,
    indices: np.ndarray | None = None, progress: ProgressFn | None = None, error_terms: bool = True,
    loss: float | None = None,
) -> Numerical:
    """Numerical derivatives of the wanted entries by differences of the model's loss.

    Parameters
    ----------
    model : Model
        Any model the capability table lets the full engine serve. One with
        a ``loss_table`` (and ``complex_table``) method evaluates the
        perturbed losses itself (:class:`fastgrad.function.FunctionModel`:
        a parallel kernel, processes); else ``loss_at`` in a Python loop.
    theta, X, Y : ndarray
        Flat parameters (not modified) and the validated batch.
    eps, scaled : float, bool
        The step, scaled by ``max(1, |w|)`` when ``scaled`` (see
        :func:`fastgrad.engines.parameter_steps`).
    method : {"central", "richardson", "complex"}
    indices : ndarray of int64, optional
        Flat indices to differentiate (default: all); the others are NaN.
    progress : callable, optional
        ``progress(done, total)`` after each entry (or block of entries).
    error_terms : bool
        Also estimate the truncation (``trunc``: from the difference at twice
        the step, plus the evaluations' own spread), keep the size of the
        losses (``absum``: ``max |E|`` over the points evaluated, per entry)
        and flag in ``kink`` the entries whose second differences at ``h``
        and ``2h`` disagree (a kink or a jump within reach).
    loss : float, optional
        The loss at ``theta`` (the kink test needs it; evaluated when None).

    Returns
    -------
    Numerical
    """
    P = model.n_params
    order = np.arange(P, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    steps = parameter_steps(theta, eps, scaled, method)
    values = np.full(P, np.nan)
    size = P if error_terms else 0
    trunc, magnitude, status = np.zeros(size), np.zeros(size), np.zeros(size, dtype=np.int8)
    kink = np.zeros(size, dtype=bool)
    if method == "complex":
        return _complex(model, theta, order, steps, values, magnitude, status, kink, trunc, progress, error_terms)
    multiples = _multiples(method, error_terms)
    table_of = getattr(model, "loss_table", None)
    if table_of is not None:
        table = table_of(theta, order, steps, multiples, progress)
    else:
        table = python_loss_table(model, theta, X, Y, order, steps, multiples, progress)
    h = steps[order]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        d1 = (table[:, 0] - table[:, 1]) / (2.0 * h)
        d2 = (table[:, 2] - table[:, 3]) / (2.0 * 2 * h) if table.shape[1] >= 4 else None
        value = d1 if method == "central" else (4.0 * d1 - d2) / 3.0
        values[order] = value
        if not error_terms:
            return Numerical(values, magnitude, trunc, kink, steps, status)
        assert d2 is not None  # (the error terms evaluate +-2h whatever the method)
        if method == "central":  # D(2h) - D(h) = 3 c h^2 + ...
            estimate = np.abs(d2 - d1) / 3.0
        else:  # R(2h) - R(h) = 15 c h^4 + ...
            d4 = (table[:, 4] - table[:, 5]) / (2.0 * 4 * h)
            estimate = np.abs((4.0 * d2 - d4) / 3.0 - value) / 15.0
        base = float(model.loss_at(theta, X, Y)) if loss is None else float(loss)
        s1 = (table[:, 0] + table[:, 1]) - 2.0 * base
        s2 = (table[:, 2] + table[:, 3]) - 2.0 * base
        inconsistency = np.abs(s2 - 4.0 * s1)
        largest = np.maximum(np.where(np.isfinite(table), np.abs(table), 0.0).max(axis=1, initial=0.0), abs(base))
        suspect = ((inconsistency > KINK_INCONSISTENCY * (np.abs(s2) + 4.0 * np.abs(s1)))
                   & (inconsistency > KINK_NOISE_ULPS * 2.0**-53 * largest))
        sigma = evaluation_noise(model, theta, X, Y, order[~suspect], steps, value[~suspect], s1[~suspect], base,
                                 table_of)
        kinked = suspect & (inconsistency > KINK_NOISE_SIGMAS * math.sqrt(70.0) * sigma)
        # the budget's rounding term is LOSS_ROUNDING_ULPS x depth x u x size: a size that covers the noise seen
        largest = np.maximum(largest, sigma / (LOSS_ROUNDING_ULPS * 2.0**-53))
        spread = SPREAD * inconsistency / h
        first = table[:, :2] if method == "central" else table[:, :4]  # what the value is made of
        row_status = np.where(~np.all(np.isfinite(first), axis=1), STATUS_LOSS_NONFINITE,
                              np.where(~np.isfinite(value), STATUS_VALUE_NONFINITE,
                                       np.where(~np.isfinite(estimate) | ~np.isfinite(spread),
                                                STATUS_ESTIMATE_NONFINITE, STATUS_OK))).astype(np.int8)
    status[order] = row_status
    trunc[order] = np.where(row_status == STATUS_OK, estimate + spread, 0.0)
    kink[order] = kinked & (row_status == STATUS_OK)
    magnitude[order] = largest
    return Numerical(values, magnitude, trunc, kink, steps, status)


def evaluation_noise(model: Model, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, order: np.ndarray,
                     steps: np.ndarray, slope: np.ndarray, s1: np.ndarray, base: float, table_of: Any) -> float:
    """The noise of one evaluation of ``f`` (``sigma``, see :data:`NOISE_PROBES`), from probes."""
    at = np.unique(np.linspace(0, order.size - 1, min(order.size, NOISE_PROBES)).astype(np.int64))
    at = at[np.isfinite(slope[at]) & np.isfinite(s1[at])]
    if at.size == 0:
        return 0.0
    probe = order[at]
    small = steps.copy()
    small[probe] = steps[probe] * PROBE_SHRINK
    one = np.ones(1)
    if table_of is not None:
        values = table_of(theta, probe, small, one, None)[:, 0]
    else:
        values = python_loss_table(model, theta, X, Y, probe, small, one, None)[:, 0]
    moved = (theta[probe] + small[probe]) - theta[probe]  # the move the evaluation saw
    with np.errstate(invalid="ignore", over="ignore"):  # E(w + d) - E(w) - E' d - E'' d^2 / 2, E'' = S(h) / h^2
        curvature = s1[at] * (moved / steps[probe]) ** 2 / 2.0
        residual = np.abs(values - base - slope[at] * moved - curvature)
    residual = residual[np.isfinite(residual)]
    return float(residual.max(initial=0.0))


def _complex(model: Model, theta: np.ndarray, order: np.ndarray, steps: np.ndarray, values: np.ndarray,
             magnitude: np.ndarray, status: np.ndarray, kink: np.ndarray, trunc: np.ndarray,
             progress: ProgressFn | None, error_terms: bool) -> Numerical:
    """The complex step ``Im E(w + ih) / h``: nothing is subtracted, so no truncation or cancellation term."""
    table_of = getattr(model, "complex_table", None)
    if table_of is None:
        raise ValueError(f"method='complex' needs a loss that takes complex parameters: this model of kind "
                         f"{model.kind!r} has no complex_table (fastgrad.check_function's models have one)")
    value = table_of(theta, order, steps, progress)
    values[order] = value
    if error_terms:
        status[order] = np.where(np.isfinite(value), STATUS_OK, STATUS_VALUE_NONFINITE)
        magnitude[order] = np.where(np.isfinite(value), np.abs(value), 0.0)
    return Numerical(values, magnitude, trunc, kink, steps, status)


def loss_difference_budget(model: Model, details: Numerical, loss: float, method: str, user_u: float) -> np.ndarray:
    """Per entry: the truncation estimate plus the rounding of the losses and of the checked gradient.

    ``details.absum`` holds the size of the losses (see
    :func:`loss_differences`): their rounding, ``LOSS_ROUNDING_ULPS x depth
    x u x max|E|``, enters every difference of ``differences`` pairs
    divided by ``2 h``; the checked gradient's own rounding is added per
    tensor by :func:`fastgrad.budget.judge`. The complex step subtracts
    nothing: its budget is the same roundoffs of the derivative itself
    (``absum`` holds ``|value|`` then).
    """
    u = 2.0**-53
    depth = int(hook(model, "depth"))
    tiny = float(np.finfo(np.float32).tiny) if user_u > u else float(np.finfo(np.float64).tiny)
    if method == "complex":  # nothing subtracted: the derivative carries the loss's relative rounding itself
        return LOSS_ROUNDING_ULPS * depth * u * details.absum + tiny
    differences = 1.0 if method == "central" else 3.0
    size = np.maximum(details.absum, abs(loss))
    steps = np.where(details.steps != 0.0, np.abs(details.steps), np.inf)
    rounding = differences * LOSS_ROUNDING_ULPS * depth * u * size / steps
    return details.trunc + rounding + tiny

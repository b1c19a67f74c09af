"""The full engine for a model known only by its loss: differences of :meth:`~fastgrad.protocol.Model.loss_at`.

For a model of kind ``"function"`` (see :mod:`fastgrad.capabilities`)
nothing is compiled: every wanted parameter is moved by ``+-h`` (and
``+-2h``, ``+-4h`` for the truncation estimate) in a private copy of the
flat vector and the model's own loss is evaluated there, in Python. The
error budget has the terms :func:`fastgrad.budget.error_budget` gives the
full engine, with what a loss known from the outside allows: the
truncation estimated from the difference at twice the step, and the
cancellation of ``E(w + h) - E(w - h)`` at the size of the losses seen.
How much rounding a user's loss carries is not known; it is taken as
:data:`LOSS_ROUNDING_ULPS` roundoffs per stage of the model
(:attr:`~fastgrad.protocol.ModelBase.depth`), a provisional figure that
``fastgrad.check_function`` (the next issue) is to settle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._kernels.assemble import STATUS_ESTIMATE_NONFINITE, STATUS_LOSS_NONFINITE, STATUS_OK, STATUS_VALUE_NONFINITE
from .engines import Numerical, parameter_steps
from .protocol import Model, hook

#: Roundoffs of relative error assumed per stage of a model in each loss it returns (see the module docstring).
LOSS_ROUNDING_ULPS = 4.0

ProgressFn = Callable[[int, int], Any]


def _central(losses: dict[int, float], k: int, h: float) -> float:
    """Return the central difference with step ``k h`` from the losses at ``+-k h``."""
    return (losses[k] - losses[-k]) / (2.0 * k * h)


def loss_differences(
    model: Model, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, eps: float, scaled: bool, method: str,
    indices: np.ndarray | None = None, progress: ProgressFn | None = None, error_terms: bool = True,
) -> Numerical:
    """Numerical derivatives of the wanted entries by differences of the model's loss.

    Parameters
    ----------
    model : Model
        Any model the capability table lets the full engine serve.
    theta, X, Y : ndarray
        Flat parameters (not modified) and the validated batch.
    eps, scaled : float, bool
        The step, scaled by ``max(1, |w|)`` when ``scaled`` (see
        :func:`fastgrad.engines.parameter_steps`).
    method : {"central", "richardson"}
    indices : ndarray of int64, optional
        Flat indices to differentiate (default: all); the others are NaN.
    progress : callable, optional
        ``progress(done, total)`` after each entry.
    error_terms : bool
        Also estimate the truncation (``trunc``) and keep the size of the
        losses (``absum``: ``max |E|`` over the points evaluated, per entry).

    Returns
    -------
    Numerical
        ``kink`` is all False: a loss seen from the outside shows no kinks.
    """
    P = model.n_params
    order = np.arange(P, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    steps = parameter_steps(theta, eps, scaled, method)
    values = np.full(P, np.nan)
    size = P if error_terms else 0
    trunc, magnitude, status = np.zeros(size), np.zeros(size), np.zeros(size, dtype=np.int8)
    point = theta.copy()  # moved one entry at a time; the caller's vector is never touched
    # the value needs +-h (central) or +-h, +-2h (Richardson); the truncation estimate one step size more
    reach: tuple[int, ...] = (1, 2) if method == "central" else (1, 2, 4)
    if not error_terms:
        reach = reach[:-1]
    for done, i in enumerate(order.tolist(), start=1):
        h, w = float(steps[i]), float(theta[i])
        losses = {}
        for k in reach:
            for sign in (k, -k):
                point[i] = w + sign * h
                losses[sign] = float(model.loss_at(point, X, Y))
        point[i] = w
        d1 = _central(losses, 1, h)
        value = d1 if method == "central" else (4.0 * d1 - _central(losses, 2, h)) / 3.0
        values[i] = value
        if error_terms:
            d2 = _central(losses, 2, h)
            if method == "central":  # D(2h) - D(h) = 3 c h^2 + ...
                estimate = abs(d2 - d1) / 3.0
            else:  # R(2h) - R(h) = 15 c h^4 + ...
                estimate = abs((4.0 * d2 - _central(losses, 4, h)) / 3.0 - value) / 15.0
            first = [losses[k] for k in (1, -1)] + ([losses[k] for k in (2, -2)] if method != "central" else [])
            if not np.all(np.isfinite(first)):
                status[i] = STATUS_LOSS_NONFINITE
            elif not np.isfinite(value):
                status[i] = STATUS_VALUE_NONFINITE
            elif not np.isfinite(estimate):
                status[i] = STATUS_ESTIMATE_NONFINITE
            trunc[i] = estimate if status[i] == STATUS_OK else 0.0
            magnitude[i] = max((abs(e) for e in losses.values() if np.isfinite(e)), default=0.0)
        if progress is not None:
            progress(done, order.size)
    return Numerical(values, magnitude, trunc, np.zeros(P if error_terms else 0, dtype=bool), steps, status)


def loss_difference_budget(model: Model, details: Numerical, loss: float, method: str, user_u: float) -> np.ndarray:
    """Per entry: the truncation estimate plus the rounding of the losses and of the checked gradient.

    ``details.absum`` holds the size of the losses (see
    :func:`loss_differences`): their rounding, ``LOSS_ROUNDING_ULPS x depth
    x u x max|E|``, enters every difference of ``differences`` pairs
    divided by ``2 h``; the checked gradient's own rounding is added per
    tensor by :func:`fastgrad.budget.judge`.
    """
    u = 2.0**-53
    depth = int(hook(model, "depth"))
    differences = 1.0 if method == "central" else 3.0
    size = np.maximum(details.absum, abs(loss))
    steps = np.where(details.steps != 0.0, np.abs(details.steps), np.inf)
    rounding = differences * LOSS_ROUNDING_ULPS * depth * u * size / steps
    tiny = float(np.finfo(np.float32).tiny) if user_u > u else float(np.finfo(np.float64).tiny)
    return details.trunc + rounding + tiny

"""The ``scipy`` peer: ``scipy.optimize.approx_fprime``, per-parameter forward differences of the NumPy loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .cases import Case, numpy_loss
from .measure import PeerPlan, tolerance_check
from .options import PEER_EPS


def scipy_plan(case: Case, idx: np.ndarray, tol: float) -> PeerPlan:
    """Plan ``approx_fprime``'s timing on ``case``, checked against backprop at ``idx`` within ``tol``.

    Parameters
    ----------
    case : Case
        The net and batch.
    idx : ndarray of int
        The subset timed (every parameter when the whole check fits the budget).
    tol : float
        Largest relative error against backprop that passes (loose: forward differences).

    Returns
    -------
    PeerPlan
        The call, its check and what the check means.
    """
    from scipy.optimize import approx_fprime  # an optional peer: imported only when it runs

    def make(ix: np.ndarray) -> Callable[[], Any]:
        work = case.theta.copy()
        views = case.net.unflatten(work)

        def f(x: np.ndarray) -> float:
            work[ix] = x
            return numpy_loss(views, case.X, case.Y)

        return lambda: approx_fprime(case.theta[ix].copy(), f, PEER_EPS)

    return PeerPlan(make, tolerance_check(case, tol, idx),
                    f"max |numerical - backprop| / max |backprop| <= {tol:g} (forward differences)")

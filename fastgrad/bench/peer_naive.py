"""The ``naive`` peer: the tutorial's loop, perturb one entry and run two full NumPy forward passes of the batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..model import MLP
from .cases import Case, numpy_loss
from .measure import PeerPlan, tolerance_check
from .options import PEER_EPS


def naive_numerical(net: MLP, params: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray, eps: float,
                    flat_indices: np.ndarray) -> np.ndarray:
    """Run the tutorial's loop: perturb one entry, two full forward passes, restore.

    Parameters
    ----------
    net : MLP
        A sigmoid MSE net (see :func:`fastgrad.bench.make_case`).
    params : sequence of ndarray
        Its parameters (left unchanged: the loop works on a copy).
    X, Y : ndarray
        The batch.
    eps : float
        The step of the central difference.
    flat_indices : ndarray of int
        Flat indices of the parameters to difference.

    Returns
    -------
    ndarray
        ``(E(w + eps) - E(w - eps)) / (2 eps)`` for each index, in order.
    """
    work = [p.copy() for p in params]
    out = np.empty(len(flat_indices))
    for k, flat in enumerate(flat_indices):
        name, index = net.locate(int(flat))
        tensor = work[net.tensor_names.index(name)]
        saved = tensor[index]
        tensor[index] = saved + eps
        e_plus = numpy_loss(work, X, Y)
        tensor[index] = saved - eps
        e_minus = numpy_loss(work, X, Y)
        tensor[index] = saved
        out[k] = (e_plus - e_minus) / (2 * eps)
    return out


def naive_plan(case: Case, idx: np.ndarray, tol: float) -> PeerPlan:
    """Plan the naive loop's timing on ``case``, checked against backprop at ``idx`` within ``tol``.

    Parameters
    ----------
    case : Case
        The net and batch.
    idx : ndarray of int
        The subset timed (every parameter when the whole check fits the budget).
    tol : float
        Largest relative error against backprop that passes.

    Returns
    -------
    PeerPlan
        The call, its check and what the check means.
    """
    def make(ix: np.ndarray) -> Callable[[], Any]:
        return lambda: naive_numerical(case.net, case.params, case.X, case.Y, PEER_EPS, ix)

    return PeerPlan(make, tolerance_check(case, tol, idx), f"max |numerical - backprop| / max |backprop| <= {tol:g}")

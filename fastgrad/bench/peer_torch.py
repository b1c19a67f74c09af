"""The ``torch`` and ``torch-fast`` peers: ``torch.autograd.gradcheck``, per parameter or one random projection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..model import MLP
from .cases import Case
from .measure import PeerPlan, same_function, verdict_check
from .options import PEER_EPS


def torch_loss(torch: Any, net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray,
               idx: np.ndarray | None) -> tuple[Callable[[Any], Any], Any]:
    """Return a sigmoid MSE net's loss in torch, as a function of the parameters at ``idx``.

    Parameters
    ----------
    torch : module
        The torch module.
    net : MLP
        A sigmoid MSE net (see :func:`fastgrad.bench.make_case`).
    theta : ndarray
        Its flat parameters; those not at ``idx`` stay fixed at these values.
    X, Y : ndarray
        The batch.
    idx : ndarray of int or None
        Flat indices of the loss's argument (every parameter when None).

    Returns
    -------
    loss : callable
        Takes a float64 tensor of ``len(idx)`` (or P) values, returns the loss tensor.
    x0 : torch.Tensor
        The parameters at ``idx``, a leaf that requires grad.
    """
    theta_t = torch.tensor(theta)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    bounds = list(zip(net.offsets[:-1].tolist(), net.offsets[1:].tolist(), net.param_shapes))
    where = None if idx is None else torch.tensor(idx, dtype=torch.int64)

    def loss(x: Any) -> Any:
        full = x if where is None else theta_t.index_put((where,), x)  # out of place: differentiable in x
        a = Xt
        for layer in range(net.n_layers):
            lo_w, hi_w, shape_w = bounds[2 * layer]
            lo_b, hi_b, shape_b = bounds[2 * layer + 1]
            a = torch.sigmoid(a @ full[lo_w:hi_w].reshape(shape_w) + full[lo_b:hi_b])
        return ((Yt - a) ** 2).sum() / Xt.shape[0]

    x0 = (theta_t if where is None else theta_t[where]).clone().requires_grad_(True)
    return loss, x0


def torch_plan(torch: Any, case: Case, idx: np.ndarray, fast: bool) -> PeerPlan:
    """Plan ``gradcheck``'s timing on ``case``: ``fast_mode=False`` on the subset ``idx``, or ``fast_mode=True``.

    Parameters
    ----------
    torch : module
        The torch module.
    case : Case
        The net and batch.
    idx : ndarray of int
        The subset of the per-parameter check (ignored by ``fast``, which checks one projection of all).
    fast : bool
        ``torch-fast``: gradcheck's ``fast_mode``.

    Returns
    -------
    PeerPlan
        The call, its check (gradcheck's own verdict), and ``problem`` when torch's loss or autograd
        gradient is not fastgrad's.
    """
    loss, x0 = torch_loss(torch, case.net, case.theta, case.X, case.Y, None if fast else idx)
    value = loss(x0)
    (grad,) = torch.autograd.grad(value, x0)
    problem = same_function(case, float(value.detach()), grad.numpy(), None if fast else idx)

    def make(ix: np.ndarray) -> Callable[[], Any]:
        if fast:
            return lambda: torch.autograd.gradcheck(loss, (x0,), eps=PEER_EPS, atol=1e-5, rtol=1e-3,
                                                    fast_mode=True, raise_exception=False)
        lw, xw = torch_loss(torch, case.net, case.theta, case.X, case.Y, ix)
        return lambda: torch.autograd.gradcheck(lw, (xw,), eps=PEER_EPS, atol=1e-5, rtol=1e-3,
                                                fast_mode=False, raise_exception=False)

    how = "gradcheck returned True (rtol 1e-3, atol 1e-5); its loss and autograd gradient match fastgrad's"
    return PeerPlan(make, verdict_check, how, problem)

"""The ``jax`` peer: ``jax.test_util.check_grads``, which checks random projections only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .cases import Case
from .measure import PeerPlan, same_function, verdict_check
from .options import PEER_EPS


def jax_plan(jax: Any, case: Case) -> PeerPlan:
    """Plan ``check_grads``'s timing on ``case`` (reverse mode, first order, on every parameter at once).

    Parameters
    ----------
    jax : module
        The jax module, with ``jax_enable_x64`` set (see :func:`fastgrad.bench.peers.peer_module`).
    case : Case
        The net and batch.

    Returns
    -------
    PeerPlan
        The call, its check (check_grads' own verdict), and ``problem`` when jax's loss or gradient is
        not fastgrad's.
    """
    import jax.numpy as jnp
    from jax.test_util import check_grads

    net = case.net
    bounds = list(zip(net.offsets[:-1].tolist(), net.offsets[1:].tolist(), net.param_shapes))
    Xj, Yj = jnp.asarray(case.X), jnp.asarray(case.Y)

    def jloss(th: Any) -> Any:
        a = Xj
        for layer in range(net.n_layers):
            lo_w, hi_w, shape_w = bounds[2 * layer]
            lo_b, hi_b, _ = bounds[2 * layer + 1]
            a = jax.nn.sigmoid(a @ th[lo_w:hi_w].reshape(shape_w) + th[lo_b:hi_b])
        return jnp.sum((Yj - a) ** 2) / Xj.shape[0]

    th0 = jnp.asarray(case.theta)
    problem = same_function(case, float(jloss(th0)), np.asarray(jax.grad(jloss)(th0)), None)

    def make(ix: np.ndarray) -> Callable[[], Any]:  # a projection of every parameter: ix is ignored
        def run() -> bool:
            try:
                check_grads(jloss, (th0,), order=1, modes=("rev",), eps=PEER_EPS, atol=1e-5, rtol=1e-3)
            except AssertionError:
                return False
            return True
        return run

    how = "check_grads passed (rtol 1e-3, atol 1e-5); its loss and jax.grad match fastgrad's"
    return PeerPlan(make, verdict_check, how, problem)

"""The peers fastgrad is timed beside: which exist, how each is imported, and the row each gives on a net.

Each peer's own code is in its module (:mod:`.peer_naive`, :mod:`.peer_torch`,
:mod:`.peer_scipy`, :mod:`.peer_jax`); here is what they share: the optional
import, the subset a per-parameter peer is timed on, the thread limit, and
the row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cases import Case, spread_indices
from .machine import peer_threads
from .measure import PASSES_PER_PARAM, PeerPlan, Row, subset_size, time_calls
from .options import PEER_EPS, Options
from .peer_jax import jax_plan
from .peer_naive import naive_plan
from .peer_scipy import scipy_plan
from .peer_torch import torch_plan

#: Max |numerical - backprop| / max |backprop| allowed, for the peers that return per-parameter values.
PEER_RTOL = {"naive": 1e-6, "scipy": 1e-2}  # scipy: forward differences, truncation ~ h |E''| / 2

PEER_LABELS = {
    "naive": "naive NumPy loop",
    "torch": "torch.autograd.gradcheck",
    "torch-fast": "torch gradcheck fast_mode (projection only)",
    "scipy": "scipy approx_fprime (forward diff.)",
    "jax": "jax check_grads (projection only)",
}
#: Peers that check a random projection of the gradient, not every parameter.
PROJECTION_ONLY = ("torch-fast", "jax")


def peer_module(peer: str) -> tuple[Any, str | None]:
    """Import what a peer needs.

    Parameters
    ----------
    peer : str
        One of :data:`fastgrad.bench.options.PEERS`.

    Returns
    -------
    tuple
        ``(module, None)``, or ``(None, one-line reason it is skipped)`` when the
        module is not installed or cannot be used. ``naive`` needs NumPy only.
    """
    name = {"naive": None, "torch": "torch", "torch-fast": "torch", "scipy": "scipy", "jax": "jax"}[peer]
    if name is None:
        return np, None
    hint = {
        "torch": "pip install torch==2.13.0 (the CPU build)",
        "scipy": 'pip install scipy, or pip install -e ".[bench]"',
        "jax": 'pip install "jax[cpu]"',
    }[name]
    try:
        module = __import__(name)
        if name == "scipy":
            import scipy.optimize  # noqa: F401
        if name == "jax":
            module.config.update("jax_enable_x64", True)
            import jax.test_util  # noqa: F401
    except ImportError:
        return None, f"{peer}: skipped ({name} is not installed; {hint})"
    except Exception as exc:  # noqa: BLE001 - a broken install: skip the peer, say why
        return None, f"{peer}: skipped ({name} cannot be used: {type(exc).__name__}: {exc})"
    return module, None


def _plan(case: Case, peer: str, module: Any, idx: np.ndarray) -> PeerPlan:
    if peer == "naive":
        return naive_plan(case, idx, PEER_RTOL["naive"])
    if peer == "scipy":
        return scipy_plan(case, idx, PEER_RTOL["scipy"])
    if peer in ("torch", "torch-fast"):
        return torch_plan(module, case, idx, fast=peer == "torch-fast")
    if peer == "jax":
        return jax_plan(module, case)
    raise ValueError(peer)  # pragma: no cover - the --peers parser rejects it


def peer_row(case: Case, peer: str, module: Any, opts: Options) -> Row:
    """Time one peer on this net (a subset when its full check would exceed the budget).

    Parameters
    ----------
    case : Case
        The net and batch.
    peer : str
        The peer's name.
    module : module
        What :func:`peer_module` imported for it.
    opts : Options
        The run's options (subset budget, repeats, seed, the peers' thread count).

    Returns
    -------
    Row
        The full check's time (extrapolated from the subset when one was timed) and its verdict.
    """
    net, P = case.net, case.net.n_params
    per_parameter = peer in PASSES_PER_PARAM
    if per_parameter:
        # A subset when the whole check would not fit the budget; when it fits, spread_indices returns every
        # index (np.arange(P)), so a per-parameter peer is always made on indices (the whole check included).
        idx = spread_indices(net, subset_size(case, PASSES_PER_PARAM[peer], opts.budget), seed=opts.seed)
    else:
        idx = np.arange(P, dtype=np.int64)  # a projection-only peer checks every parameter (its make ignores idx)
    tol = PEER_RTOL.get(peer)
    torch = module if peer in ("torch", "torch-fast") else None
    plan = _plan(case, peer, module, idx)

    with peer_threads(opts.peer_threads, torch):
        if per_parameter:
            warm = time_calls(plan.make(idx[:2]), lambda _: (None, True), 0, 0.0)  # first use (imports, caches)
            timing = time_calls(plan.make(idx), plan.check, max(1, opts.repeats - 1), opts.budget)
            first = warm.first
        else:
            timing = time_calls(plan.make(idx), plan.check, opts.repeats, opts.budget)
            first = timing.first
    subset = int(len(idx)) if len(idx) < P else None  # parameters timed, when extrapolated
    scale = P / subset if subset is not None else 1.0
    row = Row(
        net=case.label, sizes=list(net.sizes), n_params=P, batch=case.X.shape[0], kind="peer",
        what=PEER_LABELS[peer], engine=None, method="forward" if peer == "scipy" else "central", peer=peer,
        threads=opts.peer_threads, eps=PEER_EPS, seconds=timing.median * scale, measured_seconds=timing.median,
        first_call_seconds=first, warm_calls=len(timing.warm), subset=subset,
        forward_pass_seconds=case.forward_s, max_rel_error=timing.worst_error if tol is not None else None,
        tolerance=tol, passed=timing.ok and plan.problem is None, projection_only=peer in PROJECTION_ONLY,
        check=plan.how,
    )
    if peer in PROJECTION_ONLY:
        row.notes.append("random projection only, not per parameter")
    if plan.problem is not None:
        row.notes.append(f"{peer}: {plan.problem}")
    return row

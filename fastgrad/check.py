"""The public checkers: :func:`numerical_gradient` and :func:`check`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from . import _validate
from ._config import DEFAULT_ATOL, DEFAULT_ENGINE, DEFAULT_EPS, DEFAULT_EPS_INCREMENTAL, DEFAULT_RTOL, threads_context
from ._kernels.loss import loss_from_activations
from .engines import ENGINES, numerical_flat
from .model import MLP
from .result import CheckResult, TensorSummary

METHODS = ("central",)

ProgressFn = Callable[[int, int], Any]


def _prepare(
    net: Any, params: Any, X: Any, Y: Any, eps: Any, method: Any, engine: Any, threads: Any, progress: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int | None]:
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a fastgrad.MLP, got {type(net).__name__}")
    _validate.choice(method, METHODS, "method")
    _validate.choice(engine, ENGINES, "engine")
    if eps is None:
        eps_value = DEFAULT_EPS_INCREMENTAL if engine == "incremental" else DEFAULT_EPS
    else:
        eps_value = _validate.positive_float(eps, "eps")
    n_threads = _validate.thread_count(threads, numba.config.NUMBA_NUM_THREADS)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable(done, total) or None, got {type(progress).__name__}")
    theta = net.flatten(params)
    Xa, Ya = net.batch(X, Y)
    return theta, Xa, Ya, eps_value, n_threads


def numerical_gradient(
    net: MLP,
    params: Any,
    X: Any,
    Y: Any,
    *,
    eps: float | None = None,
    method: str = "central",
    engine: str = DEFAULT_ENGINE,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> list[np.ndarray]:
    """Numerical gradient of the loss, one parameter at a time.

    For every parameter ``w``: ``(E(w + eps) - E(w - eps)) / (2 eps)``,
    computed by a parallel Numba kernel. The ``"incremental"`` engine (the
    default) runs the forward pass once and carries each perturbation's
    *changes* through the layers after it, without subtracting two losses,
    so that ``eps`` can be tiny; ``"full"`` recomputes the loss with two full
    forward passes per parameter, as the tutorial's loop does. Either result
    is bitwise the same for any number of threads.

    Parameters
    ----------
    net : MLP
        The network.
    params : list of array_like
        ``[W1, b1, W2, b2, ...]``; never modified.
    X : array_like, shape (N, D)
        Minibatch, one row per sample.
    Y : array_like, shape (N, K)
        Targets.
    eps : float, optional
        Step; default 1e-8 for the incremental engine, 1e-4 for the full one.
    method : {"central"}
        Difference formula.
    engine : {"incremental", "full"}
        How the perturbed losses are evaluated (see above).
    threads : int, optional
        Numba threads for this call (restored afterwards).
    progress : callable, optional
        Called as ``progress(done, total)`` after each block of parameters.

    Returns
    -------
    list of ndarray
        Float64 arrays shaped like ``params``.
    """
    theta, Xa, Ya, eps_value, n_threads = _prepare(net, params, X, Y, eps, method, engine, threads, progress)
    with threads_context(n_threads):
        Z, A = net._forward(theta, Xa)
        _finite_loss(net, Z, A, Ya)
        flat = numerical_flat(net, theta, Xa, Ya, eps_value, engine, progress, Z=Z, A=A)
    return net.unflatten(flat)


def _finite_loss(net: MLP, Z: np.ndarray, A: np.ndarray, Y: np.ndarray) -> float:
    """The loss at the base point; ``ValueError`` when it is not finite."""
    loss = float(loss_from_activations(Z, A, Y, net.layout, net.loss_code))
    if not np.isfinite(loss):
        raise ValueError(
            f"params: the loss is {loss} at these params, X and Y (the forward pass overflows); "
            "a gradient check needs a finite loss"
        )
    return loss


def relative_error(analytic: np.ndarray, numerical: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """``|a - n| / max(|a|, |n|, atol / rtol)``, and 0 where ``a == n``.

    With this floor an entry fails (``rel > rtol``) exactly when
    ``|a - n| > max(rtol * max(|a|, |n|), atol)``: entries whose values are
    both below ``atol / rtol`` are judged by the absolute tolerance. A NaN or
    infinite value on either side (e.g. an overflowing loss) gives ``inf``.
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.abs(analytic - numerical)
        scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numerical)), atol / rtol)
        rel = np.where(diff == 0.0, 0.0, diff / scale)
    # a non-finite value on either side (the loss overflowed) is never a pass
    rel[~(np.isfinite(analytic) & np.isfinite(numerical))] = np.inf
    return rel


def check(
    net: MLP,
    params: Any,
    X: Any,
    Y: Any,
    grads: Any = None,
    *,
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    method: str = "central",
    engine: str = DEFAULT_ENGINE,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> CheckResult:
    """Compare a gradient with fastgrad's numerical gradient, entry by entry.

    Parameters
    ----------
    net, params, X, Y, eps, method, engine, threads, progress
        As in :func:`numerical_gradient`.
    grads : list of array_like, optional
        The gradient to check, shaped like ``params`` (your own backprop's
        output); None checks ``net.backprop``. Never modified.
    rtol : float, optional
        Relative tolerance, > 0; default 1e-5.
    atol : float, optional
        Absolute tolerance, >= 0; default 1e-8.

    Returns
    -------
    CheckResult
        ``passed``, ``max_rel_error``, per-tensor summaries and failures.

    Notes
    -----
    An entry with analytic value ``a`` and numerical value ``n`` fails when
    ``|a - n| / max(|a|, |n|, atol / rtol) > rtol``.
    """
    started = time.perf_counter()
    theta, Xa, Ya, eps_value, n_threads = _prepare(net, params, X, Y, eps, method, engine, threads, progress)
    rtol_value = DEFAULT_RTOL if rtol is None else _validate.positive_float(rtol, "rtol")
    atol_value = DEFAULT_ATOL if atol is None else _validate.positive_float(atol, "atol", allow_zero=True)
    given = None if grads is None else net.flatten(grads, "grads")
    with threads_context(n_threads):
        Z, A = net._forward(theta, Xa)
        loss = _finite_loss(net, Z, A, Ya)
        analytic_flat = net._backprop_flat(theta, Xa, Ya, Z, A) if given is None else given
        numerical = numerical_flat(net, theta, Xa, Ya, eps_value, engine, progress, Z=Z, A=A)
    analytic = net.unflatten(analytic_flat)
    numerical = net.unflatten(numerical)
    rel = [relative_error(a, n, rtol_value, atol_value) for a, n in zip(analytic, numerical)]
    summaries = []
    for name, a, n, r in zip(net.tensor_names, analytic, numerical, rel):
        worst = int(np.argmax(r))
        index = tuple(int(i) for i in np.unravel_index(worst, a.shape))
        n_failed = int(np.count_nonzero(r > rtol_value))
        summaries.append(
            TensorSummary(
                name=name,
                shape=a.shape,
                passed=n_failed == 0,
                n_failed=n_failed,
                max_rel_error=float(r.flat[worst]),
                worst_index=index,
                worst_analytic=float(a.flat[worst]),
                worst_numerical=float(n.flat[worst]),
            )
        )
    return CheckResult(
        passed=all(s.passed for s in summaries),
        max_rel_error=max(s.max_rel_error for s in summaries),
        tensors=summaries,
        analytic=analytic,
        numerical=numerical,
        rel_error=rel,
        rtol=rtol_value,
        atol=atol_value,
        eps=eps_value,
        method=method,
        loss=loss,
        n_samples=Xa.shape[0],
        seconds=time.perf_counter() - started,
        model=repr(net),
        engine=engine,
    )

"""The public checkers: :func:`numerical_gradient` and :func:`check`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from . import _validate
from ._config import (
    DEFAULT_ATOL,
    DEFAULT_ENGINE,
    DEFAULT_EPS,
    DEFAULT_EPS_COMPLEX,
    DEFAULT_EPS_INCREMENTAL,
    DEFAULT_EPS_RICHARDSON,
    DEFAULT_EPS_RICHARDSON_INCREMENTAL,
    DEFAULT_RTOL,
    DEFAULT_SAFETY,
    threads_context,
)
from ._kernels.loss import loss_from_activations
from ._kernels.verdict import (
    FAILED,
    KINK,
    LARGE_STEP,
    N_COUNTS,
    NONFINITE,
    UNCHECKED,
    UNRESOLVED,
)
from .budget import NEGLIGIBLE_BUDGET, error_budget, judge, step_reach, user_unit_roundoff
from .diagnose import diagnose_tensor, position_hint
from .directional import directional_search
from .engines import ENGINES, Numerical, numerical_details
from .model import MLP
from .result import INCONCLUSIVE_REASONS, CheckResult, TensorSummary
from .sampling import sample_mask
from .user_grads import call_user_grads

METHODS = ("central", "richardson", "complex")
#: check() also takes method="directional" (projections and bisection).
CHECK_METHODS = METHODS + ("directional",)

ProgressFn = Callable[[int, int], Any]

def default_eps(engine: str, method: str) -> float:
    """The default step of a method and engine (see docs/guide.md, "How fastgrad decides")."""
    if method in ("complex", "directional"):
        return DEFAULT_EPS_COMPLEX
    if method == "richardson":
        return DEFAULT_EPS_RICHARDSON if engine == "full" else DEFAULT_EPS_RICHARDSON_INCREMENTAL
    return DEFAULT_EPS if engine == "full" else DEFAULT_EPS_INCREMENTAL


def _prepare(
    net: Any, params: Any, X: Any, Y: Any, eps: Any, method: Any, engine: Any, threads: Any, progress: Any,
    methods: tuple[str, ...] = METHODS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, bool, int | None]:
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a fastgrad.MLP, got {type(net).__name__}")
    _validate.engine_method(engine, method, ENGINES, methods)
    if eps is None:
        eps_value, scaled = default_eps(engine, method), True
    else:
        eps_value, scaled = _validate.positive_float(eps, "eps"), False
    n_threads = _validate.thread_count(threads, numba.config.NUMBA_NUM_THREADS)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable(done, total) or None, got {type(progress).__name__}")
    theta = net.flatten(params)
    Xa, Ya = net.batch(X, Y)
    return theta, Xa, Ya, eps_value, scaled, n_threads


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
    sample: int | float | None = None,
    seed: int | None = None,
) -> list[np.ndarray]:
    """Numerical gradient of the loss, one parameter at a time.

    For every parameter ``w``: ``(E(w + h) - E(w - h)) / (2 h)`` (or the
    chosen ``method``), computed by a parallel Numba kernel. The
    ``"incremental"`` engine (the default) runs the forward pass once and
    carries each perturbation's *changes* through the layers after it,
    without subtracting two losses, so that ``h`` can be tiny; ``"full"``
    recomputes the loss with full forward passes per parameter, as the
    tutorial's loop does. Either result is bitwise the same for any number
    of threads.

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
        Step ``h``, used as given (made exactly representable,
        ``fl(w + h) - w``). Default: per parameter ``eps0 * max(1, |w|)``
        with ``eps0`` = 1e-8 (central, incremental engine), 1e-4 (central,
        full engine), 1e-5 / 1e-3 (richardson, incremental / full engine),
        1e-20 (complex).
    method : {"central", "richardson", "complex"}
        (:func:`check` also takes ``"directional"``.)
        ``(E(w+h) - E(w-h)) / 2h``; Richardson's ``(4 D(h) - D(2h)) / 3``
        (fourth order); or the complex step ``Im E(w + ih) / h``, which
        subtracts nothing (for relu/leaky_relu it gives the derivative of the
        piece the pre-activation is on).
    engine : {"incremental", "full", "unit"}
        How the perturbed losses are evaluated (see above). ``"unit"``:
        differentiate numerically with respect to each unit's
        pre-activation, per sample (two cancellation-free evaluations of
        that sample's later layers, step ``eps``), and assemble every
        weight's and bias's derivative through the exact relation
        dz/dW = a (``sum_n a_ni delta_nj``): the derivative, not the central
        difference in the weight, with truncation ``eps^2 sum_n a e3``.
    threads : int, optional
        Numba threads for this call (restored afterwards).
    progress : callable, optional
        Called as ``progress(done, total)`` after each block of parameters.
    sample, seed : optional
        Compute only a sample of the entries (see :func:`check`); the others
        are NaN.

    Returns
    -------
    list of ndarray
        Float64 arrays shaped like ``params``.
    """
    _validate.entry_arguments(net, X, Y, seed, _validate.NUMERICAL_BYTES_PER_PARAM, "numerical_gradient")
    theta, Xa, Ya, eps_value, scaled, n_threads = _prepare(net, params, X, Y, eps, method, engine, threads, progress)
    with threads_context(n_threads):
        Z, A = net._forward(theta, Xa)
        _finite_loss(net, Z, A, Ya, Xa, theta)
        indices = None if sample is None else np.flatnonzero(sample_mask(net, sample, seed))
        details = numerical_details(
            net, theta, Xa, Ya, eps_value, engine, method, progress, indices=indices, Z=Z, A=A, scaled=scaled,
            budget=False,
        )
    return net.unflatten(details.values)


def _finite_loss(net: MLP, Z: np.ndarray, A: np.ndarray, Y: np.ndarray, X: np.ndarray | None = None,
                 theta: np.ndarray | None = None) -> float:
    """The loss at the base point; ``ValueError`` when it is not finite, with the sizes that overflowed it."""
    loss = float(loss_from_activations(Z, A, Y, net.layout, net.loss_code))
    if not np.isfinite(loss):
        sizes = ""
        if X is not None and theta is not None:
            sizes = (f" (largest |X| {float(np.max(np.abs(X))):.3g}, largest |param| "
                     f"{float(np.max(np.abs(theta))):.3g}, largest |pre-activation| {float(np.max(np.abs(Z))):.3g})")
        raise ValueError(
            f"params, X, Y: the loss is {loss} at these params, X and Y: the forward pass overflows{sizes}; "
            "a gradient check needs a finite loss (rescale X, or check the params)"
        )
    return loss


def _directional(
    net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, g: np.ndarray, user_u: float, safety: float,
    seed: int | None, Z: np.ndarray, A: np.ndarray, loss: float,
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
    P = net.n_params
    found = directional_search(net, theta, X, Y, g, user_u, safety, seed, Z, A, NEGLIGIBLE_BUDGET)
    # each tensor's largest |g| too: the verdict takes a tensor's scale (the floor for the user's rounding,
    # the negligible budget) from its checked entries, and it must be the tensor's, as method="central" has it
    largest = np.array([lo + int(np.argmax(np.where(np.isfinite(g[lo:hi]), np.abs(g[lo:hi]), -1.0)))
                        for lo, hi in zip(net.offsets[:-1], net.offsets[1:]) if hi > lo], dtype=np.int64)
    entries = np.union1d(np.union1d(np.asarray(found.leaves, dtype=np.int64), found.unresolved), largest)
    checked = np.zeros(P, dtype=bool)
    checked[entries] = True
    details = numerical_details(net, theta, X, Y, DEFAULT_EPS_INCREMENTAL, "incremental", "central", None,
                                indices=entries, Z=Z, A=A, scaled=True)
    budget = error_budget(net, details, theta, X, Z, A, Y, loss, "incremental", "central", user_u)
    np.copyto(budget, found.budget, where=~checked)
    return details, budget, checked, found.evaluations, found.failed_tensors


#: A failing tensor larger than this is diagnosed on a strided sample of this
#: many entries (the whole-tensor patterns need several temporaries of the
#: tensor's size: 40 bytes per parameter on a large failing tensor).
HINT_ENTRIES = 1 << 16
#: ... and its positions (one entry, one column, one row) from its failing
#: entries' indices when there are at most this many.
HINT_POSITIONS = 4096


def _hint(name: str, a: np.ndarray, n: np.ndarray, status: np.ndarray, n_failed: int, N: int,
          w: np.ndarray) -> str | None:
    """A diagnosis of a failing tensor; for a sampled or very large one, only the patterns a sample can show."""
    failed = status == FAILED
    checked = status != UNCHECKED
    if a.size <= HINT_ENTRIES and checked.all():
        return diagnose_tensor(name, a, n, failed, N, param=w)
    hint = None
    if n_failed <= HINT_POSITIONS and checked.all():
        hint = position_hint(name, a.shape, np.flatnonzero(failed))
    every = bool(checked.all())
    if every:  # evenly spaced entries, without an index array of the tensor's size
        pick = np.linspace(0, a.size - 1, min(a.size, HINT_ENTRIES)).astype(np.int64)
    else:
        pick = np.flatnonzero(checked.reshape(-1))
        if pick.size > HINT_ENTRIES:
            pick = pick[np.linspace(0, pick.size - 1, HINT_ENTRIES).astype(np.int64)]
    flat = (a.reshape(-1)[pick], n.reshape(-1)[pick], failed.reshape(-1)[pick], w.reshape(-1)[pick])
    sampled = diagnose_tensor(name, flat[0], flat[1], flat[2], N, param=flat[3])
    if sampled is None or sampled.startswith("only ") or "transposed" in sampled:
        return hint  # positions within the sample are not positions in the tensor
    return sampled + (" (over the sampled entries)" if not every else " (over a sample of the entries)")


#: ``given`` of :func:`check` when the user's gradient list is copied only after the numerical gradient.
_LATER = np.zeros(0)


def _analytic(net: MLP, grads: Any, given: np.ndarray | None, theta: np.ndarray, X: np.ndarray, Y: np.ndarray,
              Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """The gradient to check, flat: ``net.backprop``'s, the callable's answer, or a copy of the user's list."""
    if given is None:
        return net._backprop_flat(theta, X, Y, Z, A)
    if given is _LATER:
        return net.flatten(grads, "grads")
    return given


def _zero_bias_advice(net: MLP, params: Any) -> list[str]:
    """Advice (not a failure) when every bias is exactly zero: bias gradients are then checked at a special point."""
    biases = [np.asarray(p) for name, p in zip(net.tensor_names, params) if name.startswith("b")]
    if biases and all(b.size and not np.any(b) for b in biases):
        return ["every bias is exactly 0: a gradient code whose own forward pass leaves a bias out matches "
                "exactly there; check again at nonzero biases too (MLP.init gives small random ones)"]
    return []


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
    safety: float = DEFAULT_SAFETY,
    sample: int | float | None = None,
    seed: int | None = None,
    entries: np.ndarray | None = None,
) -> CheckResult:
    """Compare a gradient with fastgrad's numerical gradient, entry by entry.

    Parameters
    ----------
    net, params, X, Y, eps, method, engine, threads, progress
        As in :func:`numerical_gradient`.
    grads : list of array_like, or callable, optional
        The gradient to check, shaped like ``params`` (your own backprop's
        output), or your backprop itself, ``grads(params, X, Y) -> list``:
        it is then called twice on copies, and a callable that answers
        differently (nondeterministic, or accumulating) or writes into its
        arguments fails the check with a note. None checks ``net.backprop``.
        Never modified.
    rtol, atol : float, optional
        Fixed tolerances instead of the error budget: an entry fails when
        ``|a - n| / max(|a|, |n|, atol / rtol) > rtol`` (defaults, when only
        one is given: rtol 1e-5, atol 1e-8).
    safety : float, optional
        Budget verdict: an entry fails when ``|a - n|`` exceeds ``safety``
        times its error budget (default 10).
    sample : int or float, optional
        Check only a sample: this many entries of every tensor (int), or
        this fraction of each (float in (0, 1]); every bias entry and every
        tensor's corner entries are always included, the rest drawn at
        random with ``seed``. ``result.checked`` says which entries were.
    seed : int, optional
        Seed of the sample.
    entries : ndarray of bool, shape (P,), optional
        Exactly these flat entries (used by :class:`fastgrad.Monitor`); not
        with ``sample``.

    Returns
    -------
    CheckResult
        ``passed``, per-entry budgets and ratios, per-tensor summaries with
        diagnosis hints, failures (worst first), inconclusive entries, notes.

    Notes
    -----
    The default verdict estimates, for every entry, how far the numerical
    derivative can be from the true one and how much rounding the checked
    gradient carries in its own dtype (:func:`fastgrad.budget.error_budget`). An entry
    whose steps cross a relu/leaky_relu kink is *inconclusive*: listed in
    ``result.inconclusive`` and left out of ``passed``.
    """
    _validate.entry_arguments(net, X, Y, seed, _validate.CHECK_BYTES_PER_PARAM, "a check", entries)
    started = time.perf_counter()
    directional = method == "directional"  # its projections use their own fixed step, STEP
    theta, Xa, Ya, eps_value, scaled, n_threads = _prepare(
        net, params, X, Y, None if directional else eps, method, engine, threads, progress, methods=CHECK_METHODS
    )
    verdict = "budget" if rtol is None and atol is None else "tolerance"
    rtol_value = DEFAULT_RTOL if rtol is None else _validate.positive_float(rtol, "rtol")
    atol_value = DEFAULT_ATOL if atol is None else _validate.positive_float(atol, "atol", allow_zero=True)
    safety_value = _validate.positive_float(safety, "safety")
    if sample is not None and entries is not None:
        raise ValueError("sample and entries: give one or the other")
    if method == "directional" and (sample is not None or entries is not None):
        raise ValueError("method='directional' chooses its own entries; sample/entries are not used with it")
    if sample is not None:
        checked_flat = sample_mask(net, sample, seed)
    elif entries is not None:
        checked_flat = np.asarray(entries, dtype=bool)
        if checked_flat.shape != (net.n_params,):
            raise ValueError(f"entries must be a bool mask of shape ({net.n_params},), got {checked_flat.shape}")
    else:
        checked_flat = None
    indices = None if checked_flat is None else np.flatnonzero(checked_flat)
    notes: list[str] = []
    dtypes: list[np.dtype] = []
    if grads is None:
        given = None
    elif callable(grads):
        given, notes, dtypes = call_user_grads(grads, net, params, X, Y)
    else:
        # every error now, before the long part; the flat copy only after it (one array of P fewer at the peak)
        _validate.tensor_list(grads, net.tensor_names, net.param_shapes, "grads", copy=False, finite=True)
        given = _LATER
        dtypes = [np.asarray(g).dtype for g in grads]
    user_u = user_unit_roundoff(list(params) + [X, Y], dtypes)
    with threads_context(n_threads):
        Z, A = net._forward(theta, Xa)
        loss = _finite_loss(net, Z, A, Ya, Xa, theta)
        if method == "directional":
            analytic_flat = _analytic(net, grads, given, theta, Xa, Ya, Z, A)
            details, budget_flat, checked_flat, forward_passes, disagreeing = _directional(
                net, theta, Xa, Ya, analytic_flat, user_u, safety_value, seed, Z, A, loss
            )
        else:
            details = numerical_details(
                net, theta, Xa, Ya, eps_value, engine, method, progress, indices=indices, Z=Z, A=A, scaled=scaled,
                keep_steps=False,
            )
            budget_flat = error_budget(net, details, theta, Xa, Z, A, Ya, loss, engine, method, user_u,
                                       in_place=True)
            # what the budget was made of is spent: free it before the gradient is computed (item 11)
            details = Numerical(details.values, np.zeros(0), np.zeros(0), details.kink, np.zeros(0))
            forward_passes, disagreeing = None, []
            analytic_flat = _analytic(net, grads, given, theta, Xa, Ya, Z, A)
        status_flat, counts, maxima, worst_at = judge(
            net, analytic_flat, details, budget_flat, checked_flat, user_u, Xa.shape[0], verdict == "budget",
            safety_value, rtol_value, atol_value, scale_from_analytic=directional, theta=theta,
            step_reach=None if directional or verdict != "budget"
            else step_reach(net, Xa, A, eps_value, scaled, engine, method))
    for t, name in enumerate(net.tensor_names):
        if name in disagreeing and counts[t, 0] == 0:
            notes.append(f"the projection of {name} disagrees with the gradient, but no single entry does "
                         "(errors spread thinly over many entries?): check it with method='central'")
    analytic = net.unflatten(analytic_flat)
    numerical = net.unflatten(details.values)
    budget = net.unflatten(budget_flat)
    status = net.unflatten(status_flat)
    param_values = net.unflatten(theta)
    summaries = []
    for t, (name, a, n, st) in enumerate(zip(net.tensor_names, analytic, numerical, status)):
        n_failed, n_checked = int(counts[t, 0]), int(counts[t, N_COUNTS - 1])
        worst = int(worst_at[t])
        hint = None
        if n_failed:
            hint = _hint(name, a, n, st, n_failed, Xa.shape[0], param_values[t])
        summaries.append(
            TensorSummary(
                name=name,
                shape=a.shape,
                passed=n_failed == 0,
                n_failed=n_failed,
                max_rel_error=float(maxima[t, 0]),
                worst_index=tuple(int(i) for i in np.unravel_index(worst, a.shape)),
                worst_analytic=float(a.flat[worst]),
                worst_numerical=float(n.flat[worst]),
                n_inconclusive=int(counts[t, 1:N_COUNTS - 1].sum()),
                n_checked=n_checked,
                max_budget_ratio=float(maxima[t, 1]),
                hint=hint,
            )
        )
    reasons = {INCONCLUSIVE_REASONS[code]: int(counts[:, code - 1].sum())
               for code in (KINK, UNRESOLVED, NONFINITE, LARGE_STEP) if counts[:, code - 1].any()}
    advice = _zero_bias_advice(net, params)
    # a tensor the check cannot vouch for makes the whole check unable to (a logistic regression's one weight
    # beside its judged bias is half the entries, and all of what matters); method="directional" vouches for
    # every entry, by a projection or one by one
    judged = np.diff(np.asarray(net.offsets)) if directional else counts[:, N_COUNTS - 1]
    mostly_inconclusive = bool(np.any(2 * counts[:, 1:N_COUNTS - 1].sum(axis=1) > judged))
    return CheckResult(
        passed=all(s.passed for s in summaries) and not notes and not mostly_inconclusive,
        max_rel_error=max(s.max_rel_error for s in summaries),
        tensors=summaries,
        analytic=analytic,
        numerical=numerical,
        rtol=rtol_value,
        atol=atol_value,
        eps=eps_value,
        method=method,
        loss=loss,
        n_samples=Xa.shape[0],
        seconds=time.perf_counter() - started,
        model=repr(net),
        engine=engine,
        verdict=verdict,
        budget=budget,
        safety=safety_value,
        notes=notes,
        forward_passes=forward_passes,
        mostly_inconclusive=mostly_inconclusive,
        advice=advice,
        entry_status=status,
        inconclusive_reasons=reasons,
    )

"""The public checkers, :func:`numerical_gradient` and :func:`check`, as short steps.

:func:`check` resolves its inputs (:func:`_resolve`: validation, the
capability table's route, the verdict's settings, the entries and the
user's gradient), computes (:func:`fastgrad.compute.compute`: the loss, the
numerical gradient, its error budget and the gradient to check, by the
backend of the model's kind), judges (:func:`_judge`) and builds the result
(:func:`_build_result`). The module was ``fastgrad/check.py``; it is named
apart from the function :func:`fastgrad.check`, which shadowed it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from . import _scratch, _validate, sharding
from ._config import DEFAULT_ATOL, DEFAULT_ENGINE, DEFAULT_RTOL, DEFAULT_SAFETY, threads_context
from ._kernels.verdict import FAILED, KINK, LARGE_STEP, N_COUNTS, NONFINITE, UNCHECKED, UNRESOLVED
from .budget import judge, user_unit_roundoff
from .capabilities import CHECK_METHODS, METHODS, MLP_KIND, default_eps, resolve
from .compute import LATER, CheckInputs, Computed, Prepared, compute, numerical_values
from .diagnose import diagnose_tensor, position_hint
from .model import MLP
from .protocol import Model, hook, require_model
from .result import INCONCLUSIVE_REASONS, CheckResult, TensorSummary
from .sampling import sample_mask
from .user_grads import call_user_grads

__all__ = ["CHECK_METHODS", "METHODS", "check", "default_eps", "numerical_gradient"]

ProgressFn = Callable[[int, int], Any]


def _prepare(
    net: Any, params: Any, X: Any, Y: Any, eps: Any, method: Any, engine: Any, threads: Any, progress: Any,
    methods: tuple[str, ...] = METHODS, workers: Any = None, keep_inputs: bool = False,
) -> Prepared:
    """Validate the arguments every checker takes; resolve engine and method through the capability table.

    ``keep_inputs``: the caller lets nothing of ``theta`` and ``X`` leave it, so an MLP checked in this
    process copies them into kept scratch (:mod:`fastgrad._scratch`); other models get them as arguments.
    """
    model = require_model(net)
    route = resolve(engine, method, model.kind, methods)
    if eps is None:
        eps_value, scaled = default_eps(engine, method, model.kind), True
    else:
        eps_value, scaled = _validate.positive_float(eps, "eps"), False
    n_threads = _validate.thread_count(threads, numba.config.NUMBA_NUM_THREADS)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable(done, total) or None, got {type(progress).__name__}")
    if keep_inputs and isinstance(model, MLP) and workers is None:
        theta = model.flatten(params, keep=True)
        Xa, Ya = model.batch(X, Y, keep=True)
    else:
        theta = model.flatten(params)
        Xa, Ya = model.batch(X, Y)
    assert Ya is not None  # (Y is required: entry_arguments said so)
    workers = sharding.validate(workers)
    if workers is not None and model.kind != MLP_KIND:
        raise ValueError(f"workers: a model of kind {model.kind!r} takes its workers itself (check_function's "
                         "workers=); check() and numerical_gradient() shard an MLP's kernels")
    return Prepared(theta, Xa, Ya, eps_value, scaled, n_threads, route, workers)


def numerical_gradient(
    net: Model,
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
    workers: Any = None,
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
    net : MLP or Model
        The network (or any model implementing :class:`fastgrad.protocol.Model`; which engines
        and methods serve it is in :mod:`fastgrad.capabilities`).
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
    workers : None, int, callable or dask.distributed.Client, optional
        Where the derivatives are computed: this process (None), that many
        local processes, a map-like ``workers(function, iterable)``, or a
        Dask cluster's workers (:mod:`fastgrad.sharding`); bitwise the same
        result either way.

    Returns
    -------
    list of ndarray
        Float64 arrays shaped like ``params``.
    """
    _validate.entry_arguments(net, X, Y, seed, _validate.NUMERICAL_BYTES_PER_PARAM, "numerical_gradient")
    with _scratch.scope():
        # only the values leave this call: an MLP's copies of params and X can be kept scratch (see _scratch)
        prepared = _prepare(net, params, X, Y, eps, method, engine, threads, progress, workers=workers,
                            keep_inputs=True)
        with threads_context(prepared.threads):
            values = numerical_values(net, prepared, sample, seed, progress)
    return hook(net, "shaped_like")(net.unflatten(values), params)


#: A failing tensor larger than this is diagnosed on a strided sample of this
#: many entries (the whole-tensor patterns need several temporaries of the
#: tensor's size: 40 bytes per parameter on a large failing tensor).
HINT_ENTRIES = 1 << 16
#: ... and its positions (one entry, one column, one row) from its failing
#: entries' indices when there are at most this many.
HINT_POSITIONS = 4096


def _hint(name: str, a: np.ndarray, n: np.ndarray, status: np.ndarray, n_failed: int, N: int,
          w: np.ndarray, K: int | None = None, decay: float = 0.0) -> str | None:
    """A diagnosis of a failing tensor; for a sampled or very large one, only the patterns a sample can show.

    ``decay``: the L2 term's ``2 l2`` when the tensor is a weight of a net with one. A factor is then looked
    for in the data term alone (both sides less ``decay * w``): with a right L2 term, a data term K times too
    large is no constant factor of the whole gradient.
    """
    if decay:
        with np.errstate(all="ignore"):
            hint = _hint(name, a - decay * w, n - decay * w, status, n_failed, N, w, K)
        if hint is not None and (hint.startswith("analytic = ") or hint.startswith("scaled by")):
            return hint + " (in the data term: both less the L2 term's 2 l2 W)"
        if hint is not None:
            return hint
    failed = status == FAILED
    checked = status != UNCHECKED
    if a.size <= HINT_ENTRIES and checked.all():
        return diagnose_tensor(name, a, n, failed, N, param=w, n_outputs=K)
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
    sampled = diagnose_tensor(name, flat[0], flat[1], flat[2], N, param=flat[3], n_outputs=K)
    if sampled is None or sampled.startswith("only ") or "transposed" in sampled:
        return hint  # positions within the sample are not positions in the tensor
    return sampled + (" (over the sampled entries)" if not every else " (over a sample of the entries)")



def _checked_entries(net: Model, sample: Any, seed: Any, entries: Any, directional: bool) -> np.ndarray | None:
    """Return the mask of entries to check: a sample, the given ones, or None (all; directional picks its own)."""
    if sample is not None and entries is not None:
        raise ValueError("sample and entries: give one or the other")
    if directional and (sample is not None or entries is not None):
        raise ValueError("method='directional' chooses its own entries; sample/entries are not used with it")
    if sample is not None:
        return sample_mask(net, sample, seed)
    if entries is None:
        return None
    checked = np.asarray(entries, dtype=bool)
    if checked.shape != (net.n_params,):
        raise ValueError(f"entries must be a bool mask of shape ({net.n_params},), got {checked.shape}")
    return checked


def _resolve(
    net: Model, params: Any, X: Any, Y: Any, grads: Any, eps: Any, rtol: Any, atol: Any, method: Any, engine: Any,
    threads: Any, progress: Any, safety: Any, sample: Any, seed: Any, entries: Any, workers: Any = None,
) -> CheckInputs:
    """Step 1 of :func:`check`: validate everything and take the user's gradient, before the long part."""
    directional = method == "directional"  # its projections use their own fixed step, STEP
    # the full engine keeps its steps and its budget's series beside its values: it peaks like directional
    doubled = directional or engine == "full"
    peak = _validate.DOUBLE_BYTES_PER_PARAM if doubled else _validate.CHECK_BYTES_PER_PARAM
    what = "a directional check" if directional else ("a check with engine='full'" if doubled else "a check")
    _validate.entry_arguments(net, X, Y, seed, peak, what, entries)
    prepared = _prepare(net, params, X, Y, None if directional else eps, method, engine, threads, progress,
                        methods=CHECK_METHODS, workers=workers)
    rtol_value = DEFAULT_RTOL if rtol is None else _validate.positive_float(rtol, "rtol")
    atol_value = DEFAULT_ATOL if atol is None else _validate.positive_float(atol, "atol", allow_zero=True)
    safety_value = _validate.positive_float(safety, "safety")
    checked = _checked_entries(net, sample, seed, entries, directional)
    notes: list[str] = []
    dtypes: list[np.dtype] = []
    given: np.ndarray | None = None
    if callable(grads):
        given, notes, dtypes = call_user_grads(grads, net, params, X, Y)
    elif grads is not None:
        # every error now, before the long part; the flat copy only after it (one array of P fewer at the peak)
        hook(net, "validate")(grads, "grads")
        given = LATER
        dtypes = [np.asarray(g).dtype for g in hook(net, "tensors")(grads, "grads")]
    user_u = user_unit_roundoff(hook(net, "tensors")(params, "params") + [X, Y], dtypes)
    return CheckInputs(prepared, rtol is None and atol is None, rtol_value, atol_value, safety_value, checked, given,
                       notes, user_u)


@dataclass(frozen=True)
class Judged:
    """The judge's verdicts: every entry's status code, and per tensor the counts, maxima and worst entry."""

    status: np.ndarray
    counts: np.ndarray
    maxima: np.ndarray
    worst_at: np.ndarray


def _judge(net: Model, inputs: CheckInputs, computed: Computed) -> Judged:
    """Step 3 of :func:`check`: every entry's verdict (see :func:`fastgrad.budget.judge`)."""
    p = inputs.prepared
    directional = p.route.method == "directional"
    status, counts, maxima, worst_at = judge(
        net, computed.analytic, computed.details, computed.entry_budget, computed.checked, inputs.user_u,
        p.n_samples, inputs.by_budget, inputs.safety, inputs.rtol, inputs.atol, scale_from_analytic=directional,
        theta=p.theta, step_reach=computed.reach)
    return Judged(status, counts, maxima, worst_at)


def _summaries(net: Model, analytic: list[np.ndarray], numerical: list[np.ndarray], status: list[np.ndarray],
               judged: Judged, param_values: list[np.ndarray], N: int) -> list[TensorSummary]:
    """One :class:`TensorSummary` per tensor, with a diagnosis of each failing one (arrays in the user's shapes)."""
    sizes = getattr(net, "sizes", None)
    K = int(sizes[-1]) if sizes is not None and getattr(net, "kind", "") == "mlp" else None
    l2 = float(getattr(getattr(net, "conventions", None), "l2", 0.0)) if K is not None else 0.0
    offsets = np.asarray(net.offsets)
    summaries = []
    for t, (name, a, n, st) in enumerate(zip(net.tensor_names, analytic, numerical, status)):
        n_failed, n_checked = int(judged.counts[t, 0]), int(judged.counts[t, N_COUNTS - 1])
        worst = int(judged.worst_at[t])
        at = _user_index(net, t, worst, int(offsets[t]), a.shape)  # (worst is in the flat order: not a.flat's)
        decay = 2.0 * l2 if name.startswith("W") else 0.0
        hint = _hint(name, a, n, st, n_failed, N, param_values[t], K, decay) if n_failed else None
        summaries.append(
            TensorSummary(
                name=name,
                shape=a.shape,
                passed=n_failed == 0,
                n_failed=n_failed,
                max_rel_error=float(judged.maxima[t, 0]),
                worst_index=at,
                worst_analytic=float(a[at]),
                worst_numerical=float(n[at]),
                n_inconclusive=int(judged.counts[t, 1:N_COUNTS - 1].sum()),
                n_checked=n_checked,
                max_budget_ratio=float(judged.maxima[t, 1]),
                hint=hint,
            )
        )
    return summaries


def _user_index(net: Model, t: int, local: int, lo: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The index, in the user's shape ``shape``, of entry ``local`` (flat order) of tensor ``t``."""
    index = net.locate(lo + local)[1]
    if len(index) != len(shape):  # a bias given as (k, 1) or (1, k): the same order, the user's shape
        index = tuple(int(i) for i in np.unravel_index(int(np.ravel_multi_index(index, net.param_shapes[t])), shape))
    return index


def _lost_workers_advice(lost: list[str]) -> list[str]:
    """What to say when Dask workers left during a sharded check (a fact, not a failure)."""
    if not lost:
        return []
    return [f"{len(lost)} Dask worker(s) left during the check ({', '.join(lost)}); Dask recomputed their blocks "
            "elsewhere, and fastgrad's kernels are deterministic, so the values are the same bits"]


def _build_result(net: Model, params: Any, inputs: CheckInputs, computed: Computed, judged: Judged,
                  started: float) -> CheckResult:
    """Step 4 of :func:`check`: the per-tensor summaries, notes and advice, as a :class:`CheckResult`."""
    p = inputs.prepared
    directional = p.route.method == "directional"
    counts = judged.counts
    notes = list(inputs.notes)
    for t, name in enumerate(net.tensor_names):
        if name in computed.disagreeing and counts[t, 0] == 0:
            notes.append(f"the projection of {name} disagrees with the gradient, but no single entry does "
                         "(errors spread thinly over many entries?): check it with method='central'")
    # in the user's shapes (a bias as they gave it); lists, in the tensors' order, even for dict params
    shaped = hook(net, "shaped_like")

    def user_shaped(flat: np.ndarray) -> list[np.ndarray]:
        return list(shaped(net.unflatten(flat), list(hook(net, "tensors")(params, "params"))))

    analytic = user_shaped(computed.analytic)
    numerical = user_shaped(computed.details.values)
    status = user_shaped(judged.status)
    summaries = _summaries(net, analytic, numerical, status, judged, user_shaped(p.theta), p.n_samples)
    reasons = {INCONCLUSIVE_REASONS[code]: int(counts[:, code - 1].sum())
               for code in (KINK, UNRESOLVED, NONFINITE, LARGE_STEP) if counts[:, code - 1].any()}
    # a tensor the check cannot vouch for makes the whole check unable to (a logistic regression's one weight
    # beside its judged bias is half the entries, and all of what matters); method="directional" vouches for
    # every entry, by a projection or one by one
    judged_entries = np.diff(np.asarray(net.offsets)) if directional else counts[:, N_COUNTS - 1]
    mostly_inconclusive = bool(np.any(2 * counts[:, 1:N_COUNTS - 1].sum(axis=1) > judged_entries))
    return CheckResult(
        passed=all(s.passed for s in summaries) and not notes and not mostly_inconclusive,
        max_rel_error=max(s.max_rel_error for s in summaries),
        tensors=summaries,
        analytic=analytic,
        numerical=numerical,
        rtol=inputs.rtol,
        atol=inputs.atol,
        eps=p.eps,
        method=p.route.method,
        loss=computed.loss,
        n_samples=p.n_samples,
        seconds=time.perf_counter() - started,
        model=repr(net),
        engine=p.route.engine,
        verdict="budget" if inputs.by_budget else "tolerance",
        budget=user_shaped(computed.entry_budget),
        safety=inputs.safety,
        notes=notes,
        forward_passes=computed.forward_passes,
        mostly_inconclusive=mostly_inconclusive,
        advice=hook(net, "advice")(params) + _lost_workers_advice(computed.lost_workers),
        entry_status=status,
        inconclusive_reasons=reasons,
        lost_workers=list(computed.lost_workers),
    )


def check(
    net: Model,
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
    workers: Any = None,
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
    workers : None, int, callable or dask.distributed.Client, optional
        As in :func:`numerical_gradient`: the derivatives in blocks of whole
        units over local processes or a Dask cluster, bitwise the local
        result; the budget and verdict are made here. ``method="directional"``
        (a few evaluations) always runs here.

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
    started = time.perf_counter()
    inputs = _resolve(net, params, X, Y, grads, eps, rtol, atol, method, engine, threads, progress, safety, sample,
                      seed, entries, workers)
    with threads_context(inputs.prepared.threads), _scratch.scope():
        computed = compute(net, inputs, grads, progress, seed)
        judged = _judge(net, inputs, computed)
    return _build_result(net, params, inputs, computed, judged, started)

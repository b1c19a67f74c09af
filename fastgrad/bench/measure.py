"""How one thing is timed and checked, and the row of the table it becomes.

Every timed result goes through a correctness check (against ``net.backprop``
or the peer's own verdict), so that a fast wrong answer cannot look good.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cases import Case
from .options import INPUT, OUTPUT

#: Cost of one parameter, in NumPy forward passes of the batch (used to size the subsets).
PASSES_PER_PARAM = {"naive": 2.0, "torch": 4.0, "scipy": 1.0, "full": 2.0}

#: A correctness check of one call's result: ``(error or None, passed)``.
Check = Callable[[Any], tuple[float | None, bool]]


@dataclass
class Row:
    """One timed result: a fastgrad engine/method/thread count, or a peer, on one net."""

    net: str
    sizes: list[int]
    n_params: int
    batch: int
    kind: str  # "fastgrad" or "peer"
    what: str
    engine: str | None
    method: str | None
    peer: str | None
    threads: int
    eps: float | None
    seconds: float  # the full check (extrapolated for a subset)
    measured_seconds: float  # median of the warm calls (of the subset when extrapolated)
    first_call_seconds: float
    warm_calls: int
    subset: int | None  # parameters timed, when extrapolated
    forward_pass_seconds: float
    max_rel_error: float | None
    tolerance: float | None
    passed: bool
    projection_only: bool = False
    check: str = ""  # how correctness was checked
    speedups: dict[str, float] = field(default_factory=dict)
    cost_model_seconds: float | None = None  # the cost model's prediction of the full check (:mod:`.cost_model`)
    #: Per phase (and "total"): predicted and measured seconds and their ratio, from the cost model's run
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def params_per_second(self) -> float:
        """Parameters checked per second (full check)."""
        return self.n_params / self.seconds if self.seconds > 0 else math.inf

    @property
    def forward_equivalents(self) -> float:
        """Full-check time in NumPy forward passes of the batch."""
        return self.seconds / self.forward_pass_seconds if self.forward_pass_seconds > 0 else math.inf

    @property
    def series(self) -> str:
        """The line this row belongs to in the plot and the growth exponents."""
        family = "" if len(self.sizes) == 3 and self.sizes[0] == INPUT and self.sizes[2] == OUTPUT \
            else f", depth {len(self.sizes) - 1}"
        if self.kind == "fastgrad":
            return f"fastgrad {self.engine} {self.method}, {self.threads} thr{family}"
        return f"{self.what}{family}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become None)."""
        d = {k: _finite_or_none(v) for k, v in self.__dict__.items() if k not in ("speedups", "notes", "phases")}
        d["phases"] = {k: {kk: _finite_or_none(vv) for kk, vv in v.items()} for k, v in self.phases.items()}
        d["speedups"] = {k: _finite_or_none(v) for k, v in self.speedups.items()}
        d["notes"] = list(self.notes)
        d["params_per_second"] = _finite_or_none(self.params_per_second)
        d["forward_pass_equivalents"] = _finite_or_none(self.forward_equivalents)
        d["extrapolated"] = self.subset is not None
        return d


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Timing:
    """First call and warm calls of one measurement, and the worst correctness result seen."""

    first: float
    warm: list[float]
    worst_error: float
    ok: bool

    @property
    def median(self) -> float:
        """Median of the warm calls (the first call when there was none)."""
        return float(statistics.median(self.warm)) if self.warm else self.first


def time_calls(fn: Callable[[], Any], check: Check, repeats: int, budget: float) -> Timing:
    """Time a first call, then up to ``repeats`` warm calls (at least one; stop past ``budget`` s).

    Every call's result goes through ``check`` after the last call: checking
    in between would evict the caches the next call finds warm.

    Parameters
    ----------
    fn : callable
        The call timed, without arguments.
    check : callable
        Takes a result of ``fn``, returns ``(error or None, passed)``.
    repeats : int
        Most warm calls (0: the first call only).
    budget : float
        Seconds of warm calls after which no more are made.

    Returns
    -------
    Timing
        The times, the worst error and whether every result passed.
    """
    results = []

    def one() -> float:
        t = time.perf_counter()
        results.append(fn())
        return time.perf_counter() - t

    first = one()
    warm: list[float] = []
    while len(warm) < repeats and (not warm or sum(warm) < budget):
        warm.append(one())
    worst, ok = 0.0, True
    for result in results:
        err, passed = check(result)
        if err is not None:
            worst = max(worst, err)
        ok = ok and passed
    return Timing(first, warm, worst, ok)


def tolerance_check(case: Case, tol: float, idx: np.ndarray | None = None) -> Check:
    """Return a check of numerical derivatives against backprop: max relative error <= ``tol``.

    Parameters
    ----------
    case : Case
        The net, with its flat backprop gradient.
    tol : float
        Largest max |numerical - backprop| / max |backprop| that passes.
    idx : ndarray of int, optional
        Flat indices of the values checked (all parameters when None).

    Returns
    -------
    callable
        Takes an array, or a list of per-tensor arrays; returns ``(error, passed)``.
    """
    def check(values: Any) -> tuple[float, bool]:
        if isinstance(values, list):
            values = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values]) if values \
                else np.empty(0)
        err = case.rel_error(values, idx)
        return err, err <= tol

    return check


def verdict_check(ok: Any) -> tuple[None, bool]:
    """Check of a peer that returns its own verdict (gradcheck, check_grads): passed when truthy."""
    return None, bool(ok)


def same_function(case: Case, value: float, grad: np.ndarray, idx: np.ndarray | None) -> str | None:
    """Check a peer's loss and autodiff gradient against fastgrad's.

    A peer that computes another function would be timed on another problem.

    Parameters
    ----------
    case : Case
        The net and batch.
    value : float
        The peer's loss at the case's parameters.
    grad : ndarray
        The peer's autodiff gradient, of every parameter or of those at ``idx``.
    idx : ndarray of int or None
        Flat indices of ``grad``.

    Returns
    -------
    str or None
        None when both match, else what differs.
    """
    loss = case.net.loss(case.params, case.X, case.Y)
    if abs(value - loss) > 1e-12 * abs(loss):
        return f"its loss {value!r} differs from fastgrad's {loss!r}"
    err = case.rel_error(grad, idx)
    if not err <= 1e-10:
        return f"its autodiff gradient differs from backprop by {err:.2g} (relative)"
    return None


@dataclass
class PeerPlan:
    """How one peer is timed on one net: the call, its check, and what the check means.

    ``make(ix)`` is the call on the flat parameter indices ``ix``: a per-parameter peer's subset (every
    parameter when its whole check fits the budget) or two of them for its first use. A projection-only
    peer (torch-fast, jax) checks a projection of every parameter: it is made on all of them and ignores ``ix``.
    """

    make: Callable[[np.ndarray], Callable[[], Any]]
    check: Check
    how: str  # how correctness was checked, for the row
    problem: str | None = None  # the peer computes another function (see same_function)


def subset_size(case: Case, passes_per_param: float, budget: float) -> int:
    """Parameters a per-parameter method can do in ``budget`` seconds (all of them when it fits).

    Parameters
    ----------
    case : Case
        The net, with the time of its NumPy forward pass.
    passes_per_param : float
        Cost of one parameter, in forward passes (see :data:`PASSES_PER_PARAM`).
    budget : float
        Seconds per measurement.

    Returns
    -------
    int
        At least 16, at most P.
    """
    per_param = passes_per_param * case.forward_s
    return int(max(16, min(case.net.n_params, budget / max(per_param, 1e-9))))

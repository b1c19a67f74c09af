"""Result objects of :func:`fastgrad.check` (data only; rendering is in ``report``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class GradientCheckError(AssertionError):
    """Raised by :meth:`CheckResult.raise_if_failed` when a check failed."""


@dataclass(frozen=True)
class Failure:
    """One gradient entry judged wrong.

    ``budget`` is how far the numerical derivative (plus the rounding of the
    checked gradient's dtype) can be from the truth, estimated for this
    entry; ``budget_ratio = abs_error / budget``.
    """

    tensor: str
    index: tuple[int, ...]
    analytic: float
    numerical: float
    abs_error: float
    rel_error: float
    budget: float = float("nan")
    budget_ratio: float = float("nan")


@dataclass(frozen=True)
class Inconclusive:
    """An entry the check cannot judge (``reason`` says why), left out of ``passed``."""

    tensor: str
    index: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class TensorSummary:
    """Summary of one parameter tensor (``"W1"``, ``"b1"`` ...)."""

    name: str
    shape: tuple[int, ...]
    passed: bool
    n_failed: int
    max_rel_error: float
    worst_index: tuple[int, ...]
    worst_analytic: float
    worst_numerical: float
    n_inconclusive: int = 0
    max_budget_ratio: float = float("nan")
    hint: str | None = None
    n_checked: int = -1

    @property
    def size(self) -> int:
        """Number of entries of the tensor."""
        return int(np.prod(self.shape))


@dataclass
class CheckResult:
    """What :func:`fastgrad.check` found.

    Attributes
    ----------
    passed : bool
        True when no entry is judged wrong (inconclusive entries are left
        out) and ``notes`` report no misbehaving gradient callable.
    max_rel_error : float
        Largest relative error over all entries.
    tensors : list of TensorSummary
        One summary per parameter tensor, in parameter order.
    failures : list of Failure
        The failing entries, worst first.
    analytic, numerical : list of ndarray
        The gradient checked and fastgrad's numerical gradient, shaped like
        the parameters (copies; the caller's arrays are never kept).
    rtol, atol, eps : float
        Tolerances and step used.
    method : str
        Difference method.
    loss : float
        The loss at the checked parameters.
    n_samples : int
        Batch size N.
    seconds : float
        Wall time of the numerical gradient and the comparison.
    model : str
        ``repr`` of the network.
    engine : str
        Engine that computed the numerical gradient.
    verdict : {"budget", "tolerance"}
        How entries were judged: against each entry's error budget (the
        default), or against the ``rtol``/``atol`` the caller gave.
    budget, budget_ratio : list of ndarray
        Per entry: the error budget and ``|a - n| / budget``.
    safety : float
        An entry fails when ``budget_ratio > safety`` (budget verdict).
    failed : list of ndarray of bool
        Per entry: judged wrong.
    inconclusive : list of Inconclusive
        Entries that could not be judged (a step crossed a relu kink).
    notes : list of str
        Problems with the gradient itself (a callable that is
        nondeterministic or writes into its arguments); any note fails the
        check.
    checked : list of ndarray of bool
        Per entry: computed and judged (all True unless a sample was asked
        for; unchecked entries have a NaN numerical value).
    forward_passes : int or None
        ``method="directional"``: complex forward passes of the batch used.
    mostly_inconclusive : bool
        More than half of the checked entries are inconclusive: the check
        says so in its headline and ``passed`` is False (``status`` is
        ``"inconclusive"`` unless an entry failed).
    advice : list of str
        Remarks that do not fail the check (e.g. every bias is exactly 0).
    """

    passed: bool
    max_rel_error: float
    tensors: list[TensorSummary]
    analytic: list[np.ndarray] = field(repr=False)
    numerical: list[np.ndarray] = field(repr=False)
    rel_error: list[np.ndarray] = field(repr=False)
    rtol: float = 0.0
    atol: float = 0.0
    eps: float = 0.0
    method: str = "central"
    loss: float = float("nan")
    n_samples: int = 0
    seconds: float = 0.0
    model: str = ""
    engine: str = "incremental"
    verdict: str = "tolerance"
    budget: list[np.ndarray] = field(default_factory=list, repr=False)
    budget_ratio: list[np.ndarray] = field(default_factory=list, repr=False)
    safety: float = float("nan")
    failed: list[np.ndarray] = field(default_factory=list, repr=False)
    inconclusive: list[Inconclusive] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[np.ndarray] = field(default_factory=list, repr=False)
    forward_passes: int | None = None
    mostly_inconclusive: bool = False
    advice: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` (an entry failed, or a note) or ``"inconclusive"`` (mostly inconclusive)."""
        if self.passed:
            return "passed"
        if self.n_failed or self.notes or not self.mostly_inconclusive:
            return "failed"
        return "inconclusive"

    @property
    def n_checked(self) -> int:
        """Number of entries computed and judged."""
        return sum(int(np.count_nonzero(c)) for c in self.checked) if self.checked else self.n_params

    @property
    def max_budget_ratio(self) -> float:
        """Largest ``|a - n| / budget`` over the judged entries (NaN without budgets)."""
        ratios = [t.max_budget_ratio for t in self.tensors]
        return max(ratios) if ratios else float("nan")

    @property
    def n_params(self) -> int:
        """Number of checked entries."""
        return sum(t.size for t in self.tensors)

    @property
    def n_failed(self) -> int:
        """Number of failing entries."""
        return sum(t.n_failed for t in self.tensors)

    @property
    def failures(self) -> list[Failure]:
        """The failing entries, worst (largest relative error) first."""
        return self.worst_failures(None)

    def worst_failures(self, limit: int | None) -> list[Failure]:
        """The ``limit`` worst failing entries (all when ``limit`` is None)."""
        found = []
        for k, (t, a, n, r) in enumerate(zip(self.tensors, self.analytic, self.numerical, self.rel_error)):
            if not t.n_failed:
                continue
            failed = self.failed[k] if self.failed else r > self.rtol
            ratio = self.budget_ratio[k] if self.budget_ratio else None
            budget = self.budget[k] if self.budget else None
            for i in np.flatnonzero(failed.ravel()):
                found.append((float(r.flat[i]), t.name, i, a, n, r, budget, ratio))
        # worst first; ties keep parameter order (sort is stable)
        found.sort(key=lambda item: -item[0])
        if limit is not None:
            found = found[:limit]
        out = []
        for _, name, i, a, n, r, budget, ratio in found:
            index = tuple(int(k) for k in np.unravel_index(i, a.shape))
            av, nv = float(a.flat[i]), float(n.flat[i])
            extra = {}
            if budget is not None:
                extra = {"budget": float(budget.flat[i]), "budget_ratio": float(ratio.flat[i])}
            out.append(Failure(name, index, av, nv, abs(av - nv), float(r.flat[i]), **extra))
        return out

    def tensor(self, name: str) -> TensorSummary:
        """The summary of the tensor called ``name``."""
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(f"no tensor named {name!r}; tensors are {[t.name for t in self.tensors]}")

    def raise_if_failed(self) -> None:
        """Raise :class:`GradientCheckError` with the report if the check failed."""
        if not self.passed:
            raise GradientCheckError(str(self))

    def __str__(self) -> str:
        from .report import format_result

        return format_result(self)

    def to_dict(self, max_failures: int | None = 100) -> dict[str, Any]:
        """JSON-serialisable summary (at most ``max_failures`` failures listed)."""
        from .report import result_to_dict

        return result_to_dict(self, max_failures)

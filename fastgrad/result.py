"""Result objects of :func:`fastgrad.check` (data; their rendering is in ``report``, which they call)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._kernels.verdict import FAILED, UNCHECKED
from .entries import INCONCLUSIVE_REASONS, Failure, FailureView, Inconclusive, InconclusiveView
from .report import format_result, result_to_dict

__all__ = ["INCONCLUSIVE_REASONS", "CheckResult", "Failure", "FailureView", "GradientCheckError", "Inconclusive",
           "InconclusiveView", "TensorSummary"]


class GradientCheckError(AssertionError):
    """Raised by :meth:`CheckResult.raise_if_failed` when a check failed."""


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


def _derived(name: str, compute: str, repr: bool = True) -> Any:
    """A dataclass field whose value, when not given, is derived on first read (see :class:`_Derived`)."""
    return field(default=_Derived(name, compute), repr=repr)


class _Derived:
    """A result field given to the constructor, or derived from the result's other arrays when first read.

    :func:`fastgrad.check` keeps per entry only the gradient, the numerical
    gradient, the budget and a one-byte verdict code (about 25 bytes per
    parameter); ratios, relative errors and masks are computed from those
    the first time they are read, and kept.
    """

    def __init__(self, name: str, compute: str) -> None:
        self.key = "_" + name
        self.compute = compute

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return None  # the dataclass field's default: derive it
        value = obj.__dict__.get(self.key)
        if value is None:
            value = getattr(obj, self.compute)()
            obj.__dict__[self.key] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        # the dataclass __init__ passes the field's default, this descriptor itself: derive it when read
        obj.__dict__[self.key] = None if isinstance(value, _Derived) else value


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
    failures : FailureView
        The failing entries, worst (largest relative error) first: a lazy
        sequence (``len()`` counts all of them; items are built when
        indexed), ``failures.arrays()`` gives them all as NumPy arrays.
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
        Per entry: the error budget and ``|a - n| / budget`` (the ratio is
        computed when first read, like ``rel_error``, ``failed`` and
        ``checked``: a check keeps about 25 bytes per parameter).
    safety : float
        An entry fails when ``budget_ratio > safety`` (budget verdict).
    failed : list of ndarray of bool
        Per entry: judged wrong.
    inconclusive : sequence of Inconclusive
        Entries that could not be judged, with the reason (a step crossed a
        relu kink, the budget cannot tell the value from zero, ...): a lazy
        sequence in parameter order; ``inconclusive_reasons`` counts them
        by reason.
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
        More than half of the checked entries of some tensor are
        inconclusive: the check says so in its headline and ``passed`` is
        False (``status`` is ``"inconclusive"`` unless an entry failed).
    advice : list of str
        Remarks that do not fail the check (e.g. every bias is exactly 0).
    entry_status : list of ndarray of uint8
        Per entry, the verdict code (:mod:`fastgrad._kernels.verdict`:
        passed, failed, kink, unresolved, non-finite, large step, unchecked).
    inconclusive_reasons : dict of str to int
        How many entries are inconclusive for each reason.
    lost_workers : list of str
        ``check_function(..., workers=client)``: the Dask workers that left
        during the check (their blocks recomputed elsewhere; see ``advice``
        or ``notes``).
    """

    passed: bool
    max_rel_error: float
    tensors: list[TensorSummary]
    analytic: list[np.ndarray] = field(repr=False)
    numerical: list[np.ndarray] = field(repr=False)
    rel_error: list[np.ndarray] = _derived("rel_error", "_derive_errors", repr=False)
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
    budget_ratio: list[np.ndarray] = _derived("budget_ratio", "_derive_ratios", repr=False)
    safety: float = float("nan")
    failed: list[np.ndarray] = _derived("failed", "_derive_failed", repr=False)
    inconclusive: Sequence[Inconclusive] = _derived("inconclusive", "_derive_inconclusive")
    notes: list[str] = field(default_factory=list)
    checked: list[np.ndarray] = _derived("checked", "_derive_checked", repr=False)
    forward_passes: int | None = None
    mostly_inconclusive: bool = False
    advice: list[str] = field(default_factory=list)
    entry_status: list[np.ndarray] = field(default_factory=list, repr=False)
    inconclusive_reasons: dict[str, int] = field(default_factory=dict)
    lost_workers: list[str] = field(default_factory=list)

    # ---- derived on first read (see _Derived) ---------------------------
    def _derive_errors(self) -> list[np.ndarray]:
        self._derive_ratio_and_rel()
        return self.__dict__["_rel_error"]

    def _derive_ratios(self) -> list[np.ndarray]:
        self._derive_ratio_and_rel()
        return self.__dict__["_budget_ratio"]

    def _derive_ratio_and_rel(self) -> None:
        """Budget ratios and relative errors, as the verdict kernel computes them (0 where not checked)."""
        from ._kernels.verdict import entry_errors

        ratios, rels = [], []
        for t, (a, n) in enumerate(zip(self.analytic, self.numerical)):
            budget = self.budget[t] if self.budget else np.full(a.shape, np.nan)
            checked = self.entry_status[t] != UNCHECKED if self.entry_status else np.ones(a.shape, dtype=bool)
            ratio, rel = np.empty(a.shape), np.empty(a.shape)
            entry_errors(a.reshape(-1), n.reshape(-1), budget.reshape(-1), checked.reshape(-1), self.rtol,
                         self.atol, ratio.reshape(-1), rel.reshape(-1))
            ratios.append(ratio)
            rels.append(rel)
        if self.__dict__.get("_budget_ratio") is None:
            self.__dict__["_budget_ratio"] = ratios if self.budget else []
        if self.__dict__.get("_rel_error") is None:
            self.__dict__["_rel_error"] = rels

    def _derive_failed(self) -> list[np.ndarray]:
        return [s == FAILED for s in self.entry_status]

    def _derive_checked(self) -> list[np.ndarray]:
        return [s != UNCHECKED for s in self.entry_status]

    def _derive_inconclusive(self) -> Sequence[Inconclusive]:
        return InconclusiveView(self) if self.entry_status else []

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
        if self.tensors and all(t.n_checked >= 0 for t in self.tensors):
            return sum(t.n_checked for t in self.tensors)
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
    def failures(self) -> FailureView:
        """The failing entries, worst (largest relative error) first, built on demand.

        A :class:`FailureView`: a read-only sequence whose ``len()`` is the
        number of failing entries, and whose items are built only when asked
        for. ``result.failures[:3]`` ranks every failing entry in one O(P)
        pass and builds three :class:`Failure` objects, whatever the size of
        the net. Iterating over all of it, or ``list(...)``, builds one object
        per failing entry (millions on a large net that fails everywhere):
        for all of them use ``result.failures.arrays()``, which returns NumPy
        arrays instead.
        """
        return FailureView(self)

    def worst_failures(self, limit: int | None) -> list[Failure]:
        """The ``limit`` worst failing entries as a list (all when ``limit`` is None).

        Worst means largest relative error; ties keep parameter order.
        Selecting the worst ``limit`` costs O(P) time and O(limit) objects;
        ``limit=None`` sorts and builds every failing entry (prefer
        ``result.failures.arrays()`` for that).
        """
        if limit is not None:
            limit = operator.index(limit)
            if limit < 0:
                raise ValueError(f"limit must be >= 0 or None, got {limit}")
        view = FailureView(self)
        return view._build(*view._ranked(limit))

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
        return format_result(self)

    def to_dict(self, max_failures: int | None = 100, *, pictures: bool = False) -> dict[str, Any]:
        """JSON-safe summary: the ``max_failures`` worst failures (all when None) and the count of all.

        ``json.dumps(result.to_dict(), allow_nan=False)`` always succeeds:
        NaN and infinite floats are written as ``None`` (JSON ``null``).
        See :func:`fastgrad.report.result_to_dict`. ``pictures=True`` adds
        ``"pictures"``: each tensor's picture grid (at most 256 x 256 cells
        of block maxima, :mod:`fastgrad.picture_grid`), from which
        ``fastgrad report result.json --html`` draws :meth:`plot`'s pictures.
        """
        document = result_to_dict(self, max_failures)
        if pictures:
            from .picture_grid import grids_to_dict, result_grids

            document["pictures"] = grids_to_dict(
                result_grids(self, "budget_ratio" if self.verdict == "budget" else "rel_error"))
        return document

    def plot(self, path: Any = None, *, what: str = "budget_ratio") -> Any:
        """Draw where in each tensor the mismatch sits: one heatmap per tensor; return the matplotlib Figure.

        Colour is log10 of each entry's ``|a - n| / budget`` (``what="rel_error"``:
        its relative error), blue up to the fail line and red beyond;
        failing entries are outlined, inconclusive ones violet, unchecked
        ones grey; each panel is titled with the tensor's verdict and hint.
        Tensors larger than 256 x 256 are drawn by blocks, each cell the
        block's worst entry. Needs matplotlib (``pip install "fastgrad[plot]"``);
        see :mod:`fastgrad.plot_result`.

        Parameters
        ----------
        path : str or path-like, optional
            Also save the figure there, in the format its suffix names (PNG, SVG, PDF ...).
        what : {"budget_ratio", "rel_error"}
            The quantity coloured (``"budget_ratio"`` needs the budget verdict).

        Returns
        -------
        matplotlib.figure.Figure
            Made outside pyplot: nothing accumulates when called in a loop.

        Raises
        ------
        ImportError
            matplotlib is not installed (the message names ``fastgrad[plot]``).
        ValueError
            A bad ``what``, or a ``path`` whose suffix is no image format.
        OSError
            ``path`` cannot be written.
        """
        from .plot_result import plot_result

        return plot_result(self, path, what=what)

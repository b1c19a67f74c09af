"""Result objects of :func:`fastgrad.check` (data only; rendering is in ``report``)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._kernels.verdict import FAILED, KINK, LARGE_STEP, NONFINITE, UNCHECKED, UNRESOLVED


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


#: Failing entries ranked per piece when selecting the worst few: bounds the
#: temporary arrays of a selection to a few times this many values, whatever
#: the size of a tensor.
RANK_PIECE = 1 << 20


def _worst_positions(key: np.ndarray, k: int | None) -> np.ndarray:
    """Positions of the ``k`` largest values of ``key``, largest first (all when ``k`` is None).

    NaN counts as larger than everything; equal values keep their order in
    ``key`` (the order of a stable sort). O(n) for ``k`` below n: the
    ``k``-th largest value is found with ``np.partition`` and only the
    ``k`` selected values are sorted.
    """
    n = key.shape[0]
    if k is None or k >= n:
        order = np.argsort(-key, kind="stable")  # NaN sorts last: move it first
        n_nan = int(np.count_nonzero(np.isnan(key)))
        return np.concatenate([order[n - n_nan:], order[:n - n_nan]]) if n_nan else order
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    nan = np.isnan(key)
    if nan.any():
        nan_at = np.flatnonzero(nan)
        if nan_at.size >= k:
            return nan_at[:k]
        rest = np.flatnonzero(~nan)
        return np.concatenate([nan_at, rest[_worst_positions(key[rest], k - nan_at.size)]])
    kth = np.partition(key, n - k)[n - k]  # the k-th largest value
    above = np.flatnonzero(key > kth)
    ties = np.flatnonzero(key == kth)[: k - above.size]  # the first of equal values win
    chosen = np.sort(np.concatenate([above, ties]))
    return chosen[np.argsort(-key[chosen], kind="stable")]


def _rel_of(a: np.ndarray, n: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Relative error ``|a - n| / max(|a|, |n|, atol / rtol)`` of some entries, as :func:`fastgrad.check` computes it.

    0 where ``a == n``, ``inf`` where either side is not finite: the same
    operations in the same order as the verdict kernel, hence the same bits.
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.abs(a - n)
        rel = np.where(diff == 0.0, 0.0, diff / np.maximum(np.maximum(np.abs(a), np.abs(n)), atol / rtol))
    rel[~(np.isfinite(a) & np.isfinite(n))] = np.inf
    return rel


def _ratio_of(a: np.ndarray, n: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Budget ratio ``|a - n| / budget`` of some entries (``inf`` where either side is not finite)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = np.abs(a - n) / budget
    ratio[~(np.isfinite(a) & np.isfinite(n))] = np.inf
    return ratio


class FailureView(Sequence):
    """The failing entries of a :class:`CheckResult`, worst first, built on demand.

    A read-only sequence of :class:`Failure` (``result.failures``).
    ``len(view)`` is the number of failing entries; ``view[i]`` and
    ``view[a:b]`` rank the failing entries in one O(P) pass over the
    per-tensor arrays and build only the :class:`Failure` objects asked for
    (``view[:3]`` builds three, on any net). Iteration, ``list(view)`` and a
    slice reaching the end rank and build every failing entry: on a large
    net that fails everywhere, use :meth:`arrays` instead.

    Worst means largest relative error (a NaN first); entries with equal
    errors keep parameter order. A view compares equal to a list or tuple
    holding the same failures in the same order (``result.failures == []``).

    The ranking reads only the per-tensor ``analytic`` and ``numerical``
    arrays, the ``failed`` masks (arrays of bool shaped like the tensor, or
    arrays of flat indices into it) and ``rtol``/``atol``; the
    ``rel_error``/``budget_ratio`` arrays are used when the result stores
    them, and otherwise computed for the selected entries only. The view
    reads the result when it is indexed, not when it is made.
    """

    __slots__ = ("_result", "_len")

    def __init__(self, result: CheckResult) -> None:
        self._result = result
        self._len: int | None = None

    # ---- where the data come from -------------------------------------
    def _stored(self, name: str) -> list[np.ndarray] | None:
        """The per-tensor arrays ``name`` if the result stores them (not computed on access)."""
        arrays = vars(self._result).get("_" + name)  # given, or derived already (see _Derived)
        return arrays if arrays else None

    def _failed_pieces(self, t: int):
        """Flat indices of the failing entries of tensor ``t``, ascending, in pieces of at most RANK_PIECE."""
        r = self._result
        failed = r.failed[t] if r.failed else None
        if failed is None:  # no masks: the tolerance verdict, as before masks were kept
            rel = self._stored("rel_error")
            a, n = r.analytic[t].reshape(-1), r.numerical[t].reshape(-1)
            for lo in range(0, a.shape[0], RANK_PIECE):
                hi = lo + RANK_PIECE
                part = rel[t].reshape(-1)[lo:hi] if rel else _rel_of(a[lo:hi], n[lo:hi], r.rtol, r.atol)
                yield np.flatnonzero(part > r.rtol) + lo
            return
        failed = np.asarray(failed)
        if failed.dtype == np.bool_:
            flat = failed.reshape(-1)
            for lo in range(0, flat.shape[0], RANK_PIECE):
                yield np.flatnonzero(flat[lo:lo + RANK_PIECE]) + lo
        else:  # flat indices of the failing entries
            flat = failed.reshape(-1).astype(np.int64, copy=False)
            for lo in range(0, flat.shape[0], RANK_PIECE):
                yield flat[lo:lo + RANK_PIECE]

    def _rel(self, t: int, idx: np.ndarray) -> np.ndarray:
        """Relative errors of entries ``idx`` of tensor ``t``."""
        r = self._result
        rel = self._stored("rel_error")
        if rel is not None:
            return np.asarray(rel[t], dtype=np.float64).reshape(-1)[idx]
        a = np.asarray(r.analytic[t], dtype=np.float64).reshape(-1)[idx]
        n = np.asarray(r.numerical[t], dtype=np.float64).reshape(-1)[idx]
        return _rel_of(a, n, r.rtol, r.atol)

    # ---- ranking -------------------------------------------------------
    def _ranked(self, k: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``k`` worst failing entries (all when None): tensor numbers, flat indices, relative errors.

        Each piece of failing entries keeps only its own ``k`` worst, so
        the temporaries stay a few times RANK_PIECE (plus the candidates);
        the candidates, in parameter order, are then ranked together.
        """
        tensors, indices, keys = [], [], []
        for t in range(len(self._result.tensors)):
            for idx in self._failed_pieces(t):
                if not idx.size:
                    continue
                key = self._rel(t, idx)
                if k is not None and idx.size > k:
                    keep = np.sort(_worst_positions(key, k))  # parameter order, for the ties below
                    idx, key = idx[keep], key[keep]
                tensors.append(np.full(idx.size, t, dtype=np.int32))
                indices.append(np.asarray(idx, dtype=np.int64))
                keys.append(key)
        if not keys:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64), np.empty(0)
        tensor_of = np.concatenate(tensors)
        index_of = np.concatenate(indices)
        key_of = np.concatenate(keys)
        order = _worst_positions(key_of, k)
        return tensor_of[order], index_of[order], key_of[order]

    def _columns(self, tensor_of: np.ndarray, index_of: np.ndarray, rel: np.ndarray) -> dict[str, np.ndarray]:
        """Every field of the ranked entries, as arrays."""
        r = self._result
        n_entries = index_of.shape[0]
        a = np.empty(n_entries)
        n = np.empty(n_entries)
        budget = np.full(n_entries, np.nan)
        ratio = np.full(n_entries, np.nan)
        budgets = r.budget if r.budget else None
        ratios = self._stored("budget_ratio")
        for t in np.unique(tensor_of):
            at = tensor_of == t
            idx = index_of[at]
            a[at] = np.asarray(r.analytic[t], dtype=np.float64).reshape(-1)[idx]
            n[at] = np.asarray(r.numerical[t], dtype=np.float64).reshape(-1)[idx]
            if budgets is not None:
                budget[at] = np.asarray(budgets[t], dtype=np.float64).reshape(-1)[idx]
                if ratios is not None:
                    ratio[at] = np.asarray(ratios[t], dtype=np.float64).reshape(-1)[idx]
                else:
                    ratio[at] = _ratio_of(a[at], n[at], budget[at])
        with np.errstate(invalid="ignore", over="ignore"):
            abs_error = np.abs(a - n)
        return {
            "tensor": tensor_of.astype(np.intp),
            "flat_index": index_of,
            "analytic": a,
            "numerical": n,
            "abs_error": abs_error,
            "rel_error": rel,
            "budget": budget,
            "budget_ratio": ratio,
        }

    def _build(self, tensor_of: np.ndarray, index_of: np.ndarray, rel: np.ndarray) -> list[Failure]:
        """:class:`Failure` objects of the ranked entries."""
        r = self._result
        cols = self._columns(tensor_of, index_of, rel)
        out = []
        for j in range(index_of.shape[0]):
            t = int(tensor_of[j])
            shape = np.shape(r.analytic[t])
            index = tuple(int(i) for i in np.unravel_index(int(index_of[j]), shape))
            out.append(Failure(
                r.tensors[t].name, index, float(cols["analytic"][j]), float(cols["numerical"][j]),
                float(cols["abs_error"][j]), float(rel[j]), float(cols["budget"][j]), float(cols["budget_ratio"][j]),
            ))
        return out

    # ---- public --------------------------------------------------------
    def arrays(self, limit: int | None = None) -> dict[str, np.ndarray]:
        """The ``limit`` worst failing entries (all when None) as NumPy arrays, worst first.

        Keys: ``"tensor"`` (position in ``result.tensors``), ``"flat_index"``
        (into that tensor, ``np.unravel_index`` gives the index),
        ``"analytic"``, ``"numerical"``, ``"abs_error"``, ``"rel_error"``,
        ``"budget"`` and ``"budget_ratio"`` (NaN without budgets). About 60
        bytes per entry returned; no Python object per entry.
        """
        if limit is not None:
            limit = max(0, operator.index(limit))
        return self._columns(*self._ranked(limit))

    def _count(self, t: int) -> int:
        """Number of failing entries of tensor ``t``."""
        failed = self._result.failed[t] if self._result.failed else None
        if failed is not None and np.asarray(failed).dtype == np.bool_:
            return int(np.count_nonzero(failed))
        return sum(int(idx.size) for idx in self._failed_pieces(t))

    def __len__(self) -> int:
        if self._len is None:
            self._len = sum(self._count(t) for t in range(len(self._result.tensors)))
        return self._len

    def __getitem__(self, item):
        if isinstance(item, slice):
            start, stop, step = item.indices(len(self))
            wanted = range(start, stop, step)
            if not wanted:
                return []
            ranked = self._ranked(max(wanted) + 1)
            pick = np.asarray(wanted, dtype=np.intp)
            return self._build(*(column[pick] for column in ranked))
        i = operator.index(item)
        size = len(self)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError("failure index out of range")
        ranked = self._ranked(i + 1)
        return self._build(*(column[i:i + 1] for column in ranked))[0]

    def __iter__(self):
        tensor_of, index_of, rel = self._ranked(None)
        step = 4096
        for lo in range(0, index_of.shape[0], step):
            yield from self._build(tensor_of[lo:lo + step], index_of[lo:lo + step], rel[lo:lo + step])

    def __bool__(self) -> bool:
        return len(self) > 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FailureView):
            other = list(other)
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        size = len(self)
        shown = self[:3]
        more = f", ... ({size} failing entries in all)" if size > len(shown) else ""
        return "FailureView([" + ", ".join(map(repr, shown)) + more + "])"


#: Why an entry is inconclusive, by its verdict code (:mod:`fastgrad._kernels.verdict`).
INCONCLUSIVE_REASONS = {
    KINK: "a +-h step crosses a relu/leaky_relu kink",
    UNRESOLVED: "its error budget is as large as the value itself (the step is too small or too large "
                "for this entry): the check cannot tell it from zero",
    NONFINITE: "the numerical value or its error budget is not finite (the loss or the budget's series "
               "overflow near w)",
    LARGE_STEP: "the step moves a pre-activation by more than 0.25 (unnormalised inputs, or a large eps): "
                "the truncation estimate no longer holds; use a smaller eps",
}


class InconclusiveView(Sequence):
    """The inconclusive entries of a :class:`CheckResult`, in parameter order, built on demand.

    A read-only sequence of :class:`Inconclusive` (``result.inconclusive``)
    read from the per-entry verdict codes: ``len()`` is free, ``view[i]``
    and ``view[:k]`` scan the tensors up to the entries asked for and build
    only those. Compares equal to a list holding the same entries.
    """

    __slots__ = ("_result",)

    def __init__(self, result: CheckResult) -> None:
        self._result = result

    def _tensor_entries(self, t: int) -> np.ndarray:
        status = self._result.entry_status[t].reshape(-1)
        return np.flatnonzero((status >= KINK) & (status <= LARGE_STEP))

    def _build(self, t: int, flat: np.ndarray) -> list[Inconclusive]:
        r = self._result
        status = r.entry_status[t].reshape(-1)
        shape = r.tensors[t].shape
        return [Inconclusive(r.tensors[t].name, tuple(int(i) for i in np.unravel_index(int(k), shape)),
                             INCONCLUSIVE_REASONS[int(status[k])]) for k in flat]

    def __len__(self) -> int:
        return sum(t.n_inconclusive for t in self._result.tensors)

    def _first(self, k: int) -> list[Inconclusive]:
        out: list[Inconclusive] = []
        for t, summary in enumerate(self._result.tensors):
            if len(out) >= k:
                break
            if summary.n_inconclusive:
                out += self._build(t, self._tensor_entries(t)[: k - len(out)])
        return out

    def __getitem__(self, item):
        if isinstance(item, slice):
            start, stop, step = item.indices(len(self))
            wanted = range(start, stop, step)
            if not wanted:
                return []
            first = self._first(max(wanted) + 1)
            return [first[i] for i in wanted]
        i = operator.index(item)
        size = len(self)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError("inconclusive index out of range")
        return self._first(i + 1)[i]

    def __iter__(self):
        for t, summary in enumerate(self._result.tensors):
            if summary.n_inconclusive:
                entries = self._tensor_entries(t)
                for lo in range(0, entries.size, 4096):
                    yield from self._build(t, entries[lo:lo + 4096])

    def __bool__(self) -> bool:
        return len(self) > 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, InconclusiveView):
            other = list(other)
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        size = len(self)
        shown = self[:3]
        more = f", ... ({size} inconclusive entries in all)" if size > len(shown) else ""
        return "InconclusiveView([" + ", ".join(map(repr, shown)) + more + "])"


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
        from .report import format_result

        return format_result(self)

    def to_dict(self, max_failures: int | None = 100) -> dict[str, Any]:
        """JSON-safe summary: the ``max_failures`` worst failures (all when None) and the count of all.

        ``json.dumps(result.to_dict(), allow_nan=False)`` always succeeds:
        NaN and infinite floats are written as ``None`` (JSON ``null``).
        See :func:`fastgrad.report.result_to_dict`.
        """
        from .report import result_to_dict

        return result_to_dict(self, max_failures)

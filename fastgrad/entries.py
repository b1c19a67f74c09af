"""Per-entry records of a check, and the lazy sequences that list them (``result.failures``, ``result.inconclusive``).

A check of millions of parameters can fail or be inconclusive everywhere: the
records are built only for the entries asked for, from the result's
per-tensor arrays, and the worst few are selected in O(P).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._kernels.verdict import KINK, LARGE_STEP, NONFINITE, UNRESOLVED

if TYPE_CHECKING:
    from .result import CheckResult


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


def relative_error(analytic: np.ndarray, numerical: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """``|a - n| / max(|a|, |n|, atol / rtol)``, and 0 where ``a == n``.

    With this floor an entry fails (``rel > rtol``) exactly when
    ``|a - n| > max(rtol * max(|a|, |n|), atol)``: entries whose values are
    both below ``atol / rtol`` are judged by the absolute tolerance. A NaN or
    infinite value on either side (e.g. an overflowing loss) gives ``inf``.
    The same operations in the same order as the verdict kernel
    (:func:`fastgrad._kernels.verdict.entry_errors`), hence the same bits.
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.abs(analytic - numerical)
        scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numerical)), atol / rtol)
        rel = np.where(diff == 0.0, 0.0, diff / scale)
    # a non-finite value on either side (the loss overflowed) is never a pass
    rel[~(np.isfinite(analytic) & np.isfinite(numerical))] = np.inf
    return rel


def _ratio_of(a: np.ndarray, n: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Budget ratio ``|a - n| / budget`` of some entries (``inf`` where either side is not finite)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = np.abs(a - n) / budget
    ratio[~(np.isfinite(a) & np.isfinite(n))] = np.inf
    return ratio


class _LazyEntries(Sequence):
    """A read-only sequence of per-entry records built only when asked for (the two views below).

    Subclasses say how to build the records at some positions (``_pick``)
    and what they list (``_noun``); indexing, slicing, truth, equality with
    a list and a short ``repr`` are shared.
    """

    __slots__ = ()
    _noun = "entries"

    def _pick(self, positions: np.ndarray, upto: int) -> list[Any]:
        """The records at ``positions`` (each below ``upto``), in that order."""
        raise NotImplementedError

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, slice):
            start, stop, step = item.indices(len(self))
            wanted = range(start, stop, step)
            if not wanted:
                return []
            return self._pick(np.asarray(wanted, dtype=np.intp), max(wanted) + 1)
        i = operator.index(item)
        size = len(self)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError(f"{self._noun} index out of range")
        return self._pick(np.array([i], dtype=np.intp), i + 1)[0]

    def __bool__(self) -> bool:
        return len(self) > 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _LazyEntries):
            other = list(other)
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        size = len(self)
        shown = self[:3]
        more = f", ... ({size} {self._noun} in all)" if size > len(shown) else ""
        return f"{type(self).__name__}([" + ", ".join(map(repr, shown)) + more + "])"


class FailureView(_LazyEntries):
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
    _noun = "failing entries"

    def __init__(self, result: CheckResult) -> None:
        self._result = result
        self._len: int | None = None

    # ---- where the data come from -------------------------------------
    def _stored(self, name: str) -> list[np.ndarray] | None:
        """The per-tensor arrays ``name`` if the result stores them (not computed on access)."""
        arrays = vars(self._result).get("_" + name)  # given, or derived already (see _Derived)
        return arrays if arrays else None

    def _failed_pieces(self, t: int) -> Iterator[np.ndarray]:
        """Flat indices of the failing entries of tensor ``t``, ascending, in pieces of at most RANK_PIECE."""
        r = self._result
        failed = r.failed[t] if r.failed else None
        if failed is None:  # no masks: the tolerance verdict, as before masks were kept
            rel = self._stored("rel_error")
            a, n = r.analytic[t].reshape(-1), r.numerical[t].reshape(-1)
            for lo in range(0, a.shape[0], RANK_PIECE):
                hi = lo + RANK_PIECE
                part = rel[t].reshape(-1)[lo:hi] if rel else relative_error(a[lo:hi], n[lo:hi], r.rtol, r.atol)
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
        return relative_error(a, n, r.rtol, r.atol)

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

    def _pick(self, positions: np.ndarray, upto: int) -> list[Any]:
        ranked = self._ranked(upto)
        return self._build(*(column[positions] for column in ranked))

    def __iter__(self) -> Iterator[Any]:
        tensor_of, index_of, rel = self._ranked(None)
        step = 4096
        for lo in range(0, index_of.shape[0], step):
            yield from self._build(tensor_of[lo:lo + step], index_of[lo:lo + step], rel[lo:lo + step])


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


class InconclusiveView(_LazyEntries):
    """The inconclusive entries of a :class:`CheckResult`, in parameter order, built on demand.

    A read-only sequence of :class:`Inconclusive` (``result.inconclusive``)
    read from the per-entry verdict codes: ``len()`` is free, ``view[i]``
    and ``view[:k]`` scan the tensors up to the entries asked for and build
    only those. Compares equal to a list holding the same entries.
    """

    __slots__ = ("_result",)
    _noun = "inconclusive entries"

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

    def _pick(self, positions: np.ndarray, upto: int) -> list[Any]:
        first = self._first(upto)
        return [first[int(i)] for i in positions]

    def __iter__(self) -> Iterator[Any]:
        for t, summary in enumerate(self._result.tensors):
            if summary.n_inconclusive:
                entries = self._tensor_entries(t)
                for lo in range(0, entries.size, 4096):
                    yield from self._build(t, entries[lo:lo + 4096])



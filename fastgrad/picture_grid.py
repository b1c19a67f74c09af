"""What a picture of a check shows, as small grids: per tensor, the block maxima of each entry's error and flags.

Pure NumPy, no matplotlib: :mod:`fastgrad.plot_result` draws these grids,
and ``result.to_dict(pictures=True)`` writes them to JSON (a few hundred KB
at most per tensor) so that ``fastgrad report result.json --html`` can draw
the same pictures later, without the per-entry arrays.

A tensor is seen as a 2-D array (a vector, a (k, 1) or (1, k) bias and a
scalar as one row; more than two axes as ``shape[0]`` rows of the rest
flattened). When it has more than ``max_cells`` rows or columns, entries are
gathered in blocks, and a cell holds the block's MAXIMUM error and the OR of
its entries' flags: one failing entry among millions stays visible, never
averaged away. The reduction is vectorised (reshape and max, padded to whole
blocks); a 9 M-entry tensor takes a few hundred milliseconds.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._kernels.verdict import FAILED, KINK, LARGE_STEP, NONFINITE, PASSED, UNCHECKED, UNRESOLVED

if TYPE_CHECKING:
    from .result import CheckResult

#: Cells per side of a tensor's grid, at most (a panel is a few hundred pixels wide).
MAX_CELLS = 256
#: What a picture can show: each entry's ``|a - n| / budget`` or its relative error.
WHATS = ("budget_ratio", "rel_error")

# Flags of a cell: the OR over its block's entries.
JUDGED = 1  # some entry passed or failed: the cell's value is the maximum over those entries
FAILING = 2  # some entry failed
INCONCLUSIVE = 4  # some entry is inconclusive (a kink, unresolved, non-finite, a large step)
CHECKED = 8  # some entry was computed (a sampled check leaves the others out)

_FLAGS_OF_STATUS = np.zeros(UNCHECKED + 1, dtype=np.uint8)  # (a code beyond it is refused in tensor_grid)
_FLAGS_OF_STATUS[PASSED] = JUDGED | CHECKED
_FLAGS_OF_STATUS[FAILED] = JUDGED | FAILING | CHECKED
for _code in (KINK, UNRESOLVED, NONFINITE, LARGE_STEP):
    _FLAGS_OF_STATUS[_code] = INCONCLUSIVE | CHECKED
_FLAGS_OF_STATUS[UNCHECKED] = 0

#: How the grids are written in JSON (``result.to_dict(pictures=True)["pictures"]``).
ENCODING = ("log10_max: base64 of little-endian float16, row-major (cells[0] x cells[1]), the log10 of the block's "
            "largest value over its judged (passed or failed) entries, NaN where there is none; flags: base64 of "
            "uint8, the OR over the block's entries of 1 judged, 2 failed, 4 inconclusive, 8 checked")


@dataclass(frozen=True)
class TensorGrid:
    """One tensor's picture: its 2-D view reduced to at most ``MAX_CELLS`` x ``MAX_CELLS`` cells.

    Attributes
    ----------
    name : str
    shape : tuple of int
        The tensor's shape, as the caller gave it.
    rows, cols : int
        The 2-D view drawn (see the module's docstring).
    block : tuple of int
        Entries per cell: (rows, cols) of the view.
    log10_max : ndarray of float
        Per cell, log10 of the largest value over the judged entries of its
        block (-inf for an exact 0); NaN where the block has none.
    flags : ndarray of uint8
        Per cell, :data:`JUDGED`, :data:`FAILING`, :data:`INCONCLUSIVE`,
        :data:`CHECKED` OR-ed over its block.
    verdict : str
        ``"passed"``, ``"failed"`` or ``"inconclusive"`` (most of its judged
        entries are: the check cannot vouch for it).
    n_failed, n_inconclusive, n_checked : int
    hint : str or None
        :func:`fastgrad.diagnose.diagnose_tensor`'s hint.
    projected : bool
        The entries not computed one by one were vouched for by
        ``method="directional"``'s projections (not left out by a sample).
    """

    name: str
    shape: tuple[int, ...]
    rows: int
    cols: int
    block: tuple[int, int]
    log10_max: np.ndarray
    flags: np.ndarray
    verdict: str
    n_failed: int
    n_inconclusive: int
    n_checked: int
    hint: str | None = None
    projected: bool = False

    @property
    def size(self) -> int:
        """Entries of the tensor."""
        return self.rows * self.cols

    @property
    def title(self) -> str:
        """``W1 (4 x 5): FAILED 4 of 20`` ..., the panel's first line."""
        shape = " x ".join(map(str, self.shape)) if self.shape else "scalar"
        if self.verdict == "failed":
            said = f"FAILED {self.n_failed:,} of {self.n_checked:,}"
        elif self.verdict == "inconclusive":
            said = f"INCONCLUSIVE: {self.n_inconclusive:,} of {self.n_checked:,} entries"
        else:
            said = "passed"
        if self.n_inconclusive and self.verdict != "inconclusive":
            said += f", {self.n_inconclusive:,} inconclusive"
        if self.n_checked < self.size and self.projected:
            said += f" ({self.n_checked:,} of {self.size:,} checked one by one, the rest by projection)"
        elif self.n_checked < self.size:
            said += f" (sampled: {self.n_checked:,} of {self.size:,} checked)"
        return f"{self.name} ({shape}): {said}"


@dataclass(frozen=True)
class ResultGrids:
    """The pictures of one check: what they show, where an entry fails, and one :class:`TensorGrid` per tensor.

    ``fail_line`` is the log10 of the value above which an entry fails
    (``safety`` for budget ratios, ``rtol`` for relative errors judged by a
    fixed tolerance), None when the quantity shown does not decide (relative
    errors under the budget verdict).
    """

    what: str
    fail_line: float | None
    headline: str
    model: str
    tensors: list[TensorGrid]


def view_2d(shape: Sequence[int]) -> tuple[int, int]:
    """The (rows, cols) a tensor of ``shape`` is drawn as: vectors and biases as one row."""
    shape = tuple(int(s) for s in shape)
    size = math.prod(shape)
    if sum(s != 1 for s in shape) <= 1:  # a scalar, a vector, a (k, 1) or (1, k) bias
        return 1, size
    if len(shape) == 2:
        return shape
    return shape[0], size // shape[0]


def block_shape(rows: int, cols: int, max_cells: int = MAX_CELLS) -> tuple[int, int]:
    """Entries per cell, (rows, cols), so that the grid has at most ``max_cells`` cells per side."""
    return max(1, -(-rows // max_cells)), max(1, -(-cols // max_cells))


def block_reduce(values: np.ndarray, block: tuple[int, int], fill: Any, ufunc: np.ufunc) -> np.ndarray:
    """Reduce a 2-D array by blocks with ``ufunc`` (``np.maximum``, ``np.bitwise_or``), padding with ``fill``.

    The array is padded to whole blocks only when it does not divide
    (``fill`` must be the ufunc's identity: -inf for a maximum, 0 for an OR),
    then viewed as (cell rows, block rows, cell cols, block cols) and
    reduced over the two block axes: no Python loop over cells.
    """
    rows, cols = values.shape
    br, bc = block
    cr, cc = -(-rows // br), -(-cols // bc)
    if cr * br != rows or cc * bc != cols:
        padded = np.full((cr * br, cc * bc), fill, dtype=values.dtype)
        padded[:rows, :cols] = values
        values = padded
    return ufunc.reduce(ufunc.reduce(values.reshape(cr, br, cc, bc), axis=3), axis=1)


def tensor_grid(name: str, shape: Sequence[int], values: np.ndarray, status: np.ndarray, *,
                max_cells: int = MAX_CELLS, hint: str | None = None, verdict: str | None = None) -> TensorGrid:
    """The grid of one tensor from its per-entry ``values`` (ratios or relative errors) and verdict codes.

    Parameters
    ----------
    name : str
    shape : sequence of int
        The tensor's shape (``values`` and ``status`` have as many entries).
    values : ndarray of float
        Per entry, the quantity drawn (>= 0; only judged entries are used).
    status : ndarray of uint8
        Per entry, the verdict code (:mod:`fastgrad._kernels.verdict`).
    max_cells : int
        Cells per side, at most.
    hint, verdict : str, optional
        The tensor's hint, and its verdict (derived from the counts when not given).
    """
    shape = tuple(int(s) for s in shape)
    rows, cols = view_2d(shape)
    status = np.asarray(status).reshape(rows, cols)
    if status.size and int(status.max()) > UNCHECKED:
        raise ValueError(f"tensor {name!r}: unknown entry verdict code {int(status.max())}")
    block = block_shape(rows, cols, max_cells)
    flags = block_reduce(_FLAGS_OF_STATUS[status], block, 0, np.bitwise_or)
    judged = np.where(status <= FAILED, np.asarray(values, dtype=np.float64).reshape(rows, cols), -np.inf)
    largest = block_reduce(judged, block, -np.inf, np.maximum)
    with np.errstate(divide="ignore"):  # an exact match is 0: log10 gives -inf, drawn at the bottom of the scale
        log10_max = np.where(flags & JUDGED, np.log10(np.maximum(largest, 0.0)), np.nan)
    counts = np.bincount(status.reshape(-1), minlength=UNCHECKED + 1)
    n_failed = int(counts[FAILED])
    n_inconclusive = int(counts[KINK] + counts[UNRESOLVED] + counts[NONFINITE] + counts[LARGE_STEP])
    n_checked = int(status.size - counts[UNCHECKED])
    if verdict is None:
        verdict = "failed" if n_failed else "inconclusive" if 2 * n_inconclusive > n_checked else "passed"
    return TensorGrid(name, shape, rows, cols, block, log10_max, flags, verdict, n_failed, n_inconclusive,
                      n_checked, hint)


def _headline(status: str, n_failed: int, n_params: int, verdict: str, worst: float | None,
              threshold: float | None) -> str:
    head = f"fastgrad check {status.upper()}: {n_failed:,} of {n_params:,} entries"
    if verdict == "budget":
        head += " over their error budget"
        if worst is not None and threshold is not None:
            head += f"; the worst is {worst:.3g} x its budget (fails above {threshold:g} x)"
    else:
        head += " out of tolerance"
        if worst is not None and threshold is not None:
            head += f"; max rel error {worst:.3g} (rtol {threshold:g})"
    return head


def result_grids(result: CheckResult, what: str = "budget_ratio", max_cells: int = MAX_CELLS) -> ResultGrids:
    """The pictures of ``result``: one grid per tensor of ``what`` (``"budget_ratio"`` or ``"rel_error"``).

    Raises
    ------
    ValueError
        ``what`` is not one of :data:`WHATS`, or is ``"budget_ratio"`` for a
        result judged by a fixed rtol/atol (which has no budgets).
    """
    from .report import _unvouched  # (the text report's rule for "the check cannot vouch for this tensor")

    if not isinstance(what, str) or what not in WHATS:
        raise ValueError(f"what must be one of {', '.join(map(repr, WHATS))}, got {what!r}")
    if not result.entry_status:
        raise ValueError("result has no per-entry verdicts (entry_status) to draw")
    threshold: float | None
    if what == "budget_ratio":
        if result.verdict != "budget" or not result.budget:
            raise ValueError("what='budget_ratio' needs error budgets, and this result was judged by a fixed "
                             "rtol/atol (verdict='tolerance'): use what='rel_error'")
        values, threshold = result.budget_ratio, float(result.safety)
    else:
        values = result.rel_error
        threshold = float(result.rtol) if result.verdict == "tolerance" else None
    grids = []
    for t, summary in enumerate(result.tensors):
        verdict = "failed" if not summary.passed else "inconclusive" if _unvouched(result, summary) else "passed"
        grid = tensor_grid(summary.name, summary.shape, values[t], result.entry_status[t],
                           max_cells=max_cells, hint=summary.hint, verdict=verdict)
        grids.append(dataclasses.replace(grid, projected=result.method == "directional"))
    worst = result.max_budget_ratio if result.verdict == "budget" else result.max_rel_error
    headline = _headline(result.status, result.n_failed, result.n_params, result.verdict,
                         worst if math.isfinite(worst) else None,
                         float(result.safety) if result.verdict == "budget" else float(result.rtol))
    fail_line = math.log10(threshold) if threshold is not None and threshold > 0 else None
    return ResultGrids(what, fail_line, headline, result.model, grids)


# ---------------------------------------------------------------------------------------------- JSON


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def grids_to_dict(grids: ResultGrids) -> dict[str, Any]:
    """JSON-safe form of ``grids`` (``json.dumps(..., allow_nan=False)`` accepts it; see :data:`ENCODING`)."""
    return {
        "what": grids.what,
        "fail_line_log10": grids.fail_line,
        "encoding": ENCODING,
        "tensors": [
            {
                "name": g.name, "shape": list(g.shape), "rows": g.rows, "cols": g.cols, "block": list(g.block),
                "cells": list(g.flags.shape), "verdict": g.verdict, "n_failed": g.n_failed,
                "n_inconclusive": g.n_inconclusive, "n_checked": g.n_checked, "hint": g.hint,
                "projected": g.projected,
                "log10_max": _b64(g.log10_max, "<f2"), "flags": _b64(g.flags, "u1"),
            }
            for g in grids.tensors
        ],
    }


def _decode(text: Any, dtype: str, cells: tuple[int, int], what: str) -> np.ndarray:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"{what} is not valid base64: {exc}") from None
    array = np.frombuffer(raw, dtype=dtype)
    if array.size != cells[0] * cells[1]:
        raise ValueError(f"{what} holds {array.size} cells, its 'cells' says {cells[0]} x {cells[1]}")
    return array.reshape(cells)


def grids_from_dict(result: Mapping[str, Any]) -> ResultGrids:
    """The grids of a ``result.to_dict(pictures=True)`` (as read back from JSON).

    Raises
    ------
    KeyError
        The dict has no ``"pictures"``.
    ValueError
        They are malformed (wrong types, sizes or codes).
    """
    pictures = result["pictures"]
    try:
        what = str(pictures["what"])
        fail_line = None if pictures["fail_line_log10"] is None else float(pictures["fail_line_log10"])
        tensors = []
        for i, t in enumerate(pictures["tensors"]):
            label = f"pictures.tensors[{i}]"
            rows, cols = int(t["rows"]), int(t["cols"])
            shape = tuple(int(s) for s in t["shape"])
            if rows * cols != math.prod(shape) or min(rows, cols) < 1:
                raise ValueError(f"{label}: a {rows} x {cols} view does not hold a tensor of shape {list(shape)}")
            block = (int(t["block"][0]), int(t["block"][1]))
            cells = (int(t["cells"][0]), int(t["cells"][1]))
            if min(block) < 1 or cells != (-(-rows // block[0]), -(-cols // block[1])):
                raise ValueError(f"{label}: {cells[0]} x {cells[1]} cells do not cover {rows} x {cols} entries "
                                 f"in blocks of {block[0]} x {block[1]}")
            flags = _decode(t["flags"], "u1", cells, f"{label}.flags")
            log10_max = _decode(t["log10_max"], "<f2", cells, f"{label}.log10_max").astype(np.float64)
            tensors.append(TensorGrid(
                str(t["name"]), shape, rows, cols, block, log10_max, flags,
                str(t["verdict"]), int(t["n_failed"]), int(t["n_inconclusive"]), int(t["n_checked"]),
                None if t["hint"] is None else str(t["hint"]), bool(t.get("projected", False))))
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"pictures: missing or malformed field {exc}") from None
    if what not in WHATS:
        raise ValueError(f"pictures.what must be one of {', '.join(map(repr, WHATS))}, got {what!r}")
    threshold = result.get("safety") if result.get("verdict") == "budget" else result.get("rtol")
    worst = result.get("max_budget_ratio") if result.get("verdict") == "budget" else result.get("max_rel_error")
    headline = _headline(str(result.get("status", "?")), int(result.get("n_failed", 0)),
                         int(result.get("n_params", 0)), str(result.get("verdict", "budget")), worst, threshold)
    return ResultGrids(what, fail_line, headline, str(result.get("model", "")), tensors)

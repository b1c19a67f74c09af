"""Rendering a :class:`~fastgrad.result.CheckResult` as text or a dict."""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (types only: result imports this module to render itself, and nothing imports back)
    from .result import CheckResult

#: Failing entries shown in ``str(result)``.
SHOWN_FAILURES = 10


def _idx(index: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, index)) + ")" if len(index) != 1 else f"({index[0]},)"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[c]) for r in rows)) if rows else len(h) for c, h in enumerate(header)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def _unvouched(result: CheckResult, t: Any) -> bool:
    """More than half of the tensor's judged entries are inconclusive (directional judges them all)."""
    judged = t.size if result.method == "directional" else t.n_checked
    return 2 * t.n_inconclusive > judged


def _headline(result: CheckResult) -> list[str]:
    verdict = result.status.upper()
    run = (
        f"  {result.model}, N={result.n_samples}, loss={result.loss:.6g}, "
        f"method={result.method}, engine={result.engine}, eps={result.eps:g}, {result.seconds:.3g} s"
    )
    if result.verdict == "budget":
        worst = result.max_budget_ratio
        lines = [
            f"fastgrad check {verdict}: {result.n_failed} of {result.n_params} entries over their error budget; "
            f"the worst entry is {worst:.3g} x its budget (fails above {result.safety:g} x), "
            f"max rel error {result.max_rel_error:.3g}",
            run,
            "  budget per entry: truncation + rounding of the numerical derivative + rounding of the "
            "checked gradient's dtype (see docs/guide.md, 'How fastgrad decides')",
        ]
    else:
        lines = [
            f"fastgrad check {verdict}: {result.n_failed} of {result.n_params} entries out of tolerance, "
            f"max rel error {result.max_rel_error:.3g}",
            run,
            f"  tolerance: rel error = |a - n| / max(|a|, |n|, atol/rtol) must be <= rtol "
            f"(rtol={result.rtol:g}, atol={result.atol:g})",
        ]
    if result.forward_passes is not None:
        if result.model.startswith("check_function("):  # a loss known by its values: real evaluations of f
            lines.append(f"  directional: {result.forward_passes} evaluations of the loss "
                         f"(a per-parameter check takes {4 * result.n_params + 1})")
        else:
            lines.append(f"  directional: {result.forward_passes} complex forward passes of the batch "
                         f"(a per-parameter check takes {2 * result.n_params})")
    if result.n_checked < result.n_params:
        lines.append(f"  sampled: {result.n_checked} of {result.n_params} entries checked (see result.checked)")
    if result.inconclusive:
        reasons = sorted(result.inconclusive_reasons) or sorted({c.reason for c in result.inconclusive})
        unvouched = [t.name for t in result.tensors if _unvouched(result, t)]
        most = f" (most of {', '.join(unvouched)}: the check cannot vouch for them)" if unvouched else ""
        lines.append(f"  {len(result.inconclusive)} of {result.n_checked} checked entries inconclusive{most},"
                     " left out of the verdict: see result.inconclusive")
        lines += [f"    - {reason}" for reason in reasons]
    for note in result.notes:
        lines.append(f"  NOTE: {note}")
    for remark in result.advice:
        lines.append(f"  advice: {remark}")
    return lines + [""]


def format_result(result: CheckResult) -> str:
    """A table a person can act on: which tensor, which entry, how far off, and a hint why."""
    lines = _headline(result)
    rows = [
        [
            t.name,
            "x".join(map(str, t.shape)),
            "FAIL" if not t.passed else "inconcl." if _unvouched(result, t) else "ok",
            f"{t.n_failed}/{t.size}",
            f"{t.max_rel_error:.3g}",
            f"{t.max_budget_ratio:.3g}",
            _idx(t.worst_index),
            f"{t.worst_analytic:.9g}",
            f"{t.worst_numerical:.9g}",
        ]
        for t in result.tensors
    ]
    header = ["tensor", "shape", "verdict", "failed", "max rel err", "x budget", "worst at", "analytic", "numerical"]
    lines += _table(header, rows)
    hints = [(t.name, t.hint) for t in result.tensors if t.hint]
    if hints:
        lines += ["", "hints:"] + [f"  {name}: {hint}" for name, hint in hints]
    if result.n_failed:
        shown = result.worst_failures(SHOWN_FAILURES)
        lines += ["", f"worst failing entries ({len(shown)} of {result.n_failed}):"]
        rows = [
            [f.tensor + _idx(f.index), f"{f.analytic:.9g}", f"{f.numerical:.9g}", f"{f.abs_error:.3g}",
             f"{f.rel_error:.3g}", f"{f.budget:.3g}"]
            for f in shown
        ]
        lines += _table(["entry", "analytic", "numerical", "abs err", "rel err", "budget"], rows)
    return "\n".join(lines)


def _num(x: Any) -> float | None:
    """A float for JSON: NaN and +-inf become None (JSON ``null``)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _int(x: Any) -> int:
    return int(x)


def _ints(values: Any) -> list[int]:
    return [int(v) for v in values]


def result_to_dict(result: CheckResult, max_failures: int | None) -> dict[str, Any]:
    """Plain-Python view of a result that ``json.dumps(..., allow_nan=False)`` always accepts.

    Every float that is NaN or infinite (a NaN numerical value, an infinite
    budget ratio or relative error, an overflowing loss ...) is written as
    ``None`` (JSON ``null``); every other number is a Python ``float`` or
    ``int``. ``"failures"`` lists the ``max_failures`` worst failing entries
    (all when None), ``"inconclusive"`` at most as many inconclusive
    entries; ``"n_failed"`` and ``"n_inconclusive"`` count all of them. The
    worst entries are selected in O(P) (see :class:`~fastgrad.result.FailureView`).
    """
    if max_failures is not None:
        max_failures = max(0, operator.index(max_failures))
    inconclusive = result.inconclusive if max_failures is None else result.inconclusive[:max_failures]
    return {
        "passed": bool(result.passed),
        "status": str(result.status),
        "advice": [str(remark) for remark in result.advice],
        "max_rel_error": _num(result.max_rel_error),
        "n_params": _int(result.n_params),
        "n_failed": _int(result.n_failed),
        "n_checked": _int(result.n_checked),
        "n_inconclusive": len(result.inconclusive),
        "forward_passes": None if result.forward_passes is None else _int(result.forward_passes),
        "rtol": _num(result.rtol),
        "atol": _num(result.atol),
        "eps": _num(result.eps),
        "method": str(result.method),
        "engine": str(result.engine),
        "loss": _num(result.loss),
        "n_samples": _int(result.n_samples),
        "seconds": _num(result.seconds),
        "model": str(result.model),
        "verdict": str(result.verdict),
        "safety": _num(result.safety),
        "max_budget_ratio": _num(result.max_budget_ratio),
        "notes": [str(note) for note in result.notes],
        "inconclusive": [
            {"tensor": str(c.tensor), "index": _ints(c.index), "reason": str(c.reason)} for c in inconclusive
        ],
        "tensors": [
            {
                "name": str(t.name),
                "shape": _ints(t.shape),
                "passed": bool(t.passed),
                "n_failed": _int(t.n_failed),
                "max_rel_error": _num(t.max_rel_error),
                "worst_index": _ints(t.worst_index),
                "worst_analytic": _num(t.worst_analytic),
                "worst_numerical": _num(t.worst_numerical),
                "n_inconclusive": _int(t.n_inconclusive),
                "max_budget_ratio": _num(t.max_budget_ratio),
                "hint": None if t.hint is None else str(t.hint),
                "n_checked": _int(t.n_checked),
            }
            for t in result.tensors
        ],
        "failures": [
            {
                "tensor": str(f.tensor),
                "index": _ints(f.index),
                "analytic": _num(f.analytic),
                "numerical": _num(f.numerical),
                "abs_error": _num(f.abs_error),
                "rel_error": _num(f.rel_error),
                "budget": _num(f.budget),
                "budget_ratio": _num(f.budget_ratio),
            }
            for f in result.worst_failures(max_failures)
        ],
    }

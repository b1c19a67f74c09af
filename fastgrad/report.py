"""Rendering a :class:`~fastgrad.result.CheckResult` as text or a dict."""

from __future__ import annotations

import math
from typing import Any

from .result import CheckResult

#: Failing entries shown in ``str(result)``.
SHOWN_FAILURES = 10


def _idx(index: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, index)) + ")" if len(index) != 1 else f"({index[0]},)"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[c]) for r in rows)) if rows else len(h) for c, h in enumerate(header)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def format_result(result: CheckResult) -> str:
    """A table a person can act on: which tensor, which entry, how far off."""
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"fastgrad check {verdict}: {result.n_failed} of {result.n_params} entries out of tolerance, "
        f"max rel error {result.max_rel_error:.3g}",
        f"  {result.model}, N={result.n_samples}, loss={result.loss:.6g}, "
        f"method={result.method}, engine={result.engine}, eps={result.eps:g}, {result.seconds:.3g} s",
        f"  tolerance: rel error = |a - n| / max(|a|, |n|, atol/rtol) must be <= rtol "
        f"(rtol={result.rtol:g}, atol={result.atol:g})",
        "",
    ]
    rows = [
        [
            t.name,
            "x".join(map(str, t.shape)),
            "ok" if t.passed else "FAIL",
            f"{t.n_failed}/{t.size}",
            f"{t.max_rel_error:.3g}",
            _idx(t.worst_index),
            f"{t.worst_analytic:.9g}",
            f"{t.worst_numerical:.9g}",
        ]
        for t in result.tensors
    ]
    header = ["tensor", "shape", "verdict", "failed", "max rel err", "worst at", "analytic", "numerical"]
    lines += _table(header, rows)
    if not result.passed:
        shown = result.worst_failures(SHOWN_FAILURES)
        lines += ["", f"worst failing entries ({len(shown)} of {result.n_failed}):"]
        rows = [
            [f.tensor + _idx(f.index), f"{f.analytic:.9g}", f"{f.numerical:.9g}", f"{f.abs_error:.3g}",
             f"{f.rel_error:.3g}"]
            for f in shown
        ]
        lines += _table(["entry", "analytic", "numerical", "abs err", "rel err"], rows)
    return "\n".join(lines)


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def result_to_dict(result: CheckResult, max_failures: int | None) -> dict[str, Any]:
    """Plain-Python view of a result (``json.dumps`` accepts it)."""
    return {
        "passed": bool(result.passed),
        "max_rel_error": _num(result.max_rel_error),
        "n_params": result.n_params,
        "n_failed": result.n_failed,
        "rtol": result.rtol,
        "atol": result.atol,
        "eps": result.eps,
        "method": result.method,
        "engine": result.engine,
        "loss": _num(result.loss),
        "n_samples": result.n_samples,
        "seconds": result.seconds,
        "model": result.model,
        "tensors": [
            {
                "name": t.name,
                "shape": list(t.shape),
                "passed": bool(t.passed),
                "n_failed": t.n_failed,
                "max_rel_error": _num(t.max_rel_error),
                "worst_index": list(t.worst_index),
                "worst_analytic": _num(t.worst_analytic),
                "worst_numerical": _num(t.worst_numerical),
            }
            for t in result.tensors
        ],
        "failures": [
            {
                "tensor": f.tensor,
                "index": list(f.index),
                "analytic": f.analytic,
                "numerical": f.numerical,
                "abs_error": f.abs_error,
                "rel_error": f.rel_error,
            }
            for f in result.worst_failures(max_failures)
        ],
    }

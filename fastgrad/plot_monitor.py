"""``Monitor.plot()``: a training run's checks over its steps (matplotlib).

Three panels sharing the training step: the worst budget ratio of each
check on a log scale with the fail line (``safety``), so that the step where
a bug came in is where the line crosses it; the checking time as a share of
the training time, against the budget; and the coverage, the share of the
entries checked at least once. Drawn from :attr:`Monitor.history` alone.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _matplotlib
from .monitor_report import format_count, format_percent
from .plot_result import INCONCLUSIVE_COLOUR

if TYPE_CHECKING:
    from .monitor import Monitor

#: Budget ratios below this (an exact match is 0) are drawn at it: the panel is on a log scale.
RATIO_FLOOR = 1e-6
STATUS_COLOURS = {"passed": "tab:blue", "failed": "tab:red", "inconclusive": INCONCLUSIVE_COLOUR}


def _finite(values: list[float], scale: float = 1.0) -> np.ndarray:
    """``values`` x ``scale`` as floats, NaN where not finite (a gap in the line, not an error)."""
    array = np.asarray(values, dtype=np.float64) * scale
    array[~np.isfinite(array)] = np.nan
    return array


def plot_monitor(monitor: Monitor, path: Any = None) -> Any:
    """Draw ``monitor``'s history (see :meth:`fastgrad.Monitor.plot`); save it to ``path`` when given; return it."""
    fig = _matplotlib.new_figure("Monitor.plot()", 8.0, 7.5)
    history = monitor.history
    steps = np.asarray([r.step for r in history], dtype=np.int64)
    ax_ratio, ax_overhead, ax_coverage = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1, 1]})
    ax_ratio.set_label("worst budget ratio")
    ax_overhead.set_label("overhead")
    ax_coverage.set_label("coverage")

    ratio = np.maximum(_finite([r.max_budget_ratio for r in history]), RATIO_FLOOR)
    ax_ratio.plot(steps, ratio, color="0.45", linewidth=1.2, label="worst budget ratio of the check")
    for status, colour in STATUS_COLOURS.items():
        at = np.asarray([r.status == status for r in history], dtype=bool)
        if at.any():
            ax_ratio.plot(steps[at], ratio[at], linestyle="none", marker="o", markersize=5, color=colour,
                          label=status)
    forced = np.asarray([r.forced for r in history], dtype=bool)
    if forced.any():
        ax_ratio.plot(steps[forced], ratio[forced], linestyle="none", marker="o", markersize=10,
                      markerfacecolor="none", markeredgecolor="black", label="forced by min_every")
    ax_ratio.axhline(monitor.safety, color="black", linestyle="--", linewidth=1.2,
                     label=f"fail line ({monitor.safety:g} x the budget)")
    ax_ratio.set_yscale("log")
    ax_ratio.set_ylabel("|a - n| / budget, worst entry", fontsize=8)
    ax_ratio.legend(fontsize=7, loc="best", ncols=2, framealpha=0.6)  # off the points it would hide
    if not history:
        ax_ratio.text(0.5, 0.5, f"no check yet ({monitor.steps} steps)", transform=ax_ratio.transAxes,
                      ha="center", va="center")

    overhead = _finite([r.time_fraction for r in history], 100.0)
    ax_overhead.plot(steps, overhead, marker=".", color="tab:green", label="checking time / training time")
    if monitor.budget is not None:
        ax_overhead.axhline(100.0 * monitor.budget, color="black", linestyle="--", linewidth=1.2,
                            label=f"budget ({100.0 * monitor.budget:g} %)")
    ax_overhead.set_yscale("log")  # (a first check that compiles costs 1000s of %, the budget is ~1 %: both seen)
    ax_overhead.set_ylabel("overhead, % (log)", fontsize=8)
    ax_overhead.legend(fontsize=7, loc="best", framealpha=0.6)

    coverage = _finite([r.coverage for r in history], 100.0)
    ax_coverage.plot(steps, coverage, marker=".", drawstyle="steps-post", color="tab:purple",
                     label="entries checked at least once")
    ax_coverage.set_ylim(0.0, 105.0)
    ax_coverage.set_ylabel("coverage, %", fontsize=8)
    ax_coverage.set_xlabel("training step", fontsize=8)
    ax_coverage.legend(fontsize=7, loc="best", framealpha=0.6)
    ax_coverage.set_xlim(0, max(monitor.steps, int(steps.max()) if steps.size else 0, 1))
    for ax in (ax_ratio, ax_overhead, ax_coverage):
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    failed = sum(r.status == "failed" for r in history)
    inconclusive = sum(r.status == "inconclusive" for r in history)
    fig.suptitle(textwrap.fill(
        f"fastgrad.Monitor: {format_count(len(history), 'check')} in {monitor.steps} steps ({failed} failed, "
        f"{inconclusive} inconclusive); coverage {format_percent(monitor.coverage)}, overhead "
        f"{100 * monitor.overhead:.3g}% of the training time", 100), fontsize=9)
    if path is not None:
        _matplotlib.save_figure(fig, path)
    return fig

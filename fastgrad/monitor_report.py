"""What a :class:`fastgrad.Monitor` says about itself: the budget warning's text and its number formats.

Apart from monitor.py so that the scheduling there stays short to read;
these are pure functions of the numbers the Monitor measured.
"""

from __future__ import annotations

import math


def budget_message(*, gap: int, every: int, checks: int, steps: int, coverage: float, budget: float,
                   smallest_check: float, step_seconds: float) -> str:
    """The text of :class:`fastgrad.monitor.MonitorBudgetWarning`: what happened, in numbers, and what to change.

    ``smallest_check`` is the cost of the rotation's smallest step (one unit
    per layer of an MLP) and ``step_seconds`` a training step's, both in
    seconds; the checking time saved up grows by ``budget`` x
    ``step_seconds`` a step, so a check is paid for about every
    ``smallest_check / (budget * step_seconds)`` steps.
    """
    measured = step_seconds > 0 and math.isfinite(step_seconds)
    pays_every = smallest_check / (budget * step_seconds) if measured else math.inf
    wanted = smallest_check / (every * step_seconds) if measured else math.inf
    if wanted < 1:
        raise_budget = f"raise budget (about {wanted:.2g} for a check every {every} steps)"
    else:  # a check costs more than `every` training steps: no fraction < 1 of them pays for it
        raise_budget = (f"no budget < 1 pays for a check every {every} steps (one costs "
                        f"{smallest_check / step_seconds:,.0f} training steps)")
    return (
        f"fastgrad.Monitor: no gradient check in the last {gap} steps (every={every}; "
        f"{format_count(checks, 'check')} in {steps} steps, coverage {format_percent(coverage)} of the entries): "
        f"budget={budget:g} of the training time cannot pay for one. The smallest check (1 unit per layer of an "
        f"MLP, the rotation's smallest step) costs {format_seconds(smallest_check)} and a training step takes "
        f"{format_seconds(step_seconds)}, so the budget pays for a check about every {pays_every:,.0f} steps. "
        f"To check more often: {raise_budget}; make a check cheaper (its cost grows with the rows of the X, Y "
        f"given to step()), or set min_every= to force a check at least that often whatever it costs."
    )


def format_seconds(value: float) -> str:
    """A duration for a message: s, ms or us, three significant digits."""
    if not math.isfinite(value):
        return "an unmeasured time"
    if value >= 1.0:
        return f"{value:.3g} s"
    return f"{1e3 * value:.3g} ms" if value >= 1e-3 else f"{1e6 * value:.3g} us"


def format_percent(fraction: float) -> str:
    """A fraction as a percentage that never rounds a partial coverage to 0 % or 100 %."""
    if 0 < fraction < 0.001:
        return "<0.1%"
    text = f"{100 * fraction:.1f}%"
    if text == "100.0%" and fraction < 1:
        return ">99.9%"
    return text


def format_count(n: int, noun: str) -> str:
    """``1 check``, ``2 checks``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")

"""A gradient check that rides along a training loop within a time budget."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from . import _compile_notice, _validate, sharding
from ._config import DEFAULT_ENGINE, DEFAULT_SAFETY
from .capabilities import METHODS, resolve
from .checking import check
from .monitor_report import budget_message, format_count, format_percent
from .protocol import Model, hook, require_model
from .result import CheckResult, GradientCheckError


class GradientCheckWarning(UserWarning):
    """Warned by :class:`Monitor` (``on_fail="warn"``) when a periodic check fails."""


class MonitorBudgetWarning(RuntimeWarning):
    """Warned once by :class:`Monitor` when its time budget has not paid for a check in ``every`` x 10 steps.

    Not a :class:`GradientCheckWarning`: nothing failed, the gradient is
    simply not being checked (a loop that turns failed checks into errors
    should not stop for it).
    """


#: The one clock Monitor reads (training and checking time): tests replace it
#: to make the budget's decisions deterministic.
_clock = time.perf_counter


@dataclass(frozen=True)
class MonitorRecord:
    """One checking step of a :class:`Monitor`.

    Attributes
    ----------
    step : int
        The training step (1-based count of :meth:`Monitor.step` calls).
    passed : bool
    max_budget_ratio : float
        Worst ``|a - n| / budget`` of the checked entries.
    max_rel_error : float
    n_checked : int
        Entries checked.
    status : str
        ``"passed"``, ``"failed"`` or ``"inconclusive"`` (see
        :attr:`fastgrad.CheckResult.status`).
    seconds : float
        Time the check took.
    time_fraction : float
        Time spent checking so far / training time so far (the overhead).
    coverage : float
        Fraction of the model's entries checked at least once, this check
        included (:attr:`Monitor.coverage` at this step).
    forced : bool
        Whether ``min_every`` forced this check past the budget.
    """

    step: int
    passed: bool
    max_budget_ratio: float
    max_rel_error: float
    n_checked: int
    seconds: float
    time_fraction: float
    status: str = "passed"
    coverage: float = float("nan")
    forced: bool = False


class Monitor:
    """Periodic, budgeted gradient checks inside a training loop.

    Parameters
    ----------
    net : MLP or Model
        The network (or a model implementing :class:`fastgrad.protocol.Model`:
        its checks then rotate over single entries, or over the groups its
        ``rotation`` hook gives).
    every : int
        Check at most once every ``every`` steps (default 100); any
        integral type (``np.int64`` too).
    budget : float or None
        Largest fraction of the training time the checks may take (default
        0.01); None: no time limit, every ``every``-th step checks ``units``
        units of every layer. The training-step time is measured between calls of
        :meth:`step`; a check runs only when the time saved up
        (``budget`` x training time - time already spent checking) covers
        it, and is sized to what is saved up: more units of every layer
        (each with all its parameters) when training steps are slow, at
        least one unit per layer when they are fast.
    seed : int or None
        Seed of the rotation (a non-negative int, or None): each layer's units are visited in a fixed
        random order, successive checks taking the next ones, so that every
        entry is checked after :meth:`steps_to_cover` checks of that size.
    on_fail : {"warn", "raise"}, callable or None
        What a failed check does: warn (:class:`GradientCheckWarning`), raise
        :class:`GradientCheckError`, call ``on_fail(result)``, or nothing.
    engine, method, safety
        Passed to :func:`fastgrad.check` (``method``: "central",
        "richardson" or "complex"; "directional" picks its own entries and
        does not combine with the rotation). Validated here, as every
        option is: a bad value raises now, not at the first checking step.
    units : int
        Units per layer of every check when ``budget`` is None, and of the
        first check otherwise (default 1).
    threads : int or None
        Numba threads of the checks (default 1: a periodic check is small,
        and one thread does not wait for cores a BLAS library's threads
        still spin on after the training step; None: all).
    workers : None, int, callable or dask.distributed.Client
        Where the checks' derivatives are computed (:func:`fastgrad.check`'s
        ``workers``); None, this process, suits the small periodic checks.
    warm_up : bool
        Run one tiny check now, so that loading (or compiling) the kernels
        happens here rather than inside the training loop's first check;
        its time is ``warm_up_seconds``, outside the budget.
    min_every : int or None
        Force a check at least once every ``min_every`` steps, whatever the
        budget says (default None: the budget alone decides). It bounds the
        gap between checks from above as ``every`` bounds it from below, so
        it must be >= ``every``; ``min_every == every`` checks every
        ``every`` steps, sized by the budget (one unit per layer when it has
        nothing saved up). A forced check runs on the step the gap reaches
        ``min_every``, on ``every``'s grid or not; the next budgeted one
        comes at least ``every`` steps later.

    Attributes
    ----------
    history : list of MonitorRecord
        One record per checking step.
    notes : list of str
        What the Monitor found worth saying about itself (the budget
        warning's text, when it was warned).

    Warns
    -----
    MonitorBudgetWarning
        Once per Monitor, when ``every`` x 10 steps have passed since the
        last check (or the start) because the budget could not pay for one:
        the message gives the numbers and what to change.

    Examples
    --------
    >>> mon = fastgrad.Monitor(net, every=100, budget=0.01, seed=0)   # doctest: +SKIP
    >>> for step in range(10_000):                                   # doctest: +SKIP
    ...     grads = my_backprop(params, X, Y)
    ...     mon.step(params, X, Y, grads)         # None, or a CheckResult on checking steps
    ...     params = [p - lr * g for p, g in zip(params, grads)]
    """

    def __init__(
        self,
        net: Model,
        every: int = 100,
        budget: float | None = 0.01,
        seed: int | None = 0,
        on_fail: str | Callable[[CheckResult], Any] | None = "warn",
        engine: str = DEFAULT_ENGINE,
        method: str = "central",
        safety: float = DEFAULT_SAFETY,
        warm_up: bool = True,
        units: int = 1,
        threads: int | None = 1,
        min_every: int | None = None,
        workers: Any = None,
    ) -> None:
        # every option is validated here, with the rules check() applies, so
        # that a bad one fails now rather than at the first checking step
        require_model(net)
        self.every = _validate.integer(every, "every", minimum=1)
        self.budget = None if budget is None else _validate.positive_float(budget, "budget")
        if self.budget is not None and self.budget >= 1.0:
            raise ValueError(f"budget is a fraction of the training time and must be < 1, got {budget!r}")
        self.units = _validate.integer(units, "units", minimum=1)
        self.min_every = None if min_every is None else _validate.integer(min_every, "min_every", minimum=1)
        if self.min_every is not None and self.min_every < self.every:
            raise ValueError(f"min_every={self.min_every} is less than every={self.every}: every is the shortest gap "
                             f"between checks and min_every the longest; lower every too, or raise min_every")
        self.threads = _validate.thread_count(threads, numba.config.NUMBA_NUM_THREADS)
        self.workers = sharding.validate(workers)
        if not (on_fail is None or callable(on_fail) or (isinstance(on_fail, str) and on_fail in ("warn", "raise"))):
            raise ValueError(f"on_fail must be 'warn', 'raise', None or a callable, got {on_fail!r}")
        # method="directional" chooses its own entries: not with the rotation's
        resolve(engine, method, net.kind, METHODS)
        self.safety = _validate.positive_float(safety, "safety")
        if not isinstance(warm_up, (bool, np.bool_)):
            raise TypeError(f"warm_up must be True or False, got {type(warm_up).__name__} {warm_up!r}")
        _validate.seed(seed)
        self.net = net
        self.on_fail = on_fail
        self.engine = engine
        self.method = method
        self.history: list[MonitorRecord] = []
        self.notes: list[str] = []
        self._sampler = hook(net, "rotation")(seed)
        self._steps = 0
        self._checks = 0
        self._last_check_step = 0  # the step of the last check (0: none yet), for min_every and the warning
        self._train_intervals = 0  # measured gaps between step() calls: the training time's denominator
        self._warned_budget = False
        # exact coverage: one byte per entry (1e8 parameters: 100 MB, beside the 800 MB of their float64 values)
        self._covered = np.zeros(int(net.n_params), dtype=bool)
        self._n_covered = 0
        self._last_exit: float | None = None
        self._train_seconds = 0.0
        self._check_seconds = 0.0
        self._seconds_per_unit: float | None = None
        self._last_units = 1
        _compile_notice.print_to_stderr()  # a first check that compiles says so, in the training loop's terminal
        self.warm_up_seconds = self._warm_up() if warm_up else 0.0

    # ------------------------------------------------------------------ API
    @property
    def overhead(self) -> float:
        """Time spent checking / training time, so far."""
        return self._check_seconds / self._train_seconds if self._train_seconds > 0 else 0.0

    @property
    def steps(self) -> int:
        """Training steps seen (calls of :meth:`step`)."""
        return self._steps

    @property
    def checks_done(self) -> int:
        """Checks run by :meth:`step` (the warm-up's not included)."""
        return self._checks

    @property
    def entries_covered(self) -> int:
        """Distinct entries checked at least once so far."""
        return self._n_covered

    @property
    def coverage(self) -> float:
        """Fraction of the model's entries checked at least once so far, in [0, 1] (counted, not estimated)."""
        return self._n_covered / self._covered.size if self._covered.size else 1.0

    @property
    def steps_since_check(self) -> int:
        """Steps since the last check (or since the start, before the first)."""
        return self._steps - self._last_check_step

    def summary(self) -> str:
        """One line: checks, steps, coverage, overhead and the options that decide them."""
        min_every = "" if self.min_every is None else f", min_every={self.min_every}"
        return (f"Monitor(every={self.every}, budget={self.budget}{min_every}): "
                f"{format_count(self._checks, 'check')} in {self._steps} steps, "
                f"coverage {format_percent(self.coverage)} of {self._covered.size:,} entries, "
                f"overhead {100 * self.overhead:.2f}% of training time")

    __repr__ = summary

    def plot(self, path: Any = None) -> Any:
        """Draw the checks over the training steps; return the matplotlib Figure (and save it to ``path``).

        Three panels: each check's worst budget ratio on a log scale with the
        fail line (``safety``), coloured by status (a bug shows as the line
        crossing it); the checking time as a percentage of the training time,
        against ``budget``; and the coverage. Needs matplotlib
        (``pip install "fastgrad[plot]"``); see :mod:`fastgrad.plot_monitor`.

        Parameters
        ----------
        path : str or path-like, optional
            Also save the figure there, in the format its suffix names.

        Returns
        -------
        matplotlib.figure.Figure
            Made outside pyplot: nothing accumulates when called in a loop.

        Raises
        ------
        ImportError
            matplotlib is not installed (the message names ``fastgrad[plot]``).
        OSError, ValueError
            ``path`` cannot be written, or its suffix is no image format.
        """
        from .plot_monitor import plot_monitor

        return plot_monitor(self, path)

    def steps_to_cover(self) -> int:
        """Checks of the last size after which every entry has been visited."""
        return self._sampler.steps_to_cover(self._last_units)

    def step(self, params: Any, X: Any, Y: Any, grads: Any) -> CheckResult | None:
        """Count one training step; on a checking step, check ``grads`` and return the result.

        Cheap on the other steps (a counter and a clock). Never modifies any
        of the arrays given. ``grads`` is required: None (a backprop that
        forgot to return) would otherwise check ``net.backprop`` instead.
        """
        if grads is None:
            raise TypeError("grads is None; pass the gradient your training step uses (a list shaped like "
                            "params) or your backprop callable")
        entered = _clock()
        if self._last_exit is not None:
            self._train_seconds += entered - self._last_exit
            self._train_intervals += 1
        self._steps += 1
        result = None
        gap = self.steps_since_check
        # the budget's check on every's grid, at least every steps after the last (a forced one may be off the grid)
        due = self._steps % self.every == 0 and gap >= self.every
        budgeted = due and self._affordable()
        forced = not budgeted and self.min_every is not None and gap >= self.min_every
        if budgeted or forced:
            result = self._check(params, X, Y, grads, forced)
        elif gap >= 10 * self.every and not self._warned_budget:
            self._warn_budget(gap)
        self._last_exit = _clock()
        self._check_seconds += self._last_exit - entered
        return result

    # ------------------------------------------------------------- internal
    def _warm_up(self) -> float:
        started = _clock()
        case = hook(self.net, "warm_up_case")()
        if case is not None:  # (a model with nothing to compile gives none)
            params, X, Y, mask = case
            check(self.net, params, X, Y, entries=mask, engine=self.engine, method=self.method,
                  threads=self.threads, workers=self.workers)
        return _clock() - started

    def _time_saved(self) -> float:
        """Return the checking time saved up: the time budget's share of training time, less time spent checking."""
        if self.budget is None:
            return np.inf
        return self.budget * self._train_seconds - self._check_seconds

    #: A check is planned to take at most this fraction of the time saved up
    #: (its cost is estimated from the previous check's).
    MARGIN = 0.5

    def _affordable(self) -> bool:
        if self.budget is None or self._seconds_per_unit is None:
            return True  # (the first check measures what a check costs)
        return self.MARGIN * self._time_saved() >= self._seconds_per_unit

    def _units_per_layer(self) -> int:
        if self.budget is None or self._seconds_per_unit is None:
            return self.units
        return max(1, int(self.MARGIN * self._time_saved() / self._seconds_per_unit))

    def _check(self, params: Any, X: Any, Y: Any, grads: Any, forced: bool = False) -> CheckResult:
        units = self._units_per_layer()
        mask = self._sampler.next(units)
        started = _clock()
        result = check(
            self.net, params, X, Y, grads, entries=mask, engine=self.engine, method=self.method, safety=self.safety,
            threads=self.threads, workers=self.workers,
        )
        seconds = _clock() - started
        n = int(np.count_nonzero(mask))
        self._seconds_per_unit = seconds / units  # includes the fixed part: errs on the cheap side
        self._last_units = units
        self._checks += 1
        self._last_check_step = self._steps
        # counted before a failure can raise: a failed check covered its entries too
        self._covered |= mask
        self._n_covered = int(np.count_nonzero(self._covered))
        spent = self._check_seconds + seconds
        self.history.append(
            MonitorRecord(
                step=self._steps,
                passed=result.passed,
                max_budget_ratio=result.max_budget_ratio,
                max_rel_error=result.max_rel_error,
                n_checked=n,
                seconds=seconds,
                time_fraction=spent / self._train_seconds if self._train_seconds > 0 else float("inf"),
                status=result.status,
                coverage=self.coverage,
                forced=forced,
            )
        )
        if result.status == "inconclusive":
            # the check cannot vouch for the gradient at this point (e.g. saturated units): say so, but a
            # training loop is not stopped for a check that found nothing wrong
            if self.on_fail is not None:
                warnings.warn(f"fastgrad.Monitor: gradient check inconclusive at step {self._steps}\n{result}",
                              GradientCheckWarning, stacklevel=2)
        elif not result.passed:
            self._fail(result)
        return result

    def _fail(self, result: CheckResult) -> None:
        message = f"fastgrad.Monitor: gradient check failed at step {self._steps}\n{result}"
        if self.on_fail == "warn":
            warnings.warn(message, GradientCheckWarning, stacklevel=3)
        elif self.on_fail == "raise":
            raise GradientCheckError(message)
        elif callable(self.on_fail):
            self.on_fail(result)

    def _warn_budget(self, gap: int) -> None:
        """Say, once, that the budget has not paid for a check in ``gap`` steps, with the numbers and the remedies."""
        self._warned_budget = True
        message = budget_message(
            gap=gap, every=self.every, checks=self._checks, steps=self._steps, coverage=self.coverage,
            budget=self.budget if self.budget is not None else float("inf"),  # (None: every check is paid for)
            # the rotation's smallest step, at the cost per unit the last check measured
            smallest_check=self._seconds_per_unit if self._seconds_per_unit is not None else float("nan"),
            step_seconds=self._train_seconds / self._train_intervals if self._train_intervals else float("nan"),
        )
        self.notes.append(message)
        warnings.warn(message, MonitorBudgetWarning, stacklevel=3)

"""Projections that localise, for a loss known only by its values: ``method="directional"`` of check_function.

:func:`fastgrad.check_function` (any model of kind ``"function"``) with
``method="directional"``: one random projection per tensor, checked by
differences of the loss ``f`` along it, and bisection to localise a
disagreement. A correct gradient of a million parameters is confirmed in a
few dozen evaluations of ``f``; a wrong entry among ``n`` is named in about
``4 log2(n)`` more. (An MLP's ``method="directional"`` is
:mod:`fastgrad.directional`: complex forward passes, per-term rounding.)

**Directions.** For each tensor, ``v_p = s_p r_p max(1, |w_p|)``, ``s_p`` a
random sign and ``r_p`` uniform in [1, 2] (zero outside the tensor), and the
step ``h`` = :data:`STEP`, ``method="central"``'s default ``eps``: every
entry moves by one to two times the step ``method="central"`` takes for it.
Why these weights: the rounding of a black-box ``f`` is one number per
projection, ``LOSS_ROUNDING_ULPS depth u max|E| / h``, whatever the weights
and however many entries move (an MLP's complex pass instead sums per-term
roundings). An error ``d_p`` in one entry moves the projection by
``v_p d_p``, so an agreeing projection with budget ``B`` vouches for entry
``p`` to ``B / |v_p|``; with ``|v_p| >= max(1, |w_p|)`` the rounding part of
that is at most what ``method="central"`` allows the entry itself,
``u max|E| / h_p``, for a small weight as for a large one, in whatever units
each parameter comes. Weights from ``|g|`` (``v_p ~ 1 / |g_p|``, so that
relative errors would count alike) would move the entries of small
gradients by large steps, out of the Taylor range (out of the domain of a
``log``), and would let the gradient under test choose its own test; the
entries a projection cannot resolve are handled below instead. The random
sizes ``r_p`` keep two equal errors from cancelling (with signs alone they
would, half of the time).

**What is compared.** The points are ``x_m = fl(w + m h v)``, ``m = +-1,
+-2`` (only the group's entries move); the numerical side is
``D(h) = (f(x_1) - f(x_-1)) / 2h`` (and ``D(2h)``), the analytic side
``A(h) = g . (x_1 - x_-1) / 2h`` with the points' actual differences (their
rounding is then an error of neither side), summed exactly
(:func:`math.fsum`). The residual ``r(h) = D(h) - A(h)`` must be within
``safety`` times

    B = |r(2h) - r(h)| / 3                              truncation (an error in g cancels in it)
      + SPREAD |S(2h) - 4 S(h)| / h                     the evaluations' spread
      + LOSS_ROUNDING_ULPS depth u max|E| / h           rounding of f (E over the points seen)
      + min(sum_p |v_p| c_t, HOEFFDING ||v c_t||_2)     the checked gradient's rounding
      + 2 u (sum_p |v_p g_p| + |A|) + tiny              the dot product's

the terms of :func:`fastgrad.loss_engine.loss_difference_budget` for a
difference along ``v`` (``S`` the second differences), with
``c_t = u_user (depth + 2 + sqrt(N)) max_t |g|``, the rounding
:func:`fastgrad.budget.judge` allows every entry of tensor ``t``, summed
over the projection: those errors were made before the random signs were
drawn, so Hoeffding's bound holds (:data:`fastgrad.directional.HOEFFDING`).

Truncation and the ``h^4`` part of ``S(2h) - 4 S(h)`` sum over a group's
entries (the latter with positive weights ``v_p^4``), so in a large group
they can mask an error that a single entry's central difference would
show. A projection whose budget is mostly those two is therefore extended
to ``+-4h`` (two more evaluations) and also compared by Richardson
extrapolation, ``rho(h) = (4 r(h) - r(2h)) / 3``, against
``|rho(2h) - rho(h)| / 15``, three times the losses' rounding (as
:func:`~fastgrad.loss_engine.loss_difference_budget` has Richardson's) and
the spread of ``S(4h) - 20 S(2h) + 64 S(h)``, in which a smooth loss's
``h^2`` and ``h^4`` terms cancel (:data:`SPREAD_EXTRAPOLATED`); the smaller
of the two budgets is used.

Kinks and jumps: as in :mod:`fastgrad.loss_engine`, second differences that
disagree (``|S(2h) - 4 S(h)| > KINK_INCONSISTENCY (|S(2h)| + 4 |S(h)|)``,
beyond the losses' rounding and the points' own, :data:`ASYMMETRY_ULPS`)
show a kink within reach: such a projection, or one with a loss that is not
finite, is *untrusted*: it vouches for nothing and is bisected, never
failed. Its entries end up vouched for by smaller projections, or checked
one by one, where a kink makes them inconclusive as with
``method="central"``.

**Bisection.** A disagreeing (or untrusted) group is split in two. The first
half is evaluated; the second is inferred by linearity, with no evaluation:
``D_B = D_parent - D_A`` at every step (the points of a half are its
parent's on its entries), so its residual is ``r_parent - r_A``, whose
truncation the same differences estimate, and its noise the parent's plus
the half's. A second half is evaluated instead when the parent or the first
half is untrusted; an inferred group that disagrees while carrying the
noise of more than :data:`INHERITED` evaluated projections is evaluated
afresh before it is split (so no budget grows past a few evaluated ones').
An inferred half that needs the extrapolated comparison gets ``D(4h)`` from
its parent's and its sibling's (each extended if need be). Groups of at
most :data:`LEAF` entries are checked one by one with
:func:`fastgrad.loss_engine.loss_differences` and
:func:`~fastgrad.loss_engine.loss_difference_budget`: the values, budgets,
kink flags and verdicts ``method="central"`` gives them. So is each
tensor's largest ``|g|`` entry, from which the verdict takes the tensor's
scale.

**What a projection cannot vouch for.** An entry whose vouched budget
cannot tell its value from zero (``safety B / |v_p| >= RESOLUTION |g_p|``,
the verdict's own test, :data:`fastgrad._kernels.verdict.RESOLUTION`,
unless the budget is negligible for its tensor and the entry's own rounding
could not tell it from zero either, as :mod:`fastgrad.directional` has it)
is never passed silently:

* if ``method="central"`` could resolve it (its floor, the losses' rounding
  ``LOSS_ROUNDING_ULPS depth u |E| / h_p`` plus ``c_t``, is small enough),
  it is projected again with other such entries of its tensor, in groups of
  like ``|g_p v_p|`` small enough that the checked gradient's rounding,
  which grows with a group, leaves them resolvable (a few rounds,
  :data:`REFINEMENTS`, while they pay for themselves; a small group also
  carries less truncation and noise); what is still unresolved is checked
  one by one;
* otherwise (``method="central"`` could not tell it from zero either) it
  is reported inconclusive (unresolved) without evaluations of its own: its
  numerical value is reported as the analytic one, its budget as the larger
  of what its projection vouches for and that floor. No single-entry value
  was measured; the projection confirms the entry to ``safety`` times that
  budget, as large as the value.

**Cost.** One evaluation at the point; per tensor ``4`` (``6`` extended),
``4`` for its largest entry, ``4`` (``6``) per refinement group and ``4`` per
entry checked one by one; a wrong entry among ``n`` adds about
``4 log2(n / LEAF) + 4 LEAF``, more where the halves need extending. The
projections never spend more evaluations than ``method="central"`` does on
the whole check (``4 P + 1``): past that, the groups still to split are
checked one by one.

**Limits.** A projection's noise is what ``f``'s own arithmetic gives: a
loss summed naively over ``k`` moved entries carries about ``sqrt(k) u |E|``
of rounding, which the spread measures and the budget takes, so a
projection of a million entries may vouch for each only to a few times
``method="central"``'s budget (and the refinement brings the small ones
back). A float32 gradient (``u_user = 2^-24``) is allowed ``c_t`` of
rounding in every entry: summed over a group, that keeps the small entries
of a large tensor from being vouched for except in small groups, and the
cost grows towards ``method="central"``'s. Errors spread thinly over many
entries make a projection disagree without any single entry failing: the
check then fails with a note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._config import DEFAULT_EPS
from ._kernels.verdict import RESOLUTION
from .budget import NEGLIGIBLE_BUDGET
from .directional import HOEFFDING
from .engines import Numerical, parameter_steps
from .loss_engine import (
    KINK_INCONSISTENCY,
    KINK_NOISE_ULPS,
    LOSS_ROUNDING_ULPS,
    SPREAD,
    loss_difference_budget,
    loss_differences,
)
from .protocol import Model, hook

#: The step of the projections: ``method="central"``'s default ``eps`` (the weights carry ``max(1, |w|)``).
STEP = DEFAULT_EPS
#: Groups this small are checked entry by entry (splitting 2 costs the 8 evaluations checking both does).
LEAF = 2
#: A disagreeing inferred group that carries the noise of more evaluated projections than this is evaluated
#: afresh before it is split (see the module docstring).
INHERITED = 4
#: Rounds of projections of a tensor's unresolved entries by themselves, in groups of entries alike (see
#: :meth:`_Search.refinement_groups`), at most; the next round comes only when this one resolved at least
#: two entries per projection (what checking them one by one would have cost).
REFINEMENTS = 4
#: The points' rounding, ``|fl(w + m h v) - (w + m h v)| <= u |x_m|``, leaves a first-order term
#: ``g . (d_+ + d_-)`` in the second differences; the kink test's noise allows this many times its bound.
ASYMMETRY_ULPS = 20.0

#: The spread of the extrapolated comparison, per ``|S(4h) - 20 S(2h) + 64 S(h)| / h``: a combination of the
#: three second differences in which the ``h^2`` and ``h^4`` terms of a smooth loss cancel, so that only the
#: evaluations' noise is left (130.7 times the noise of one loss, against 8.4 for ``S(2h) - 4 S(h)``, whose
#: ``h^4`` term sums over a group's entries with positive weights ``v_p^4``): ``SPREAD`` per unit of noise.
SPREAD_EXTRAPOLATED = SPREAD * math.sqrt(70.0) / math.sqrt(17094.0)

_U = 2.0**-53
_MULTIPLES = (1.0, -1.0, 2.0, -2.0)

Group = slice | np.ndarray


class Counted:
    """``model`` with every evaluation of its loss counted; the loss is evaluated by ``loss_at`` only.

    The one-by-one checks of a directional search are a few entries: a
    direct call per point, with no parallel kernel or worker processes to
    start (``loss_table`` is hidden, so :func:`~fastgrad.loss_engine.loss_differences`
    takes its loop over ``loss_at``; the values are the same bits).
    """

    loss_table = None
    complex_table = None

    def __init__(self, model: Model) -> None:
        self.model = model
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def loss_at(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:
        """The model's loss at ``theta`` as a float; one more evaluation."""
        self.calls += 1
        return float(self.model.loss_at(theta, X, Y))


@dataclass
class Found:
    """What the search found, in the terms of :class:`fastgrad.compute.Computed`.

    Attributes
    ----------
    details : Numerical
        Values (NaN where no value was measured) and kink flags.
    entry_budget : ndarray
        Per entry: the one-by-one budget where checked one by one, what the
        finest agreeing projection vouches for elsewhere (``inf`` where none
        did and the entry was checked one by one).
    checked : ndarray of bool
        Entries judged by the verdict (one by one, or reported unresolved).
    evaluations : int
        Evaluations of the loss, its value at the point included.
    failed_tensors : list of str
        Tensors one of whose trusted projections disagreed.
    leaves, one_by_one, unresolved : ndarray of int64
        The entries the bisection narrowed disagreements down to; every
        entry checked one by one (leaves, largest entries, unresolved ones
        ``method="central"`` could resolve); the entries reported
        unresolved without evaluations of their own.
    """

    details: Numerical
    entry_budget: np.ndarray
    checked: np.ndarray
    evaluations: int
    failed_tensors: list[str] = field(default_factory=list)
    leaves: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    one_by_one: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    unresolved: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class _Projection:
    """A group's difference quotients along ``v`` at ``h``, ``2h`` (and ``4h``), and the noise they carry."""

    group: Group
    d: np.ndarray  # D(h), D(2h), D(4h) (NaN until evaluated)
    rounding: float  # LOSS_ROUNDING_ULPS depth u max|E| / h, summed over the projections it is made of
    spread: float  # SPREAD |S(2h) - 4 S(h)| / h, likewise
    inherited: int  # evaluated projections whose noise it carries (1: evaluated itself)
    trusted: bool  # finite losses, no kink within reach
    second: tuple[float, float] = (math.nan, math.nan)  # S(h), S(2h) of an evaluated projection
    spread_r: float = math.nan  # the spread without the h^4 term, from S(h), S(2h), S(4h) (see extend)

    @property
    def richardson(self) -> bool:
        """Whether ``D(4h)`` is known (the comparison may then be extrapolated)."""
        return bool(np.isfinite(self.d[2]))


def _size(group: Group) -> int:
    return group.stop - group.start if isinstance(group, slice) else int(group.size)


def _halves(group: Group) -> tuple[Group, Group]:
    if isinstance(group, slice):
        mid = (group.start + group.stop) // 2
        return slice(group.start, mid), slice(mid, group.stop)
    half = group.size // 2
    return group[:half], group[half:]


def _entries(group: Group) -> np.ndarray:
    return np.arange(group.start, group.stop, dtype=np.int64) if isinstance(group, slice) else group


class _Search:
    """The projections of one check (see the module docstring)."""

    def __init__(self, model: Counted, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, g: np.ndarray,
                 loss: float, user_u: float, safety: float, scales: np.ndarray) -> None:
        self.model, self.theta, self.X, self.Y, self.loss, self.safety = model, theta, X, Y, loss, safety
        self.g = np.where(np.isfinite(g), g, 0.0)  # a non-finite entry is checked one by one (it fails there)
        self.point = theta.copy()
        self.v = np.zeros(theta.size)
        self.depth = float(hook(model, "depth"))
        self.tiny = float(np.finfo(np.float32).tiny) if user_u > _U else float(np.finfo(np.float64).tiny)
        N = int(X.shape[0])
        self.c_user = user_u * (self.depth + 2.0 + math.sqrt(N))  # the verdict's per-tensor allowance, per |g|
        self.scales = scales
        self.vouched = np.full(theta.size, np.inf)
        self.leaves: list[np.ndarray] = []
        self.failed_tensors: list[str] = []
        self.limit = 4 * theta.size + 1  # method="central"'s evaluations
        self.tensor = 0
        # the losses' rounding in any projection's budget (LOSS_ROUNDING_ULPS depth u |E| / h, |E| >= |loss|)
        self.floor = LOSS_ROUNDING_ULPS * self.depth * _U * abs(loss) / STEP

    def affordable(self, evaluations: int) -> bool:
        """Whether the projections may spend ``evaluations`` more (see :data:`limit`)."""
        return self.model.calls + evaluations <= self.limit

    # ------------------------------------------------------------------ one projection
    def _points(self, group: Group, m: float) -> np.ndarray:
        """``fl(w + m h v)`` on the group's entries (the same bits whenever asked)."""
        return self.theta[group] + (m * STEP) * self.v[group]

    def _losses(self, group: Group, multiples: tuple[float, ...]) -> list[float]:
        out = []
        for m in multiples:
            self.point[group] = self._points(group, m)
            out.append(self.model.loss_at(self.point, self.X, self.Y))
        self.point[group] = self.theta[group]
        return out

    def evaluate(self, group: Group) -> _Projection:
        """``f`` at ``w +- h v``, ``w +- 2h v`` (and ``+- 4h v``): the quotients, their noise and the kink test."""
        F = self._losses(group, _MULTIPLES)
        h = STEP
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.array([(F[0] - F[1]) / (2.0 * h), (F[2] - F[3]) / (4.0 * h), np.nan])
            s1 = (F[0] + F[1]) - 2.0 * self.loss
            s2 = (F[2] + F[3]) - 2.0 * self.loss
            inconsistency = abs(s2 - 4.0 * s1)
            largest = max(max(abs(x) for x in F), abs(self.loss))
            # the points' rounding leaves g . (d_+ + d_-) in the second differences: noise, not a kink
            moved = np.abs(self.theta[group]) + 2.0 * h * np.abs(self.v[group])
            asymmetry = ASYMMETRY_ULPS * _U * float(np.sum(np.abs(self.g[group]) * moved))
            noise = KINK_NOISE_ULPS * self.depth * _U * largest + asymmetry
            kink = inconsistency > KINK_INCONSISTENCY * (abs(s2) + 4.0 * abs(s1)) and inconsistency > noise
            rounding = LOSS_ROUNDING_ULPS * self.depth * _U * largest / h
            spread = SPREAD * inconsistency / h
        trusted = bool(all(math.isfinite(x) for x in F) and math.isfinite(rounding + spread) and not kink)
        return _Projection(group, d, rounding, spread, 1, trusted, (s1, s2))

    def extend(self, proj: _Projection) -> None:
        """Evaluate ``f`` at ``w +- 4h v`` too: ``D(4h)``, for the extrapolated comparison."""
        F = self._losses(proj.group, (4.0, -4.0))
        with np.errstate(invalid="ignore", over="ignore"):
            proj.d[2] = (F[0] - F[1]) / (8.0 * STEP)
            proj.rounding = max(proj.rounding, LOSS_ROUNDING_ULPS * self.depth * _U * max(abs(F[0]), abs(F[1])) / STEP)
            s1, s2 = proj.second
            s4 = (F[0] + F[1]) - 2.0 * self.loss
            proj.spread_r = SPREAD_EXTRAPOLATED * abs(s4 - 20.0 * s2 + 64.0 * s1) / STEP
        if not (math.isfinite(F[0]) and math.isfinite(F[1])):
            proj.trusted = False

    def infer(self, parent: _Projection, first: _Projection, group: Group) -> _Projection:
        """The other half of ``parent``, by linearity: its quotients are the parent's minus ``first``'s."""
        d = parent.d - first.d  # D(4h) NaN unless both have it
        # the subtractions' own rounding, carried with the losses' (it is as small)
        rounding = parent.rounding + first.rounding + 2.0 * _U * float(np.nanmax(np.abs(parent.d) + np.abs(first.d)))
        return _Projection(group, d, rounding, parent.spread + first.spread, parent.inherited + first.inherited, True,
                           spread_r=parent.spread_r + first.spread_r)

    def user(self, w: np.ndarray) -> float:
        """The checked gradient's rounding, projected on weights ``w`` (worst case, or Hoeffding's bound)."""
        c = self.c_user * self.scales[self.tensor] + self.tiny
        return c * min(float(np.sum(w)), HOEFFDING * float(np.linalg.norm(w)))

    def analytic(self, group: Group, richardson: bool) -> tuple[np.ndarray, float, float, np.ndarray]:
        """``A(h)``, ``A(2h)`` (and ``A(4h)``); their rounding; the checked gradient's; the weights."""
        h = STEP
        gg = self.g[group]
        a = np.full(3, np.nan)
        dot = 0.0
        w = np.zeros(0)
        for k, m in enumerate((1.0, 2.0, 4.0) if richardson else (1.0, 2.0)):
            step = self._points(group, m) - self._points(group, -m)  # the points' actual differences
            products = gg * step
            a[k] = math.fsum(products) / (2.0 * m * h)
            dot += 2.0 * _U * (float(np.sum(np.abs(products))) / (2.0 * m * h) + abs(a[k]))
            if k == 0:
                w = np.abs(step) / (2.0 * h)
        return a, dot + self.tiny, self.user(w), w

    def compare(self, proj: _Projection) -> tuple[float, float, float, float, np.ndarray]:
        """The residual, its budget (see the module docstring), the truncation and gradient parts, the weights.

        Central: ``r(h)`` against ``|r(2h) - r(h)| / 3`` plus the noise.
        With ``D(4h)``: also the extrapolated residual ``rho(h) = (4 r(h) - r(2h)) / 3`` against
        ``|rho(2h) - rho(h)| / 15`` plus three times the losses' rounding (Richardson's, as
        :func:`~fastgrad.loss_engine.loss_difference_budget` has it); the smaller budget is used.
        """
        a, dot, user, w = self.analytic(proj.group, proj.richardson)
        rounding = dot + user
        r = proj.d - a
        trunc = abs(r[1] - r[0]) / 3.0
        residual, budget = r[0], trunc + proj.rounding + proj.spread + rounding
        if proj.richardson:
            rho1, rho2 = (4.0 * r[0] - r[1]) / 3.0, (4.0 * r[1] - r[2]) / 3.0
            extrapolated = abs(rho2 - rho1) / 15.0
            other = extrapolated + 3.0 * proj.rounding + proj.spread_r + rounding
            if other < budget:
                residual, budget, trunc = rho1, other, extrapolated
        return float(residual), float(budget), float(trunc), user, w

    def judge(self, proj: _Projection, parent: _Projection | None = None,
              first: _Projection | None = None) -> tuple[bool, _Projection]:
        """Whether ``proj`` agrees with ``g`` (and the projection judged); if so, what it vouches for, per entry.

        A projection whose budget is mostly truncation and spread, both of which sum over a group's
        entries, is extended to ``4h`` first, for the extrapolated comparison: an evaluated one by two
        evaluations; one inferred from ``parent`` and ``first`` (its other half) by extending those
        (two evaluations each, unless they have ``D(4h)``), or, when ``parent`` was inferred itself,
        by evaluating it afresh. What each entry is vouched for is the finest agreeing projection's.
        """
        if not proj.trusted:
            return False, proj
        residual, budget, trunc, user, w = self.compare(proj)
        if not proj.richardson and 2.0 * (trunc + proj.spread) > budget and abs(residual) <= self.safety * budget:
            if parent is None:  # evaluated
                if self.affordable(2):
                    self.extend(proj)
            elif first is not None:
                cost = (0 if parent.richardson else 2) + (0 if first.richardson else 2)
                if parent.inherited == 1 and self.affordable(cost):
                    for half in (parent, first):
                        if not half.richardson and half.trusted:
                            self.extend(half)
                if parent.richardson and first.richardson:
                    proj = self.infer(parent, first, proj.group)
                elif self.affordable(4):  # inferred from an inferred group: evaluated afresh
                    return self.judge(self.evaluate(proj.group))
            if not proj.trusted:
                return False, proj
            if proj.richardson:
                residual, budget, trunc, user, w = self.compare(proj)
        if not math.isfinite(budget):
            return False, proj
        if not abs(residual) <= self.safety * budget:  # NaN disagrees
            name = str(self.model.tensor_names[self.tensor])
            if name not in self.failed_tensors:
                self.failed_tensors.append(name)
            return False, proj
        with np.errstate(divide="ignore"):
            share = budget / w
        self.vouched[proj.group] = np.minimum(self.vouched[proj.group], share)
        return True, proj

    # ------------------------------------------------------------------ a group, and its bisection
    def project(self, group: Group) -> None:
        """Check ``group``'s projection; bisect it when it disagrees or cannot be trusted."""
        if _size(group) <= LEAF or not self.affordable(4):
            self.leaves.append(_entries(group))
            return
        agrees, proj = self.judge(self.evaluate(group))
        if not agrees:
            self.bisect(proj)

    def bisect(self, proj: _Projection) -> None:
        """Split a disagreeing (or untrusted) projection's group until what disagrees is a few entries.

        The first half is evaluated, the second inferred when both it and the parent can be trusted
        (else evaluated too); each is judged, and split in turn when it disagrees.
        """
        stack = [proj]
        while stack:
            node = stack.pop()
            if _size(node.group) <= LEAF or not self.affordable(4):
                self.leaves.append(_entries(node.group))
                continue
            if node.inherited > INHERITED:  # an inferred group carrying much noise: evaluated afresh
                agrees, node = self.judge(self.evaluate(node.group))
                if agrees:
                    continue
            first_group, second_group = _halves(node.group)
            agrees, first = self.judge(self.evaluate(first_group))
            if not agrees:
                stack.append(first)
            if node.trusted and first.trusted:
                agrees, second = self.judge(self.infer(node, first, second_group), node, first)
            elif self.affordable(4):
                agrees, second = self.judge(self.evaluate(second_group))
            else:
                self.leaves.append(_entries(second_group))
                continue
            if not agrees:
                stack.append(second)


    def refinement_groups(self, candidates: np.ndarray, reach: np.ndarray) -> list[np.ndarray]:
        """The current tensor's unresolved ``candidates`` in groups whose projections may resolve them.

        ``reach``: per candidate, the largest projection budget that would resolve it (its ``|v_p|``
        times what it may be vouched for). By ``reach`` from the largest, each group is grown while its
        predicted budget is below the reach of its last entry; predicted: the losses' rounding
        (:attr:`floor`) plus the checked gradient's rounding projected on the group, which grows with
        it (truncation and noise are known only once the projection is evaluated: what they leave
        unresolved goes to the next round). A group of one is left to be checked by itself.
        """
        w = np.abs(self.v[candidates])
        order = np.argsort(-reach, kind="stable")
        c = self.c_user * self.scales[self.tensor] + self.tiny
        groups = []
        start, n = 0, order.size
        while start < n:
            end, total, squares = start + 1, w[order[start]], w[order[start]] ** 2
            while end < n:
                q = order[end]
                t2, s2 = total + w[q], squares + w[q] ** 2
                if not self.floor + c * min(t2, HOEFFDING * math.sqrt(s2)) < reach[q]:
                    break
                end, total, squares = end + 1, t2, s2
            groups.append(candidates[np.sort(order[start:end])])
            start = end
        return groups


def _largest(g: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each tensor's entry of largest ``|g|`` (the verdict takes the tensor's scale from it)."""
    return np.array([lo + int(np.argmax(np.where(np.isfinite(g[lo:hi]), np.abs(g[lo:hi]), -1.0)))
                     for lo, hi in zip(offsets[:-1], offsets[1:]) if hi > lo], dtype=np.int64)


def _tensor_scales(g: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per tensor, the scale the verdict will take: its largest finite ``|g|``, or the whole gradient's if 0."""
    scales = np.array([float(np.max(np.where(np.isfinite(g[lo:hi]), np.abs(g[lo:hi]), 0.0), initial=0.0))
                       for lo, hi in zip(offsets[:-1], offsets[1:])])
    overall = float(scales.max(initial=0.0))
    return np.where(scales > 0.0, scales, overall)


def directional_check(model: Counted, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, g: np.ndarray, loss: float,
                      user_u: float, safety: float, seed: int | None) -> Found:
    """Check ``g`` by per-tensor projections of ``model``'s loss, bisection and one-by-one checks.

    Parameters
    ----------
    model : Counted
        The model (kind ``"function"``), its evaluations counted; its loss
        at ``theta`` (``loss``) already evaluated through it.
    theta, X, Y : ndarray
        Flat parameters (not modified) and the validated batch.
    g : ndarray, shape (P,)
        The gradient to check, flat.
    loss : float
        The loss at ``theta`` (finite).
    user_u, safety, seed
        Unit roundoff of the checked gradient's dtype, the verdict's
        ``safety`` and the seed of the directions.

    Returns
    -------
    Found
    """
    P = int(theta.size)
    offsets = np.asarray(model.offsets, dtype=np.int64)
    scales = _tensor_scales(g, offsets)
    search = _Search(model, theta, X, Y, g, loss, user_u, safety, scales)
    rng = np.random.default_rng(seed)
    finite = np.isfinite(g)
    for t, (lo, hi) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist())):
        if hi <= lo:
            continue
        search.tensor = t
        signs = rng.choice(np.array([-1.0, 1.0]), size=hi - lo)
        search.v[lo:hi] = signs * rng.uniform(1.0, 2.0, size=hi - lo) * np.maximum(1.0, np.abs(theta[lo:hi]))
        search.v[lo:hi][~finite[lo:hi]] = 0.0
        search.project(slice(lo, hi))

    largest = _largest(g, offsets)
    one = np.zeros(P, dtype=bool)  # checked one by one
    one[np.concatenate(search.leaves + [largest, np.flatnonzero(~finite)])] = True
    # what the projections could not resolve (see the module docstring): projected again by themselves, then
    # checked one by one where method="central" could resolve them, else reported unresolved
    sizes = np.diff(offsets)
    size = np.where(finite, np.abs(g), 0.0)
    floor = LOSS_ROUNDING_ULPS * search.depth * _U * abs(loss) / parameter_steps(theta, STEP, True, "central")
    floor += np.repeat(search.c_user * scales, sizes) + search.tiny  # method="central"'s budget, at least
    negligible = np.repeat(np.maximum(NEGLIGIBLE_BUDGET * scales, 2.0 * search.tiny), sizes)
    hopeless = (safety * floor >= RESOLUTION * size) & (floor > negligible)
    reported_mask = np.zeros(P, dtype=bool)

    def unresolved(lo: int, hi: int) -> np.ndarray:
        """Flat indices of the tensor's entries no projection resolved, not checked one by one."""
        budget, value = search.vouched[lo:hi], size[lo:hi]
        resolved = safety * budget < RESOLUTION * value
        resolved |= (budget <= negligible[lo:hi]) & ((safety + 1.0) * floor[lo:hi] >= value)
        return lo + np.flatnonzero(~(resolved | one[lo:hi]))

    for t, (lo, hi) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist())):
        search.tensor = t
        for _ in range(REFINEMENTS):
            candidates = unresolved(lo, hi)
            candidates = candidates[~hopeless[candidates]]
            # the budget that would resolve each, per unit of its weight: RESOLUTION |g| / safety, or a negligible
            # one where the entry's own rounding could not tell it from zero either (as in unresolved)
            alone = (safety + 1.0) * floor[candidates] >= size[candidates]
            reach = np.abs(search.v[candidates]) * np.maximum(RESOLUTION * size[candidates] / safety,
                                                              np.where(alone, negligible[candidates], 0.0))
            groups = [group for group in search.refinement_groups(candidates, reach) if group.size >= 2]
            if not groups:
                break
            for group in groups:
                before = len(search.leaves)
                search.project(group.astype(np.int64))
                for part in search.leaves[before:]:
                    one[part] = True
            left = unresolved(lo, hi)
            if candidates.size - np.count_nonzero(~hopeless[left]) < 2 * len(groups):
                break  # it resolved fewer entries than the evaluations it cost would have checked one by one
        left = unresolved(lo, hi)
        reported_mask[left[hopeless[left]]] = True
        one[left[~hopeless[left]]] = True
    one_by_one = np.flatnonzero(one).astype(np.int64)
    reported = np.flatnonzero(reported_mask).astype(np.int64)

    details = loss_differences(model, theta, X, Y, STEP, True, "central", indices=one_by_one, loss=loss)
    budget = loss_difference_budget(model, details, loss, "central", user_u)
    entry_budget = search.vouched
    entry_budget[one_by_one] = budget[one_by_one]
    values = details.values  # NaN but where checked one by one
    values[reported] = g[reported]
    entry_budget[reported] = np.maximum(entry_budget[reported], floor[reported])
    checked = one | reported_mask
    leaves = np.unique(np.concatenate(search.leaves)).astype(np.int64) if search.leaves else np.zeros(0, np.int64)
    return Found(Numerical(values, np.zeros(0), np.zeros(0), details.kink, np.zeros(0)), entry_budget, checked,
                 model.calls, search.failed_tensors, leaves, one_by_one, reported)

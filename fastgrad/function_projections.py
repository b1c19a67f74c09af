"""The projections of ``method="directional"`` for a loss known by its values: :class:`Search`.

See :mod:`fastgrad.function_directional` (the method, its weights, budget and bisection, explained) for
what this module computes; it holds the search's constants and its per-projection state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._config import DEFAULT_EPS
from .directional import HOEFFDING
from .loss_engine import (
    KINK_INCONSISTENCY,
    KINK_NOISE_ULPS,
    LOSS_ROUNDING_ULPS,
    SPREAD,
)
from .protocol import Model, hook

#: The step of the projections: ``method="central"``'s default ``eps`` (the weights carry ``max(1, |w|)``).
STEP = DEFAULT_EPS
#: Groups this small are checked entry by entry (splitting 2 costs the 8 evaluations checking both does).
LEAF = 2
#: A disagreeing inferred group that carries the noise of more evaluated projections than this is evaluated
#: afresh before it is split (see :mod:`fastgrad.function_directional`).
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


class Search:
    """The projections of one check (see fastgrad.function_directional)."""

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
        """The residual, its budget (see fastgrad.function_directional), the truncation and gradient parts, the weights.

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



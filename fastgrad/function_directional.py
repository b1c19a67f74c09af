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

from dataclasses import dataclass, field

import numpy as np

from ._kernels.verdict import RESOLUTION
from .budget import NEGLIGIBLE_BUDGET
from .engines import Numerical, parameter_steps
from .function_projections import _U, REFINEMENTS, STEP, Counted, Search
from .loss_engine import (
    LOSS_ROUNDING_ULPS,
    loss_difference_budget,
    loss_differences,
)


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
    search = Search(model, theta, X, Y, g, loss, user_u, safety, scales)
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

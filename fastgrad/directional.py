"""Projections that localise: ``method="directional"``.

Every entry ``p`` has a rounding scale ``rho_p = own_p + user_p``: how far
the projection's two sides can be apart per unit of ``|v_p|``, from the
size of the terms its derivative sums (``absum_p``, the incremental
engine's, here computed for every entry at once by one absolute-value
backward pass, :func:`term_sizes`) and the tensor's rounding floor of the
checked gradient (``max |g|`` of the tensor)::

    own_p  = 4 u (L + 2 + sqrt(N)) absum_p                          (the complex pass)
    user_p = u_user (L + 2 + sqrt(N)) (absum_p + max_t |g|) + tiny  (the checked gradient)

(the terms of ``method="central"``'s budget for the same entry, with the
complex pass's own rounding also summed over the batch).

For each tensor, one random direction ``v_p = r_p / rho_p`` (``r_p`` of
random sign and size in [0.5, 1.5], zero outside the tensor, scaled so that
``max |v| <= 1.5``) and one complex-step directional derivative
``Im E(w + i h v) / h`` (one complex forward pass, nothing subtracted) are
compared with ``v . g``, within ``safety`` times the budget

    B = sum_p |v_p| own_p + min(sum_p |v_p| user_p, HOEFFDING ||v user||_2) + underflow

(the checked gradient's rounding errors were made before the random signs
were drawn, so their projection is a random-sign sum: Hoeffding's bound).
The weights make every entry's error count in units of its own rounding: an
error ``d_p`` in one entry alone moves the projection by ``|v_p d_p|``, so
the projection vouches for every entry to ``B / |v_p|``, at most
``rho_p sum_q |r_q| / |r_p|`` (about ``|G| rho_p`` for a group of ``|G|``
entries): the same multiple of its own rounding for a small entry as for a
large one, whatever units the features come in. (With one direction of
equal weights and a tensor-wide floor, an entry's error had to exceed the
rounding of the whole tensor's largest entries.)

A tensor whose projection disagrees is bisected: each half's projection is
checked (same weights, its own budget), the failing halves split again,
down to a few entries, which the caller then checks one by one by central
differences with the budget ``method="central"`` gives them. A single
wrong entry among P is found in about ``2 log2(P)`` forward passes instead
of the ``2 P`` of a per-parameter check.

What a projection cannot vouch for is not passed silently: an entry whose
projection budget cannot tell its value from zero (``(safety + 1) B / |v_p|
>= |g_p|``) is *unresolved* and is checked one by one by central
differences too, where it passes, fails, or is reported inconclusive as
``method="central"`` would report it. The one exception is
``method="central"``'s own: a budget negligible for its tensor (at most
``negligible`` times its largest ``|g|``) confirms an entry it cannot tell
from zero when the entry's own rounding could not tell it from zero either
(``(safety + 1) rho_p >= |g_p|``: the exact zeros of dead units). Entries
whose rounding scales differ by more than ``SPAN`` are projected in
separate groups (one more forward pass each), so that no weight is so
small that its imaginary step underflows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._config import DEFAULT_EPS_COMPLEX
from ._kernels import activations, losses
from ._kernels._jit import jit
from ._kernels.codes import ACT, B_OFF, FAN_IN, FAN_OUT, U_OFF, W_OFF
from ._kernels.complex_forward import directional_derivative
from ._kernels.forward import n_units
from ._kernels.loss import loss_scale
from .engines import IncrementalState, unit_cost
from .model import MLP

#: Complex step of the projections (the complex step's default).
STEP = DEFAULT_EPS_COMPLEX
#: Sets this small are checked entry by entry.
LEAF = 4
#: Largest ratio of rounding scales ``rho`` within one projection: a weight
#: ``rho_min / rho_p`` below ``1 / SPAN`` would bring ``h v_p`` near underflow.
SPAN = 1e100
#: The checked gradient's own rounding errors were made before the direction's
#: random signs were drawn: their sum over a group, ``sum_p v_p e_p`` with
#: ``|e_p| <= user_p``, exceeds ``HOEFFDING * ||v user||_2`` with probability
#: at most ``2 exp(-HOEFFDING^2 / 2)`` (Hoeffding; 2.5e-14), far less than the
#: worst case ``sum_p |v_p| user_p`` for a large group.
HOEFFDING = 8.0
#: Most re-projections of a tensor's open entries (:func:`_refine`); each closes most of what is left.
REFINE_PASSES = 12
#: A complex pass of the batch, in forward passes' work (2 N P flops each): what a re-projection costs.
PASS_COST = 8.0
#: Smallest positive subnormal: the absolute error of one operation on the
#: imaginary parts once they underflow.
_SUBNORMAL = 2.0**-1074


@dataclass
class Projection:
    """What the directional search did.

    Attributes
    ----------
    evaluations : int
        Complex forward passes of the batch used.
    leaves : list of int
        Flat indices the bisection narrowed a disagreement down to; the
        caller checks them one by one, by central differences, with the
        budget ``method="central"`` gives them.
    failed_tensors : list of str
        Tensors one of whose projections disagreed.
    budget : ndarray of float64, shape (P,)
        Per entry, what the finest projection that agreed vouches for:
        ``B / |v_p|`` (an error of more than ``safety`` times it in this
        entry alone would have made that projection disagree); ``inf``
        where no projection agreed (leaves, and entries whose rounding scale
        is not finite).
    unresolved : ndarray of int64
        Entries, not among the leaves, whose projection budget cannot tell
        their value from zero (or is not finite); the caller checks them
        one by one too.
    """

    evaluations: int = 0
    leaves: list[int] = field(default_factory=list)
    failed_tensors: list[str] = field(default_factory=list)
    budget: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unresolved: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def term_sizes(net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, Z: np.ndarray,
               A: np.ndarray) -> np.ndarray:
    """Every entry's ``absum``: the size of the terms its derivative sums, all at once.

    The incremental engine's ``absum`` (:func:`fastgrad._kernels.series.unit_series`,
    ``E1abs``) is ``scale sum_n |a_ni| E1abs_nj`` with ``E1abs`` the
    first-order chain from unit ``j`` to the loss with every factor in
    absolute value: ``|W|`` for the weights, ``|f'| + 1`` for a smooth
    activation's derivative (``|f'|`` for relu, leaky_relu and identity),
    ``2 (|y| + |x|) (|f'| + 1)`` at a squared-error output and
    ``sum_k y_k p_k + |y_k|`` at softmax with cross-entropy. That chain is
    linear, so one backward pass with absolute values gives it for every
    unit, ``D_l = (|f'_l| + slack) * (D_{l+1} |W_{l+1}|^T)``, and every
    weight's ``absum`` is ``scale |a_{l-1}|^T D_l``: the cost of a backprop
    (the engine computes it unit by unit, at the cost of a forward pass of
    the later layers per unit). Equal to the engine's to rounding.
    """
    state = IncrementalState(net, X, Y, Z, A)
    layout = net.layout
    L = layout.shape[0]
    scale = loss_scale(net.loss_code, X.shape[0])
    out = np.empty(net.n_params)
    D = np.empty((0, 0))
    for l in range(L - 1, -1, -1):
        off, fan_in, fan_out, code = (int(layout[l, c]) for c in (U_OFF, FAN_IN, FAN_OUT, ACT))
        slack = activations.SLACK[activations.base_code(code)]
        deriv = np.abs(state.C[0, :, off:off + fan_out]) + slack
        if l == L - 1:
            a = A[:, off:off + fan_out]
            D = losses.ABS_TERMS[net.loss_code](Y, a, state.ysum, deriv)
        else:
            w_next = int(layout[l + 1, W_OFF])
            W_abs = np.abs(theta[w_next:w_next + fan_out * int(layout[l + 1, FAN_OUT])]).reshape(fan_out, -1)
            D = deriv * (D @ W_abs.T)
        prev = X if l == 0 else A[:, int(layout[l - 1, U_OFF]):int(layout[l - 1, U_OFF]) + fan_in]
        w_off, b_off = int(layout[l, W_OFF]), int(layout[l, B_OFF])
        out[w_off:w_off + fan_in * fan_out] = (scale * (np.abs(prev).T @ D)).ravel()
        out[b_off:b_off + fan_out] = scale * D.sum(axis=0)
    return out


@jit()
def _sums(g, absum, weights, indices, lo, c_own, c_user, floor):  # type: ignore[no-untyped-def]  # a kernel
    """One group's ``v . g``, ``sum |v| own``, ``sum |v| user`` and ``||v user||_2``.

    The group is ``indices``, or ``lo .. lo + len(weights)`` when ``indices`` is empty; ``own = c_own absum``
    and ``user = c_user absum + floor``.

    ``v . g`` is summed with Neumaier's compensation (its error stays about
    ``2 u sum |v g|`` however long the group), the 2-norm scaled by its
    largest term (no underflow of the squares of tiny budgets). No
    temporaries: a group may be a whole tensor of millions of entries.
    """
    n = weights.shape[0]
    contiguous = indices.shape[0] == 0
    s = 0.0
    comp = 0.0
    own_sum = 0.0
    user_sum = 0.0
    big = 0.0
    for k in range(n):
        p = lo + k if contiguous else indices[k]
        w = weights[k]
        x = w * g[p]
        t = s + x
        if abs(s) >= abs(x):
            comp += (s - t) + x
        else:
            comp += (x - t) + s
        s = t
        a = abs(w)
        own_sum += a * (c_own * absum[p])
        q = a * (c_user * absum[p] + floor)
        user_sum += q
        big = max(big, q)
    squares = 0.0
    if big > 0.0:
        for k in range(n):
            p = lo + k if contiguous else indices[k]
            q = abs(weights[k]) * (c_user * absum[p] + floor) / big
            squares += q * q
    return s + comp, own_sum, user_sum, big * np.sqrt(squares)


@jit()
def _place(out, values, indices, lo, divide):  # type: ignore[no-untyped-def]  # a kernel
    """``out`` over one group (see :func:`_sums`) = ``values``, or ``divide / |values|`` when ``divide > 0``."""
    contiguous = indices.shape[0] == 0
    for k in range(values.shape[0]):
        p = lo + k if contiguous else indices[k]
        out[p] = values[k] if divide <= 0.0 else divide / abs(values[k])


_CONTIGUOUS = np.zeros(0, dtype=np.int64)


class _Search:
    """Projections of groups of entries.

    A group is ``(lo, indices, weights)``: the flat entries ``indices``, or ``lo .. lo + len(weights)`` when
    ``indices`` is empty (a contiguous range: no index array).
    """

    def __init__(self, net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, g: np.ndarray,
                 absum: np.ndarray, c_own: float, c_user: float, safety: float) -> None:
        self.net, self.theta, self.X, self.Y, self.g, self.absum = net, theta, X, Y, g, absum
        self.c_own, self.c_user = c_own, c_user
        self.floor = 0.0  # the current tensor's c_user max|g| + tiny (a group never spans two tensors)
        shape = (X.shape[0], n_units(net.layout))
        self.Zc = np.empty(shape, dtype=np.complex128)
        self.Ac = np.empty(shape, dtype=np.complex128)
        self.v = np.zeros(net.n_params)
        # underflowing imaginary parts: one subnormal per operation of the complex pass (|v| <= 1.5)
        operations = 4.0 * X.shape[0] * (net.n_params + shape[1])
        self.underflow = 1.5 * operations * _SUBNORMAL / STEP * abs(net.conventions.factor(X.shape[0], net.sizes[-1]))
        self.safety = safety
        self.out = Projection(budget=np.full(net.n_params, np.inf))

    def numerical(self, lo: int, indices: np.ndarray, weights: np.ndarray) -> float:
        self.v[:] = 0.0
        _place(self.v, weights, indices, lo, 0.0)
        self.out.evaluations += 1
        data = float(directional_derivative(self.theta, self.v, STEP, self.net.layout, self.net.loss_code,
                                            self.X, self.Y, self.Zc, self.Ac))
        c = self.net.conventions
        if c.plain:
            return data
        # the whole loss's derivative along v: r data + 2 c W . v (exact, see fastgrad.conventions)
        return c.projection(data, self.v, self.theta, self.net.layout, self.X.shape[0], self.net.sizes[-1])

    def projection_budget(self, lo: int, indices: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
        """``v . g``, and how far the projection's two sides can be apart.

        That is the complex pass's own rounding, underflow, and the checked gradient's rounding (the worst
        case, or Hoeffding's bound on its random-sign sum).
        """
        analytic, own, user, user_norm = _sums(self.g, self.absum, weights, indices, lo, self.c_own, self.c_user,
                                               self.floor)
        return analytic, own + self.underflow + min(user, HOEFFDING * user_norm)

    def agrees(self, lo: int, indices: np.ndarray, weights: np.ndarray) -> bool:
        """Whether this group's projection agrees; if it does, what it vouches for, per entry."""
        numerical = self.numerical(lo, indices, weights)
        analytic, vouched = self.projection_budget(lo, indices, weights)
        if not abs(numerical - analytic) <= self.safety * vouched:  # NaN disagrees
            return False
        _place(self.out.budget, weights, indices, lo, vouched)
        return True

    def bisect(self, lo: int, indices: np.ndarray, weights: np.ndarray) -> None:
        n = weights.size
        if n <= LEAF:
            self.out.leaves.extend(int(p) for p in (range(lo, lo + n) if indices.size == 0 else indices))
            return
        half = n // 2
        if indices.size == 0:
            parts = ((lo, indices, weights[:half]), (lo + half, indices, weights[half:]))
        else:
            parts = ((lo, indices[:half], weights[:half]), (lo, indices[half:], weights[half:]))
        for part in parts:
            if not self.agrees(*part):
                self.bisect(*part)


def _groups(lo: int, rho: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """A tensor's entries with a finite rounding scale ``rho``, in groups whose scales span at most ``SPAN``.

    ``rho`` is the tensor's, from flat index ``lo``; each group is ``(lo, indices, rho of the group)``
    (indices empty: all of them, contiguous).
    """
    finite = np.isfinite(rho)
    if finite.all():
        low, high = float(rho.min()), float(rho.max())
        if high <= low * SPAN:
            return [(lo, _CONTIGUOUS, rho)]
    kept = np.flatnonzero(finite)
    if kept.size == 0:
        return []
    log_rho = np.log10(rho[kept])
    band = np.floor((log_rho - log_rho.min()) / math.log10(SPAN)).astype(np.int64)
    return [(lo, (lo + kept[band == b]).astype(np.int64), rho[kept[band == b]]) for b in np.unique(band)]


def directional_search(
    net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, g: np.ndarray,
    user_u: float, safety: float, seed: int | None, Z: np.ndarray, A: np.ndarray, negligible: float,
) -> Projection:
    """Check ``g`` by weighted per-tensor projections, and narrow disagreements down by bisection.

    Parameters
    ----------
    net, theta, X, Y
        Validated network, flat parameters and batch.
    g : ndarray of float64, shape (P,)
        The gradient to check (flat).
    user_u : float
        Unit roundoff of the gradient's dtype.
    safety : float
        A projection fails when it is off by more than ``safety`` times its
        rounding budget.
    seed : int or None
        Seed of the directions.
    Z, A : ndarray
        The forward pass at ``theta``.
    negligible : float
        A projection budget at or below this fraction of its tensor's
        largest ``|g|`` confirms an entry it cannot tell from zero when the
        entry's own rounding could not tell it from zero either (as
        ``method="central"`` treats its own budgets).

    Returns
    -------
    Projection
        The leaves, the unresolved entries and every entry's projection budget.
    """
    L, N = net.n_layers, X.shape[0]
    bounds = [(int(lo), int(hi)) for lo, hi in zip(net.offsets[:-1], net.offsets[1:])]
    tiny = float(np.finfo(np.float32).tiny) if user_u > 2.0**-53 else float(np.finfo(np.float64).tiny)
    # rounding per unit of |v|: the complex pass's own over the terms each derivative sums (as the central
    # budget's 4 u (L + 2), and its sum over the batch), the checked gradient's over the same terms and at
    # its tensor's scale (residues of g - alpha W / N), each exactly as method="central"'s budget has them
    c_user = user_u * (L + 2 + math.sqrt(N))
    c_own = 4.0 * 2.0**-53 * (L + 2 + math.sqrt(N))
    scales = []
    for lo, hi in bounds:
        size = np.abs(g[lo:hi])
        scales.append(float(size[np.isfinite(size)].max(initial=0.0)))
        del size
    with np.errstate(over="ignore", invalid="ignore"):
        absum = term_sizes(net, theta, X, Y, Z, A)
        if not net.conventions.plain:  # the whole loss's term sizes: |r| absum + |2 c w| (fastgrad.conventions)
            net.conventions.abs_into(absum, theta, net.layout, N, net.sizes[-1])
    search = _Search(net, theta, X, Y, g, absum, c_own, c_user, safety)
    rng = np.random.default_rng(seed)
    for name, (lo, hi), scale in zip(net.tensor_names, bounds, scales):
        search.floor = c_user * scale + tiny
        weights = rng.choice([-1.0, 1.0], size=hi - lo)
        weights *= rng.uniform(0.5, 1.5, size=hi - lo)
        with np.errstate(over="ignore", invalid="ignore"):
            rho = (c_own + c_user) * absum[lo:hi]
            rho += search.floor
        rho[~(rho > 0.0)] = np.inf  # NaN: not finite, never projected
        groups = _groups(lo, rho)
        del rho
        for start, indices, rho_g in groups:
            # v_p = r_p rho_min / rho_p: |v| <= 1.5, h v stays tiny
            np.divide(float(rho_g.min()), rho_g, out=rho_g)
            if indices.size == 0:
                weights *= rho_g
                group_weights = weights
            else:
                group_weights = weights[indices - lo] * rho_g
            del rho_g
            if not search.agrees(start, indices, group_weights):
                if name not in search.out.failed_tensors:
                    search.out.failed_tensors.append(name)
                search.bisect(start, indices, group_weights)
        del groups, weights
    out = search.out
    leaf = np.zeros(net.n_params, dtype=bool)
    leaf[np.asarray(out.leaves, dtype=np.int64)] = True
    unresolved = []
    for t, ((lo, hi), scale) in enumerate(zip(bounds, scales)):
        open_ = lo + np.flatnonzero(_open(out.budget[lo:hi], g[lo:hi], absum[lo:hi], c_own + c_user,
                                          c_user * scale + tiny, negligible * scale, tiny, safety))
        open_ = open_[~leaf[open_]]
        search.floor = c_user * scale + tiny
        open_ = _refine(search, net, t, lo, open_, rng, c_own + c_user, scale, negligible, tiny, safety)
        leaf[np.asarray(out.leaves, dtype=np.int64)] = True
        unresolved.append(open_[~leaf[open_]])
    del search
    out.unresolved = np.concatenate(unresolved).astype(np.int64)
    return out


def _open(budget: np.ndarray, g: np.ndarray, absum: np.ndarray, c_rho: float, floor: float, negligible: float,
          tiny: float, safety: float) -> np.ndarray:
    """Per entry (of one tensor, or a subset of it): True where the projection budget cannot tell it from zero.

    A budget negligible for its tensor confirms a value it cannot tell from
    zero only when checking the entry by itself could not tell it either
    (exact zeros of dead units); otherwise the entry is open, checked by itself.
    """
    size = np.abs(g)
    resolved = (safety + 1.0) * budget < size
    with np.errstate(over="ignore", invalid="ignore"):
        alone = (safety + 1.0) * (c_rho * absum + floor)
    resolved |= (budget <= max(negligible, 2.0 * tiny)) & (alone >= size)
    return ~resolved


def _units_cost(net: MLP, t: int, lo: int, entries: np.ndarray, n_samples: int) -> float:
    """The incremental engine's work to check ``entries`` of tensor ``t`` one by one: their distinct units' series."""
    layer, fan_out = t // 2, net.sizes[t // 2 + 1]
    units = np.unique((entries - lo) % fan_out)
    return units.size * unit_cost(net, layer, n_samples)


def _refine(search: _Search, net: MLP, t: int, lo: int, open_: np.ndarray, rng: np.random.Generator,
            c_rho: float, scale: float, negligible: float, tiny: float, safety: float) -> np.ndarray:
    """Project a tensor's open entries again, by themselves, while that is cheaper than checking them one by one.

    A projection vouches for an entry to about ``|G|`` times its rounding
    (``|G|`` the group's size): on a 10^8-parameter net the whole tensor's
    projection left 22 % of the entries open, every unit's series to check
    them one by one, 4 min where the full check took 68 s. A projection of
    the open entries alone, with fresh random signs, vouches ``|G| / |open|``
    times finer, and each pass closes most of what is left; it stops when
    a complex pass (about 8 forward passes' work) costs more than the open
    entries' units, or when a pass closes less than half. A projection that
    disagrees is bisected like the first ones (its leaves are checked one by
    one). Returns the entries still open.
    """
    N = search.X.shape[0]
    pass_cost = PASS_COST * 2.0 * N * net.n_params
    g, absum, budget = search.g, search.absum, search.out.budget
    for _ in range(REFINE_PASSES):
        if open_.size <= LEAF or _units_cost(net, t, lo, open_, N) <= pass_cost:
            break
        with np.errstate(over="ignore", invalid="ignore"):
            rho = c_rho * absum[open_] + search.floor
        weights = rng.choice([-1.0, 1.0], size=open_.size) * rng.uniform(0.5, 1.5, size=open_.size)
        for _start, indices, rho_g in _groups(0, rho):
            members = open_ if indices.size == 0 else open_[indices]
            group_weights = (weights if indices.size == 0 else weights[indices]) * (float(rho_g.min()) / rho_g)
            if not search.agrees(0, members, group_weights):
                name = net.tensor_names[t]
                if name not in search.out.failed_tensors:
                    search.out.failed_tensors.append(name)
                search.bisect(0, members, group_weights)
        leaves = np.isin(open_, np.asarray(search.out.leaves, dtype=np.int64))
        still = _open(budget[open_], g[open_], absum[open_], c_rho, search.floor, negligible * scale, tiny, safety)
        remaining = open_[still & ~leaves]
        closed_enough = remaining.size <= open_.size // 2
        open_ = remaining
        if not closed_enough:
            break
    return open_

"""Projections that localise: ``method="directional"``.

Every entry ``p`` has a rounding scale ``rho_p``: how far the projection's
two sides can be apart per unit of ``|v_p|``, from the size of the terms
its derivative sums (``absum_p``, the incremental engine's, here computed
for every entry at once by one absolute-value backward pass,
:func:`term_sizes`) and the tensor's rounding floor of the checked
gradient (``max |g|`` of the tensor)::

    rho_p = (4 u + u_user) (L + 2 + sqrt(N)) absum_p + u_user (L + 2 + sqrt(N)) max_t |g| + tiny

(the terms of ``method="central"``'s budget for the same entry, with the
complex pass's own rounding also summed over the batch).

For each tensor, one random direction ``v_p = r_p / rho_p`` (``r_p`` of
random sign and size in [0.5, 1.5], zero outside the tensor) and one
complex-step directional derivative ``Im E(w + i h v) / h`` (one complex
forward pass, nothing subtracted) are compared with ``v . g``, within
``safety`` times the budget ``B = sum_p |v_p| rho_p`` (plus what underflow
of the imaginary parts can cost). The weights make every entry's error
count in units of its own rounding: an error ``d_p`` in one entry alone
moves the projection by ``|v_p d_p|``, so the projection vouches for every
entry to ``B / |v_p| = rho_p sum_q |r_q| / |r_p|`` (about ``|G| rho_p``
for a group of ``|G|`` entries): the same multiple of its own rounding for
a small entry as for a large one, whatever units the features come in.
(With one direction of equal weights, an entry's error had to exceed the
rounding of the whole tensor's largest entries.)

A tensor whose projection disagrees is bisected: each half's projection is
checked (same weights, its own budget), the failing halves split again,
down to a few entries, which the caller then checks one by one by central
differences with the budget ``method="central"`` gives them. A single
wrong entry among P is found in about ``2 log2(P)`` forward passes instead
of the ``2 P`` of a per-parameter check.

What a projection cannot vouch for is not passed silently: an entry whose
projection budget cannot tell its value from zero (``(safety + 1) B / |v_p|
>= |g_p|``, unless that budget is negligible for its tensor, the rule
``method="central"`` applies to its own budget) is *unresolved* and is
checked one by one by central differences too, where it passes, fails, or
is reported inconclusive as ``method="central"`` would report it. Entries
whose rounding scales differ by more than ``SPAN`` are projected in
separate groups (one more forward pass each), so that no weight is so
small that its imaginary step underflows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._config import DEFAULT_EPS_COMPLEX
from ._kernels.codes import ACT, B_OFF, CROSS_ENTROPY, FAN_IN, FAN_OUT, IDENTITY, LEAKY_RELU, RELU, U_OFF, W_OFF
from ._kernels.complex_forward import directional_derivative
from ._kernels.forward import n_units
from ._kernels.loss import loss_scale
from .engines import IncrementalState
from .model import MLP

#: Complex step of the projections (the complex step's default).
STEP = DEFAULT_EPS_COMPLEX
#: Sets this small are checked entry by entry.
LEAF = 4
#: Largest ratio of rounding scales ``rho`` within one projection: a weight
#: ``rho_min / rho_p`` below ``1 / SPAN`` would bring ``h v_p`` near underflow.
SPAN = 1e100
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
        slack = 0.0 if code in (RELU, LEAKY_RELU, IDENTITY) else 1.0
        deriv = np.abs(state.C[0, :, off:off + fan_out]) + slack
        if l == L - 1:
            a = A[:, off:off + fan_out]
            if net.loss_code == CROSS_ENTROPY:
                D = state.ysum[:, None] * a + np.abs(Y)
            else:
                D = 2.0 * (np.abs(Y) + np.abs(a)) * deriv
        else:
            w_next = int(layout[l + 1, W_OFF])
            W_abs = np.abs(theta[w_next:w_next + fan_out * int(layout[l + 1, FAN_OUT])]).reshape(fan_out, -1)
            D = deriv * (D @ W_abs.T)
        prev = X if l == 0 else A[:, int(layout[l - 1, U_OFF]):int(layout[l - 1, U_OFF]) + fan_in]
        w_off, b_off = int(layout[l, W_OFF]), int(layout[l, B_OFF])
        out[w_off:w_off + fan_in * fan_out] = (scale * (np.abs(prev).T @ D)).ravel()
        out[b_off:b_off + fan_out] = scale * D.sum(axis=0)
    return out


class _Search:
    def __init__(self, net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, g: np.ndarray,
                 rho: np.ndarray, safety: float) -> None:
        self.net, self.theta, self.X, self.Y, self.g, self.rho = net, theta, X, Y, g, rho
        shape = (X.shape[0], n_units(net.layout))
        self.Zc = np.empty(shape, dtype=np.complex128)
        self.Ac = np.empty(shape, dtype=np.complex128)
        self.v = np.zeros(net.n_params)
        # underflowing imaginary parts: one subnormal per operation of the complex pass (|v| <= 1.5)
        operations = 4.0 * X.shape[0] * (net.n_params + shape[1])
        self.underflow = 1.5 * operations * _SUBNORMAL / STEP
        self.safety = safety
        self.out = Projection(budget=np.full(net.n_params, np.inf))

    def numerical(self, indices: np.ndarray, weights: np.ndarray) -> float:
        self.v[:] = 0.0
        self.v[indices] = weights
        self.out.evaluations += 1
        return float(directional_derivative(self.theta, self.v, STEP, self.net.layout, self.net.loss_code,
                                            self.X, self.Y, self.Zc, self.Ac))

    def agrees(self, indices: np.ndarray, weights: np.ndarray) -> bool:
        """Whether this group's projection agrees; if it does, what it vouches for, per entry."""
        numerical = self.numerical(indices, weights)
        analytic = float(weights @ self.g[indices])
        budget = float(np.abs(weights) @ self.rho[indices]) + self.underflow
        if not abs(numerical - analytic) <= self.safety * budget:  # NaN disagrees
            return False
        self.out.budget[indices] = budget / np.abs(weights)
        return True

    def bisect(self, indices: np.ndarray, weights: np.ndarray) -> None:
        if indices.size <= LEAF:
            self.out.leaves.extend(int(p) for p in indices)
            return
        half = indices.size // 2
        for part, w in ((indices[:half], weights[:half]), (indices[half:], weights[half:])):
            if not self.agrees(part, w):
                self.bisect(part, w)


def _groups(indices: np.ndarray, rho: np.ndarray) -> list[np.ndarray]:
    """The entries of a tensor with a finite rounding scale, in groups whose scales span at most ``SPAN``."""
    finite = indices[np.isfinite(rho[indices])]
    if finite.size == 0:
        return []
    log_rho = np.log10(rho[finite])
    band = np.floor((log_rho - log_rho.min()) / math.log10(SPAN)).astype(np.int64)
    if not band.any():
        return [finite]
    return [finite[band == b] for b in np.unique(band)]


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
        largest ``|g|`` resolves an entry however small its value (as
        ``method="central"`` treats its own budgets).

    Returns
    -------
    Projection
        The leaves, the unresolved entries and every entry's projection budget.
    """
    L, N = net.n_layers, X.shape[0]
    tiny = float(np.finfo(np.float32).tiny) if user_u > 2.0**-53 else float(np.finfo(np.float64).tiny)
    # rounding per unit of |v|: the complex pass's own over the terms each derivative sums (as the central
    # budget's 4 u (L + 2), and its sum over the batch), the checked gradient's over the same terms and at
    # its tensor's scale (residues of g - alpha W / N), each exactly as method="central"'s budget has them
    c_user = user_u * (L + 2 + math.sqrt(N))
    c_terms = 4.0 * 2.0**-53 * (L + 2 + math.sqrt(N)) + c_user
    with np.errstate(over="ignore", invalid="ignore"):
        rho = term_sizes(net, theta, X, Y, Z, A)
        rho *= c_terms
    absg = np.abs(g)
    finite_g = np.where(np.isfinite(absg), absg, 0.0)
    scales = np.array([float(finite_g[lo:hi].max(initial=0.0)) for lo, hi in zip(net.offsets[:-1], net.offsets[1:])])
    with np.errstate(over="ignore", invalid="ignore"):
        for t, (lo, hi) in enumerate(zip(net.offsets[:-1], net.offsets[1:])):
            rho[lo:hi] += c_user * scales[t]
        rho += tiny
    rho[~(rho > 0.0)] = np.inf  # NaN: not finite, never projected
    search = _Search(net, theta, X, Y, g, rho, safety)
    rng = np.random.default_rng(seed)
    for t, name in enumerate(net.tensor_names):
        lo, hi = int(net.offsets[t]), int(net.offsets[t + 1])
        indices = np.arange(lo, hi)
        r = rng.choice([-1.0, 1.0], size=indices.size) * rng.uniform(0.5, 1.5, size=indices.size)
        for group in _groups(indices, rho):
            rho_g = rho[group]
            weights = r[group - lo] * (float(rho_g.min()) / rho_g)  # |v| <= 1.5: h v stays tiny
            if not search.agrees(group, weights):
                if name not in search.out.failed_tensors:
                    search.out.failed_tensors.append(name)
                search.bisect(group, weights)
    out = search.out
    leaf = np.zeros(net.n_params, dtype=bool)
    leaf[np.asarray(out.leaves, dtype=np.int64)] = True
    vouches = (safety + 1.0) * out.budget
    resolved = vouches < absg
    for t, (lo, hi) in enumerate(zip(net.offsets[:-1], net.offsets[1:])):
        resolved[lo:hi] |= out.budget[lo:hi] <= max(negligible * scales[t], 2.0 * tiny)
    out.unresolved = np.flatnonzero(~resolved & ~leaf).astype(np.int64)
    return out

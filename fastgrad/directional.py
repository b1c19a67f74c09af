"""Projections that localise: ``method="directional"``.

For each tensor, one random direction ``v`` (zero outside the tensor, so a
small tensor's error is not swamped by a big one's) and one complex-step
directional derivative ``Im E(w + i h v) / h`` (one complex forward pass,
nothing subtracted) are compared with ``v . g``. A tensor whose projection
disagrees is bisected: each half's projection is checked, the failing
halves split again, down to a few entries, which the caller then checks
one by one by central differences (with the budget ``method="central"``
gives them: the projections' own rounding bound is rougher). A single wrong entry among P is found in about ``2 log2(P)`` forward
passes instead of the ``2 P`` of a per-parameter check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._config import DEFAULT_EPS_COMPLEX
from ._kernels.complex_forward import directional_derivative
from ._kernels.forward import n_units
from .model import MLP

#: Complex step of the projections (the complex step's default).
STEP = DEFAULT_EPS_COMPLEX
#: Sets this small are checked entry by entry.
LEAF = 4


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
        Tensors whose whole-tensor projection disagreed.
    """

    evaluations: int = 0
    leaves: list[int] = field(default_factory=list)
    failed_tensors: list[str] = field(default_factory=list)


class _Search:
    def __init__(self, net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, g: np.ndarray,
                 user_u: float, safety: float) -> None:
        self.net, self.theta, self.X, self.Y, self.g = net, theta, X, Y, g
        shape = (X.shape[0], n_units(net.layout))
        self.Zc = np.empty(shape, dtype=np.complex128)
        self.Ac = np.empty(shape, dtype=np.complex128)
        self.v = np.zeros(net.n_params)
        # rounding of both sides, per unit of sum |v| (|g| + the tensor's floor)
        self.factor = (2.0**-53 + user_u) * (net.n_layers + 2 + np.sqrt(X.shape[0])) * 4.0
        self.safety = safety
        self.out = Projection()

    def numerical(self, indices: np.ndarray, weights: np.ndarray) -> float:
        self.v[:] = 0.0
        self.v[indices] = weights
        self.out.evaluations += 1
        return float(directional_derivative(self.theta, self.v, STEP, self.net.layout, self.net.loss_code,
                                            self.X, self.Y, self.Zc, self.Ac))

    def agrees(self, indices: np.ndarray, weights: np.ndarray, floor: float) -> bool:
        numerical = self.numerical(indices, weights)
        analytic = float(weights @ self.g[indices])
        budget = self.factor * float(np.abs(weights) @ (np.abs(self.g[indices]) + floor)) + 1e-300
        return abs(numerical - analytic) <= self.safety * budget

    def bisect(self, indices: np.ndarray, weights: np.ndarray, floor: float) -> None:
        if indices.size <= LEAF:
            self.out.leaves.extend(int(p) for p in indices)
            return
        half = indices.size // 2
        for part, w in ((indices[:half], weights[:half]), (indices[half:], weights[half:])):
            if not self.agrees(part, w, floor):
                self.bisect(part, w, floor)


def directional_search(
    net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, g: np.ndarray,
    user_u: float, safety: float, seed: int | None, term_scale: np.ndarray | None = None,
) -> Projection:
    """Check ``g`` by per-tensor projections, and narrow disagreements down by bisection.

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
    term_scale : ndarray of float64, shape (T,), optional
        Per tensor, the typical size of the terms an entry's derivative sums
        (the mean of the incremental engine's ``absum`` over a sample of the
        tensor): in a saturated net these are far larger than the gradient
        they cancel down to, and the projection's rounding scales with them.
    """
    search = _Search(net, theta, X, Y, g, user_u, safety)
    rng = np.random.default_rng(seed)
    for t, name in enumerate(net.tensor_names):
        lo, hi = int(net.offsets[t]), int(net.offsets[t + 1])
        indices = np.arange(lo, hi)
        weights = rng.choice([-1.0, 1.0], size=indices.size) * rng.uniform(0.5, 1.5, size=indices.size)
        floor = float(np.mean(np.abs(g[lo:hi])))  # per-sample terms may cancel inside an entry
        if term_scale is not None:
            floor = max(floor, float(term_scale[t]))
        if not search.agrees(indices, weights, floor):
            search.out.failed_tensors.append(name)
            search.bisect(indices, weights, floor)
    return search.out

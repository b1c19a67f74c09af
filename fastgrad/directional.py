"""Projections that localise: ``method="directional"``.

For each tensor, one random direction ``v`` (zero outside the tensor, so a
small tensor's error is not swamped by a big one's) and one complex-step
directional derivative ``Im E(w + i h v) / h`` (one complex forward pass,
nothing subtracted) are compared with ``v . g``. A tensor whose projection
disagrees is bisected: each half's projection is checked, the failing
halves split again, down to a few entries, which are then checked one by
one. A single wrong entry among P is found in about ``2 log2(P)`` forward
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
    entries : dict of int to (float, float)
        Flat index -> (its numerical derivative, its budget), for every
        entry checked one by one (the leaves of the bisection); the entry
        fails when ``|a - n|`` exceeds the budget times ``safety``.
    failed_tensors : list of str
        Tensors whose whole-tensor projection disagreed.
    wrong : list of int
        Flat indices judged wrong one by one.
    """

    evaluations: int = 0
    entries: dict[int, tuple[float, float]] = field(default_factory=dict)
    failed_tensors: list[str] = field(default_factory=list)
    wrong: list[int] = field(default_factory=list)


class _Search:
    def __init__(self, net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, g: np.ndarray,
                 user_u: float, safety: float) -> None:
        self.net, self.theta, self.X, self.Y, self.g = net, theta, X, Y, g
        shape = (X.shape[0], n_units(net.layout))
        self.Zc = np.empty(shape, dtype=np.complex128)
        self.Ac = np.empty(shape, dtype=np.complex128)
        self.v = np.zeros(net.n_params)
        # rounding of both sides, per unit of sum |v| (|g| + mean |g| of the tensor)
        self.factor = (2.0**-53 + user_u) * (net.n_layers + 2 + np.sqrt(X.shape[0])) * 4.0
        self.safety = safety
        self.out = Projection()

    def numerical(self, indices: np.ndarray, weights: np.ndarray) -> float:
        self.v[:] = 0.0
        self.v[indices] = weights
        self.out.evaluations += 1
        return float(directional_derivative(self.theta, self.v, STEP, self.net.layout, self.net.loss_code,
                                            self.X, self.Y, self.Zc, self.Ac))

    def agrees(self, indices: np.ndarray, weights: np.ndarray, floor: float) -> tuple[bool, float, float]:
        numerical = self.numerical(indices, weights)
        analytic = float(weights @ self.g[indices])
        budget = self.factor * float(np.abs(weights) @ (np.abs(self.g[indices]) + floor)) + 1e-300
        return abs(numerical - analytic) <= self.safety * budget, numerical, budget

    def bisect(self, indices: np.ndarray, weights: np.ndarray, floor: float) -> None:
        if indices.size <= LEAF:
            for k in range(indices.size):
                one = indices[k:k + 1]
                ok, value, budget = self.agrees(one, np.ones(1), floor)
                self.out.entries[int(one[0])] = (value, budget)
                if not ok:
                    self.out.wrong.append(int(one[0]))
            return
        half = indices.size // 2
        for part, w in ((indices[:half], weights[:half]), (indices[half:], weights[half:])):
            ok, _, _ = self.agrees(part, w, floor)
            if not ok:
                self.bisect(part, w, floor)


def directional_search(
    net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, g: np.ndarray,
    user_u: float, safety: float, seed: int | None,
) -> Projection:
    """Check ``g`` by per-tensor projections, and name the wrong entries by bisection.

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
    """
    search = _Search(net, theta, X, Y, g, user_u, safety)
    rng = np.random.default_rng(seed)
    for t, name in enumerate(net.tensor_names):
        lo, hi = int(net.offsets[t]), int(net.offsets[t + 1])
        indices = np.arange(lo, hi)
        weights = rng.choice([-1.0, 1.0], size=indices.size) * rng.uniform(0.5, 1.5, size=indices.size)
        floor = float(np.mean(np.abs(g[lo:hi])))  # per-sample terms may cancel inside an entry
        ok, _, _ = search.agrees(indices, weights, floor)
        if not ok:
            search.out.failed_tensors.append(name)
            search.bisect(indices, weights, floor)
    return search.out

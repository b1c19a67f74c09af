"""A second model kind for the protocol's tests: a one-layer tanh regression known only by its loss and gradient.

It implements :class:`fastgrad.protocol.Model` structurally (it does not
derive from :class:`fastgrad.protocol.ModelBase`), so that the checkers'
use of the protocol's optional hooks' defaults is tested too.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TanhRegression:
    """``E = (1/N) sum_n sum_k (tanh(x_n W + b)_k - y_nk)^2`` with params ``[W (D, K), b (K,)]``, kind "function".

    ``wrong_bias``: the gradient of ``b`` is multiplied by this (1: correct).
    """

    kind = "function"

    def __init__(self, D: int, K: int, wrong_bias: float = 1.0) -> None:
        self.D, self.K = D, K
        self.tensor_names = ("W", "b")
        self.param_shapes = [(D, K), (K,)]
        self.offsets = np.cumsum([0, D * K, K])
        self.n_params = int(self.offsets[-1])
        self.wrong_bias = wrong_bias
        self.loss_calls = 0

    def __repr__(self) -> str:
        return f"TanhRegression({self.D}, {self.K})"

    def init(self, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [rng.normal(0.0, 0.5, size=(self.D, self.K)), rng.uniform(-0.1, 0.1, size=self.K)]

    def flatten(self, params: Any, argument: str = "params") -> np.ndarray:
        if not isinstance(params, (list, tuple)) or len(params) != 2:
            raise TypeError(f"{argument} must be a list [W, b]")
        arrays = [np.asarray(p, dtype=np.float64) for p in params]
        for name, a, shape in zip(self.tensor_names, arrays, self.param_shapes):
            if a.shape != shape:
                raise ValueError(f"{argument}[{name}] must have shape {shape}, got {a.shape}")
        return np.concatenate([a.ravel() for a in arrays])

    def unflatten(self, theta: np.ndarray) -> list[np.ndarray]:
        return [theta[lo:hi].reshape(shape)
                for lo, hi, shape in zip(self.offsets[:-1], self.offsets[1:], self.param_shapes)]

    def locate(self, flat_index: int) -> tuple[str, tuple[int, ...]]:
        t = int(np.searchsorted(self.offsets, flat_index, side="right")) - 1
        local = int(flat_index - self.offsets[t])
        return self.tensor_names[t], tuple(int(i) for i in np.unravel_index(local, self.param_shapes[t]))

    def batch(self, X: Any, Y: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        Xa = np.array(X, dtype=np.float64)
        Ya = None if Y is None else np.array(Y, dtype=np.float64)
        if Xa.ndim != 2 or Xa.shape[1] != self.D or (Ya is not None and Ya.shape != (Xa.shape[0], self.K)):
            raise ValueError("X must be (N, D) and Y (N, K)")
        return Xa, Ya

    def loss_at(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:
        self.loss_calls += 1
        W, b = self.unflatten(theta)
        return float(np.sum((np.tanh(X @ W + b) - Y) ** 2) / X.shape[0])

    def gradient_at(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        W, b = self.unflatten(theta)
        t = np.tanh(X @ W + b)
        delta = 2.0 * (t - Y) * (1.0 - t * t) / X.shape[0]
        return np.concatenate([(X.T @ delta).ravel(), self.wrong_bias * delta.sum(axis=0)])

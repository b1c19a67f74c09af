"""The nets and data every benchmark times, the NumPy forward pass they are measured in, and subsets of parameters.

One NumPy forward pass + loss of the batch (:func:`numpy_loss`) is the unit of
"forward-pass equivalents", and the tutorial's naive loop and scipy's peer
evaluate the same function.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..model import MLP


def make_case(sizes: Sequence[int], n_samples: int, seed: int = 0) -> tuple[MLP, list[np.ndarray], np.ndarray,
                                                                            np.ndarray]:
    """Return a sigmoid MSE net, its parameters (non-zero biases) and a batch, reproducibly.

    Parameters
    ----------
    sizes : sequence of int
        Layer sizes, e.g. ``[784, 128, 10]``.
    n_samples : int
        Batch size N.
    seed : int, optional
        Seed of the parameters (``net.init``) and, plus one, of the biases and the data.

    Returns
    -------
    net : MLP
        Sigmoid hidden and output layers, MSE loss.
    params : list of ndarray
        ``[W1, b1, W2, b2, ...]``.
    X, Y : ndarray
        Inputs ``(N, sizes[0])`` from a standard normal, targets ``(N, sizes[-1])`` uniform on [0, 1).
    """
    net = MLP(list(sizes), hidden="sigmoid", output="sigmoid", loss="mse")
    params = net.init(seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in params[1::2]:  # non-zero biases exercise the bias path
        p[:] = rng.normal(0.0, 0.1, size=p.shape)
    X = rng.normal(size=(n_samples, net.sizes[0]))
    Y = rng.uniform(size=(n_samples, net.sizes[-1]))
    return net, params, X, Y


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def numpy_loss(params: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray) -> float:
    """Compute the tutorial's forward pass and MSE loss in plain NumPy (BLAS products), sigmoid layers.

    Parameters
    ----------
    params : sequence of ndarray
        ``[W1, b1, W2, b2, ...]`` of a sigmoid MSE net (see :func:`make_case`).
    X, Y : ndarray
        The batch.

    Returns
    -------
    float
        ``sum((Y - a)**2) / N``, the loss of :meth:`fastgrad.MLP.loss` for such a net.
    """
    a = X
    for layer in range(len(params) // 2):
        a = _sigmoid(a @ params[2 * layer] + params[2 * layer + 1])
    return float(np.sum((Y - a) ** 2) / X.shape[0])


def forward_seconds(params: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray, repeats: int = 20) -> float:
    """Best time of one NumPy forward pass + loss of the batch (the unit of "forward-pass equivalents").

    Parameters
    ----------
    params : sequence of ndarray
        The net's parameters.
    X, Y : ndarray
        The batch.
    repeats : int, optional
        Calls timed; the fastest counts (the others met a busy machine).

    Returns
    -------
    float
        Seconds.
    """
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        numpy_loss(params, X, Y)
        times.append(time.perf_counter() - t)
    return float(np.min(times))


def spread_indices(net: MLP, count: int, seed: int = 0, min_per_tensor: int = 4) -> np.ndarray:
    """About ``count`` random flat indices from every tensor, proportionally to its size (all when count >= P).

    Parameters
    ----------
    net : MLP
        The net whose parameters are drawn.
    count : int
        Parameters wanted in all.
    seed : int, optional
        Seed of the draw.
    min_per_tensor : int, optional
        At least this many from every tensor (all of a smaller one), so that each tensor is timed and checked.

    Returns
    -------
    ndarray of int64
        Sorted flat indices.
    """
    if count >= net.n_params:
        return np.arange(net.n_params, dtype=np.int64)
    rng = np.random.default_rng(seed)
    parts = []
    for lo, hi in zip(net.offsets[:-1].tolist(), net.offsets[1:].tolist()):
        size = hi - lo
        k = min(size, max(min_per_tensor, int(round(count * size / net.n_params))))
        parts.append(lo + rng.choice(size, size=k, replace=False))
    return np.sort(np.concatenate(parts)).astype(np.int64)


@dataclass
class Case:
    """One network of the sweep, with everything its rows share."""

    net: MLP
    params: list[np.ndarray]
    X: np.ndarray
    Y: np.ndarray
    theta: np.ndarray
    analytic: np.ndarray  # net.backprop, flat
    scale: float  # max |analytic|: errors are relative to it
    forward_s: float  # one NumPy forward pass of the batch

    @property
    def label(self) -> str:
        """The net's sizes, e.g. ``784-128-10``."""
        return "-".join(map(str, self.net.sizes))

    def rel_error(self, values: np.ndarray, idx: np.ndarray | None = None) -> float:
        """Return max |values - backprop| / max |backprop| (inf for NaN or inf values).

        Parameters
        ----------
        values : array_like
            Numerical derivatives of every parameter, or of those at ``idx``.
        idx : ndarray of int, optional
            Flat indices ``values`` belong to (all parameters when None).

        Returns
        -------
        float
            The error relative to the largest backprop entry of the whole net.
        """
        ref = self.analytic if idx is None else self.analytic[idx]
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.shape != ref.shape or not np.all(np.isfinite(values)):
            return math.inf
        return float(np.max(np.abs(values - ref), initial=0.0) / max(self.scale, 1e-300))

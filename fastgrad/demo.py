"""The three checks run by ``fastgrad demo``.

Each case builds its data with a fixed seed, runs :func:`fastgrad.check` and
returns a :class:`DemoCase`; printing is left to :mod:`fastgrad.cli`.
The hand-written NumPy backprop functions are written as a user would write
them (the scripts in ``examples/`` are self-contained twins of the first two
cases).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

import fastgrad

Progress = Callable[[int, int], None]

#: The tutorials' step: (E(w + 1e-4) - E(w - 1e-4)) / (2 * 1e-4).
TUTORIAL_EPS = 1e-4


class DemoCase(NamedTuple):
    """One demo check: what was checked, its result and its wall time."""

    title: str
    description: str
    result: fastgrad.CheckResult
    seconds: float


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Return the logistic function ``1 / (1 + exp(-z))`` elementwise."""
    out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


def tutorial_backprop(
    params: list[np.ndarray], X: np.ndarray, Y: np.ndarray
) -> list[np.ndarray]:
    """Backprop of the tutorial's 1-hidden-layer sigmoid net with MSE.

    ``a = sigmoid(X W1 + b1)``, ``x = sigmoid(a W2 + b2)`` and
    ``E = (1/N) sum_n sum_k (y_nk - x_nk)^2``.

    Parameters
    ----------
    params : list of ndarray
        ``[W1 (D, H), b1 (H,), W2 (H, K), b2 (K,)]``.
    X : ndarray, shape (N, D)
        Inputs, one row per example.
    Y : ndarray, shape (N, K)
        Targets.

    Returns
    -------
    list of ndarray
        ``[dE/dW1, dE/db1, dE/dW2, dE/db2]``, shaped like ``params``.
    """
    W1, b1, W2, b2 = params
    a = sigmoid(X @ W1 + b1)
    x = sigmoid(a @ W2 + b2)
    dz2 = 2.0 * (x - Y) / X.shape[0] * x * (1.0 - x)
    dz1 = (dz2 @ W2.T) * a * (1.0 - a)
    return [X.T @ dz1, dz1.sum(axis=0), a.T @ dz2, dz2.sum(axis=0)]


def linear_regression_gradient(
    w: np.ndarray, X: np.ndarray, Y: np.ndarray
) -> np.ndarray:
    """Gradient ``X0^T (Yhat - Y)`` of ``0.5 * sum((X0 w - Y)^2)``.

    Parameters
    ----------
    w : ndarray, shape (D + 1, 1)
        Weights ``w0..wD``; ``w0`` multiplies the constant column ``x0 = 1``.
    X : ndarray, shape (N, D)
        Features ``x1..xD`` (without the constant column).
    Y : ndarray, shape (N, 1)
        Targets.

    Returns
    -------
    ndarray, shape (D + 1, 1)
        The gradient with respect to ``w0..wD``.
    """
    X0 = np.hstack([np.ones((X.shape[0], 1), dtype=np.float64), X])
    grad: np.ndarray = X0.T @ (X0 @ w - Y)
    return grad


def _timed_check(
    net: fastgrad.MLP,
    params: list[np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    grads: list[np.ndarray] | None,
    eps: float | None,
    progress: Progress | None,
) -> tuple[fastgrad.CheckResult, float]:
    start = time.perf_counter()
    result = fastgrad.check(net, params, X, Y, grads, eps=eps, progress=progress)
    return result, time.perf_counter() - start


def tutorial_case(progress: Progress | None = None) -> DemoCase:
    """Check the tutorial's 4-5-3 sigmoid net (N=8) against its own backprop."""
    rng = np.random.default_rng(0)
    net = fastgrad.MLP([4, 5, 3], hidden="sigmoid", output="sigmoid", loss="mse")
    params = [rng.normal(0.0, 0.5, size=shape) for shape in net.param_shapes]
    X = rng.standard_normal((8, 4))
    Y = rng.uniform(0.0, 1.0, size=(8, 3))
    grads = tutorial_backprop(params, X, Y)
    result, seconds = _timed_check(net, params, X, Y, grads, TUTORIAL_EPS, progress)
    description = (
        "a = sigmoid(i W1 + b1), x = sigmoid(a W2 + b2), "
        "E = (1/N) sum_n sum_k (y_k - x_k)^2; sizes 4-5-3, N = 8, eps = 1e-4;\n"
        "hand-written NumPy backprop checked against central differences."
    )
    return DemoCase("tutorial 1-hidden-layer sigmoid net", description, result, seconds)


def linear_regression_case(progress: Progress | None = None) -> DemoCase:
    """Check ``X0^T (Yhat - Y)`` of the linear regression, as one GD step uses it."""
    rng = np.random.default_rng(1)
    n, d = 20, 5
    X = rng.standard_normal((n, d))
    true_w = np.array([[0.5], [1.0], [-2.0], [0.3], [0.0], [1.5]])
    Y = true_w[0] + X @ true_w[1:] + 0.1 * rng.standard_normal((n, 1))
    w_init = rng.normal(0.0, 0.1, size=(d + 1, 1))
    grad = linear_regression_gradient(w_init, X, Y)
    w_step = w_init - 0.01 * grad  # the one gradient-descent step

    # The tutorial appends x0 = 1 to every input so that w0 acts as the bias.
    # A [5, 1] identity MLP computes X W1 + b1, which is the same model:
    # b1 = w0 (the weight of the constant column) and W1 = w1..w5 (a 5x1 column).
    net = fastgrad.MLP([d, 1], output="identity", loss="half_sse")
    params = [w_init[1:], w_init[0]]
    grads = [grad[1:], grad[0]]
    result, seconds = _timed_check(net, params, X, Y, grads, TUTORIAL_EPS, progress)
    loss_before = net.loss(params, X, Y)
    loss_after = net.loss([w_step[1:], w_step[0]], X, Y)
    description = (
        "Yhat = X0 w with x0 = 1, E = 0.5 sum (Yhat - Y)^2, dE/dw = X0^T (Yhat - Y);"
        " N = 20, eps = 1e-4.\n"
        "As fastgrad.MLP([5, 1], output='identity', loss='half_sse'): "
        "b1 = w0 (the bias column x0 = 1), W1 = w1..w5.\n"
        f"One gradient-descent step (lr 0.01) from the initial weights: "
        f"E {loss_before:.6g} -> {loss_after:.6g}."
    )
    return DemoCase(
        "linear regression, one gradient-descent step", description, result, seconds
    )


def random_network_case(progress: Progress | None = None) -> DemoCase:
    """Check ``net.backprop`` of a 64-32-16-10 tanh/softmax net (N=32)."""
    rng = np.random.default_rng(2)
    net = fastgrad.MLP(
        [64, 32, 16, 10], hidden="tanh", output="softmax", loss="cross_entropy"
    )
    params = net.init(seed=2)
    X = rng.standard_normal((32, 64))
    Y = np.eye(10)[rng.integers(0, 10, size=32)]
    result, seconds = _timed_check(net, params, X, Y, None, None, progress)
    description = (
        "sizes 64-32-16-10, tanh hidden, softmax + cross-entropy, N = 32, "
        f"{net.n_params} parameters;\nnet.backprop checked against central "
        "differences."
    )
    return DemoCase("random 3-layer network", description, result, seconds)


def run_demo(progress: Progress | None = None) -> list[DemoCase]:
    """Run the three demo checks in order and return their cases."""
    return [
        tutorial_case(progress),
        linear_regression_case(progress),
        random_network_case(progress),
    ]

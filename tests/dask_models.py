"""Models for ``test_dask_function.py`` that run on Dask workers (sent by value: see that module's fixture).

``tanh_loss`` takes a list ``[W, v]`` and an optional ``delay``: seconds
slept per call, which changes nothing in its value (a slow loss for the
lost-worker test, checked against the same loss without the delay).
``noisy_loss`` answers differently to the same call.
"""

from __future__ import annotations

import time

import numpy as np


def make_case(seed: int, D: int = 5, H: int = 3, N: int = 20) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((D, H)), rng.standard_normal(H)], rng.standard_normal((N, D))


def tanh_loss(p, X, delay=0.0):
    """sum(tanh(X W) v)."""
    if delay:
        time.sleep(delay)
    return np.sum(np.tanh(X @ p[0]) * p[1])


def tanh_grads(p, X, delay=0.0):
    t = np.tanh(X @ p[0])
    return [X.T @ ((1.0 - t ** 2) * p[1]), t.sum(axis=0)]


def scalar_loss(x, a):
    """One array: sum(a x^3) / 3 + sum(sin(x))."""
    return np.sum(a * x ** 3) / 3.0 + np.sum(np.sin(x))


def scalar_grads(x, a):
    return a * x ** 2 + np.cos(x)


_calls = [0]


def noisy_loss(x):
    """sum(x^2), plus 1e-9 on every other call: an f that answers differently to the same call."""
    _calls[0] += 1
    return float(np.sum(x ** 2)) + (1e-9 if _calls[0] % 2 else 0.0)


def _jitted_cubic():
    import numba

    @numba.njit
    def cubic_loss(params, a):
        """sum(a x^3) / 3 + sum(x y) over the tuple (x, y) of two vectors."""
        x, y = params
        total = 0.0
        for i in range(x.size):
            total += a[i] * x[i] ** 3 / 3.0 + x[i] * y[i]
        return total

    return cubic_loss


cubic_loss = _jitted_cubic()


def cubic_grads(params, a):
    x, y = params
    return [a * x ** 2 + y, x.copy()]

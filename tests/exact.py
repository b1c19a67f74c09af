"""Exact-arithmetic oracle: the loss and its central difference in mpmath.

Used to measure how far the engines' numerical gradients are from the
*exactly computed* central difference (E(w + h) - E(w - h)) / 2h, where
w, h, X, Y and every other parameter are the float64 values, converted
exactly, and all arithmetic runs with ``DIGITS`` significant digits.
"""

from __future__ import annotations

import pytest

try:
    import mpmath
except ImportError:  # mpmath is in the test extra; without it the tests marked needs_mpmath skip
    mpmath = None

#: Marks a test that uses mpmath (directly or through this module): skipped where mpmath is not installed.
needs_mpmath = pytest.mark.skipif(mpmath is None, reason="mpmath is not installed (pip install -e '.[test]')")

DIGITS = 60


def _act(name, z):
    if name == "sigmoid":
        return 1 / (1 + mpmath.exp(-z))
    if name == "tanh":
        return mpmath.tanh(z)
    if name == "relu":
        return z if z > 0 else mpmath.mpf(0)
    if name == "leaky_relu":
        return z if z > 0 else mpmath.mpf("0.01") * z
    if name == "softplus":
        return mpmath.log(1 + mpmath.exp(z))
    if name == "identity":
        return z
    raise ValueError(name)


def exact_loss(net, theta, X, Y):
    """Loss of ``net`` at flat parameters ``theta`` (list of mpf), exactly."""
    N = len(X)
    total = mpmath.fsum(exact_sample_loss(net, theta, X[n], Y[n]) for n in range(N))
    if net.loss_name in ("mse", "cross_entropy", "bce"):
        return total / N
    if net.loss_name == "half_sse":
        return total / 2
    return total


def exact_sample_loss(net, theta, x, y, shift=None):
    """One sample's unscaled loss term, exactly.

    ``sum_k (y_k - x_k)^2``, ``-sum_k y_k log softmax(z)_k``, or ``sum_k log(1 + e^z_k) - y_k z_k`` (bce).
    ``shift=(layer, unit, s)`` adds ``s`` (an mpf) to that unit's
    pre-activation, as a perturbation of its bias would.
    """
    a = [mpmath.mpf(float(v)) for v in x]
    offset = 0
    for l, (fan_in, fan_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:])):
        W = theta[offset : offset + fan_in * fan_out]
        b = theta[offset + fan_in * fan_out : offset + fan_in * fan_out + fan_out]
        offset += fan_in * fan_out + fan_out
        z = [b[j] + mpmath.fsum(a[i] * W[i * fan_out + j] for i in range(fan_in)) for j in range(fan_out)]
        if shift is not None and shift[0] == l:
            z[shift[1]] += shift[2]
        name = net.output if l == net.n_layers - 1 else net.hidden
        if name == "softmax":
            m = max(z)
            lse = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in z))
            return mpmath.fsum(-mpmath.mpf(float(t)) * (v - lse) for t, v in zip(y, z))
        if l == net.n_layers - 1 and net.loss_name == "bce":
            return mpmath.fsum(mpmath.log1p(mpmath.exp(v)) - mpmath.mpf(float(t)) * v for t, v in zip(y, z))
        a = [_act(name, v) for v in z]
    return mpmath.fsum((mpmath.mpf(float(t)) - v) ** 2 for t, v in zip(y, a))


def exact_central_difference(net, theta, X, Y, index, h):
    """``(E(w + h) - E(w - h)) / 2h`` for flat parameter ``index``, exactly."""
    with mpmath.workdps(DIGITS):
        base = [mpmath.mpf(float(v)) for v in theta]
        hh = mpmath.mpf(h)
        plus = list(base)
        plus[index] = base[index] + hh
        minus = list(base)
        minus[index] = base[index] - hh
        return float((exact_loss(net, plus, X, Y) - exact_loss(net, minus, X, Y)) / (2 * hh))

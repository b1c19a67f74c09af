"""Exact-arithmetic oracle: the loss and its central difference in mpmath.

Used to measure how far the engines' numerical gradients are from the
*exactly computed* central difference (E(w + h) - E(w - h)) / 2h, where
w, h, X, Y and every other parameter are the float64 values, converted
exactly, and all arithmetic runs with ``DIGITS`` significant digits.
"""

from __future__ import annotations

import mpmath

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
    total = mpmath.mpf(0)
    for n in range(N):
        a = [mpmath.mpf(float(v)) for v in X[n]]
        offset = 0
        for l, (fan_in, fan_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:])):
            W = theta[offset : offset + fan_in * fan_out]
            b = theta[offset + fan_in * fan_out : offset + fan_in * fan_out + fan_out]
            offset += fan_in * fan_out + fan_out
            z = [b[j] + mpmath.fsum(a[i] * W[i * fan_out + j] for i in range(fan_in)) for j in range(fan_out)]
            last = l == net.n_layers - 1
            name = net.output if last else net.hidden
            if last and name == "softmax":
                m = max(z)
                lse = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in z))
                total += mpmath.fsum(-mpmath.mpf(float(y)) * (v - lse) for y, v in zip(Y[n], z))
                a = None
                break
            a = [_act(name, v) for v in z]
        if a is not None:
            total += mpmath.fsum((mpmath.mpf(float(y)) - x) ** 2 for y, x in zip(Y[n], a))
    if net.loss_name in ("mse", "cross_entropy"):
        return total / N
    if net.loss_name == "half_sse":
        return total / 2
    return total


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

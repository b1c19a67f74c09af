"""Activation functions and their derivatives, one sample's layer at a time."""

import math

from ._jit import jit
from .codes import IDENTITY, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, SOFTMAX, SOFTPLUS, TANH


@jit()
def sigmoid(z):
    """Logistic function, without overflow for large ``|z|``."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@jit()
def softplus(z):
    """``log(1 + exp(z))`` without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@jit()
def activate(z, a, start, count, code):
    """Write ``act(z[start:start+count])`` into ``a[start:start+count]``.

    Parameters
    ----------
    z : ndarray of float64, shape (U,)
        Pre-activations of one sample (all layers); read only.
    a : ndarray of float64, shape (U,)
        Activations of one sample; the layer's slice is written in place.
    start, count : int
        The layer's slice.
    code : int
        Activation code from :mod:`fastgrad._kernels.codes`.
    """
    stop = start + count
    if code == IDENTITY:
        for j in range(start, stop):
            a[j] = z[j]
    elif code == SIGMOID:
        for j in range(start, stop):
            a[j] = sigmoid(z[j])
    elif code == TANH:
        for j in range(start, stop):
            a[j] = math.tanh(z[j])
    elif code == RELU:
        for j in range(start, stop):
            a[j] = z[j] if z[j] > 0.0 else 0.0
    elif code == LEAKY_RELU:
        for j in range(start, stop):
            a[j] = z[j] if z[j] > 0.0 else LEAKY_SLOPE * z[j]
    elif code == SOFTPLUS:
        for j in range(start, stop):
            a[j] = softplus(z[j])
    elif code == SOFTMAX:
        zmax = z[start]
        for j in range(start + 1, stop):
            zmax = max(zmax, z[j])
        total = 0.0
        for j in range(start, stop):
            a[j] = math.exp(z[j] - zmax)
            total += a[j]
        for j in range(start, stop):
            a[j] /= total


@jit()
def derivative(z, a, code):
    """Derivative of an elementwise activation at pre-activation ``z``.

    ``a`` is ``act(z)``, passed to save work. ``relu'(0) = 0`` and
    ``leaky_relu'(0) = LEAKY_SLOPE`` (the ``z > 0`` test decides). Softmax is
    not elementwise and is handled with its loss in the backprop kernel.
    """
    if code == SIGMOID:
        return a * (1.0 - a)
    if code == TANH:
        return 1.0 - a * a
    if code == RELU:
        return 1.0 if z > 0.0 else 0.0
    if code == LEAKY_RELU:
        return 1.0 if z > 0.0 else LEAKY_SLOPE
    if code == SOFTPLUS:
        return sigmoid(z)
    return 1.0

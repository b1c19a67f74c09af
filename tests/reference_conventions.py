"""Slow, obviously correct NumPy twins of an MLP loss's conventions: reduction, scale, L2, leaky slope, layouts.

Written from the definitions, element by element, not from fastgrad's
factor-and-ratio arithmetic (``fastgrad/conventions.py``):

* each loss is a sum of *element* terms ``e_nk``: ``(y - x)^2`` (mse, sse),
  ``0.5 (y - x)^2`` (half_sse), ``-y log softmax(z)_k`` (cross_entropy),
  ``softplus(z) - y z`` (bce);
* the reduction divides their sum by 1 ("sum"), N ("mean") or N K
  ("mean_all"); None is the loss's own: "mean" for mse, cross_entropy and
  bce, "sum" for sse and half_sse;
* ``E = scale * reduced + l2 * sum_l ||W_l||^2`` (weights only);
* leaky_relu's slope is a parameter (:func:`leaky_slope` sets the twin's);
* weights are (fan_in, fan_out) here; :func:`to_out_in` gives the other layout.
"""

from __future__ import annotations

import contextlib

import numpy as np
import reference as ref

OWN = {"mse": "mean", "sse": "sum", "half_sse": "sum", "cross_entropy": "mean", "bce": "mean"}
REDUCTIONS = (None, "sum", "mean", "mean_all")


@contextlib.contextmanager
def leaky_slope(slope):
    """Run the twin's leaky_relu with ``slope`` (the reference reads ``LEAKY_SLOPE`` at call time)."""
    old = ref.LEAKY_SLOPE
    ref.LEAKY_SLOPE = slope
    try:
        yield
    finally:
        ref.LEAKY_SLOPE = old


def divisor(loss_name, reduction, N, K):
    """What the reduction divides the sum of the element terms by."""
    reduction = OWN[loss_name] if reduction is None else reduction
    return {"sum": 1.0, "mean": float(N), "mean_all": float(N * K)}[reduction]


def softplus(z):
    return np.logaddexp(0.0, z)


def element_terms(loss_name, Z, Yhat, Y):
    """The (N, K) element terms ``e_nk`` of a loss from the output pre-activations and activations."""
    Y = np.asarray(Y, dtype=np.float64)
    if loss_name in ("mse", "sse"):
        return (Y - Yhat) ** 2
    if loss_name == "half_sse":
        return 0.5 * (Y - Yhat) ** 2
    if loss_name == "cross_entropy":
        return -Y * ref.log_softmax(Z)
    if loss_name == "bce":
        return softplus(Z) - Y * Z
    raise ValueError(loss_name)


def output_delta(loss_name, output, Z, Yhat, Y):
    """``d sum_nk e_nk / d z`` at the output, (N, K)."""
    Y = np.asarray(Y, dtype=np.float64)
    if loss_name in ("mse", "sse"):
        return 2.0 * (Yhat - Y) * ref.activation_derivative(output, Z)
    if loss_name == "half_sse":
        return (Yhat - Y) * ref.activation_derivative(output, Z)
    if loss_name == "cross_entropy":
        return Yhat * Y.sum(axis=1, keepdims=True) - Y
    if loss_name == "bce":
        return ref.sigmoid(Z) - Y
    raise ValueError(loss_name)


def loss(params, X, Y, hidden, output, loss_name, reduction=None, scale=1.0, l2=0.0, slope=0.01):
    """``E`` of a net with (fan_in, fan_out) weights ``params``."""
    with leaky_slope(slope):
        zs, acts = ref.forward(params, X, hidden, output)
    N, K = acts[-1].shape
    reduced = element_terms(loss_name, zs[-1], acts[-1], Y).sum() / divisor(loss_name, reduction, N, K)
    penalty = sum(float(np.sum(np.asarray(W, dtype=np.float64) ** 2)) for W in params[0::2])
    return scale * reduced + l2 * penalty


def gradient(params, X, Y, hidden, output, loss_name, reduction=None, scale=1.0, l2=0.0, slope=0.01):
    """Textbook backprop of :func:`loss`: ``[dW1, db1, ...]`` with (fan_in, fan_out) weights."""
    params = ref.as_float64_params(params)
    with leaky_slope(slope):
        zs, acts = ref.forward(params, X, hidden, output)
        N, K = acts[-1].shape
        delta = scale * output_delta(loss_name, output, zs[-1], acts[-1], Y) / divisor(loss_name, reduction, N, K)
        n_layers = len(params) // 2
        grads = [None] * (2 * n_layers)
        for layer in reversed(range(n_layers)):
            grads[2 * layer] = acts[layer].T @ delta + 2.0 * l2 * params[2 * layer]
            grads[2 * layer + 1] = delta.sum(axis=0)
            if layer > 0:
                delta = (delta @ params[2 * layer].T) * ref.activation_derivative(hidden, zs[layer - 1])
    return grads


def to_out_in(params):
    """The same tensors with every weight transposed to (fan_out, fan_in) (new contiguous arrays)."""
    return [np.ascontiguousarray(np.asarray(p).T) if np.ndim(p) == 2 else np.array(p) for p in params]


def one_hot(labels, K):
    out = np.zeros((len(labels), K))
    out[np.arange(len(labels)), labels] = 1.0
    return out

"""Slow, obviously correct NumPy twins of fastgrad's kernels.

Everything here is float64, written for clarity and never for speed. The
conventions are those of ``/work/notes/API.md``:

* layer ``l``: ``z_l = a_{l-1} @ W_l + b_l``, ``a_l = act(z_l)``; ``W_l`` has
  shape ``(fan_in, fan_out)`` and ``b_l`` shape ``(fan_out,)``;
* ``relu'(0) = 0``, ``leaky_relu'(0) = 0.01`` (slope 0.01 for ``z <= 0``);
* ``elu(z) = z`` for ``z > 0``, ``exp(z) - 1`` at or below (alpha 1; ``elu'(0) = 1`` from both sides);
* ``mse  = (1/N) sum_n sum_k (y - x)^2``, ``sse = sum_n sum_k (y - x)^2``,
  ``half_sse = 0.5 sum_n sum_k (y - x)^2``,
  ``cross_entropy = -(1/N) sum_n sum_k y log softmax(z)``,
  ``bce = (1/N) sum_n sum_k softplus(z) - y z`` (``-[y log x + (1 - y) log(1 - x)]``, ``x = sigmoid(z)``).

The second half of the module holds small helpers that build random nets and
data for the tests (they need nothing from fastgrad).
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "softplus", "identity", "elu")
#: Activations whose derivative jumps at 0 (a step across it gets the kink verdict).
KINKED = ("relu", "leaky_relu")
#: Activations made of pieces meeting at 0 (elu's second derivative jumps there): a central difference that
#: straddles 0 has a first-order error, so accuracy tests keep their pre-activations away from it.
PIECEWISE = KINKED + ("elu",)
LOSSES = ("mse", "sse", "half_sse", "cross_entropy", "bce")
LEAKY_SLOPE = 0.01

#: Every valid (output, loss) pair: softmax goes only with cross_entropy, bce only with sigmoid.
OUTPUT_LOSS_PAIRS = tuple(
    (out, loss) for out in ACTIVATIONS for loss in ("mse", "sse", "half_sse")
) + (("softmax", "cross_entropy"), ("sigmoid", "bce"))


# --------------------------------------------------------------------------
# Activations and their derivatives (as functions of the pre-activation z)
# --------------------------------------------------------------------------


def sigmoid(z):
    """Logistic function, without overflow for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))  # in (0, 1], never overflows
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def activate(name, z):
    """Apply the element-wise activation ``name`` (not softmax) to ``z``."""
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAKY_SLOPE * z)
    if name == "softplus":
        return np.logaddexp(0.0, z)  # log(1 + e^z), stable
    if name == "identity":
        return np.array(z, dtype=np.float64, copy=True)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
    if name == "softmax":
        return softmax(z)
    raise ValueError(f"unknown activation {name!r}")


def activation_derivative(name, z):
    """Element-wise derivative d act(z) / dz (not defined for softmax)."""
    if name == "sigmoid":
        s = sigmoid(z)
        return s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(z)
        return 1.0 - t * t
    if name == "relu":
        return np.where(z > 0, 1.0, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, LEAKY_SLOPE)
    if name == "softplus":
        return sigmoid(z)
    if name == "identity":
        return np.ones_like(z, dtype=np.float64)
    if name == "elu":
        return np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))
    raise ValueError(f"no element-wise derivative for {name!r}")


def log_softmax(z):
    """Row-wise log-softmax, stable (shifts each row by its maximum)."""
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(z):
    """Row-wise softmax, stable."""
    return np.exp(log_softmax(z))


# --------------------------------------------------------------------------
# Forward pass, losses, backprop
# --------------------------------------------------------------------------


def as_float64_params(params):
    """Copy every tensor to a float64 array."""
    return [np.array(p, dtype=np.float64, copy=True) for p in params]


def forward(params, X, hidden, output):
    """Forward pass layer by layer.

    Returns
    -------
    zs : list of (N, fan_out) arrays
        Pre-activations ``z_1 .. z_L``.
    acts : list of arrays
        Activations ``a_0 = X, a_1, .., a_L``; ``acts[-1]`` is the output.
    """
    params = as_float64_params(params)
    a = np.array(X, dtype=np.float64, copy=True)
    n_layers = len(params) // 2
    zs, acts = [], [a]
    for layer in range(n_layers):
        W, b = params[2 * layer], params[2 * layer + 1]
        z = a @ W + b
        name = output if layer == n_layers - 1 else hidden
        a = activate(name, z)
        zs.append(z)
        acts.append(a)
    return zs, acts


def output_of(params, X, hidden, output):
    """Network output ``a_L``, shape (N, K)."""
    return forward(params, X, hidden, output)[1][-1]


def mse(Yhat, Y):
    """(1/N) sum_n sum_k (y - x)^2."""
    Yhat = np.asarray(Yhat, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    return float(np.sum((Y - Yhat) ** 2) / Y.shape[0])


def sse(Yhat, Y):
    """sum_n sum_k (y - x)^2."""
    Yhat = np.asarray(Yhat, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    return float(np.sum((Y - Yhat) ** 2))


def half_sse(Yhat, Y):
    """0.5 sum_n sum_k (y - x)^2."""
    return 0.5 * sse(Yhat, Y)


def cross_entropy_from_logits(Z, Y):
    """-(1/N) sum_n sum_k y_nk log softmax(z_n)_k, via a stable log-softmax."""
    Y = np.asarray(Y, dtype=np.float64)
    return float(-np.sum(Y * log_softmax(Z)) / Y.shape[0])


def bce_from_logits(Z, Y):
    """(1/N) sum_n sum_k softplus(z_nk) - y_nk z_nk: binary cross-entropy of sigmoid(z), from the logits."""
    Z = np.asarray(Z, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    return float(np.sum(np.logaddexp(0.0, Z) - Y * Z) / Y.shape[0])


def loss(params, X, Y, hidden, output, loss_name):
    """Loss of the net on the batch (X, Y)."""
    zs, acts = forward(params, X, hidden, output)
    if loss_name == "cross_entropy":
        if output != "softmax":
            raise ValueError("cross_entropy needs a softmax output")
        return cross_entropy_from_logits(zs[-1], Y)
    if loss_name == "bce":
        if output != "sigmoid":
            raise ValueError("bce needs a sigmoid output")
        return bce_from_logits(zs[-1], Y)
    if output == "softmax":
        raise ValueError("softmax output needs cross_entropy")
    if loss_name == "mse":
        return mse(acts[-1], Y)
    if loss_name == "sse":
        return sse(acts[-1], Y)
    if loss_name == "half_sse":
        return half_sse(acts[-1], Y)
    raise ValueError(f"unknown loss {loss_name!r}")


def loss_derivative(loss_name, Yhat, Y):
    """DE / d(output) for the squared losses, shape (N, K)."""
    N = Y.shape[0]
    if loss_name == "mse":
        return 2.0 * (Yhat - Y) / N
    if loss_name == "sse":
        return 2.0 * (Yhat - Y)
    if loss_name == "half_sse":
        return Yhat - Y
    raise ValueError(f"no output derivative for {loss_name!r}")


def backprop(params, X, Y, hidden, output, loss_name):
    """Textbook backpropagation; returns ``[dW1, db1, dW2, db2, ...]``."""
    params = as_float64_params(params)
    Y = np.asarray(Y, dtype=np.float64)
    zs, acts = forward(params, X, hidden, output)
    n_layers = len(params) // 2
    N = Y.shape[0]

    # delta_L = dE / dz_L
    if loss_name == "cross_entropy":
        # E = -(1/N) sum_n sum_k y_nk (z_nk - logsumexp(z_n)), so
        # dE/dz_nk = (p_nk * sum_j y_nj - y_nk) / N  (= (p - y)/N for one-hot y).
        p = acts[-1]
        delta = (p * Y.sum(axis=1, keepdims=True) - Y) / N
    elif loss_name == "bce":
        # E = (1/N) sum_n sum_k softplus(z_nk) - y_nk z_nk, so dE/dz_nk = (sigmoid(z_nk) - y_nk) / N
        delta = (sigmoid(zs[-1]) - Y) / N
    else:
        delta = loss_derivative(loss_name, acts[-1], Y) * activation_derivative(
            output, zs[-1]
        )

    grads = [None] * (2 * n_layers)
    for layer in reversed(range(n_layers)):
        a_prev = acts[layer]
        grads[2 * layer] = a_prev.T @ delta  # dE/dW_l = a_{l-1}^T delta_l
        grads[2 * layer + 1] = delta.sum(axis=0)  # dE/db_l = sum_n delta_l
        if layer > 0:
            W = params[2 * layer]
            delta = (delta @ W.T) * activation_derivative(hidden, zs[layer - 1])
    return grads


def numerical_gradient(params, X, Y, hidden, output, loss_name, eps=1e-4):
    """Central differences, one parameter entry at a time, on copies.

    entry = (E(w + eps) - E(w - eps)) / (2 eps)
    """
    params = as_float64_params(params)
    grads = []
    for t, tensor in enumerate(params):
        g = np.zeros(tensor.shape, dtype=np.float64)
        for index in np.ndindex(tensor.shape):
            plus = [p.copy() for p in params]
            plus[t][index] = tensor[index] + eps
            minus = [p.copy() for p in params]
            minus[t][index] = tensor[index] - eps
            e_plus = loss(plus, X, Y, hidden, output, loss_name)
            e_minus = loss(minus, X, Y, hidden, output, loss_name)
            g[index] = (e_plus - e_minus) / (2.0 * eps)
        grads.append(g)
    return grads


def rel_error(analytic, numerical, rtol, atol):
    """API.md: |a - n| / max(|a|, |n|, atol / rtol), 0 where a == n."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numerical, dtype=np.float64)
    denom = np.maximum(np.maximum(np.abs(a), np.abs(n)), atol / rtol)
    safe = np.where(a == n, 1.0, denom)  # a == n == 0 with atol == 0: no 0/0
    return np.where(a == n, 0.0, np.abs(a - n) / safe)


# --------------------------------------------------------------------------
# Test data helpers (no fastgrad here)
# --------------------------------------------------------------------------


def tensor_names(n_layers):
    """("W1", "b1", "W2", "b2", ...)."""
    names = []
    for layer in range(1, n_layers + 1):
        names += [f"W{layer}", f"b{layer}"]
    return tuple(names)


def param_shapes(sizes):
    """[(D, H1), (H1,), ..., (H_last, K), (K,)]."""
    shapes = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes


def random_params(rng, sizes, scale=1.0, bias_scale=0.5):
    """Moderate random weights: W ~ scale * N(0, 1/fan_in), b ~ bias_scale * N(0, 1)."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        params.append(scale * rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in))
        params.append(bias_scale * rng.standard_normal(fan_out))
    return params


def random_targets(rng, N, K, output, loss_name):
    """Targets in the range of the output activation.

    cross_entropy gets soft labels (non-negative rows summing to 1); bce soft
    targets in [0, 1] with some rows of hard multi-label 0/1 targets.
    """
    if loss_name == "cross_entropy":
        Y = rng.random((N, K)) + 0.05
        return Y / Y.sum(axis=1, keepdims=True)
    if loss_name == "bce":
        Y = rng.random((N, K))
        hard = rng.random(N) < 0.5
        Y[hard] = (rng.random((int(hard.sum()), K)) < 0.5).astype(np.float64)
        return Y
    if output == "sigmoid":
        return rng.uniform(0.05, 0.95, (N, K))
    if output == "tanh":
        return rng.uniform(-0.9, 0.9, (N, K))
    if output in ("relu", "softplus"):
        return rng.uniform(0.0, 1.5, (N, K))
    return rng.standard_normal((N, K))


def min_abs_preactivation(params, X, hidden, output):
    """Smallest |z| over the layers whose activation is piecewise (:data:`PIECEWISE`; inf if none)."""
    zs, _ = forward(params, X, hidden, output)
    n_layers = len(zs)
    smallest = np.inf
    for layer, z in enumerate(zs):
        name = output if layer == n_layers - 1 else hidden
        if name in PIECEWISE:
            smallest = min(smallest, float(np.min(np.abs(z))))
    return smallest


def random_case(
    rng, sizes, hidden, output, loss_name, N=4, kink_margin=1e-2, max_tries=1000
):
    """Random (params, X, Y) with no kinked pre-activation within ``kink_margin`` of 0.

    Resamples params and X until the margin holds so that central differences
    never straddle a relu/leaky_relu kink (or elu's join).
    """
    D, K = sizes[0], sizes[-1]
    for _ in range(max_tries):
        params = random_params(rng, sizes)
        X = rng.standard_normal((N, D))
        if min_abs_preactivation(params, X, hidden, output) > kink_margin:
            Y = random_targets(rng, N, K, output, loss_name)
            return params, X, Y
    raise RuntimeError("could not sample a case away from the relu kinks")

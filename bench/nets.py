"""Networks, data and the peers fastgrad is measured against.

The tutorial's naive loop is the baseline every user knows: for each
parameter, two full NumPy forward passes. Peers are timed on a subset of
parameters where a full run would take minutes, and extrapolated linearly
(every parameter costs the same two forward passes); results say so.
"""

from __future__ import annotations

import time

import numpy as np

import fastgrad


def make_case(sizes, n_samples, hidden="sigmoid", output="sigmoid", loss="mse", seed=0):
    """A network, its parameters and a batch, reproducibly."""
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    params = net.init(seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in params[1::2]:  # non-zero biases exercise the bias path
        p[:] = rng.normal(0.0, 0.1, size=p.shape)
    X = rng.normal(size=(n_samples, sizes[0]))
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n_samples)]
    else:
        Y = rng.uniform(size=(n_samples, sizes[-1]))
    return net, params, X, Y


_ACT = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "identity": lambda z: z,
}


def numpy_loss(net, params, X, Y):
    """The tutorial's forward pass and MSE loss in plain NumPy (BLAS products)."""
    a = X
    L = len(params) // 2
    for l in range(L):
        z = a @ params[2 * l] + params[2 * l + 1]
        a = _ACT[net.output if l == L - 1 else net.hidden](z)
    return float(np.sum((Y - a) ** 2) / X.shape[0])


def naive_numerical(net, params, X, Y, eps, flat_indices):
    """The tutorial's loop: perturb one entry, two full forward passes, restore."""
    work = [p.copy() for p in params]
    out = np.empty(len(flat_indices))
    for k, flat in enumerate(flat_indices):
        name, index = net.locate(int(flat))
        tensor = work[net.tensor_names.index(name)]
        saved = tensor[index]
        tensor[index] = saved + eps
        e_plus = numpy_loss(net, work, X, Y)
        tensor[index] = saved - eps
        e_minus = numpy_loss(net, work, X, Y)
        tensor[index] = saved
        out[k] = (e_plus - e_minus) / (2 * eps)
    return out


def spread_indices(net, count, seed=0):
    """``count`` flat indices spread over every tensor (proportionally)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(net.n_params, size=min(count, net.n_params), replace=False))


def forward_seconds(net, params, X, repeats=20):
    """Median time of one NumPy forward pass of the batch (the unit of cost)."""
    Y = np.zeros((X.shape[0], net.sizes[-1]))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        numpy_loss(net, params, X, Y)
        times.append(time.perf_counter() - t)
    return float(np.median(times))

"""Networks, data and the peers fastgrad is measured against.

The tutorial's naive loop is the baseline every user knows: for each
parameter, two full NumPy forward passes. Peers are timed on a subset of
parameters where a full run would take minutes, and extrapolated linearly
(every parameter costs the same two forward passes); results say so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numba
import numpy as np

import fastgrad
from fastgrad.bench import blas_threads, openblas_thread_functions, spread_indices  # noqa: F401 (re-exported)


def make_case(sizes, n_samples, hidden="sigmoid", output="sigmoid", loss="mse", seed=0):
    """Return a network, its parameters and a batch, reproducibly."""
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
    """Compute the tutorial's forward pass and MSE loss in plain NumPy (BLAS products)."""
    a = X
    L = len(params) // 2
    for layer in range(L):
        z = a @ params[2 * layer] + params[2 * layer + 1]
        a = _ACT[net.output if layer == L - 1 else net.hidden](z)
    return float(np.sum((Y - a) ** 2) / X.shape[0])


def naive_numerical(net, params, X, Y, eps, flat_indices):
    """Run the tutorial's loop: perturb one entry, two full forward passes, restore."""
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


def forward_seconds(net, params, X, repeats=20):
    """Best time of one NumPy forward pass of the batch, over ``repeats`` (the unit of cost).

    The best, not the median: on a shared machine a multi-threaded BLAS call
    stalls whenever one of its threads is descheduled, and a stalled unit
    would flatter everything measured in it.
    """
    Y = np.zeros((X.shape[0], net.sizes[-1]))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        numpy_loss(net, params, X, Y)
        times.append(time.perf_counter() - t)
    return float(np.min(times))


def unit_indices(net, fraction, seed=0):
    """Flat indices of whole units: about ``fraction`` of every layer's units.

    A unit's parameters are its ``fan_in`` incoming weights and its bias;
    the incremental engine's cost is per unit (the parameters of a unit
    share its lookahead), so a subset that extrapolates fairly must hold
    whole units, the same fraction of every layer (at least one unit each).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for layer in range(net.n_layers):
        fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
        count = max(1, int(round(fraction * fan_out)))
        units = np.sort(rng.choice(fan_out, size=count, replace=False))
        w_off, b_off = int(net.offsets[2 * layer]), int(net.offsets[2 * layer + 1])
        parts.append((w_off + np.arange(fan_in)[:, None] * fan_out + units[None, :]).ravel())
        parts.append(b_off + units)
    return np.sort(np.concatenate(parts)).astype(np.int64)


def forward_flops(net, n_samples):
    """Floating-point operations of one forward pass's matrix products (2 per multiply-add)."""
    return 2.0 * n_samples * sum(a * b for a, b in zip(net.sizes[:-1], net.sizes[1:]))


def engine_flops(net, engine, n_samples, indices=None):
    """Return fastgrad's own estimate of an engine's work for these entries, or None.

    It is the engine's cost model (``engines.unit_cost`` / ``full_param_cost``,
    or the older ``param_costs``), not a count: good for the order of
    magnitude of the GFLOP/s achieved. The incremental engine's cost is per
    unit, so a unit counts in full once any of its parameters is wanted.
    None when the engine has no such model.
    """
    from fastgrad import engines

    want = np.zeros(net.n_params, dtype=bool)
    want[slice(None) if indices is None else np.asarray(indices)] = True
    try:
        if engine == "full" and hasattr(engines, "full_param_cost"):
            return float(engines.full_param_cost(net, n_samples) * np.count_nonzero(want))
        if engine == "incremental" and hasattr(engines, "unit_cost"):
            total = 0.0
            for layer in range(net.n_layers):
                fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
                w_off, b_off = int(net.offsets[2 * layer]), int(net.offsets[2 * layer + 1])
                touched = want[w_off:w_off + fan_in * fan_out].reshape(fan_in, fan_out).any(axis=0)
                touched |= want[b_off:b_off + fan_out]
                total += float(engines.unit_cost(net, layer, n_samples)) * int(np.count_nonzero(touched))
            return total
        if hasattr(engines, "param_costs"):
            return float(np.asarray(engines.param_costs(net, engine, n_samples), dtype=float)[want].sum())
    except (TypeError, ValueError, IndexError):  # the model's signature changed
        return None
    return None


def max_rel_error(numerical, analytic):
    """Worst tensor's ``max |n - a| / max |a|`` (norm-wise relative error)."""
    return max(
        float(np.max(np.abs(n - a)) / max(np.max(np.abs(a)), 1e-300))
        for n, a in zip(numerical, analytic)
    )


@contextlib.contextmanager
def numba_threads(n):
    """Run the body with ``n`` Numba threads (for calls that take no ``threads=``)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@contextlib.contextmanager
def blas_thread_limit(n) -> Iterator[bool]:
    """Limit OpenBLAS to ``n`` threads in the body; yields False (no limit) when not OpenBLAS."""
    funcs = openblas_thread_functions()
    if funcs is None:
        yield False
        return
    get, put = funcs
    previous = int(get())
    put(int(n))
    try:
        yield True
    finally:
        put(previous)

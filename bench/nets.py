"""Networks, data and the peers fastgrad is measured against.

The tutorial's naive loop is the baseline every user knows: for each
parameter, two full NumPy forward passes. Peers are timed on a subset of
parameters where a full run would take minutes, and extrapolated linearly
(every parameter costs the same two forward passes); results say so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import numpy as np

from fastgrad.bench import (  # noqa: F401 (re-exported: one home for the nets, the naive loop and the unit)
    blas_threads,
    forward_seconds,
    make_case,
    naive_numerical,
    numpy_loss,
    openblas_thread_functions,
    spread_indices,
)


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

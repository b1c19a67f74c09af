"""Engines: how the numerical gradient of every parameter is computed.

``"full"`` recomputes the loss with two full forward passes per parameter
(O(N * P) each): the reference, and the tutorial's algorithm compiled.
``"incremental"`` runs the forward pass once and carries each
perturbation's *changes* through the layers after it, without cancellation
(see :mod:`fastgrad._kernels.incremental`).

Both call their kernel block by block, in Python, so that progress can be
reported and Ctrl-C lands within a fraction of a second; block and chunk
boundaries never change the result, because every derivative is computed by
one thread, in a fixed order, into its own slot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from ._kernels import codes
from ._kernels.deltas import N_COEF
from ._kernels.forward import n_units
from ._kernels.incremental import (
    POLY_DEGREE,
    base_state,
    central_diff_incremental,
    output_poly_supported,
    output_polynomials,
)
from ._kernels.numgrad import central_diff_full
from .model import MLP

ENGINES = ("incremental", "full")

#: Floating-point work per kernel call: about a tenth of a second on one core.
BLOCK_FLOPS = 2e8
#: ``prange`` chunks per thread within a block (load balance).
CHUNKS_PER_THREAD = 4

ProgressFn = Callable[[int, int], Any]


def param_costs(net: MLP, engine: str, n_samples: int) -> np.ndarray:
    """Estimated floating-point work of each parameter's derivative (P,)."""
    layout = net.layout
    if engine == "full":
        per_param = 4.0 * n_samples * (net.n_params + n_units(layout))
        return np.full(net.n_params, per_param)
    L = layout.shape[0]
    fan_in = layout[:, codes.FAN_IN].astype(float)
    fan_out = layout[:, codes.FAN_OUT].astype(float)
    per_layer = np.empty(L)
    for l in range(L):
        if l >= L - 2:  # output unit, or the last hidden layer's polynomials
            work = 40.0
        else:
            # lookahead: Horner to layer l+2, then that layer's changes and
            # full change products from l+3 on; plus the unit's lookahead
            # coefficients, shared by its fan_in + 1 parameters
            work = 48.0 * fan_out[l + 2]
            for m in range(l + 3, L):
                work += 4.0 * fan_in[m] * fan_out[m] + 40.0 * fan_out[m]
            work += 8.0 * fan_out[l + 1] * fan_out[l + 2] / (fan_in[l] + 1.0)
        per_layer[l] = work * n_samples
    sizes = [int(np.prod(s)) for s in net.param_shapes]
    return np.repeat(np.repeat(per_layer, 2), sizes)


def _split_by_cost(cum: np.ndarray, lo: int, hi: int, parts: int) -> np.ndarray:
    """Boundaries splitting ``[lo, hi)`` into at most ``parts`` pieces of near-equal cost.

    ``cum`` is the cumulative cost over the whole order.
    """
    base = cum[lo - 1] if lo > 0 else 0.0
    targets = base + (cum[hi - 1] - base) * np.arange(1, parts) / parts
    inner = np.searchsorted(cum, targets, side="left") + 1
    return np.unique(np.concatenate(([lo], np.clip(inner, lo, hi), [hi]))).astype(np.int64)


def _blocks(cum: np.ndarray) -> list[tuple[int, int]]:
    """Split an order into consecutive blocks of about ``BLOCK_FLOPS`` work."""
    cuts = np.searchsorted(cum, np.arange(BLOCK_FLOPS, cum[-1], BLOCK_FLOPS), side="left") + 1
    edges = np.unique(np.concatenate(([0], np.clip(cuts, 0, cum.size), [cum.size])))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def unit_major_order(net: MLP) -> np.ndarray:
    """All flat parameter indices, grouped by unit: ``W_l[:, j]`` then ``b_l[j]``."""
    parts = []
    for l in range(net.n_layers):
        fan_in, fan_out = net.sizes[l], net.sizes[l + 1]
        w_off = int(net.offsets[2 * l])
        b_off = int(net.offsets[2 * l + 1])
        weights = w_off + np.arange(fan_in)[None, :] * fan_out + np.arange(fan_out)[:, None]
        parts.append(np.concatenate([weights, b_off + np.arange(fan_out)[:, None]], axis=1).ravel())
    return np.concatenate(parts).astype(np.int64)


class IncrementalState:
    """What the incremental kernel reuses for every parameter at one point.

    Built once per (parameters, batch): the forward pass, the activations'
    Taylor coefficients, the output residuals and the last hidden layer's
    loss polynomials.
    """

    def __init__(self, net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray,
                 Z: np.ndarray | None = None, A: np.ndarray | None = None) -> None:
        if Z is None or A is None:
            Z, A = net._forward(theta, X)
        N = X.shape[0]
        self.Z, self.A = Z, A
        self.C = np.empty((N_COEF,) + Z.shape, dtype=np.float64)
        self.R = np.empty_like(Y)
        self.ysum = np.empty(N, dtype=np.float64)
        base_state(net.layout, Z, A, Y, self.C, self.R, self.ysum)
        self.CT = np.ascontiguousarray(self.C.transpose(0, 2, 1))
        if output_poly_supported(net.layout, net.loss_code):
            H = net.sizes[-2]
            self.poly = np.empty((H, POLY_DEGREE, N), dtype=np.float64)
            self.w_absmax = np.empty(H, dtype=np.float64)
            output_polynomials(theta, net.layout, net.loss_code, A, self.C, self.R, Y, self.poly, self.w_absmax)
        else:
            self.poly = np.empty((0, POLY_DEGREE, N), dtype=np.float64)
            self.w_absmax = np.empty(0, dtype=np.float64)


def numerical_flat(
    net: MLP,
    theta: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    eps: float,
    engine: str,
    progress: ProgressFn | None = None,
    indices: np.ndarray | None = None,
    Z: np.ndarray | None = None,
    A: np.ndarray | None = None,
) -> np.ndarray:
    """Central differences of the parameters, as one flat float64 vector (P,).

    Parameters
    ----------
    net, theta, X, Y
        Validated network, flat parameters and batch.
    eps : float
        Step.
    engine : {"incremental", "full"}
    progress : callable, optional
        ``progress(done, total)`` after each block.
    indices : ndarray of int64, optional
        Flat indices to differentiate (default: all); other entries of the
        result are NaN.
    Z, A : ndarray, optional
        A forward pass already computed at ``theta`` (incremental engine).
    """
    if indices is None:
        order = unit_major_order(net) if engine == "incremental" else np.arange(net.n_params, dtype=np.int64)
    else:
        order = np.asarray(indices, dtype=np.int64)
        if engine == "incremental":  # group by unit so each unit's lookahead is computed once
            rank = np.empty(net.n_params, dtype=np.int64)
            rank[unit_major_order(net)] = np.arange(net.n_params)
            order = order[np.argsort(rank[order], kind="stable")]
    out = np.full(net.n_params, np.nan, dtype=np.float64)
    total = order.size
    if total == 0:
        return out
    cum = np.cumsum(param_costs(net, engine, X.shape[0])[order])
    parts = numba.get_num_threads() * CHUNKS_PER_THREAD
    if engine == "incremental":
        st = IncrementalState(net, theta, X, Y, Z, A)
    units = n_units(net.layout)
    for lo, hi in _blocks(cum):
        bounds = _split_by_cost(cum, lo, hi, parts)
        if engine == "incremental":
            central_diff_incremental(
                theta, net.layout, net.loss_code, X, Y, st.Z, st.A, st.C, st.CT, st.R, st.ysum,
                st.poly, st.w_absmax, eps, order, bounds, out,
            )
        else:
            central_diff_full(theta, net.layout, net.loss_code, X, Y, eps, order, bounds, units, out)
        if progress is not None:
            progress(hi, total)
    return out

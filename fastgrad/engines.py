"""Engines: how the numerical gradient of every parameter is computed.

``"full"`` recomputes the loss with two full forward passes per parameter
(O(N * P) each): the reference, and the tutorial's algorithm compiled.
``"incremental"`` runs the forward pass once and carries each
perturbation's *changes* through the layers after it, without cancellation:
per unit, the loss change as a polynomial of the unit's pre-activation
change, shared by all the unit's parameters
(:mod:`fastgrad._kernels.series`), and sample by sample where those
polynomials do not apply (:mod:`fastgrad._kernels.incremental`).

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

from ._kernels.deltas import N_COEF
from ._kernels.forward import n_units
from ._kernels.incremental import base_state
from ._kernels.numgrad import central_diff_full
from ._kernels.series import assemble_unit_params, unit_series
from .model import MLP

ENGINES = ("incremental", "full")

#: Floating-point work per kernel call: about a tenth of a second on one core.
BLOCK_FLOPS = 2e8
#: ``prange`` chunks per thread within a block (load balance).
CHUNKS_PER_THREAD = 4

ProgressFn = Callable[[int, int], Any]


def full_param_cost(net: MLP, n_samples: int) -> float:
    """Estimated floating-point work of one derivative with the full engine."""
    return 4.0 * n_samples * (net.n_params + n_units(net.layout))


def unit_cost(net: MLP, layer: int, n_samples: int) -> float:
    """Estimated floating-point work of one unit of ``layer`` with the incremental engine.

    The unit's loss-change series (three coefficient vectors carried through
    every layer after ``layer + 1``: three times that suffix's forward pass,
    plus the compositions) and the assembly of its ``fan_in + 1``
    parameters' central differences (four operations per sample each).
    """
    sizes = net.sizes
    L = net.n_layers
    work = 6.0 * sum(sizes[m] * sizes[m + 1] for m in range(layer + 2, L))
    work += 20.0 * sum(sizes[m + 1] for m in range(layer + 1, L)) + 20.0
    work += 4.0 * (sizes[layer] + 1)
    return work * n_samples


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


class IncrementalState:
    """What the incremental engine reuses for every unit at one point.

    Built once per (parameters, batch): the forward pass, every unit's
    activation Taylor coefficients ``C``, the output residuals ``R`` and
    ``ysum`` (see :func:`fastgrad._kernels.incremental.base_state`).
    """

    def __init__(self, net: MLP, X: np.ndarray, Y: np.ndarray, Z: np.ndarray, A: np.ndarray) -> None:
        N = X.shape[0]
        self.Z, self.A = Z, A
        self.C = np.empty((N_COEF,) + Z.shape, dtype=np.float64)
        self.R = np.empty_like(Y)
        self.ysum = np.empty(N, dtype=np.float64)
        base_state(net.layout, Z, A, Y, self.C, self.R, self.ysum)


def _wanted_units(net: MLP, want: np.ndarray, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Units of ``layer`` with a wanted parameter, and how many each has."""
    fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
    w_off, b_off = int(net.offsets[2 * layer]), int(net.offsets[2 * layer + 1])
    per_unit = want[w_off:w_off + fan_in * fan_out].reshape(fan_in, fan_out).sum(axis=0)
    per_unit += want[b_off:b_off + fan_out]
    units = np.flatnonzero(per_unit).astype(np.int64)
    return units, per_unit[units]


def _incremental(
    net: MLP, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, eps: float,
    want: np.ndarray, progress: ProgressFn | None, Z: np.ndarray, A: np.ndarray,
) -> np.ndarray:
    """Run the incremental engine over the wanted entries (see :mod:`fastgrad._kernels.series`)."""
    total = int(np.count_nonzero(want))
    # every wanted entry is written below; the others stay NaN
    out = np.empty(net.n_params) if total == net.n_params else np.full(net.n_params, np.nan)
    st = IncrementalState(net, X, Y, Z, A)
    N = X.shape[0]
    min_units = numba.get_num_threads() * CHUNKS_PER_THREAD
    done = 0
    for layer in range(net.n_layers):
        units, counts = _wanted_units(net, want, layer)
        block = max(min_units, int(BLOCK_FLOPS // unit_cost(net, layer, N)))
        for start in range(0, units.size, block):
            chunk = units[start:start + block]
            E1 = np.empty((N, chunk.size), dtype=np.float64)
            E3 = np.empty_like(E1)
            lim = np.empty_like(E1)
            unit_series(theta, net.layout, net.loss_code, st.Z, st.A, st.C, st.R, Y, st.ysum, layer, chunk,
                        E1, E3, lim)
            assemble_unit_params(theta, net.layout, net.loss_code, X, Y, st.Z, st.A, st.C, st.R, st.ysum,
                                 layer, chunk, E1, E3, lim, eps, want, out)
            done += int(counts[start:start + block].sum())
            if progress is not None:
                progress(done, total)
    return out


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
    if engine == "incremental":
        want = np.ones(net.n_params, dtype=np.bool_)
        if indices is not None:
            want[:] = False
            want[np.asarray(indices, dtype=np.int64)] = True
        if Z is None or A is None:
            Z, A = net._forward(theta, X)
        return _incremental(net, theta, X, Y, eps, want, progress, Z, A)
    order = np.arange(net.n_params, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    out = np.full(net.n_params, np.nan, dtype=np.float64)
    total = order.size
    if total == 0:
        return out
    cum = np.cumsum(np.full(order.size, full_param_cost(net, X.shape[0])))
    parts = numba.get_num_threads() * CHUNKS_PER_THREAD
    units = n_units(net.layout)
    for lo, hi in _blocks(cum):
        bounds = _split_by_cost(cum, lo, hi, parts)
        central_diff_full(theta, net.layout, net.loss_code, X, Y, eps, order, bounds, units, out)
        if progress is not None:
            progress(hi, total)
    return out

"""Forward pass over the flat parameter vector ``theta``."""

import numpy as np
from numba import prange

from ._jit import jit
from .activations import activate
from .codes import ACT, FAN_OUT, SOFTMAX, U_OFF
from .dense import layer_geometry
from .tiles import TILE_COLUMNS, tile_1x8, tile_4x8

#: Samples that share one pass over a weight row where passes are tiled (the full engine, the complex step).
SAMPLE_TILE = 8
#: Samples of one task of :func:`forward_batch`: they share each weight panel's trip through the cache.
BATCH_TILE = 16


#: Inputs per block of a layer's products: a block's weight panel, ``TILE_COLUMNS`` units wide, is 16 KB and
#: stays in L1 while every tile of samples runs over it (the running sums wait in ``Z`` between blocks).
INPUT_BLOCK = 256
#: Samples of a register tile (:mod:`.tiles`: four rows of factors, ``TILE_COLUMNS`` units).
TILE_SAMPLES = 4


@jit(inline=True)
def dense_rows(theta, layout, l, src, lo, hi, Z_out):
    """Pre-activations of layer ``l`` for samples ``lo..hi-1`` into ``Z_out`` (inputs: ``src``, see below).

    ``src`` is ``X`` for layer 0, else the activations ``A`` (the layer's
    inputs at their columns). Every pre-activation is ``b_j + sum_i a_i
    W[i, j]``, the bias first, then every input in order (an exact zero input
    adds a zero: the sum is the same, but for the sign of an all-zero sum),
    whatever the samples and units that share its tile: so a row does not
    depend on ``lo``, ``hi`` or the thread that computes it.
    """
    fan_in, fan_out, w_off, b_off, u_off, prev = layer_geometry(layout, l)
    col = 0 if l == 0 else prev
    for n in range(lo, hi):
        for j in range(fan_out):
            Z_out[n, u_off + j] = theta[b_off + j]
    wide = fan_out - fan_out % TILE_COLUMNS
    quads = hi - (hi - lo) % TILE_SAMPLES
    for i_lo in range(0, fan_in, INPUT_BLOCK):
        i_hi = min(fan_in, i_lo + INPUT_BLOCK)
        for j in range(0, wide, TILE_COLUMNS):
            for n in range(lo, quads, TILE_SAMPLES):
                tile_4x8(theta, w_off + j, fan_out, i_lo, i_hi, src[n], src[n + 1], src[n + 2], src[n + 3], col,
                         Z_out[n], Z_out[n + 1], Z_out[n + 2], Z_out[n + 3], u_off + j)
            for n in range(quads, hi):
                tile_1x8(theta, w_off + j, fan_out, i_lo, i_hi, src[n], col, Z_out[n], u_off + j)
        for j in range(wide, fan_out):  # the units left over from tiles of eight
            for n in range(lo, hi):
                acc = Z_out[n, u_off + j]
                for i in range(i_lo, i_hi):
                    acc += src[n, col + i] * theta[w_off + i * fan_out + j]
                Z_out[n, u_off + j] = acc


@jit()
def forward_layers(theta, layout, X, lo, hi, first, softmax, Z_out, A_out):
    """Forward pass of samples ``lo..hi-1`` through layers ``first`` and on (register tiles, :func:`dense_rows`).

    Parameters
    ----------
    theta : ndarray of float64, shape (P,)
        Flat parameters ``[W1.ravel(), b1, W2.ravel(), b2, ...]``.
    layout : ndarray of int64, shape (L, N_COLS)
        Layer table (see :mod:`fastgrad._kernels.codes`).
    X : ndarray of float64, shape (N, D)
        Read only when ``first`` is 0.
    lo, hi : int
        The samples.
    first : int
        The first layer computed; the rows already hold every layer before
        it.
    softmax : bool
        Compute a softmax layer's activations (a cross-entropy loss reads
        only its pre-activations, and can do without).
    Z_out, A_out : ndarray of float64, shape (N, U)
        Written at rows ``lo..hi-1``, layers ``first`` and on.

    Notes
    -----
    Every pre-activation is summed in one fixed order (bias, then inputs in
    order), so a row does not depend on which samples share its pass.
    """
    for l in range(first, layout.shape[0]):
        u_off = layout[l, U_OFF]
        if l == 0:
            dense_rows(theta, layout, l, X, lo, hi, Z_out)
        else:
            dense_rows(theta, layout, l, A_out, lo, hi, Z_out)
        if softmax or layout[l, ACT] != SOFTMAX:
            for n in range(lo, hi):
                activate(Z_out[n], A_out[n], u_off, layout[l, FAN_OUT], layout[l, ACT])


@jit(inline=True)
def forward_rows(theta, layout, X, lo, hi, Z_out, A_out):
    """Forward pass of samples ``lo..hi-1``, every layer (:func:`forward_layers` from layer 0)."""
    forward_layers(theta, layout, X, lo, hi, 0, True, Z_out, A_out)


@jit(parallel=True)
def forward_batch(theta, layout, X, Z_out, A_out):
    """Forward pass of a batch, in parallel over tiles of ``BATCH_TILE`` samples.

    Parameters
    ----------
    theta, layout
        As in :func:`forward_layers`.
    X : ndarray of float64, shape (N, D)
    Z_out, A_out : ndarray of float64, shape (N, U)
        Written in place: every layer's pre-activations and activations.

    Notes
    -----
    Bitwise the same row by row whatever the tiling (see
    :func:`forward_layers`), so for any thread count.
    """
    N = X.shape[0]
    # a task's samples share each weight panel's trip through the cache (a row's sums do not depend on the tiling)
    n_tiles = (N + BATCH_TILE - 1) // BATCH_TILE
    for t in prange(n_tiles):
        lo = t * BATCH_TILE
        forward_rows(theta, layout, X, lo, min(N, lo + BATCH_TILE), Z_out, A_out)


def n_units(layout):
    """Total width ``U`` of a per-sample activation row."""
    return int(layout[-1, U_OFF] + layout[-1, FAN_OUT])


def empty_activations(layout, n_samples):
    """Allocate ``(Z, A)`` buffers of shape (n_samples, U)."""
    shape = (n_samples, n_units(layout))
    return np.empty(shape, dtype=np.float64), np.empty(shape, dtype=np.float64)

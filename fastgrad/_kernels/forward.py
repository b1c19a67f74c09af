"""Forward pass over the flat parameter vector ``theta``."""

import numpy as np
from numba import prange

from ._jit import jit
from .activations import activate
from .codes import ACT, FAN_OUT, SOFTMAX, U_OFF
from .dense import layer_geometry
from .simd import add4, broadcast4, load4, mul4, store4

#: Samples that share one pass over a weight row where passes are tiled (the full engine, the complex step).
SAMPLE_TILE = 8
#: Samples of one task of :func:`forward_batch`: they share each weight panel's trip through the cache.
BATCH_TILE = 16


#: Inputs per block of a layer's products: a block's weight panel, ``TILE_UNITS`` units wide, is 16 KB and
#: stays in L1 while every tile of samples runs over it (the running sums wait in ``Z`` between blocks).
INPUT_BLOCK = 256
#: Units of a register tile (two vec4 lanes), and its samples.
TILE_UNITS = 8
TILE_SAMPLES = 4


@jit(inline=True)
def _tile_4x8(theta, x0, x1, x2, x3, col, i_lo, i_hi, fan_out, w_off, j, z0, z1, z2, z3, zj):
    """Add inputs ``i_lo..i_hi-1`` of four samples (rows ``x0..x3``) to their units ``j..j+7`` (``z0..z3[zj:]``).

    The 32 running sums stay in eight vec4 registers for the whole block;
    each is the scalar loop's sum, term by term, in the same order.
    """
    c00 = load4(z0, zj)
    c01 = load4(z0, zj + 4)
    c10 = load4(z1, zj)
    c11 = load4(z1, zj + 4)
    c20 = load4(z2, zj)
    c21 = load4(z2, zj + 4)
    c30 = load4(z3, zj)
    c31 = load4(z3, zj + 4)
    for i in range(i_lo, i_hi):
        w = w_off + i * fan_out + j
        w0 = load4(theta, w)
        w1 = load4(theta, w + 4)
        a = broadcast4(x0, col + i)
        c00 = add4(c00, mul4(a, w0))
        c01 = add4(c01, mul4(a, w1))
        a = broadcast4(x1, col + i)
        c10 = add4(c10, mul4(a, w0))
        c11 = add4(c11, mul4(a, w1))
        a = broadcast4(x2, col + i)
        c20 = add4(c20, mul4(a, w0))
        c21 = add4(c21, mul4(a, w1))
        a = broadcast4(x3, col + i)
        c30 = add4(c30, mul4(a, w0))
        c31 = add4(c31, mul4(a, w1))
    store4(z0, zj, c00)
    store4(z0, zj + 4, c01)
    store4(z1, zj, c10)
    store4(z1, zj + 4, c11)
    store4(z2, zj, c20)
    store4(z2, zj + 4, c21)
    store4(z3, zj, c30)
    store4(z3, zj + 4, c31)


@jit(inline=True)
def _tile_1x8(theta, x, col, i_lo, i_hi, fan_out, w_off, j, z, zj):
    """:func:`_tile_4x8` for one sample (the samples left over from tiles of four)."""
    c0 = load4(z, zj)
    c1 = load4(z, zj + 4)
    for i in range(i_lo, i_hi):
        w = w_off + i * fan_out + j
        a = broadcast4(x, col + i)
        c0 = add4(c0, mul4(a, load4(theta, w)))
        c1 = add4(c1, mul4(a, load4(theta, w + 4)))
    store4(z, zj, c0)
    store4(z, zj + 4, c1)


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
    wide = fan_out - fan_out % TILE_UNITS
    quads = hi - (hi - lo) % TILE_SAMPLES
    for i_lo in range(0, fan_in, INPUT_BLOCK):
        i_hi = min(fan_in, i_lo + INPUT_BLOCK)
        for j in range(0, wide, TILE_UNITS):
            for n in range(lo, quads, TILE_SAMPLES):
                _tile_4x8(theta, src[n], src[n + 1], src[n + 2], src[n + 3], col, i_lo, i_hi, fan_out, w_off, j,
                          Z_out[n], Z_out[n + 1], Z_out[n + 2], Z_out[n + 3], u_off + j)
            for n in range(quads, hi):
                _tile_1x8(theta, src[n], col, i_lo, i_hi, fan_out, w_off, j, Z_out[n], u_off + j)
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

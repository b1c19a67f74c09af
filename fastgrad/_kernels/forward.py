"""Forward pass over the flat parameter vector ``theta``."""

import numpy as np
from numba import prange

from ._jit import jit
from .activations import activate
from .codes import ACT, FAN_OUT, SOFTMAX, U_OFF
from .dense import add_scaled, layer_geometry

#: Samples that share one pass over a weight row in :func:`forward_batch`.
SAMPLE_TILE = 8


@jit()
def forward_layers(theta, layout, X, lo, hi, first, softmax, Z_out, A_out):
    """Forward pass of samples ``lo..hi-1`` through layers ``first`` and on, reading each weight row once.

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
    order, exact zero inputs skipped: they add nothing, e.g. dead relu
    units), so a row does not depend on which samples share its pass; the
    loops run inputs outside samples, so that a wide layer's ``W`` is
    streamed from memory once per group of samples, not once per sample.
    """
    for l in range(first, layout.shape[0]):
        fan_in, fan_out, w_off, b_off, u_off, prev = layer_geometry(layout, l)
        for n in range(lo, hi):
            for j in range(fan_out):
                Z_out[n, u_off + j] = theta[b_off + j]
        for i in range(fan_in):
            w = theta[w_off + i * fan_out:w_off + (i + 1) * fan_out]
            for n in range(lo, hi):
                ai = X[n, i] if l == 0 else A_out[n, prev + i]
                if ai == 0.0:
                    continue
                add_scaled(Z_out[n, u_off:u_off + fan_out], ai, w)
        if softmax or layout[l, ACT] != SOFTMAX:
            for n in range(lo, hi):
                activate(Z_out[n], A_out[n], u_off, fan_out, layout[l, ACT])


@jit(inline=True)
def forward_rows(theta, layout, X, lo, hi, Z_out, A_out):
    """Forward pass of samples ``lo..hi-1``, every layer (:func:`forward_layers` from layer 0)."""
    forward_layers(theta, layout, X, lo, hi, 0, True, Z_out, A_out)


@jit(parallel=True)
def forward_batch(theta, layout, X, Z_out, A_out):
    """Forward pass of a batch, in parallel over tiles of ``SAMPLE_TILE`` samples.

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
    n_tiles = (N + SAMPLE_TILE - 1) // SAMPLE_TILE
    for tile in prange(n_tiles):
        lo = tile * SAMPLE_TILE
        forward_rows(theta, layout, X, lo, min(N, lo + SAMPLE_TILE), Z_out, A_out)


def n_units(layout):
    """Total width ``U`` of a per-sample activation row."""
    return int(layout[-1, U_OFF] + layout[-1, FAN_OUT])


def empty_activations(layout, n_samples):
    """Allocate ``(Z, A)`` buffers of shape (n_samples, U)."""
    shape = (n_samples, n_units(layout))
    return np.empty(shape, dtype=np.float64), np.empty(shape, dtype=np.float64)

"""The assembly's products: ``sum_n p_rn e_nb`` for a tile of rows and every unit, in register tiles.

The incremental engine's assembly (:mod:`.assemble`) forms, for every row
``i`` of a layer's ``W`` and every unit ``b`` of a block, sums over the
samples such as ``sum_n a_ni e1_nb``: a matrix product of the shape of
backprop's weight gradient, which is most of a check's work on a
one-hidden-layer net. Summed one row at a time, each ``+=`` goes to memory
and the loop runs at the speed of its stores; here a tile of
:data:`ROW_TILE` rows by :data:`TILE_COLUMNS` units keeps its sums in vec4
registers (:mod:`.tiles`) across all the samples.

Each sum is ``0 + p_r0 e_0b + p_r1 e_1b + ...``, samples in order, the row's
exact zeros skipped: the order of the scalar loop this replaces, so the
result is bit for bit the same, whatever the tile a row or unit falls in.
The tile adds a zero input's products instead of skipping them, which
changes no bit while the unit's coefficients are finite (a sum plus ``+-0``
is the sum); a unit whose coefficients hold a NaN or an infinity in some
sample (``0 * inf`` would be NaN where the skip gives a number) goes the
scalar way, with the skip.
"""

import math

import numpy as np

from ._jit import jit
from .tiles import TILE_COLUMNS, tile_4x8

#: Rows of a register tile (the rows of ``W`` that share one pass over the units' coefficients).
ROW_TILE = 4


@jit()
def finite_unit_tiles(E1, E3, E1abs, budget):
    """Per tile of :data:`TILE_COLUMNS` units (the last one partial): True where every coefficient it reads is finite.

    ``E1abs`` is read only with ``budget`` (the assembly reads it only then).
    """
    N, B = E1.shape
    out = np.ones((B + TILE_COLUMNS - 1) // TILE_COLUMNS, dtype=np.bool_)
    for n in range(N):
        for b in range(B):
            if not (math.isfinite(E1[n, b]) and math.isfinite(E3[n, b])
                    and (not budget or math.isfinite(E1abs[n, b]))):
                out[b // TILE_COLUMNS] = False
    return out


@jit(inline=True)
def _skipping(P, a, E, b_lo, b_hi, out):
    """``out[r, b] = sum_n P[r, n] * E[n, b]`` for units ``b_lo..b_hi-1``, samples in order, skipping ``a[r, n] == 0``.

    (The scalar loop the tiles replace, for units with a non-finite coefficient and the units left over.)
    """
    N = E.shape[0]
    for r in range(ROW_TILE):
        for b in range(b_lo, b_hi):
            acc = 0.0
            for n in range(N):
                if a[r, n] == 0.0:
                    continue
                acc += P[r, n] * E[n, b]
            out[r, b] = acc


@jit(inline=True)
def row_products(P, a, E, finite, out):
    """``out[r, b] = sum_n P[r, n] * E[n, b]`` for ``r < ROW_TILE`` and every unit ``b``.

    Parameters
    ----------
    P : ndarray of float64, shape (ROW_TILE, N)
        The rows' factors (``a``, ``a^3`` or ``|a|`` of each sample).
    a : ndarray of float64, shape (ROW_TILE, N)
        The rows' inputs: a sample whose input is an exact zero adds nothing.
    E : ndarray of float64, shape (N, B), C-contiguous
        The units' coefficients.
    finite : ndarray of bool
        :func:`finite_unit_tiles` of the coefficients.
    out : ndarray of float64, shape (ROW_TILE, B)
        Written.
    """
    N, B = E.shape
    wide = B - B % TILE_COLUMNS
    flat = E.reshape(N * B)
    for b in range(0, wide, TILE_COLUMNS):
        if finite[b // TILE_COLUMNS]:
            out[:, b:b + TILE_COLUMNS] = 0.0
            tile_4x8(flat, b, B, 0, N, P[0], P[1], P[2], P[3], 0, out[0], out[1], out[2], out[3], b)
        else:
            _skipping(P, a, E, b, b + TILE_COLUMNS, out)
    _skipping(P, a, E, wide, B, out)

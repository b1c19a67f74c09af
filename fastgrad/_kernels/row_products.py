"""The assembly's products: ``sum_n p_rn e_nb`` for a tile of rows and every unit, in register tiles.

The incremental engine's assembly (:mod:`.assemble`) forms, for every row
``i`` of a layer's ``W`` and every unit ``b`` of a block, sums over the
samples such as ``sum_n a_ni e1_nb``: a matrix product of the shape of
backprop's weight gradient, which is most of a check's work on a
one-hidden-layer net. Summed one row at a time, each ``+=`` goes to memory
and the loop runs at the speed of its stores; here a tile of
:data:`ROW_TILE` rows by :data:`UNIT_TILE` units keeps its sums in vec4
registers (:mod:`.simd`) across all the samples.

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
from .simd import add4, broadcast4, load4, mul4, splat4, store4

#: Rows of a register tile (the rows of ``W`` that share one pass over the units' coefficients).
ROW_TILE = 4
#: Units of a register tile: two vec4 lanes.
UNIT_TILE = 8


@jit()
def finite_unit_tiles(E1, E3, E1abs, budget):
    """Per tile of :data:`UNIT_TILE` units (the last one partial): True where every coefficient it reads is finite.

    ``E1abs`` is read only with ``budget`` (the assembly reads it only then).
    """
    N, B = E1.shape
    out = np.ones((B + UNIT_TILE - 1) // UNIT_TILE, dtype=np.bool_)
    for n in range(N):
        for b in range(B):
            if not (math.isfinite(E1[n, b]) and math.isfinite(E3[n, b])
                    and (not budget or math.isfinite(E1abs[n, b]))):
                out[b // UNIT_TILE] = False
    return out


@jit(inline=True)
def _tile(P, E, b, out):
    """``out[r, b:b+8] = sum_n P[r, n] * E[n, b:b+8]`` for the ``ROW_TILE`` rows, every term added, in order."""
    zero = splat4(0.0)
    c00 = zero
    c01 = zero
    c10 = zero
    c11 = zero
    c20 = zero
    c21 = zero
    c30 = zero
    c31 = zero
    p0 = P[0]
    p1 = P[1]
    p2 = P[2]
    p3 = P[3]
    for n in range(E.shape[0]):
        e = E[n]
        e0 = load4(e, b)
        e1 = load4(e, b + 4)
        p = broadcast4(p0, n)
        c00 = add4(c00, mul4(p, e0))
        c01 = add4(c01, mul4(p, e1))
        p = broadcast4(p1, n)
        c10 = add4(c10, mul4(p, e0))
        c11 = add4(c11, mul4(p, e1))
        p = broadcast4(p2, n)
        c20 = add4(c20, mul4(p, e0))
        c21 = add4(c21, mul4(p, e1))
        p = broadcast4(p3, n)
        c30 = add4(c30, mul4(p, e0))
        c31 = add4(c31, mul4(p, e1))
    store4(out[0], b, c00)
    store4(out[0], b + 4, c01)
    store4(out[1], b, c10)
    store4(out[1], b + 4, c11)
    store4(out[2], b, c20)
    store4(out[2], b + 4, c21)
    store4(out[3], b, c30)
    store4(out[3], b + 4, c31)


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
    B = E.shape[1]
    wide = B - B % UNIT_TILE
    for b in range(0, wide, UNIT_TILE):
        if finite[b // UNIT_TILE]:
            _tile(P, E, b, out)
        else:
            _skipping(P, a, E, b, b + UNIT_TILE, out)
    _skipping(P, a, E, wide, B, out)

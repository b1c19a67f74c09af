"""The register tile every dense product runs on: rows of factors times eight columns, summed in order.

``c_r[c:c+8] += sum_k p_r[p + k] * M[m + k * stride : m + k * stride + 8]``
for four rows ``r`` (:func:`tile_4x8`) or one (:func:`tile_1x8`), ``k``
ascending: the forward pass (factors: a sample's inputs, ``M``: a layer's
``W``) and the assembly (factors: a row's inputs over the samples, ``M``: the
units' coefficients) both are this. The running sums stay in vec4
registers (:mod:`.simd`) over the whole range of ``k``, and each is the
scalar loop's sum, term by term in the same order: a tile changes no bit.
"""

from ._jit import jit
from .simd import add4, broadcast4, load4, mul4, store4

#: Columns of a tile: two vec4 lanes.
TILE_COLUMNS = 8


@jit(inline=True)
def tile_4x8(M, m, stride, k_lo, k_hi, p0, p1, p2, p3, p, c0, c1, c2, c3, c):
    """Add ``sum_k p_r[p + k] M[m + k stride + (0..7)]`` to ``c_r[c + (0..7)]`` for the four rows ``r``.

    ``M``, ``p0..p3`` and ``c0..c3`` are contiguous 1-D float64 arrays.
    """
    s00 = load4(c0, c)
    s01 = load4(c0, c + 4)
    s10 = load4(c1, c)
    s11 = load4(c1, c + 4)
    s20 = load4(c2, c)
    s21 = load4(c2, c + 4)
    s30 = load4(c3, c)
    s31 = load4(c3, c + 4)
    for k in range(k_lo, k_hi):
        at = m + k * stride
        w0 = load4(M, at)
        w1 = load4(M, at + 4)
        a = broadcast4(p0, p + k)
        s00 = add4(s00, mul4(a, w0))
        s01 = add4(s01, mul4(a, w1))
        a = broadcast4(p1, p + k)
        s10 = add4(s10, mul4(a, w0))
        s11 = add4(s11, mul4(a, w1))
        a = broadcast4(p2, p + k)
        s20 = add4(s20, mul4(a, w0))
        s21 = add4(s21, mul4(a, w1))
        a = broadcast4(p3, p + k)
        s30 = add4(s30, mul4(a, w0))
        s31 = add4(s31, mul4(a, w1))
    store4(c0, c, s00)
    store4(c0, c + 4, s01)
    store4(c1, c, s10)
    store4(c1, c + 4, s11)
    store4(c2, c, s20)
    store4(c2, c + 4, s21)
    store4(c3, c, s30)
    store4(c3, c + 4, s31)


@jit(inline=True)
def tile_1x8(M, m, stride, k_lo, k_hi, p0, p, c0, c):
    """:func:`tile_4x8` for one row (the rows left over from tiles of four)."""
    s0 = load4(c0, c)
    s1 = load4(c0, c + 4)
    for k in range(k_lo, k_hi):
        at = m + k * stride
        a = broadcast4(p0, p + k)
        s0 = add4(s0, mul4(a, load4(M, at)))
        s1 = add4(s1, mul4(a, load4(M, at + 4)))
    store4(c0, c, s0)
    store4(c0, c + 4, s1)

"""The dense layer's loops, one owner each: a layer's geometry, and adding one input's share to a layer's sums.

Every pass over the network (forward, backprop, the complex step, the
incremental engine's change propagation and series) adds, for each input
``i`` of a layer, ``g_i`` times row ``i`` of ``W`` to the layer's running
sums: :func:`add_scaled`. Each sum gets its terms in the same order
wherever it is computed, so passes that must agree bit for bit do.
The incremental engines' per-unit kernels, whose time is these loops,
add eight rows a pass (:func:`add_rows_series`, :func:`add_rows_pair`,
:func:`add_rows_abs`): the same terms in the same order, fewer stores.
"""

from ._jit import jit
from .codes import B_OFF, FAN_IN, FAN_OUT, U_OFF, W_OFF


@jit(inline=True)
def layer_geometry(layout, l):
    """``(fan_in, fan_out, w_off, b_off, u_off, prev)`` of layer ``l``.

    ``prev`` is the offset of the layer's inputs in a per-sample activation
    row (0 for the first layer, whose inputs are ``X``).
    """
    prev = layout[l - 1, U_OFF] if l > 0 else 0
    return layout[l, FAN_IN], layout[l, FAN_OUT], layout[l, W_OFF], layout[l, B_OFF], layout[l, U_OFF], prev


@jit(inline=True)
def add_scaled(dst, g, w):
    """``dst[k] += g * w[k]`` for every ``k < len(w)``: one input's share of a layer's sums."""
    for k in range(w.shape[0]):
        dst[k] += g * w[k]


@jit(inline=True)
def add_scaled_pair(dst_p, dst_m, g_p, g_m, w):
    """:func:`add_scaled` for the + and - perturbations at once (one pass over ``w``, the direct path's loop)."""
    for k in range(w.shape[0]):
        wk = w[k]
        dst_p[k] += g_p * wk
        dst_m[k] += g_m * wk


@jit(inline=True)
def add_scaled_abs(dst, g, w):
    """``dst[k] += g * |w[k]|``: :func:`add_scaled` for the absolute-value chains of the rounding budgets."""
    for k in range(w.shape[0]):
        dst[k] += g * abs(w[k])


@jit(inline=True)
def set_scaled(dst, g, w):
    """``dst[k] = g * w[k]`` for every ``k < len(w)``: a rank-1 change starting a layer's sums."""
    for k in range(w.shape[0]):
        dst[k] = g * w[k]


@jit(inline=True)
def set_scaled_abs(dst, g, w):
    """``dst[k] = g * |w[k]|``: :func:`set_scaled` for the absolute-value chains."""
    for k in range(w.shape[0]):
        dst[k] = g * abs(w[k])


@jit(inline=True)
def add_scaled_series(s1, s2, s3, sa, a1, a2, a3, aa, w):
    """:func:`add_scaled` of three series coefficients and (:func:`add_scaled_abs`) their absolute twin, fused.

    One pass over ``w`` instead of four: the incremental engine's series carry all four through every later
    layer, and this loop is most of their cost (each ``dst[k]`` gets the same operation as in the four loops).
    """
    for k in range(w.shape[0]):
        wk = w[k]
        s1[k] += a1 * wk
        s2[k] += a2 * wk
        s3[k] += a3 * wk
        sa[k] += aa * abs(wk)


# ------------------------------------------------------------------ jammed rows
# The loops above load and store every ``dst[k]`` once per input row: one store per multiply-add, so a
# layer's change costs as many stores as flops and runs at about a third of np.dot's rate. The kernels
# below take JAM input rows in one pass over the outputs (unroll-and-jam over the inputs) and add their
# terms to each output one after the other, left to right:
#
#     dst[q] = (((dst[q] + g0 * w0[q]) + g1 * w1[q]) + ...) + g7 * w7[q]
#
# which is, rounding for rounding, the sequence of the JAM calls of the loops above (no fastmath: each
# product and each sum is rounded on its own, and nothing is contracted into an FMA). So every sum gets
# its terms in the same order and every result is bitwise the same, with an eighth of the stores. The
# rows are given as a list (``rows[:count]``, increasing): a caller leaves out the rows it skips, and
# the others are added in the same order as before. Numba's loop vectorizer (LLVM's SLP vectorizer is
# off) vectorizes each pass over the outputs: a simple loop over contiguous slices.

#: Input rows one jammed pass adds (the remainder of ``count`` goes one row at a time).
JAM = 8


@jit(inline=True)
def _row(theta, w_off, fan_out, k):
    """Row ``k`` of the weight matrix at ``theta[w_off:]`` with ``fan_out`` columns."""
    return theta[w_off + k * fan_out:w_off + (k + 1) * fan_out]


@jit(inline=True)
def _jam_series(s1, s2, s3, sa, d1, d2, d3, da, rows, c, theta, w_off, fan_out):
    """:func:`add_scaled_series` of rows ``rows[c:c + 8]`` in one pass (see the comment above)."""
    k0, k1, k2, k3, k4, k5, k6, k7 = rows[c], rows[c + 1], rows[c + 2], rows[c + 3], rows[c + 4], rows[c + 5], \
        rows[c + 6], rows[c + 7]
    w0, w1, w2, w3 = _row(theta, w_off, fan_out, k0), _row(theta, w_off, fan_out, k1), \
        _row(theta, w_off, fan_out, k2), _row(theta, w_off, fan_out, k3)
    w4, w5, w6, w7 = _row(theta, w_off, fan_out, k4), _row(theta, w_off, fan_out, k5), \
        _row(theta, w_off, fan_out, k6), _row(theta, w_off, fan_out, k7)
    b0, b1, b2, b3, b4, b5, b6, b7 = d1[k0], d1[k1], d1[k2], d1[k3], d1[k4], d1[k5], d1[k6], d1[k7]
    c0, c1, c2, c3, c4, c5, c6, c7 = d2[k0], d2[k1], d2[k2], d2[k3], d2[k4], d2[k5], d2[k6], d2[k7]
    e0, e1, e2, e3, e4, e5, e6, e7 = d3[k0], d3[k1], d3[k2], d3[k3], d3[k4], d3[k5], d3[k6], d3[k7]
    f0, f1, f2, f3, f4, f5, f6, f7 = da[k0], da[k1], da[k2], da[k3], da[k4], da[k5], da[k6], da[k7]
    t1, t2, t3, ta = s1[:fan_out], s2[:fan_out], s3[:fan_out], sa[:fan_out]
    for q in range(fan_out):
        x0, x1, x2, x3, x4, x5, x6, x7 = w0[q], w1[q], w2[q], w3[q], w4[q], w5[q], w6[q], w7[q]
        t1[q] = (((((((t1[q] + b0 * x0) + b1 * x1) + b2 * x2) + b3 * x3) + b4 * x4) + b5 * x5) + b6 * x6) + b7 * x7
        t2[q] = (((((((t2[q] + c0 * x0) + c1 * x1) + c2 * x2) + c3 * x3) + c4 * x4) + c5 * x5) + c6 * x6) + c7 * x7
        t3[q] = (((((((t3[q] + e0 * x0) + e1 * x1) + e2 * x2) + e3 * x3) + e4 * x4) + e5 * x5) + e6 * x6) + e7 * x7
        ta[q] = (((((((ta[q] + f0 * abs(x0)) + f1 * abs(x1)) + f2 * abs(x2)) + f3 * abs(x3)) + f4 * abs(x4))
                  + f5 * abs(x5)) + f6 * abs(x6)) + f7 * abs(x7)


@jit(inline=True)
def add_rows_series(s1, s2, s3, sa, d1, d2, d3, da, rows, count, theta, w_off, fan_out):
    """:func:`add_scaled_series` of ``d1[k]``, ``d2[k]``, ``d3[k]``, ``da[k]`` and row ``k``, ``k`` in ``rows[:count]``.

    Bitwise the same as those calls in that order (see the comment above
    :data:`JAM`); the weight matrix is ``theta[w_off:]``, ``fan_out`` columns.
    """
    c = 0
    while c + JAM <= count:
        _jam_series(s1, s2, s3, sa, d1, d2, d3, da, rows, c, theta, w_off, fan_out)
        c += JAM
    while c < count:
        k = rows[c]
        add_scaled_series(s1, s2, s3, sa, d1[k], d2[k], d3[k], da[k], _row(theta, w_off, fan_out, k))
        c += 1


@jit(inline=True)
def _jam_pair(dst_p, dst_m, g_p, g_m, rows, c, theta, w_off, fan_out):
    """:func:`add_scaled_pair` of rows ``rows[c:c + 8]`` in one pass."""
    k0, k1, k2, k3, k4, k5, k6, k7 = rows[c], rows[c + 1], rows[c + 2], rows[c + 3], rows[c + 4], rows[c + 5], \
        rows[c + 6], rows[c + 7]
    w0, w1, w2, w3 = _row(theta, w_off, fan_out, k0), _row(theta, w_off, fan_out, k1), \
        _row(theta, w_off, fan_out, k2), _row(theta, w_off, fan_out, k3)
    w4, w5, w6, w7 = _row(theta, w_off, fan_out, k4), _row(theta, w_off, fan_out, k5), \
        _row(theta, w_off, fan_out, k6), _row(theta, w_off, fan_out, k7)
    b0, b1, b2, b3, b4, b5, b6, b7 = g_p[k0], g_p[k1], g_p[k2], g_p[k3], g_p[k4], g_p[k5], g_p[k6], g_p[k7]
    c0, c1, c2, c3, c4, c5, c6, c7 = g_m[k0], g_m[k1], g_m[k2], g_m[k3], g_m[k4], g_m[k5], g_m[k6], g_m[k7]
    tp, tm = dst_p[:fan_out], dst_m[:fan_out]
    for q in range(fan_out):
        x0, x1, x2, x3, x4, x5, x6, x7 = w0[q], w1[q], w2[q], w3[q], w4[q], w5[q], w6[q], w7[q]
        tp[q] = (((((((tp[q] + b0 * x0) + b1 * x1) + b2 * x2) + b3 * x3) + b4 * x4) + b5 * x5) + b6 * x6) + b7 * x7
        tm[q] = (((((((tm[q] + c0 * x0) + c1 * x1) + c2 * x2) + c3 * x3) + c4 * x4) + c5 * x5) + c6 * x6) + c7 * x7


@jit(inline=True)
def add_rows_pair(dst_p, dst_m, g_p, g_m, rows, count, theta, w_off, fan_out):
    """:func:`add_scaled_pair` of ``g_p[k]``, ``g_m[k]`` and row ``k``, ``k`` in ``rows[:count]``, bitwise in order."""
    c = 0
    while c + JAM <= count:
        _jam_pair(dst_p, dst_m, g_p, g_m, rows, c, theta, w_off, fan_out)
        c += JAM
    while c < count:
        k = rows[c]
        add_scaled_pair(dst_p, dst_m, g_p[k], g_m[k], _row(theta, w_off, fan_out, k))
        c += 1


@jit(inline=True)
def _jam_abs(dst, g, rows, c, theta, w_off, fan_out):
    """:func:`add_scaled_abs` of rows ``rows[c:c + 8]`` in one pass."""
    k0, k1, k2, k3, k4, k5, k6, k7 = rows[c], rows[c + 1], rows[c + 2], rows[c + 3], rows[c + 4], rows[c + 5], \
        rows[c + 6], rows[c + 7]
    w0, w1, w2, w3 = _row(theta, w_off, fan_out, k0), _row(theta, w_off, fan_out, k1), \
        _row(theta, w_off, fan_out, k2), _row(theta, w_off, fan_out, k3)
    w4, w5, w6, w7 = _row(theta, w_off, fan_out, k4), _row(theta, w_off, fan_out, k5), \
        _row(theta, w_off, fan_out, k6), _row(theta, w_off, fan_out, k7)
    b0, b1, b2, b3, b4, b5, b6, b7 = g[k0], g[k1], g[k2], g[k3], g[k4], g[k5], g[k6], g[k7]
    t = dst[:fan_out]
    for q in range(fan_out):
        t[q] = (((((((t[q] + b0 * abs(w0[q])) + b1 * abs(w1[q])) + b2 * abs(w2[q])) + b3 * abs(w3[q]))
                  + b4 * abs(w4[q])) + b5 * abs(w5[q])) + b6 * abs(w6[q])) + b7 * abs(w7[q])


@jit(inline=True)
def add_rows_abs(dst, g, rows, count, theta, w_off, fan_out):
    """:func:`add_scaled_abs` of ``g[k]`` and row ``k`` for ``k`` in ``rows[:count]``, bitwise in order."""
    c = 0
    while c + JAM <= count:
        _jam_abs(dst, g, rows, c, theta, w_off, fan_out)
        c += JAM
    while c < count:
        k = rows[c]
        add_scaled_abs(dst, g[k], _row(theta, w_off, fan_out, k))
        c += 1

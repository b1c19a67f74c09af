"""The dense layer's loops, one owner each: a layer's geometry, and adding one input's share to a layer's sums.

Every pass over the network (forward, backprop, the complex step, the
incremental engine's change propagation and series) adds, for each input
``i`` of a layer, ``g_i`` times row ``i`` of ``W`` to the layer's running
sums: :func:`add_scaled`. Each sum gets its terms in the same order
wherever it is computed, so passes that must agree bit for bit do.
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

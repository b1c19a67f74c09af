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

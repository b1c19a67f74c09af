"""The last hidden layer's loss series, many units at once: :func:`unit_series_lanes`.

A unit of the layer just before the output moves the output layer by a
rank-1 change, ``s_k = g(s) W[j, k]``, and its series are the loss's output
series of that change (:func:`.series.unit_series` with no layer in
between). Computed one (unit, sample) pair at a time, each pair fills four
rows of ``K`` outputs and walks them once: on a one-hidden-layer net that
costs about as much as a forward pass, in short loops and calls. Here one
task takes a sample and every unit, as lanes: the output loop runs outside,
each lane's arithmetic inside (the loss's ``output_series_lanes``), in the
order of the one-pair code, so every ``e1``, ``e3``, ``e1_abs`` and ``lim``
is bitwise what :func:`.series.unit_series` gives.
"""

import numpy as np
from numba import prange

from ._jit import jit
from .activations import change_limit, slack
from .codes import ACT, FAN_OUT, U_OFF, W_OFF
from .losses import output_series_lanes


@jit(parallel=True)
def unit_series_lanes(theta, layout, loss_code, base, l, units, n_lo, n_hi, E1_out, E3_out, E1abs_out, lim_out):
    """:func:`.series.unit_series` of the units ``units`` of layer ``l``, the last hidden layer.

    Arguments as :func:`.series.unit_series` (``l`` must be the layer
    before the output; no ``parts``: each sample is a task).
    """
    Z, C = base.Z, base.C
    last = layout.shape[0] - 1
    out_off = layout[last, U_OFF]
    K = layout[last, FAN_OUT]
    act = layout[last, ACT]
    code = layout[l, ACT]
    B = units.shape[0]
    w_off = layout[last, W_OFF]
    # the units' rows of the output layer's W, one output per line (a lane per unit, contiguous)
    WT = np.empty((K, B), dtype=np.float64)
    for b in range(B):
        for k in range(K):
            WT[k, b] = theta[w_off + units[b] * K + k]
    for n in prange(n_lo, n_hi):
        g = np.empty((4, B), dtype=np.float64)  # the unit's own change g1..g3 and its absolute twin's factor
        own = np.empty(B, dtype=np.float64)
        e1 = np.zeros(B, dtype=np.float64)
        e3 = np.zeros(B, dtype=np.float64)
        e1_abs = np.zeros(B, dtype=np.float64)
        lim = np.full(B, np.inf)
        scratch = np.empty((6, B), dtype=np.float64)
        for b in range(B):
            u = layout[l, U_OFF] + units[b]
            own[b] = min(1.0, change_limit(code, Z[n, u], 1.0))
            g[0, b] = C[0, n, u]
            g[1, b] = C[1, n, u]
            g[2, b] = C[2, n, u]
            g[3, b] = abs(C[0, n, u]) + slack(code)
        output_series_lanes(loss_code, base, n, out_off, K, act, WT, g, e1, e3, e1_abs, lim, scratch)
        for b in range(B):
            reach = min(own[b], lim[b])
            if not (np.isfinite(e1[b]) and np.isfinite(e3[b])):
                reach = -1.0
            E1_out[n, b] = e1[b]
            E3_out[n, b] = e3[b]
            E1abs_out[n, b] = e1_abs[b]
            lim_out[n, b] = reach

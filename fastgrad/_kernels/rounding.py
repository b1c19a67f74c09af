"""How much rounding the forward pass's pre-activations carry, for the error budget.

A pre-activation ``z = sum_i a_i W_ij + b_j`` is rounded at the scale of its
terms, ``s = sum_i |a_i W_ij| + |b_j|``, not of ``z``; a smooth activation's
derivative then carries a relative error of up to ``2 u s`` (``|f''/f'| <= 2``
for sigmoid, tanh and softplus, and for softmax's ``p - y``), which every
gradient entry downstream inherits, in fastgrad's numerical derivative and
in the user's backprop alike. On unnormalised inputs ``s`` is 1e3..1e5: a
budget that counts only the ``L + 2`` roundings of each term of the
derivative is then too small (a correct softplus net on X ~ 1e3 failed at
25 budgets against a 400-digit reference).
"""

import numpy as np
from numba import prange

from ._jit import jit
from .codes import ACT, B_OFF, FAN_IN, FAN_OUT, SIGMOID, SOFTMAX, SOFTPLUS, TANH, U_OFF, W_OFF


@jit(inline=True)
def _smooth(code):
    return code == SIGMOID or code == TANH or code == SOFTPLUS or code == SOFTMAX


@jit(parallel=True)
def smooth_term_scales(theta, layout, X, A, out):
    """``out[l]`` = the largest ``sum_i |a_i W_ij| + |b_j|`` of layer ``l`` over samples and units (0 unless smooth).

    Layer ``l``'s inputs are ``X`` for ``l = 0`` and the previous layer's
    activations in ``A`` (N, U). A maximum does not depend on the order, so
    neither on the thread count.
    """
    N = X.shape[0]
    L = layout.shape[0]
    per_sample = np.zeros((N, L))
    for n in prange(N):
        for l in range(L):
            if not _smooth(layout[l, ACT]):
                continue
            fan_in = layout[l, FAN_IN]
            fan_out = layout[l, FAN_OUT]
            w_off = layout[l, W_OFF]
            b_off = layout[l, B_OFF]
            best = 0.0
            for j in range(fan_out):
                s = abs(theta[b_off + j])
                for i in range(fan_in):
                    a = X[n, i] if l == 0 else A[n, layout[l - 1, U_OFF] + i]
                    s += abs(a * theta[w_off + i * fan_out + j])
                if s > best:
                    best = s
            per_sample[n, l] = best
    for l in range(L):
        best = 0.0
        for n in range(N):
            if per_sample[n, l] > best:
                best = per_sample[n, l]
        out[l] = best

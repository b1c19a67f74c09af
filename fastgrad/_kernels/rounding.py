"""How much rounding the forward pass's pre-activations carry, for the error budget.

A pre-activation ``z = sum_i a_i W_ij + b_j`` is rounded at the scale of its
terms, ``s = sum_i |a_i W_ij| + |b_j|``, not of ``z``. Two consequences,
for fastgrad's numerical derivative and the user's backprop alike:

* a smooth activation's derivative carries a relative error of up to
  ``2 u s`` (``|f''/f'| <= 2`` for sigmoid, tanh and softplus, and for
  softmax's ``p - y``), which every gradient entry downstream inherits: on
  unnormalised inputs ``s`` is 1e3..1e5 (a correct softplus net on X ~ 1e3
  failed at 25 budgets against a 400-digit reference);
* the activation ``a = f(z)`` itself carries an absolute error of up to
  ``u s |f'(z)|``, which the next layer's weight gradients
  ``sum_n a_ni delta_nj`` inherit: when ``z`` is a cancelling sum, ``a`` is
  small and its relative error large (a correct float32 backprop with
  ``z = 0.32686 - 0.32689`` failed at ~1000 budgets).
"""

import numpy as np
from numba import prange

from ._jit import jit
from .activations import derivative
from .codes import ACT, B_OFF, FAN_IN, FAN_OUT, SOFTMAX, U_OFF, W_OFF


@jit(parallel=True)
def unit_term_scales(theta, layout, X, Z, A, out, act_out):
    """Per unit ``u``, the largest scale its pre-activation and its activation are rounded at.

    ``out[u]`` = max over samples of ``s = sum_i |a_i W_ij| + |b_j|``;
    ``act_out[u]`` = max over samples of ``s |f'(z)|``, the absolute error
    the activation inherits (small where the unit saturates; softmax units
    feed no later layer and get 0). Layer ``l``'s inputs are ``X`` for
    ``l = 0`` and the previous layer's activations in ``A`` (N, U); the
    outputs are indexed like a row of ``A``. A maximum does not depend on
    the order, so neither on the thread count.

    Each sum runs ``|b_j|`` first, then ``i`` upwards, as written above; the
    loops run over ``i`` outside and ``j`` inside, so that ``W`` is read row by
    row (a column walk of a 8192 x 8192 layer took 10 s here, the row walk
    0.5 s), with the same additions in the same order for every ``j``.
    """
    N = X.shape[0]
    L = layout.shape[0]
    U = out.shape[0]
    widest = 0
    for l in range(L):
        widest = max(widest, layout[l, FAN_OUT])
    per_sample = np.zeros((N, U))
    per_sample_act = np.zeros((N, U))
    for n in prange(N):
        row = np.empty(widest)
        for l in range(L):
            fan_in = layout[l, FAN_IN]
            fan_out = layout[l, FAN_OUT]
            w_off = layout[l, W_OFF]
            b_off = layout[l, B_OFF]
            u_off = layout[l, U_OFF]
            for j in range(fan_out):
                row[j] = abs(theta[b_off + j])
            for i in range(fan_in):
                a = X[n, i] if l == 0 else A[n, layout[l - 1, U_OFF] + i]
                base = w_off + i * fan_out
                for j in range(fan_out):
                    row[j] += abs(a * theta[base + j])
            for j in range(fan_out):
                s = row[j]
                per_sample[n, u_off + j] = s
                if layout[l, ACT] != SOFTMAX:
                    z = Z[n, u_off + j]
                    per_sample_act[n, u_off + j] = s * abs(derivative(z, A[n, u_off + j], layout[l, ACT]))
    for u in range(U):
        best = 0.0
        best_act = 0.0
        for n in range(N):
            best = max(best, per_sample[n, u])
            best_act = max(best_act, per_sample_act[n, u])
        out[u] = best
        act_out[u] = best_act


@jit(parallel=True)
def add_input_rounding(trunc, absum, layout, scales, c):
    """``trunc[W_l[i, j]] += c scales[i] absum[b_l[j]]`` for every layer after the first.

    The absolute error ``u s_i`` of an input activation ``a_i`` of layer
    ``l`` reaches ``dE/dW_ij = sum_n a_ni delta_nj`` as at most
    ``u s_i sum_n |delta_nj|``, and ``sum_n |delta_nj|`` (its terms' size)
    is the bias ``b_j``'s ``absum``. Entries are independent: any thread
    count gives the same bits. Entries whose ``absum`` was not computed
    (NaN) are left alone.
    """
    for l in range(1, layout.shape[0]):
        fan_in = layout[l, FAN_IN]
        fan_out = layout[l, FAN_OUT]
        w_off = layout[l, W_OFF]
        b_off = layout[l, B_OFF]
        in_off = layout[l - 1, U_OFF]
        for i in prange(fan_in):
            for j in range(fan_out):
                extra = c * scales[in_off + i] * absum[b_off + j]
                if extra == extra:
                    trunc[w_off + i * fan_out + j] += extra

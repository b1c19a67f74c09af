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

#: Units of a layer one task of :func:`unit_term_scales` sums at a time (its sums, N x 128, stay in cache).
TERM_BLOCK = 128


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

    Each sum runs ``|b_j|`` first, then ``i`` upwards, as written above. The
    work is split by blocks of ``TERM_BLOCK`` units; within a block the loops
    run over ``i``, then the samples, then the block's units, so that ``W``
    is read once, row segment by row segment, for every sample at once (a
    walk per sample read a 10^8-parameter net's W 32 times: 2.4 s; a column
    walk took 10 s).
    """
    N = X.shape[0]
    L = layout.shape[0]
    for l in range(L):
        fan_in = layout[l, FAN_IN]
        fan_out = layout[l, FAN_OUT]
        w_off = layout[l, W_OFF]
        b_off = layout[l, B_OFF]
        u_off = layout[l, U_OFF]
        act = layout[l, ACT]
        inputs = np.empty((fan_in, N))  # the layer's inputs, one row per input (read along the samples below)
        for i in range(fan_in):
            for n in range(N):
                inputs[i, n] = X[n, i] if l == 0 else A[n, layout[l - 1, U_OFF] + i]
        n_blocks = (fan_out + TERM_BLOCK - 1) // TERM_BLOCK
        for block in prange(n_blocks):
            j0 = block * TERM_BLOCK
            width = min(TERM_BLOCK, fan_out - j0)
            sums = np.empty((N, width))
            for n in range(N):
                for k in range(width):
                    sums[n, k] = abs(theta[b_off + j0 + k])
            for i in range(fan_in):
                base = w_off + i * fan_out + j0
                for n in range(N):
                    a = inputs[i, n]
                    for k in range(width):
                        sums[n, k] += abs(a * theta[base + k])
            for k in range(width):
                u = u_off + j0 + k
                best = 0.0
                best_act = 0.0
                for n in range(N):
                    s = sums[n, k]
                    best = max(best, s)
                    if act != SOFTMAX:
                        best_act = max(best_act, s * abs(derivative(Z[n, u], A[n, u], act)))
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

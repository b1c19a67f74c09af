"""Complex-step forward pass and loss, for ``Im E(w + i h) / h``.

The complex-step derivative evaluates the loss once with one parameter moved
by an imaginary step ``i h``; for an analytic loss, ``Im E(w + i h) / h``
is ``E'(w)`` up to ``O(h^2)``, and nothing is subtracted, so ``h`` can be
tiny (1e-20 * max(1, |w|)) and the result is accurate to rounding.

Two implementations of the same arithmetic:

* :func:`complex_batch_loss`: the plain one, a whole forward pass over a
  complex128 parameter vector (any entries may be non-real), with complex128
  activation buffers; the reference.
* :func:`complex_suffix_loss`: what :func:`fastgrad._kernels.numgrad.full_differences`
  runs, for a real ``theta`` with one imaginary step at one parameter. The
  layers before the parameter's layer are real and equal to the base pass;
  in the parameter's own layer only its unit changes, and only in its
  imaginary part, so just the layers after it are recomputed, with
  separate real and imaginary buffers (real weights times complex inputs
  cost two multiply-adds, not a full complex product).

Both give the same values (the operations differ only where a factor is an
exact zero, which can change nothing but the sign of a zero).

Activations of complex ``z = x + i y`` (elementwise: each activation module's
``complex_value``, dispatched by :func:`fastgrad._kernels.activations.cact`):

* any activation with ``y == 0`` exactly is the real function of
  :mod:`fastgrad._kernels.activations` (so real units are bitwise the real
  forward pass);
* sigmoid: ``1 / (1 + exp(-z))`` for ``x >= 0``, ``exp(z) / (1 + exp(z))``
  for ``x < 0``, written out in real arithmetic, no overflow for any ``x``;
* tanh: ``(tanh x + i tan y) / (1 + i tanh x tan y)``, with
  ``1 - tanh^2 x`` computed as ``sech^2 x = 4 e / (1 + e)^2``,
  ``e = exp(-2|x|)`` (no cancellation for large ``|x|``);
* softplus: ``log(1 + exp(z))`` for ``x <= 0``, ``z + log(1 + exp(-z))`` for
  ``x > 0``, with a complex ``log1p``;
* identity: ``z``;
* relu: ``z`` if ``x > 0`` else ``0``; leaky_relu: ``z`` if ``x > 0`` else
  ``0.01 z``. The complex step therefore returns the derivative of the piece
  the real part lies on; at ``x == 0`` exactly that is the left piece,
  which matches the package's ``relu'(0) = 0`` and
  ``leaky_relu'(0) = 0.01``. (There the true derivative does not exist: the
  caller flags such entries, see ``full_differences``.)
* softmax: not computed. It is only used with cross-entropy, whose loss is
  computed from the logits.

Losses: squared errors use the analytic square ``(y - x)^2`` (not
``|y - x|^2``, which is not analytic), summed; cross-entropy is
``sum_k y_k (lse(z) - z_k)`` with ``lse`` the complex log-sum-exp, shifted
by the largest real part. The sum is scaled as in
:func:`fastgrad._kernels.loss.loss_scale`.
"""


import numpy as np
from numba import prange

from ._jit import jit
from .activations import cact
from .codes import (
    ACT,
    B_OFF,
    FAN_IN,
    FAN_OUT,
    SOFTMAX,
    U_OFF,
    W_OFF,
)
from .forward import SAMPLE_TILE
from .losses import complex_sample_term, loss_scale, split_sample_term

# --------------------------------------------------------------------------
# Plain version: complex128 parameters and buffers
# --------------------------------------------------------------------------


@jit()
def complex_sample_loss(z, a, y, layout, loss_code):
    """One sample's unscaled complex loss term from complex128 rows ``z``, ``a`` (U,) (the loss module's)."""
    last = layout.shape[0] - 1
    return complex_sample_term(loss_code, z, a, y, layout[last, U_OFF], layout[last, FAN_OUT])


@jit()
def complex_forward_rows(theta_c, layout, X, lo, hi, Zc, Ac):
    """Complex forward pass of samples ``lo..hi-1`` (the tiling of ``forward_rows``).

    Writes rows ``lo..hi-1`` of ``Zc``/``Ac`` (a softmax output layer's
    activations are not written).
    """
    for l in range(layout.shape[0]):
        fan_in = layout[l, FAN_IN]
        fan_out = layout[l, FAN_OUT]
        w_off = layout[l, W_OFF]
        b_off = layout[l, B_OFF]
        u_off = layout[l, U_OFF]
        code = layout[l, ACT]
        prev = layout[l - 1, U_OFF] if l > 0 else 0
        for n in range(lo, hi):
            for j in range(fan_out):
                Zc[n, u_off + j] = theta_c[b_off + j]
        for i in range(fan_in):
            w = theta_c[w_off + i * fan_out:w_off + (i + 1) * fan_out]
            for n in range(lo, hi):
                ai = complex(X[n, i]) if l == 0 else Ac[n, prev + i]
                if ai.real == 0.0 and ai.imag == 0.0:
                    continue
                for j in range(fan_out):
                    Zc[n, u_off + j] += ai * w[j]
        if code != SOFTMAX:
            for n in range(lo, hi):
                for j in range(fan_out):
                    z = Zc[n, u_off + j]
                    re, im = cact(z.real, z.imag, code)
                    Ac[n, u_off + j] = complex(re, im)


@jit()
def complex_batch_loss(theta_c, layout, loss_code, X, Y, Zc, Ac):
    """Complex loss ``E(theta_c)`` of the batch, serially (the plain version).

    Parameters
    ----------
    theta_c : ndarray of complex128, shape (P,)
        Flat parameters; read only. ``Im E(w + i h e_p) / h`` is the complex
        step derivative of parameter ``p``.
    layout : ndarray of int64, shape (L, N_COLS)
    loss_code : int
    X : ndarray of float64, shape (N, D)
    Y : ndarray of float64, shape (N, K)
    Zc, Ac : ndarray of complex128, shape (N, U)
        Scratch, written: pre-activations and activations (a softmax output
        layer's activations are not written).

    Returns
    -------
    complex
        The loss, scaled as :func:`fastgrad._kernels.loss.loss_scale`.

    Notes
    -----
    Same tiling and summation order as
    :func:`fastgrad._kernels.forward.forward_rows` (bias first, then inputs
    in order, exact zero inputs skipped), samples summed in order, so with
    a real ``theta_c`` the real parts are bitwise the real forward pass.
    """
    N = X.shape[0]
    for lo in range(0, N, SAMPLE_TILE):
        complex_forward_rows(theta_c, layout, X, lo, min(N, lo + SAMPLE_TILE), Zc, Ac)
    total = 0j
    for n in range(N):
        total += complex_sample_loss(Zc[n], Ac[n], Y[n], layout, loss_code)
    return total * loss_scale(loss_code, N)


# --------------------------------------------------------------------------
# Fast version: real theta, one imaginary step, only the changed suffix
# --------------------------------------------------------------------------


@jit()
def complex_suffix_loss(theta, layout, loss_code, X, Y, l, j, i, h, Zr, Zi, Ar, Ai):
    """Complex loss with parameter ``(l, j, i)`` moved by ``i h``; recomputes only what changes.

    Parameters
    ----------
    theta : ndarray of float64, shape (P,)
        Real flat parameters; read only.
    layout, loss_code, X, Y
        As in :func:`complex_batch_loss`.
    l, j, i : int
        The parameter: ``W_l[i, j]`` (``i >= 0``) or ``b_l[j]`` (``i == -1``),
        with ``l`` 0-based.
    h : float
        The imaginary step.
    Zr, Zi, Ar, Ai : ndarray of float64, shape (N, U)
        Real and imaginary parts of the pre-activations and activations. On
        entry the layers up to ``l`` must hold the real forward pass at
        ``theta`` (``Zr``, ``Ar``) with zero imaginary parts. Written: unit
        ``j`` of layer ``l`` and every layer after it (the caller restores
        them).

    Returns
    -------
    re, im : float
        Real and imaginary parts of the loss; the derivative is ``im / h``.

    Notes
    -----
    The same values as :func:`complex_batch_loss` on
    ``theta + i h e_p``: the layers before ``l`` and the real part of layer
    ``l`` do not change; the imaginary part of the unit is ``h`` times its
    input (``h`` for a bias); the later layers are recomputed in
    ``forward_rows`` order with ``(xr + i xi) w = xr w + i xi w``.
    """
    N = X.shape[0]
    L = layout.shape[0]
    u = layout[l, U_OFF] + j
    prev = layout[l - 1, U_OFF] if l > 0 else 0
    code = layout[l, ACT]
    for n in range(N):
        if i < 0:
            Zi[n, u] = h
        elif l == 0:
            Zi[n, u] = X[n, i] * h
        else:
            Zi[n, u] = Ar[n, prev + i] * h
        if code != SOFTMAX:
            re, im = cact(Zr[n, u], Zi[n, u], code)
            Ar[n, u] = re
            Ai[n, u] = im
    for lo in range(0, N, SAMPLE_TILE):
        hi = min(N, lo + SAMPLE_TILE)
        for m in range(l + 1, L):
            fan_in = layout[m, FAN_IN]
            fan_out = layout[m, FAN_OUT]
            w_off = layout[m, W_OFF]
            b_off = layout[m, B_OFF]
            u_off = layout[m, U_OFF]
            code = layout[m, ACT]
            pm = layout[m - 1, U_OFF]
            for n in range(lo, hi):
                for k in range(fan_out):
                    Zr[n, u_off + k] = theta[b_off + k]
                    Zi[n, u_off + k] = 0.0
            for q in range(fan_in):
                w = theta[w_off + q * fan_out:w_off + (q + 1) * fan_out]
                for n in range(lo, hi):
                    xr = Ar[n, pm + q]
                    xi = Ai[n, pm + q]
                    if xr == 0.0 and xi == 0.0:
                        continue
                    zr = Zr[n, u_off:u_off + fan_out]
                    zi = Zi[n, u_off:u_off + fan_out]
                    for k in range(fan_out):
                        zr[k] += xr * w[k]
                        zi[k] += xi * w[k]
            if code != SOFTMAX:
                for n in range(lo, hi):
                    for k in range(u_off, u_off + fan_out):
                        re, im = cact(Zr[n, k], Zi[n, k], code)
                        Ar[n, k] = re
                        Ai[n, k] = im
    tr = 0.0
    ti = 0.0
    for n in range(N):
        sr, si = split_sample_term(loss_code, Zr, Zi, Ar, Ai, n, Y[n], layout[L - 1, U_OFF], layout[L - 1, FAN_OUT])
        tr += sr
        ti += si
    scale = loss_scale(loss_code, N)
    return tr * scale, ti * scale


@jit(parallel=True)
def directional_derivative(theta, v, h, layout, loss_code, X, Y, Zc, Ac):
    """Complex-step directional derivative ``Im E(theta + i h v) / h``.

    Parameters
    ----------
    theta, v : ndarray of float64, shape (P,)
        Point and direction; read only.
    h : float
        Step (tiny: nothing is subtracted).
    layout, loss_code, X, Y
        As in :func:`complex_batch_loss`.
    Zc, Ac : ndarray of complex128, shape (N, U)
        Scratch.

    Notes
    -----
    Parallel over tiles of samples; each tile's loss terms are summed in
    order and the tiles' sums added in tile order, so the result does not
    depend on the thread count. One complex forward pass of the batch.
    """
    N = X.shape[0]
    theta_c = np.empty(theta.shape[0], dtype=np.complex128)
    for p in range(theta.shape[0]):
        theta_c[p] = complex(theta[p], h * v[p])
    n_tiles = (N + SAMPLE_TILE - 1) // SAMPLE_TILE
    partial = np.zeros(n_tiles, dtype=np.complex128)
    for tile in prange(n_tiles):
        lo = tile * SAMPLE_TILE
        hi = min(N, lo + SAMPLE_TILE)
        complex_forward_rows(theta_c, layout, X, lo, hi, Zc, Ac)
        s = 0j
        for n in range(lo, hi):
            s += complex_sample_loss(Zc[n], Ac[n], Y[n], layout, loss_code)
        partial[tile] = s
    total = 0j
    for tile in range(n_tiles):
        total += partial[tile]
    return (total * loss_scale(loss_code, N)).imag / h

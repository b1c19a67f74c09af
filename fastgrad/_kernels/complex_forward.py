"""Complex-step forward pass and loss, for ``Im E(w + i h) / h``.

The complex-step derivative evaluates the loss once with one parameter moved
by an imaginary step ``i h``; for an analytic loss, ``Im E(w + i h) / h``
is ``E'(w)`` up to ``O(h^2)``, and nothing is subtracted, so ``h`` can be
tiny (1e-20 * max(1, |w|)) and the result is accurate to rounding.

* :func:`complex_suffix_loss`: what :func:`fastgrad._kernels.numgrad.full_differences`
  runs, for a real ``theta`` with one imaginary step at one parameter. The
  layers before the parameter's layer are real and equal to the base pass;
  in the parameter's own layer only its unit changes, and only in its
  imaginary part, so just the layers after it are recomputed, with
  separate real and imaginary buffers (real weights times complex inputs
  cost two multiply-adds, not a full complex product). It gives the values
  of the plain complex forward pass over complex128 parameters
  (``tests/kernel_twins.py``: ``complex_batch_loss``), to the sign of a zero.
* :func:`complex_forward_rows` and :func:`directional_derivative`: the
  plain pass over complex128 parameters, for a step along a direction.

Each activation's complex value is its module's ``complex_value``
(:func:`fastgrad._kernels.activations.cact`; with ``y == 0`` exactly the
real activation, so real units are bitwise the real forward pass; relu and
leaky_relu take the piece of the real part, the left one at 0, and the
caller flags such kinks); softmax is not computed: cross-entropy reads the
logits. Each loss's complex term is its module's (``complex_sample_value``,
``split_sample_value``), scaled by its ``scale``.
"""


import numpy as np
from numba import prange

from ._jit import jit
from .activations import cact
from .codes import (
    ACT,
    FAN_OUT,
    SOFTMAX,
    U_OFF,
)
from .dense import add_scaled, layer_geometry
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
        fan_in, fan_out, w_off, b_off, u_off, prev = layer_geometry(layout, l)
        code = layout[l, ACT]
        for n in range(lo, hi):
            for j in range(fan_out):
                Zc[n, u_off + j] = theta_c[b_off + j]
        for i in range(fan_in):
            w = theta_c[w_off + i * fan_out:w_off + (i + 1) * fan_out]
            for n in range(lo, hi):
                ai = complex(X[n, i]) if l == 0 else Ac[n, prev + i]
                if ai.real == 0.0 and ai.imag == 0.0:
                    continue
                add_scaled(Zc[n, u_off:u_off + fan_out], ai, w)
        if code != SOFTMAX:
            for n in range(lo, hi):
                for j in range(fan_out):
                    z = Zc[n, u_off + j]
                    re, im = cact(z.real, z.imag, code)
                    Ac[n, u_off + j] = complex(re, im)


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
        Layer table, loss code, batch and targets (as everywhere in :mod:`fastgrad._kernels`).
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
    The same values as the plain complex pass (``tests/kernel_twins.py``) on
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
            fan_in, fan_out, w_off, b_off, u_off, pm = layer_geometry(layout, m)
            code = layout[m, ACT]
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
                    add_scaled(Zr[n, u_off:u_off + fan_out], xr, w)
                    add_scaled(Zi[n, u_off:u_off + fan_out], xi, w)
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
        Layer table, loss code, batch and targets (as everywhere in :mod:`fastgrad._kernels`).
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

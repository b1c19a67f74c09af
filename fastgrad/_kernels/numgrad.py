"""The full engine: per-parameter derivatives from recomputed losses.

:func:`full_differences` takes central, Richardson or complex-step
differences, recomputing only the part of the forward pass a parameter
changes, and flags kinks crossed on the way. (The black-box loop, two whole
forward passes per parameter, is the tests' reference:
``tests/kernel_twins.py``.)
"""

import numpy as np
from numba import prange

from ._jit import jit
from .activations import activate, has_kink
from .codes import (
    ACT,
    B_OFF,
    COMPLEX,
    FAN_IN,
    FAN_OUT,
    RICHARDSON,
    SOFTMAX,
    U_OFF,
    W_OFF,
)
from .complex_forward import complex_suffix_loss
from .forward import SAMPLE_TILE, forward_layers, forward_rows
from .loss import loss_from_activations
from .losses import reads_activations

# --------------------------------------------------------------------------
# full_differences: central, Richardson and complex-step differences
# --------------------------------------------------------------------------


@jit()
def locate_param(layout, p):
    """Layer ``l``, unit ``j`` and input ``i`` of flat parameter ``p``.

    Returns
    -------
    l, j, i : int
        ``p`` is ``W_l[i, j]``, or ``b_l[j]`` with ``i == -1`` (``l`` 0-based).
    """
    for l in range(layout.shape[0]):
        fan_out = layout[l, FAN_OUT]
        if p < layout[l, B_OFF] + fan_out:
            if p >= layout[l, B_OFF]:
                return l, p - layout[l, B_OFF], -1
            q = p - layout[l, W_OFF]
            return l, q % fan_out, q // fan_out
    return -1, -1, -1


@jit()
def _real_suffix_loss(th, layout, loss_code, X, Y, l, j, inT, row0, acc, Zw, Aw):
    """Loss ``E(th)`` where ``th`` differs from the base only in unit ``j`` of layer ``l``.

    ``Zw``/``Aw`` (N, U) hold the base forward pass; unit ``j`` of layer ``l``
    and every later layer are overwritten with the pass at ``th``. ``inT``
    holds the layer's inputs transposed (row ``row0 + q`` is input ``q``
    for every sample), ``acc`` (N,) is scratch. The layers after ``l`` are
    :func:`fastgrad._kernels.forward.forward_layers`' (``X``, the batch, is
    only its argument: a layer after ``l`` never reads it).

    Every value is bitwise the one a whole forward pass
    (:func:`fastgrad._kernels.forward.forward_rows`) computes: the same
    operations in the same order (bias, then inputs in order, exact zero
    inputs skipped: adding ``-0.0`` leaves any sum unchanged), only the
    loops over samples and inputs are swapped.
    """
    N = Zw.shape[0]
    fan_in = layout[l, FAN_IN]
    fan_out = layout[l, FAN_OUT]
    w_off = layout[l, W_OFF]
    u_off = layout[l, U_OFF]
    u = u_off + j
    code = layout[l, ACT]
    b = th[layout[l, B_OFF] + j]
    for n in range(N):
        acc[n] = b
    for q in range(fan_in):
        w = th[w_off + q * fan_out + j]
        row = inT[row0 + q]
        for n in range(N):
            x = row[n]
            acc[n] += x * w if x != 0.0 else -0.0
    for n in range(N):
        Zw[n, u] = acc[n]
    if code != SOFTMAX:
        for n in range(N):
            activate(Zw[n], Aw[n], u, 1, code)
    elif reads_activations(loss_code):
        for n in range(N):
            activate(Zw[n], Aw[n], u_off, fan_out, code)
    for lo in range(0, N, SAMPLE_TILE):
        forward_layers(th, layout, X, lo, min(N, lo + SAMPLE_TILE), l + 1, reads_activations(loss_code), Zw, Aw)
    return loss_from_activations(Zw, Aw, Y, layout, loss_code)


@jit()
def _suffix_columns(layout, l, j, m):
    """Columns ``[lo, hi)`` of layer ``m >= l`` that a change of unit ``j`` of layer ``l`` reaches."""
    u_off = layout[m, U_OFF]
    if m == l:
        return u_off + j, u_off + j + 1
    return u_off, u_off + layout[m, FAN_OUT]


@jit()
def _restore(layout, l, j, src, dst):
    """Copy unit ``j`` of layer ``l`` and every later layer from ``src`` to ``dst`` (N, U)."""
    for m in range(l, layout.shape[0]):
        lo, hi = _suffix_columns(layout, l, j, m)
        for n in range(dst.shape[0]):
            for u in range(lo, hi):
                dst[n, u] = src[n, u]


@jit()
def _clear(layout, l, j, dst):
    """Zero unit ``j`` of layer ``l`` and every later layer of ``dst`` (N, U)."""
    for m in range(l, layout.shape[0]):
        lo, hi = _suffix_columns(layout, l, j, m)
        for n in range(dst.shape[0]):
            for u in range(lo, hi):
                dst[n, u] = 0.0


@jit()
def _crosses(layout, kinked, l, j, Zp, Z_base):
    """Whether a relu/leaky_relu pre-activation of ``Zp`` is on the other side of 0 than ``Z_base``.

    Only the units a change of unit ``j`` of layer ``l`` can reach are read.
    """
    for m in range(l, layout.shape[0]):
        if not kinked[m]:
            continue
        lo, hi = _suffix_columns(layout, l, j, m)
        for n in range(Zp.shape[0]):
            for u in range(lo, hi):
                if (Zp[n, u] > 0.0) != (Z_base[n, u] > 0.0):
                    return True
    return False


@jit()
def _crosses_complex(layout, kinked, l, j, Zr, Zi, Z_base):
    """:func:`_crosses` for a complex pass, also true at a kink hit with a non-zero imaginary part."""
    for m in range(l, layout.shape[0]):
        if not kinked[m]:
            continue
        lo, hi = _suffix_columns(layout, l, j, m)
        for n in range(Zr.shape[0]):
            for u in range(lo, hi):
                zb = Z_base[n, u]
                if (Zr[n, u] > 0.0) != (zb > 0.0) or (zb == 0.0 and Zi[n, u] != 0.0):
                    return True
    return False


@jit()
def _base_pass(theta, layout, X, n_units):
    """Return a private forward pass ``(Z, A)`` at ``theta``, tiled as :func:`.forward.forward_rows`."""
    N = X.shape[0]
    Z = np.empty((N, n_units), dtype=np.float64)
    A = np.empty((N, n_units), dtype=np.float64)
    for lo in range(0, N, SAMPLE_TILE):
        forward_rows(theta, layout, X, lo, min(N, lo + SAMPLE_TILE), Z, A)
    return Z, A


@jit()
def _chunk_real(theta, layout, loss_code, X, Y, steps, method, Z_base, kinked, order, start, stop, n_units,
                out, kink_out):
    """Central or Richardson differences of ``order[start:stop]``, serially (one chunk)."""
    N, D = X.shape
    Zb, Ab = _base_pass(theta, layout, X, n_units)
    Zw = Zb.copy()
    Aw = Ab.copy()
    inT = np.empty((D + n_units, N), dtype=np.float64)
    for n in range(N):
        for q in range(D):
            inT[q, n] = X[n, q]
        for u in range(n_units):
            inT[D + u, n] = Ab[n, u]
    acc = np.empty(N, dtype=np.float64)
    th = theta.copy()
    check_kinks = False
    for m in range(kinked.shape[0]):
        check_kinks = check_kinks or kinked[m]
    n_evals = 4 if method == RICHARDSON else 2
    e = np.empty(4, dtype=np.float64)
    for b in range(start, stop):
        p = order[b]
        l, j, _ = locate_param(layout, p)
        row0 = 0 if l == 0 else D + layout[l - 1, U_OFF]
        h = steps[p]
        saved = th[p]
        crossed = False
        for k in range(n_evals):
            # saved + h, saved - h, saved + 2h, saved - 2h
            th[p] = saved + (h if k < 2 else 2.0 * h) * (1.0 if k % 2 == 0 else -1.0)
            e[k] = _real_suffix_loss(th, layout, loss_code, X, Y, l, j, inT, row0, acc, Zw, Aw)
            if check_kinks and not crossed:
                crossed = _crosses(layout, kinked, l, j, Zw, Z_base)
        th[p] = saved
        _restore(layout, l, j, Zb, Zw)
        _restore(layout, l, j, Ab, Aw)
        d1 = (e[0] - e[1]) / (2.0 * h)
        if method == RICHARDSON:
            d2 = (e[2] - e[3]) / (4.0 * h)
            out[p] = (4.0 * d1 - d2) / 3.0
        else:
            out[p] = d1
        kink_out[p] = 1 if crossed else 0


@jit()
def _chunk_complex(theta, layout, loss_code, X, Y, steps, Z_base, kinked, order, start, stop, n_units,
                   out, kink_out):
    """Complex-step derivatives of ``order[start:stop]``, serially (one chunk)."""
    Zr, Ar = _base_pass(theta, layout, X, n_units)
    Zb = Zr.copy()
    Ab = Ar.copy()
    Zi = np.zeros_like(Zr)
    Ai = np.zeros_like(Ar)
    check_kinks = False
    for m in range(kinked.shape[0]):
        check_kinks = check_kinks or kinked[m]
    for b in range(start, stop):
        p = order[b]
        l, j, i = locate_param(layout, p)
        h = steps[p]
        _, e_im = complex_suffix_loss(theta, layout, loss_code, X, Y, l, j, i, h, Zr, Zi, Ar, Ai)
        crossed = check_kinks and _crosses_complex(layout, kinked, l, j, Zr, Zi, Z_base)
        _restore(layout, l, j, Zb, Zr)
        _restore(layout, l, j, Ab, Ar)
        _clear(layout, l, j, Zi)
        _clear(layout, l, j, Ai)
        out[p] = e_im / h
        kink_out[p] = 1 if crossed else 0


@jit(parallel=True)
def full_differences(theta, layout, loss_code, X, Y, steps, method, Z_base, order, bounds, n_units, out, kink_out):
    """Per-parameter derivatives by central, Richardson or complex-step differences of the loss.

    Parameters
    ----------
    theta : ndarray of float64, shape (P,)
        Flat parameters; read only (each chunk perturbs its own copy).
    layout : ndarray of int64, shape (L, N_COLS)
    loss_code : int
    X : ndarray of float64, shape (N, D)
    Y : ndarray of float64, shape (N, K)
    steps : ndarray of float64, shape (P,)
        Step ``h`` of each parameter, > 0, used as given (the caller makes
        ``w + h`` exactly representable).
    method : int
        :data:`~fastgrad._kernels.codes.CENTRAL` (0):
        ``D(h) = (E(w + h) - E(w - h)) / 2h``;
        :data:`~fastgrad._kernels.codes.RICHARDSON` (1):
        ``(4 D(h) - D(2h)) / 3`` (four losses, truncation ``O(h^4)``);
        :data:`~fastgrad._kernels.codes.COMPLEX` (2): ``Im E(w + i h) / h``
        (one complex loss, no cancellation; use ``h`` about
        ``1e-20 * max(1, |w|)``; see
        :mod:`fastgrad._kernels.complex_forward`).
    Z_base : ndarray of float64, shape (N, U)
        Pre-activations of the forward pass at ``theta``; only read to set
        ``kink_out``.
    order : ndarray of int64
        Flat parameter indices.
    bounds : ndarray of int64, shape (n_chunks + 1,)
        Chunk ``c`` handles ``order[bounds[c]:bounds[c + 1]]``; any chunking
        gives the same result.
    n_units : int
        Width ``U`` of a per-sample activation row.
    out : ndarray of float64, shape (P,)
        Written at ``out[p]`` for every handled parameter ``p``.
    kink_out : ndarray of int8, shape (P,)
        Written at ``kink_out[p]`` for every handled ``p``: 1 if one of its
        perturbed passes puts a pre-activation of a relu or leaky_relu layer
        (hidden or output) on the other side of 0 than ``Z_base``
        (``(z > 0) != (z_base > 0)``; for the complex step, the real part),
        or, for the complex step, gives a non-zero imaginary part to a
        pre-activation that is exactly 0 in ``Z_base`` (no derivative
        there); else 0. Such derivatives are not the one-sided derivative
        the package's backprop uses and should be reported as inconclusive.

    Notes
    -----
    Each chunk first runs its own forward pass at ``theta`` (the same tiled
    pass as a whole forward pass (:func:`fastgrad._kernels.forward.forward_rows`)) and keeps it. A
    perturbation of a parameter of layer ``l`` (unit ``j``) leaves the layers
    before ``l`` and the other units of layer ``l`` unchanged, so each loss
    recomputes only unit ``j`` (``N * fan_in`` multiply-adds, or nothing for
    the complex step, whose change there is purely imaginary) and the layers
    after ``l``. Every value is bitwise what a whole forward pass gives, so
    the central method is bitwise the black-box loop (``tests/kernel_twins.py``). The work of
    one parameter is that of ``n_evals`` losses (2, 4 or 1) of the suffix,
    complex ones costing about twice a real one, plus a fixed forward pass
    per chunk: use chunks of many parameters (see :func:`differences_cost`).

    Each chunk owns its copies of ``theta`` and the buffers, each parameter
    is handled by one thread in a fixed order and written to its own slot,
    and every loss is a serial sum over samples in order: the result is
    bitwise the same for any thread count and any chunking. No input is
    written.
    """
    L = layout.shape[0]
    kinked = np.zeros(L, dtype=np.bool_)
    for l in range(L):
        kinked[l] = has_kink(layout[l, ACT])
    for c in prange(bounds.shape[0] - 1):
        start = bounds[c]
        stop = bounds[c + 1]
        if start < stop:
            if method == COMPLEX:
                _chunk_complex(theta, layout, loss_code, X, Y, steps, Z_base, kinked, order, start, stop, n_units,
                               out, kink_out)
            else:
                _chunk_real(theta, layout, loss_code, X, Y, steps, method, Z_base, kinked, order, start, stop,
                            n_units, out, kink_out)


#: Cost of one activation, in floating-point operations (exp and a division).
_ACT_COST = 20.0
#: Cost of one complex activation (exp, cos, sin, divisions).
_CACT_COST = 60.0


def differences_cost(layout, n_samples, method):
    """Estimated work of :func:`full_differences`, in floating-point operations.

    Parameters
    ----------
    layout : ndarray of int64, shape (L, N_COLS)
    n_samples : int
        Batch size ``N``.
    method : int
        ``CENTRAL``, ``RICHARDSON`` or ``COMPLEX``.

    Returns
    -------
    per_param : ndarray of float64, shape (P,)
        Work of each parameter: its losses (2, 4 or 1), each recomputing its
        unit (``N * fan_in`` multiply-adds; nothing for the complex step)
        and the layers after it (twice that for the complex step), plus the
        restoring copies.
    per_chunk : float
        Fixed work of one chunk: a forward pass of the batch and the copies
        of the buffers and ``theta``. Chunks should hold many parameters.

    Notes
    -----
    Two operations per multiply-add, the unit of
    :func:`fastgrad.engines.full_param_cost`; on this project's machine
    a real loss of the 784-128-10 net (N = 64) for a first-layer parameter
    takes about 80 us, a complex one about 130 us.
    """
    N = float(n_samples)
    n_layers = layout.shape[0]
    fan_in = layout[:, FAN_IN].astype(np.float64)
    fan_out = layout[:, FAN_OUT].astype(np.float64)
    P = int(layout[-1, B_OFF] + layout[-1, FAN_OUT])
    U = float(fan_out.sum())
    per_param = np.empty(P, dtype=np.float64)
    for l in range(n_layers):
        later = slice(l + 1, n_layers)
        macs = float(np.sum(fan_in[later] * fan_out[later]))
        units = float(np.sum(fan_out[later]))
        restore = 4.0 * N * (1.0 + units)
        if method == COMPLEX:
            work = N * (_CACT_COST + 4.0 * macs + _CACT_COST * units + _CACT_COST * fan_out[-1]) + restore
        else:
            evals = 4.0 if method == RICHARDSON else 2.0
            work = evals * N * (2.0 * fan_in[l] + _ACT_COST + 2.0 * macs + _ACT_COST * units + 3.0 * fan_out[-1])
            work += restore
        per_param[layout[l, W_OFF]:layout[l, B_OFF] + layout[l, FAN_OUT]] = work
    per_chunk = N * (2.0 * float(np.sum(fan_in * fan_out)) + _ACT_COST * U) + 6.0 * N * U + N * fan_in[0] + 2.0 * P
    return per_param, per_chunk

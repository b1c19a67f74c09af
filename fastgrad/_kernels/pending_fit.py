"""Large steps without a pass per entry: a sample's loss change fitted once per unit.

An entry is *pending* (:mod:`.assemble`) when a sample's step ``h |a_ni|``
is beyond the series' range; each such sample was computed by the direct
path, two (central) or three (Richardson) evaluations of the sample's later
layers per entry. With the tutorial's ``eps = 1e-4`` every entry of
784-128-10 is pending: 26 M evaluations, 1.3 s for a check the series does
in 2 ms. Unnormalised features (x 1e4) do the same at the default step.

Yet every entry of unit ``j`` shares sample ``n``'s function

    psi_nj(t) = (E_n(z_nj + t) - E_n(z_nj - t)) / (2 t),   even in t,

and an entry's difference quotient at step ``h`` is ``a_ni psi_nj(h a_ni)``.
So :func:`fit_samples` interpolates ``psi_nj`` once per (sample, unit) on
the steps any of the unit's entries can need, ``|t| <= reach_nj``: a Chebyshev
interpolant in ``u = (t / reach)^2`` on :data:`FIRST_NODES` points, or
:data:`FIT_NODES` where those do not converge, each one evaluation by the
direct path. A fit is used only where it is exact to
rounding: every node finite, no kink in the unit's layer or after it, no plain
difference of losses; its last two coefficients within :data:`FIT_TOL` of
the largest value (converged); and its value at ``t = 0`` equal, within
the same bound, to the series' ``e1`` (``psi(0)``, computed another way),
and at the end of the reach to one more evaluation there.
Elsewhere the sample stays on the direct path. The interpolant's error
bound joins the entry's truncation estimate.

Every fit is one thread's, nodes in order: bitwise the same for any thread
count.
"""

import math

import numpy as np
from numba import prange

from .._scratch import take
from ._jit import jit
from .activations import has_kink
from .codes import ACT, B_OFF, CENTRAL, FAN_IN, FAN_OUT, RICHARDSON, U_OFF, W_OFF
from .incremental import sample_change_checked
from .series import max_width
from .steps import step_size

#: Interpolation points per fit (degree FIT_NODES - 1 in ``u = t^2``): ``psi`` is analytic, and over
#: ``|t| <= 0.1 rho`` (``rho`` its distance to a singularity) the dropped terms are below 1e-16.
FIT_NODES = 8
#: Points of a first, cheaper fit (steps well within reach of a singularity converge on it; the rest
#: are fitted again on FIT_NODES).
FIRST_NODES = 5
#: A fit is converged when its last two Chebyshev coefficients are within this many roundoffs (per layer
#: after the unit) of its largest value: the values' own noise.
FIT_TOL = 64.0
#: A layer's units are fitted when they have at least this many entries (rows): each fit costs 6-14
#: evaluations per sample, the direct path 2-3 per entry and sample. A layer's rule, not a call's count of
#: pending entries, so that an entry's value does not depend on which others a call computes.
FIT_MIN_ENTRIES = 2 * FIT_NODES


@jit()
def pending_reach(theta, layout, X, A, l, units, steps, eps, scaled, method, cols, reach_out):
    """The steps each (sample, unit) can need: ``reach[n, b] = k * max_i h_ib * max_i |a_ni|``.

    ``k`` is 2 (central: the truncation estimate steps ``2h``) or 4
    (Richardson); both maxima are over every row ``i`` of the layer (the
    bias row's input is 1), so that a unit's fits, and every value made from
    them, are the same whichever of its entries a call assembles (thread
    count, blocks, shards, samples). 0 for a unit with no pending entry
    among ``cols`` (not fitted: nothing here would use it).
    """
    B = units.shape[0]
    N = reach_out.shape[0]
    fan_in = layout[l, FAN_IN]
    prev = layout[l - 1, U_OFF] if l > 0 else 0
    given_steps = steps.shape[0] > 0
    h_max = np.zeros(B, dtype=np.float64)
    for e in range(cols.shape[0]):
        h_max[cols[e]] = -1.0  # (a unit with a pending entry)
    for b in range(B):
        if h_max[b] == 0.0:
            continue
        j = units[b]
        for i in range(fan_in + 1):
            p = layout[l, B_OFF] + j if i == fan_in else layout[l, W_OFF] + i * layout[l, FAN_OUT] + j
            h = steps[p] if given_steps else step_size(theta[p], eps, scaled, True)
            h_max[b] = max(h_max[b], h)
    factor = 4.0 if method == RICHARDSON else 2.0
    for n in range(N):
        a_max = 1.0  # (the bias row)
        for i in range(fan_in):
            a_max = max(a_max, abs(X[n, i] if l == 0 else A[n, prev + i]))
        for b in range(B):
            reach_out[n, b] = factor * h_max[b] * a_max if h_max[b] > 0.0 else 0.0


@jit(inline=True)
def _chebyshev_point(k, count):
    """The ``k``-th of ``count`` Chebyshev points of the first kind on [-1, 1]."""
    return math.cos(math.pi * (k + 0.5) / count)


@jit(inline=True)
def fitted(coef, degree, u):
    """The interpolant's terms up to ``degree`` at ``u = (t / reach)^2`` in [0, 1] (Clenshaw, in ``x = 2u - 1``)."""
    x = 2.0 * u - 1.0
    b1 = 0.0
    b2 = 0.0
    for k in range(degree, 0, -1):
        b0 = 2.0 * x * b1 - b2 + coef[k]
        b2 = b1
        b1 = b0
    return x * b1 - b2 + coef[0]


@jit(inline=True)
def _accept(coef, count, largest, noise, e1, e1_noise, end):
    """``(degree, err)`` of the ``count``-point interpolant ``coef``, or err -1 where it cannot be vouched for."""
    tail = abs(coef[count - 1]) + abs(coef[count - 2])
    if not tail <= noise:  # not converged
        return 0, -1.0
    degree = count - 1
    dropped = 0.0
    while degree > 0 and dropped + abs(coef[degree]) <= noise:
        dropped += abs(coef[degree])
        degree -= 1
    # the interpolation amplifies the values' noise by its Lebesgue constant (< 3 at up to 8 points)
    err = 2.0 * tail + 3.0 * noise + dropped
    # psi(0) = e1, which the series computed another way (to its own rounding), and the evaluation at the end
    if not abs(fitted(coef, degree, 0.0) - e1) <= err + e1_noise:
        return 0, -1.0
    if not abs(fitted(coef, degree, 1.0) - end) <= err:
        return 0, -1.0
    return degree, err


@jit(parallel=True)
def fit_samples(theta, layout, loss_code, base, l, units, E1, E1abs, lim, reach, coef_out, degree_out, err_out):
    """Fit ``psi`` of every (sample, unit) whose ``reach`` is beyond its series range ``lim`` (see the module).

    ``coef_out`` (N, B, FIT_NODES): the Chebyshev coefficients in ``x = 2u - 1``;
    ``degree_out`` (N, B): the last coefficient kept (the later ones, below
    the values' noise together, are dropped: fewer terms per entry);
    ``err_out`` (N, B): a bound on the error of the kept terms over the
    reach (unscaled, absolute), or -1 where there is no fit (the direct path).
    ``E1``, ``E1abs``, ``lim``: the series' (:func:`.series.unit_series`).
    Each pair is first fitted on FIRST_NODES points, and on FIT_NODES only
    where that does not converge.
    """
    N = reach.shape[0]
    B = units.shape[0]
    width = max_width(layout)
    for m in range(l, layout.shape[0]):
        if has_kink(layout[m, ACT]):
            # a kink can be crossed and crossed back between the nodes: such nets keep the direct path
            for task in prange(N * B):
                err_out[task % N, task // N] = -1.0
            return
    noise_unit = FIT_TOL * (layout.shape[0] + 2) * 2.0**-53
    for task in prange(N * B):
        b = task // N
        n = task - b * N
        err_out[n, b] = -1.0
        T = reach[n, b]
        if not (T > lim[n, b] > 0.0 and math.isfinite(T) and math.isfinite(E1[n, b])):
            continue
        scratch = np.empty((4, width), dtype=np.float64)
        values = np.empty(FIT_NODES, dtype=np.float64)
        # the end of the reach first: a kink crossed only past the last node, and a check away from the nodes
        end, good = _psi(theta, layout, loss_code, base, n, l, units[b], T, scratch)
        if not good:
            continue
        e1_noise = noise_unit * E1abs[n, b]
        for count in (FIRST_NODES, FIT_NODES):
            largest = max(abs(E1[n, b]), abs(end))
            for k in range(count):
                t = T * math.sqrt(0.5 * (1.0 + _chebyshev_point(k, count)))
                v, good = _psi(theta, layout, loss_code, base, n, l, units[b], t, scratch)
                if not good:
                    break
                values[k] = v
                largest = max(largest, abs(v))
            if not good:
                break
            coef = coef_out[n, b]
            for m in range(FIT_NODES):
                s = 0.0
                if m < count:
                    for k in range(count):
                        s += values[k] * math.cos(math.pi * m * (k + 0.5) / count)
                coef[m] = (1.0 if m == 0 else 2.0) * s / count
            degree, err = _accept(coef, count, largest, noise_unit * largest, E1[n, b], e1_noise, end)
            if err >= 0.0:
                degree_out[n, b] = degree
                err_out[n, b] = err
                break


@jit(inline=True)
def _psi(theta, layout, loss_code, base, n, l, j, t, scratch):
    """``(psi(t), usable)``: the direct path's ``(E_n(z + t) - E_n(z - t)) / 2t``.

    Usable when finite, no kink crossed and no plain difference of losses taken.
    """
    change, crossed, magnitude, finite = sample_change_checked(
        theta, layout, loss_code, base, n, l, j, t, scratch[0], scratch[1], scratch[2], scratch[3]
    )
    v = change / (2.0 * t)
    return v, not crossed and finite and magnitude == 0.0 and math.isfinite(v)


NO_FIT = (np.zeros((0, 0)), np.zeros((0, 0, FIT_NODES)), np.zeros((0, 0), dtype=np.int64), np.zeros((0, 0)))


def fit_pending(theta, layout, loss_code, X, base, l, units, E1, E1abs, lim, steps, eps, scaled, method, rows, cols):
    """``(reach, coef, degree, err)`` of :func:`fit_samples` for a block's pending entries, or empty arrays.

    Arguments as :func:`.assemble.assemble_unit_params`. Only the central
    difference and Richardson leave the series (the complex step never does).
    """
    if method not in (CENTRAL, RICHARDSON) or layout[l, FAN_IN] + 1 < FIT_MIN_ENTRIES or rows.shape[0] == 0:
        return NO_FIT
    reach = take("fit.reach", E1.shape)
    pending_reach(theta, layout, X, base.A, l, units, steps, eps, scaled, method, cols, reach)
    if not (reach > lim).any():
        return NO_FIT
    coef = take("fit.coef", E1.shape + (FIT_NODES,))
    degree = take("fit.degree", E1.shape, np.int64)
    err = take("fit.err", E1.shape)
    fit_samples(theta, layout, loss_code, base, l, units, E1, E1abs, lim, reach, coef, degree, err)
    return reach, coef, degree, err

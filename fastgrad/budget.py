"""The error budget of every entry, and the verdict it gives: how far the two numbers compared may honestly be apart.

:func:`error_budget` adds up, per entry, the difference formula's
truncation, fastgrad's own rounding and the rounding the checked gradient
carries in its dtype (docs/guide.md, "How fastgrad decides"); :func:`judge` turns
budgets into verdict codes and per-tensor summaries. :func:`fastgrad.check`
calls both.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from ._kernels import activations, codes, losses
from ._kernels.loss import loss_magnitude
from ._kernels.rounding import add_input_rounding, unit_term_scales
from ._kernels.verdict import N_COUNTS, budget_into, flag_large_steps, tensor_scales, tensor_verdicts
from .engines import Numerical
from .model import MLP
from .protocol import Model, hook

#: Largest move of a pre-activation by a step for which the truncation estimate
#: (the leading Taylor term) is trusted with a smooth activation or loss (the
#: reason above quotes it).
STEP_REACH = 0.25
#: A budget below this fraction of its tensor's largest gradient resolves an
#: entry however small the entry is (an exact zero confirmed to 1e-6 of the
#: tensor's scale is a zero); above it, an entry whose value is within its
#: budget of zero is unresolved.
NEGLIGIBLE_BUDGET = 1e-6


def user_unit_roundoff(arrays: list[Any], dtypes: list[np.dtype]) -> float:
    """Unit roundoff of the coarsest floating dtype among the user's inputs and gradient."""
    u = 2.0**-53
    for dt in [np.asarray(x).dtype for x in arrays] + list(dtypes):
        if np.issubdtype(dt, np.floating):
            u = max(u, float(np.finfo(dt).eps) / 2.0)
    return u


def forward_rounding(net: MLP, scales: np.ndarray) -> np.ndarray:
    """Per layer ``l``: roundings per term that smooth pre-activations add to the derivatives of its parameters.

    ``2 sum_{m >= l} max_j s_mj`` over the smooth layers ``m`` (sigmoid,
    tanh, softplus, softmax) from ``l`` on, whose derivatives the chain from
    layer ``l``'s parameters to the loss multiplies; ``s_mj`` the largest
    scale at which unit ``j`` of layer ``m`` is rounded (``scales``, from
    :func:`unit_term_scales`; see :mod:`fastgrad._kernels.rounding`). 0 for
    piecewise-linear nets; an outlier input inflates only the layers it
    reaches through (a global figure let one X = 1e10 loosen every budget
    of the net a billion times).
    """
    smooth = activations.CURVED_CODES
    per_layer = np.zeros(net.n_layers)
    total = 0.0
    for l in range(net.n_layers - 1, -1, -1):
        if int(net.layout[l, codes.ACT]) in smooth:
            lo = int(net.layout[l, codes.U_OFF])
            total += float(scales[lo:lo + net.sizes[l + 1]].max(initial=0.0))
        per_layer[l] = 2.0 * total
    return per_layer


def error_budget(
    net: MLP, details: Numerical, theta: np.ndarray, X: np.ndarray, Z: np.ndarray, A: np.ndarray, Y: np.ndarray,
    loss: float, engine: str, method: str, user_u: float, in_place: bool = False,
) -> np.ndarray:
    """Per entry: how far the numerical derivative and the checked gradient may each be off.

    The sum of

    * the difference formula's truncation (estimated per entry, see
      :class:`fastgrad.engines.Numerical`);
    * fastgrad's own rounding: ``4 (L + 2 + F) u absum`` (``absum``: the size
      of the terms the derivative sums, every factor in absolute value; L
      layers; u = 2^-53; ``F`` = :func:`forward_rounding` for the entry's
      layer, the relative error smooth activations' derivatives inherit from
      their rounded pre-activations), plus, for the full engine's real steps, the
      cancellation in ``E(w+h) - E(w-h)``: ``4 u M / h`` per difference,
      ``M >= |E|`` the size of the numbers the loss is computed from
      (:func:`fastgrad._kernels.loss.loss_magnitude`: a confident
      classifier's ``lse - z_y`` is tiny, its rounding is not);
    * the checked gradient's own rounding in its dtype:
      ``u_user (L + 2 + sqrt(N) + F) absum`` (``u_user`` = 2^-24 when the
      gradient, the inputs or the parameters are float32; ``absum`` already
      allows one roundoff of absolute error in every smooth activation's
      derivative, which is what ``s (1 - s)`` or ``1 - t^2`` lose in
      saturation);
    * the smallest normal number of the user's dtype (underflow);
    * for a weight of a layer after the first, the absolute rounding of its
      input activation, ``u s_i |f'(z_i)|`` (both sides' ``u``), times the size of the
      terms of its unit's delta (:func:`add_input_rounding`).

    ``in_place``: write the budget over ``details.absum`` (entry by entry,
    each read before it is written) instead of a new array: a check keeps
    one array of P doubles fewer at its peak.
    """
    L = net.n_layers
    N = Z.shape[0]
    u = 2.0**-53
    scales, act_scales = np.zeros(A.shape[1]), np.zeros(A.shape[1])
    unit_term_scales(theta, net.layout, X, Z, A, scales, act_scales)
    F = forward_rounding(net, scales)
    c_cancel = 0.0
    if engine == "full" and method != "complex":
        differences = 1.0 if method == "central" else 3.0
        c_cancel = differences * 4.0 * u * max(abs(loss), float(loss_magnitude(Z, A, Y, net.layout, net.loss_code)))
    # the inputs of every later layer are rounded activations (see _kernels.rounding): into trunc, in place
    add_input_rounding(details.trunc, details.absum, net.layout, act_scales, 2.0 * (4.0 * u + user_u))
    tiny = float(np.finfo(np.float32).tiny) if user_u > 2.0**-53 else float(np.finfo(np.float64).tiny)
    out = details.absum if in_place else np.empty_like(details.absum)
    steps = details.steps
    for l in range(L):  # layer l's W and b: one flat range
        lo, hi = int(net.offsets[2 * l]), int(net.offsets[2 * l + 2])
        c_own = 4.0 * u * (L + 2 + F[l])
        c_user = user_u * (L + 2 + math.sqrt(N) + F[l])
        budget_into(details.absum[lo:hi], details.trunc[lo:hi], steps[lo:hi] if steps.size else steps, c_own,
                    c_cancel, c_user, tiny, out[lo:hi])
    return out


def judge(
    net: Model, analytic: np.ndarray, details: Numerical, entry_budget: np.ndarray, checked: np.ndarray | None,
    user_u: float, N: int, by_budget: bool, safety: float, rtol: float, atol: float, scale_from_analytic: bool,
    theta: np.ndarray, step_reach: tuple[np.ndarray, float, bool, float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every entry's verdict code and the per-tensor counts, maxima and worst entries.

    Before judging, ``entry_budget`` (the error budget of every entry) gets, per tensor, the rounding the checked
    gradient's own arithmetic can leave at the scale of that tensor:
    ``u_user (L + 2 + sqrt(N)) max |g|`` (``g - alpha W / N`` leaves
    ~1e-17 where the true value is exactly 0; an entry's own terms do not
    bound that residue, the tensor's largest entry does).
    """
    T = len(net.tensor_names)
    offsets = np.asarray(net.offsets, dtype=np.int64)
    checked_arr = np.empty(0, dtype=bool) if checked is None else checked
    kink = details.kink.view(np.uint8) if details.kink.size else np.empty(0, dtype=np.uint8)
    if step_reach is not None:
        if not kink.size:
            kink = np.zeros(net.n_params, dtype=np.uint8)
        in_max, eps, scaled, reach = step_reach
        layout = cast(MLP, net).layout  # (a reach is computed for an MLP only: compute.py's kernel backend)
        flag_large_steps(theta, layout, in_max, eps, scaled, reach, STEP_REACH, kink)
    scales = np.empty(T)
    tensor_scales(offsets, analytic if scale_from_analytic else details.values, kink, checked_arr, scales)
    c_user_scale = user_u * (hook(net, "depth") + 2 + math.sqrt(N))
    overall = float(scales.max(initial=0.0))
    for t in range(T):  # a tensor whose gradient is all zero (every unit dead) takes the whole gradient's scale
        scale = scales[t] if scales[t] > 0.0 else overall
        if scale > 0.0:
            entry_budget[offsets[t]:offsets[t + 1]] += c_user_scale * scale
    tiny = float(np.finfo(np.float32).tiny) if user_u > 2.0**-53 else float(np.finfo(np.float64).tiny)
    negligible = np.maximum(NEGLIGIBLE_BUDGET * np.where(scales > 0.0, scales, overall), 2.0 * tiny)
    status = np.empty(net.n_params, dtype=np.uint8)
    counts = np.empty((T, N_COUNTS), dtype=np.int64)
    maxima = np.empty((T, 2))
    worst_at = np.empty(T, dtype=np.int64)
    tensor_verdicts(offsets, analytic, details.values, entry_budget, kink, checked_arr, negligible, by_budget, safety,
                    rtol, atol, status, counts, maxima, worst_at)
    return status, counts, maxima, worst_at


def step_reach(net: MLP, X: np.ndarray, A: np.ndarray, eps: float, scaled: bool, engine: str,
                method: str) -> tuple[np.ndarray, float, bool, float] | None:
    """What :func:`flag_large_steps` needs, or None when no step can be too large.

    With only identity/relu/leaky_relu and a squared-error loss the loss is
    piecewise quadratic in each parameter: the central difference is exact
    however far a step moves (kinks are flagged on their own).
    """
    smooth = activations.CURVED_CODES
    if net.loss_code in losses.QUADRATIC_CODES and not any(int(a) in smooth for a in net.layout[:, codes.ACT]):
        return None
    if engine == "unit":  # its steps are moves of the pre-activations themselves
        in_max = np.ones(sum(net.sizes[:-1]))
        return in_max, eps, False, 1.0
    parts = [np.max(np.abs(X), axis=0)]
    for l in range(net.n_layers - 1):
        lo = int(net.layout[l, codes.U_OFF])
        parts.append(np.max(np.abs(A[:, lo:lo + net.sizes[l + 1]]), axis=0))
    reach = 2.0 if method == "richardson" else 1.0
    return np.concatenate(parts), eps, scaled, reach

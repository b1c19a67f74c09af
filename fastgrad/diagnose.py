"""Recognise common backprop mistakes from the pattern of a tensor's errors.

:func:`diagnose_tensor` looks at one tensor's analytic gradient (the user's),
its numerical gradient (the reference) and which entries failed, and returns
a short hint such as ``"analytic = 2 x numerical over the whole tensor (a
factor 2: ...)"`` or ``"only column 3 of W1 is wrong"``, or None when no
known pattern fits. Every closeness test is relative to the tensor's largest
entry, so tensors with tiny gradients are diagnosed like any other.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from ._validate import _index_str

#: Two tensors "match" when they differ by at most this fraction of their largest entry.
FIT_TOLERANCE = 1e-6
#: A fitted factor is named (2, 1/2, N, 1/N, -1) when within this relative distance of it.
NAMED_FACTOR_TOLERANCE = 1e-5
#: A factor this close to 1 is not reported: the tensor is right up to small entries.
_NEAR_ONE = 10 * FIT_TOLERANCE
#: Entries of the numerical gradient below this fraction of its largest are left out of the factor fit.
_MEANINGFUL = 1e-3


def diagnose_tensor(
    name: str,
    analytic: np.ndarray,
    numerical: np.ndarray,
    failed_mask: np.ndarray,
    n_samples: int,
    param: np.ndarray | None = None,
    n_outputs: int | None = None,
) -> str | None:
    """Return a short hint about what is wrong with one tensor, or None.

    The patterns are tried in this order, and the first that fits is
    returned:

    1. the analytic gradient is all zeros while the numerical one is not;
    2. analytic = c x numerical over the whole tensor (every entry, not only
       the failing ones), with the usual factors named: 2, 1/2, N, 1/N, -1;
    3. a transposed 2-D tensor (``analytic ≈ numerical.T``), or a
       non-square one whose entries are in the other memory order;
    4. all failing entries in one column, or in one row, of a 2-D tensor;
    5. a single failing entry.

    When ``param`` (the tensor's values) is given, one more pattern is
    tried after 2: analytic - numerical = c x param over the whole tensor,
    a weight-decay (L2) term in one gradient and not in the other.

    Parameters
    ----------
    name : str
        The tensor's name (``"W1"`` ...), used in the hint.
    analytic : ndarray
        The gradient being checked, float64; not modified.
    numerical : ndarray
        The reference gradient, same shape; not modified.
    failed_mask : ndarray of bool
        Same shape; True where the entry was judged wrong.
    n_samples : int
        Batch size N, to recognise the factors N and 1/N.
    param : ndarray, optional
        The parameter tensor itself, same shape, to recognise an error
        proportional to it; not modified.
    n_outputs : int, optional
        The number of outputs K, to recognise the factors K and 1/K (a mean
        over samples where the loss averages over all N x K elements).

    Returns
    -------
    str or None
        The hint, or None when nothing failed, a value is not finite, or
        no known pattern fits.

    Raises
    ------
    ValueError
        When the three arrays do not have the same shape, or ``n_samples``
        is below 1.
    TypeError
        When ``n_samples`` is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> n = np.array([[0.1, -0.2], [0.3, 0.4]])
    >>> print(diagnose_tensor("W2", 2 * n, n, np.ones((2, 2), bool), n_samples=8))
    analytic = 2 x numerical over the whole tensor (a factor 2: a missing 1/2, or a squared loss's 2 counted twice?)
    >>> diagnose_tensor("W2", n.T, n, n != n.T, n_samples=8)
    'W2 looks transposed'
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numerical, dtype=np.float64)
    failed = np.asarray(failed_mask)
    _check_arguments(a, n, failed, n_samples)
    failed = failed.astype(bool, copy=False)
    if not failed.any() or not (np.isfinite(a).all() and np.isfinite(n).all()):
        return None
    detectors: tuple[Callable[..., str | None], ...] = (
        _all_zeros,
        _constant_factor,
        _transposed,
        _one_column_or_row,
        _single_entry,
    )
    for detect in detectors:
        if detect is _constant_factor:
            hint = _constant_factor(name, a, n, failed, int(n_samples), n_outputs)
        else:
            hint = detect(name, a, n, failed, int(n_samples))
        if hint is not None:
            return hint
        if detect is _constant_factor and param is not None:
            hint = _proportional_to_param(name, a, n, np.asarray(param, dtype=np.float64))
            if hint is not None:
                return hint
    return None


def _check_arguments(a: np.ndarray, n: np.ndarray, failed: np.ndarray, n_samples: object) -> None:
    if n.shape != a.shape:
        raise ValueError(f"numerical has shape {n.shape}, expected {a.shape} (the shape of analytic)")
    if failed.shape != a.shape:
        raise ValueError(f"failed_mask has shape {failed.shape}, expected {a.shape} (the shape of analytic)")
    if isinstance(n_samples, (bool, np.bool_)) or not isinstance(n_samples, (numbers.Integral, np.integer)):
        raise TypeError(f"n_samples must be an int, got {type(n_samples).__name__}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")


# --------------------------------------------------------------------------
# the patterns, in the order they are tried
# --------------------------------------------------------------------------


def _all_zeros(name: str, a: np.ndarray, n: np.ndarray, failed: np.ndarray, n_samples: int) -> str | None:
    if not a.any() and n.any():
        return f"all zeros: the gradient of {name} was never written?"
    return None


def _constant_factor(name: str, a: np.ndarray, n: np.ndarray, failed: np.ndarray, n_samples: int,
                     n_outputs: int | None = None) -> str | None:
    scale = float(np.max(np.abs(n)))
    if scale == 0.0:
        return None
    meaningful = np.abs(n) > _MEANINGFUL * scale
    a_fit, n_fit = a[meaningful], n[meaningful]
    # divide by scale first: <n, n> of tiny gradients would underflow
    n_fit_scaled = n_fit / scale
    factor = float(np.dot(a_fit / scale, n_fit_scaled) / np.dot(n_fit_scaled, n_fit_scaled))
    if not np.isfinite(factor) or factor == 0.0 or abs(factor - 1.0) <= _NEAR_ONE:
        return None
    if not _close(a, factor * n):
        return None
    return _factor_hint(factor, n_samples, n_outputs)


def _proportional_to_param(name: str, a: np.ndarray, n: np.ndarray, w: np.ndarray) -> str | None:
    """``a - n = c w`` over the whole tensor: an L2 term ``(c/2)|w|^2`` differentiated in one gradient only."""
    if w.shape != a.shape or not np.isfinite(w).all():
        return None
    w_scale = float(np.max(np.abs(w), initial=0.0))
    if w_scale == 0.0:
        return None
    d = a - n
    ws = w / w_scale  # scaled first: <w, w> of tiny parameters would underflow
    c = float(np.dot(d.ravel(), ws.ravel()) / np.dot(ws.ravel(), ws.ravel())) / w_scale
    if not np.isfinite(c) or c == 0.0 or not _close(d, c * w):
        return None
    if np.count_nonzero(w) < 2 and a.size > 1:
        return None  # one nonzero parameter fits any single wrong entry
    shown = _format_factor(abs(c))
    if c > 0:
        cause = f"the analytic gradient has a weight-decay term {shown} x {name} that the loss does not"
    else:
        cause = f"the analytic gradient lacks the weight-decay term {shown} x {name} that the loss has"
    return f"analytic - numerical = {_format_factor(c)} x {name} over the whole tensor ({cause}: L2 penalty " \
           f"(lambda/2)|{name}|^2 with lambda = {shown}?)"


def _transposed(name: str, a: np.ndarray, n: np.ndarray, failed: np.ndarray, n_samples: int) -> str | None:
    if a.ndim != 2 or min(a.shape) < 2:
        return None  # a vector's transposed order is its own order
    other_order = n.T.reshape(a.shape)
    if not _close(a, other_order) or _close(a, n):
        return None
    if a.shape[0] == a.shape[1]:
        return f"{name} looks transposed"
    return f"{name}'s entries are in transposed order"


def _one_column_or_row(name: str, a: np.ndarray, n: np.ndarray, failed: np.ndarray, n_samples: int) -> str | None:
    if a.ndim != 2 or np.count_nonzero(failed) < 2:
        return None  # one failing entry is reported as such
    return position_hint(name, a.shape, np.flatnonzero(failed))


def _single_entry(name: str, a: np.ndarray, n: np.ndarray, failed: np.ndarray, n_samples: int) -> str | None:
    if np.count_nonzero(failed) != 1:
        return None
    return position_hint(name, a.shape, np.flatnonzero(failed))


def position_hint(name: str, shape: tuple[int, ...], failing: np.ndarray) -> str | None:
    """Patterns 4 and 5 from the flat indices of the failing entries alone: one entry, one column, one row.

    :func:`fastgrad.check` uses it directly on tensors too large to diagnose
    whole (the value patterns are then looked for on a sample).
    """
    if failing.size == 1:
        index = tuple(int(i) for i in np.unravel_index(int(failing[0]), shape))
        return f"only entry {_index_str(index)} of {name} is wrong"
    if len(shape) != 2 or failing.size < 2:
        return None
    rows, cols = np.unravel_index(failing, shape)
    if shape[1] > 1 and (cols == cols[0]).all():
        return f"only column {int(cols[0])} of {name} is wrong"
    if shape[0] > 1 and (rows == rows[0]).all():
        return f"only row {int(rows[0])} of {name} is wrong"
    return None


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _close(x: np.ndarray, y: np.ndarray) -> bool:
    """Tell whether ``x`` and ``y`` differ by at most ``FIT_TOLERANCE`` of their largest entry."""
    scale = max(float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(y), initial=0.0)))
    if scale == 0.0:
        return True
    return float(np.max(np.abs(x - y), initial=0.0)) <= FIT_TOLERANCE * scale


def _named_factors(n_samples: int, n_outputs: int | None = None) -> list[tuple[float, str, str]]:
    """``(value, how it is printed, likely cause)`` of the factors worth naming."""
    named = [
        (2.0, "2", "a factor 2: a missing 1/2, or a squared loss's 2 counted twice?"),
        (0.5, "0.5", "a factor 1/2: a squared loss's 2 dropped, or a 1/2 applied twice?"),
    ]
    if n_samples > 1:
        named += [
            (float(n_samples), str(n_samples), f"factor N = {n_samples}: sum over the batch instead of the mean?"),
            (1.0 / n_samples, f"1/{n_samples}", "factor 1/N: divided by the batch size twice, or where the loss "
                                                "sums over the batch?"),
        ]
    if n_outputs is not None and n_outputs > 1:
        K = n_outputs
        named += [
            (float(K), str(K), f"factor K = {K} outputs: a mean over the samples where the loss is the mean over "
                               "all N x K elements (reduction='mean_all'), or the other way round?"),
            (1.0 / K, f"1/{K}", f"factor 1/K = 1/{K} outputs: divided by the number of outputs where the loss "
                                "is not (reduction='mean_all' vs 'mean')?"),
        ]
    return named


def _factor_hint(factor: float, n_samples: int, n_outputs: int | None = None) -> str:
    whole = "x numerical over the whole tensor"
    if abs(factor + 1.0) <= NAMED_FACTOR_TOLERANCE:
        return f"analytic = -1 {whole} (factor -1: sign flipped, e.g. (x - y) vs (y - x))"
    magnitude = abs(factor)
    matches = [
        (shown, cause)
        for value, shown, cause in _named_factors(n_samples, n_outputs)
        if abs(magnitude - value) <= NAMED_FACTOR_TOLERANCE * value
    ]
    if matches:
        shown = matches[0][0]
        causes = " / ".join(cause for _, cause in matches)
        if factor < 0:
            return f"analytic = -{shown} {whole} (sign flipped, e.g. (x - y) vs (y - x), and {causes})"
        return f"analytic = {shown} {whole} ({causes})"
    shown = _format_factor(factor)
    return f"scaled by {shown}: analytic = {shown} {whole}"


def _format_factor(factor: float) -> str:
    """Four significant digits, or more when needed to show how far it is from 1."""
    for digits in range(4, 17):
        text = f"{factor:.{digits}g}"
        if abs(float(text) - factor) <= 0.1 * abs(factor - 1.0):
            return text
    return repr(factor)

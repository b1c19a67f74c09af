"""Call a user's backprop ``grads(params, X, Y)`` safely and watch how it behaves.

:func:`call_user_grads` runs the callable twice, each time on fresh deep
copies of the inputs, so that the caller's arrays can never be written to.
It validates what comes back and turns two kinds of misbehaviour into notes
(strings for the report) rather than errors, because the gradient itself may
still be checked:

* a side effect: the callable wrote into one of the arrays it was given;
* nondeterminism: two calls on identical inputs returned different values
  (for instance a gradient buffer that is accumulated into and never zeroed,
  which makes the second result twice the first).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from ._validate import _index_str
from .protocol import Model, hook

#: The argument name used in messages about the callable's return value.
RETURNED = "grads (returned by the callable)"

#: Relative tolerance (to the largest entry) for "the second result is 2 x the first".
_DOUBLING_TOLERANCE = 1e-12


def call_user_grads(
    grads_fn: Callable[[Any, Any, Any], Any], net: Model, params: Any, X: Any, Y: Any
) -> tuple[np.ndarray, list[str], list[np.dtype]]:
    """Call ``grads_fn(params, X, Y)`` twice on copies; validate and compare.

    Parameters
    ----------
    grads_fn : callable
        The user's backprop, ``grads_fn(params, X, Y) -> [dW1, db1, ...]``.
    net : MLP or Model
        The network; gives the expected tensor names and shapes.
    params : list of array_like
        ``[W1, b1, ...]`` as the user gave them; never modified. Each call
        gets a fresh deep copy (same container type, dtypes and memory order).
    X, Y : array_like
        The minibatch and targets as the user gave them; never modified,
        deep-copied for each call like ``params``.

    Returns
    -------
    flat : ndarray
        The first call's gradient as one new flat float64 vector, in
        ``net.flatten`` order.
    notes : list of str
        Side effects and nondeterminism found, one sentence each, e.g.
        ``"grads callable modified its argument params['W1'] in place (first
        change at index (0, 3))"``; empty when all is well.
    dtypes : list of numpy.dtype
        The dtypes of the arrays the first call returned (``float32`` for a
        single-precision backprop), one per tensor.

    Raises
    ------
    TypeError
        ``grads_fn`` is not callable (a list of arrays included: validate one
        with ``net.flatten(grads, "grads")``), or it returned something that
        is not a list of real numeric arrays.
    ValueError
        It returned the wrong number of tensors, a wrong shape or a NaN/Inf;
        the message names the tensor and the index, e.g. ``"grads (returned
        by the callable): tensor 'b2' has a non-finite value (nan) at index
        (1,)"``.
    Exception
        Whatever ``grads_fn`` raises propagates unchanged.
    """
    if isinstance(grads_fn, (list, tuple)):
        raise TypeError(
            "grads is a list of arrays, not a callable: call_user_grads calls a backprop; "
            "validate a list with net.flatten(grads, 'grads') instead"
        )
    if not callable(grads_fn):
        raise TypeError(
            f"grads must be a list of arrays [{', '.join(net.tensor_names)}] or a callable "
            f"grads(params, X, Y) returning one, got {type(grads_fn).__name__}"
        )
    pristine = {"params": copy.deepcopy(params), "X": copy.deepcopy(X), "Y": copy.deepcopy(Y)}
    notes: list[str] = []
    flats: list[np.ndarray] = []
    dtypes: list[np.dtype] = []
    for _ in range(2):
        given = copy.deepcopy(pristine)
        returned = grads_fn(given["params"], given["X"], given["Y"])
        # flatten at once: a callable that reuses its output buffer would
        # otherwise change the first result during the second call
        flats.append(net.flatten(returned, RETURNED))
        if not dtypes:
            dtypes = [np.asarray(g).dtype for g in hook(net, "tensors")(returned, RETURNED)]
        for note in _side_effect_notes(given, pristine, net.tensor_names):
            if note not in notes:
                notes.append(note)
    first, second = flats
    if not np.array_equal(first, second):
        notes.append(_nondeterminism_note(first, second, net))
    return first, notes, dtypes


# --------------------------------------------------------------------------
# side effects
# --------------------------------------------------------------------------


def _side_effect_notes(given: dict[str, Any], pristine: dict[str, Any], tensor_names: tuple[str, ...]) -> list[str]:
    """One note per argument (or params tensor) the callable wrote into."""
    notes = []
    for argument in ("params", "X", "Y"):
        for label, change in _changes(argument, given[argument], pristine[argument], tensor_names):
            notes.append(f"grads callable modified its argument {label} in place ({change})")
    return notes


def _changes(
    argument: str, received: Any, original: Any, tensor_names: tuple[str, ...]
) -> list[tuple[str, str]]:
    """``(label, what changed)`` pairs for one argument; empty when untouched."""
    if isinstance(original, dict) and isinstance(received, dict):  # check_function's dict params, by key
        found = []
        for key, before in original.items():
            change = "it was removed" if key not in received else _first_change(received[key], before)
            if change is not None:
                found.append((f"{argument}[{key!r}]", change))
        return found
    if argument != "params" or not isinstance(original, (list, tuple)):
        change = _first_change(received, original)
        return [] if change is None else [(argument, change)]
    found = []
    if len(received) != len(original):
        found.append((argument, f"it now holds {len(received)} tensors instead of {len(original)}"))
    for i, (now, before) in enumerate(zip(received, original)):
        name = tensor_names[i] if i < len(tensor_names) else str(i)
        change = _first_change(now, before)
        if change is not None:
            found.append((f"{argument}[{name!r}]", change))
    return found


def _first_change(received: Any, original: Any) -> str | None:
    """Describe the first difference between two array_likes, or None."""
    try:
        now = np.asarray(received)
    except Exception:  # e.g. a nested list made ragged
        return "it is no longer an array"
    before = np.asarray(original)
    if now.shape != before.shape:
        return f"its shape changed from {before.shape} to {now.shape}"
    if now.dtype != before.dtype:
        return f"its dtype changed from {before.dtype} to {now.dtype}"
    changed = np.asarray(now != before)
    if now.dtype.kind in "fc":
        changed &= ~(np.isnan(now) & np.isnan(before))
    if not changed.any():
        return None
    index = tuple(int(i) for i in np.argwhere(changed)[0]) if changed.ndim else ()
    return f"first change at index {_index_str(index)}"


# --------------------------------------------------------------------------
# nondeterminism
# --------------------------------------------------------------------------


def _nondeterminism_note(first: np.ndarray, second: np.ndarray, net: Model) -> str:
    """Say where two results differ most, and whether the second is 2 x the first."""
    difference = np.abs(second - first)
    worst = int(np.argmax(difference))
    name, index = net.locate(worst)
    a, b = _distinct_strings(float(first[worst]), float(second[worst]))
    n_differ = int(np.count_nonzero(first != second))
    note = (
        f"grads callable is nondeterministic: two calls on identical inputs differ in {n_differ} of "
        f"{first.size} entries, most in {name!r} at index {_index_str(index)} ({a} vs {b})"
    )
    if _is_double(first, second):
        note += "; the second result is 2 x the first: a gradient buffer accumulated into and never zeroed?"
    return note


def _is_double(first: np.ndarray, second: np.ndarray) -> bool:
    """Tell whether ``second == 2 * first`` to rounding, with ``first`` not all zero."""
    scale = float(np.max(np.abs(first))) if first.size else 0.0
    if scale == 0.0:
        return False
    return bool(np.max(np.abs(second - 2.0 * first)) <= _DOUBLING_TOLERANCE * 2.0 * scale)


def _distinct_strings(a: float, b: float) -> tuple[str, str]:
    """Format two different floats with the fewest digits (>= 3) that tell them apart."""
    for digits in range(3, 18):
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if sa != sb:
            return sa, sb
    return repr(a), repr(b)

"""Input validation: turn user input into trusted float64 arrays or raise.

Every message names the argument and, where it applies, the tensor and the
index, so that a bad value can be found without a debugger. Nothing here
writes into the caller's arrays: conversions produce new arrays, except that
``copy=False`` may hand back a caller's float64 array itself, for callers
that copy it before any use (:func:`flat_copy`). Large arrays are copied
and scanned for NaN/inf in one parallel pass (:mod:`._kernels.copy`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._kernels.copy import copy_count_nonfinite, count_nonfinite


def _index_str(index: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(i)) for i in index) + ("," if len(index) == 1 else "") + ")"


#: Arrays at least this large are copied and scanned by a parallel kernel
#: (below it a kernel call's overhead outweighs the work).
PARALLEL_MIN_SIZE = 1 << 15


def _copy_count_nonfinite(src: np.ndarray, dst: np.ndarray) -> int:
    """Copy the 1-D ``src`` into ``dst``; return how many of its entries are NaN or infinite."""
    if src.size >= PARALLEL_MIN_SIZE:
        return int(copy_count_nonfinite(src, dst))
    dst[...] = src
    return _count_nonfinite(dst)


def _count_nonfinite(flat: np.ndarray) -> int:
    """How many entries of the 1-D ``flat`` are NaN or infinite."""
    if flat.size >= PARALLEL_MIN_SIZE:
        return int(count_nonfinite(flat))
    # a finite sum proves every entry finite (NaN and inf propagate); only
    # otherwise (a bad entry, or an overflowing sum) are the entries counted
    with np.errstate(over="ignore", invalid="ignore"):
        total = flat.sum()
    return 0 if math.isfinite(total) else int(flat.size - np.count_nonzero(np.isfinite(flat)))


def raise_non_finite(arr: np.ndarray, argument: str, tensor: str | None = None) -> None:
    """Raise the ``ValueError`` naming the first NaN or infinite entry of ``arr`` (if it has one)."""
    where = f"{argument}: tensor {tensor!r}" if tensor else argument
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size == 0:
        return
    index = tuple(int(i) for i in bad[0])
    raw = arr[index] if arr.ndim else arr[()]
    raise ValueError(f"{where} has a non-finite value ({raw}) at index {_index_str(index)}")


def as_float_array(
    value: Any, argument: str, tensor: str | None = None, copy: bool = True, finite: bool = True
) -> np.ndarray:
    """Return a C-contiguous float64 array of a real numeric array (a new copy by default).

    Parameters
    ----------
    value : array_like
        Integer or floating values; bool, complex, object and strings raise.
    argument : str
        The argument's name, for messages (``"params"``, ``"X"`` ...).
    tensor : str, optional
        The tensor's name within the argument (``"W1"`` ...).
    copy : bool
        Always return a new array. Without it a float64 C-contiguous input
        is returned as it is (for callers that copy it themselves and never
        write into it).
    finite : bool
        Check that every entry is finite. Only callers that check the copy
        they make (:func:`flat_copy`) turn this off.

    Raises
    ------
    TypeError
        For a non-numeric, bool or complex dtype.
    ValueError
        For a NaN or infinite entry (the message gives its index).
    """
    where = f"{argument}: tensor {tensor!r}" if tensor else argument
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{where} is not a numeric array ({exc})") from None
    kind = arr.dtype.kind
    if kind == "b" or kind not in "iuf":
        raise TypeError(
            f"{where} has dtype {arr.dtype}; expected a real integer or floating dtype"
        )
    if arr.dtype == np.float64 and arr.flags.c_contiguous:
        if copy and finite:
            out = np.empty(arr.shape, dtype=np.float64)
            bad = _copy_count_nonfinite(arr.reshape(-1), out.reshape(-1))
        elif copy:
            out = arr.copy()
            bad = 0
        else:
            out = arr
            bad = _count_nonfinite(arr.reshape(-1)) if finite else 0
    else:
        # a conversion makes a new array; checked after it, since a long double can overflow float64
        out = np.array(arr, dtype=np.float64, order="C", copy=True)
        bad = _count_nonfinite(out.reshape(-1)) if finite else 0
    if bad:
        raise_non_finite(out, argument, tensor)
    return out


def check_shape(arr: np.ndarray, expected: tuple[int, ...], argument: str, tensor: str | None = None) -> None:
    """Raise ``ValueError`` unless ``arr.shape == expected``."""
    if arr.shape != tuple(expected):
        where = f"{argument}: tensor {tensor!r}" if tensor else argument
        raise ValueError(f"{where} has shape {arr.shape}, expected {tuple(expected)}")


def tensor_list(
    values: Any, names: Sequence[str], shapes: Sequence[tuple[int, ...]], argument: str, copy: bool = True,
    finite: bool = True,
) -> list[np.ndarray]:
    """Validate a list of tensors (params or grads) against the model's shapes.

    Without ``copy``, float64 tensors come back as the caller's own arrays
    (see :func:`as_float_array`): only for callers that copy them. Without
    ``finite``, NaN and inf are not looked for: only for callers that check
    their copy (:func:`flat_copy`).
    """
    if isinstance(values, np.ndarray) or not isinstance(values, (list, tuple)):
        raise TypeError(
            f"{argument} must be a list of arrays [{', '.join(names)}], got {type(values).__name__}"
        )
    if len(values) != len(names):
        raise ValueError(
            f"{argument} has {len(values)} tensors, expected {len(names)} ({', '.join(names)})"
        )
    out = []
    for value, name, shape in zip(values, names, shapes):
        arr = as_float_array(value, argument, name, copy, finite)
        check_shape(arr, shape, argument, name)
        out.append(arr)
    return out


def flat_copy(
    values: Any, names: Sequence[str], shapes: Sequence[tuple[int, ...]], argument: str
) -> np.ndarray:
    """Validate a list of tensors like :func:`tensor_list` and return them as one new flat float64 vector.

    Copy and NaN/inf scan are one pass, in parallel for large tensors.
    """
    tensors = tensor_list(values, names, shapes, argument, copy=False, finite=False)
    flat = np.empty(sum(t.size for t in tensors), dtype=np.float64)
    start = 0
    for t, name in zip(tensors, names):
        stop = start + t.size
        if _copy_count_nonfinite(t.reshape(-1), flat[start:stop]):
            raise_non_finite(t, argument, name)
        start = stop
    return flat


def batch(X: Any, Y: Any | None, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a minibatch ``X`` (N, n_in) and targets ``Y`` (N, n_out)."""
    Xa = as_float_array(X, "X")
    if Xa.ndim != 2:
        raise ValueError(f"X must be 2-D (N, {n_in}) with one row per sample, got shape {Xa.shape}")
    if Xa.shape[0] == 0:
        raise ValueError("X is an empty batch (N = 0); at least one sample is needed")
    if Xa.shape[1] != n_in:
        raise ValueError(f"X has {Xa.shape[1]} columns, expected {n_in} (sizes[0])")
    if Y is None:
        return Xa, None
    Ya = as_float_array(Y, "Y")
    if Ya.ndim != 2:
        raise ValueError(f"Y must be 2-D (N, {n_out}) with one row per sample, got shape {Ya.shape}")
    if Ya.shape[0] != Xa.shape[0]:
        raise ValueError(f"Y has {Ya.shape[0]} rows but X has {Xa.shape[0]}: one target row per sample")
    if Ya.shape[1] != n_out:
        raise ValueError(f"Y has {Ya.shape[1]} columns, expected {n_out} (sizes[-1])")
    return Xa, Ya


def positive_float(value: Any, argument: str, allow_zero: bool = False) -> float:
    """Validate a finite positive (or non-negative) real scalar."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{argument} must be a real number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out) or out < 0 or (out == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{argument} must be finite and {bound}, got {value!r}")
    return out


def thread_count(value: Any, maximum: int) -> int | None:
    """Validate the ``threads`` option (None or 1..maximum)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"threads must be an int or None, got {type(value).__name__}")
    if not 1 <= int(value) <= maximum:
        raise ValueError(f"threads must be between 1 and {maximum} (NUMBA_NUM_THREADS), got {value}")
    return int(value)


def choice(value: Any, options: Sequence[str], argument: str) -> str:
    """Validate a string option against its allowed values."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{argument} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value

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
import operator
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._kernels.copy import copy_count_nonfinite, count_nonfinite
from ._scratch import take
from .protocol import is_model


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
    value: Any, argument: str, tensor: str | None = None, copy: bool = True, finite: bool = True,
    keep_as: str | None = None,
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
    keep_as : str, optional
        Make the copy in the kept scratch buffer of that name
        (:func:`fastgrad._scratch.take`), for a caller that lets it go nowhere.

    Raises
    ------
    TypeError
        For a non-numeric, bool or complex dtype.
    ValueError
        For a NaN or infinite entry (the message gives its index).
    """
    where = f"{argument}: tensor {tensor!r}" if tensor else argument
    if value is None:
        raise MissingArrayError(f"{where} is None; expected a real numeric array")
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
            out = take(keep_as, arr.shape)
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


def batch(X: Any, Y: Any | None, n_in: int, n_out: int, keep: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a minibatch ``X`` (N, n_in) and targets ``Y`` (N, n_out); ``keep``: copies in kept scratch."""
    Xa = as_float_array(X, "X", keep_as="inputs.X" if keep else None)
    if Xa.ndim != 2:
        raise ValueError(f"X must be 2-D (N, {n_in}) with one row per sample, got shape {Xa.shape}")
    if Xa.shape[0] == 0:
        raise ValueError("X is an empty batch (N = 0); at least one sample is needed")
    if Xa.shape[1] != n_in:
        raise ValueError(f"X has {Xa.shape[1]} columns, expected {n_in} (sizes[0])")
    if Y is None:
        return Xa, None
    Ya = as_float_array(Y, "Y", keep_as="inputs.Y" if keep else None)
    if Ya.ndim != 2:
        raise ValueError(f"Y must be 2-D (N, {n_out}) with one row per sample, got shape {Ya.shape}")
    if Ya.shape[0] != Xa.shape[0]:
        raise ValueError(f"Y has {Ya.shape[0]} rows but X has {Xa.shape[0]}: one target row per sample")
    if Ya.shape[1] != n_out:
        raise ValueError(f"Y has {Ya.shape[1]} columns, expected {n_out} (sizes[-1])")
    return Xa, Ya


def class_labels(Y: Any, n_classes: int) -> Any:
    """``Y`` as one-hot rows when it is integer class labels of shape (N,); otherwise ``Y`` unchanged.

    Labels outside ``0 .. n_classes - 1`` raise ``ValueError`` naming the
    first one and its index.
    """
    if Y is None or isinstance(Y, (str, bytes)):
        return Y
    try:
        labels = np.asarray(Y)
    except Exception:  # a ragged list: batch() names it
        return Y
    if labels.ndim == 2 and labels.shape[1] == 1 and n_classes > 1 and labels.dtype.kind in "iu":
        raise ValueError(f"Y has shape {labels.shape}, integer class labels in one column: pass them as shape "
                         f"(N,) (Y.ravel()), or one-hot rows of shape (N, {n_classes})")
    if labels.ndim == 1 and labels.dtype.kind == "f":
        raise ValueError(f"Y has shape {labels.shape} and dtype {labels.dtype}: class labels must be integers "
                         f"of shape (N,) (e.g. Y.astype(int)), or targets one row per sample, (N, {n_classes})")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        return Y
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"Y: class label {labels[i]} at index ({i},) is out of range: labels must be integers "
                         f"in 0 .. {n_classes - 1} (sizes[-1] = {n_classes} classes); {bad.size} label(s) are out "
                         "of range")
    onehot = np.zeros((labels.size, n_classes), dtype=np.float64)
    onehot[np.arange(labels.size), labels] = 1.0
    return onehot


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


def integer(value: Any, argument: str, minimum: int | None = None) -> int:
    """Validate an integer option: any integral type (``int``, ``np.int64`` ...), never a bool or a float.

    Raises ``TypeError`` for a non-integral value and ``ValueError`` below ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument} must be an int, got the bool {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"{argument} must be an int, got {type(value).__name__} {value!r}") from None
    if minimum is not None and out < minimum:
        raise ValueError(f"{argument} must be an int >= {minimum}, got {out}")
    return out


#: What ``seed`` may be: what ``numpy.random.default_rng`` takes, minus what it would reject later.
SEED_KINDS = "None, a non-negative int, a sequence of them, or a numpy.random Generator/BitGenerator/SeedSequence"


def _seed_int(value: Any, argument: str) -> int:
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(f"{argument} must be {SEED_KINDS}; got {type(value).__name__} {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"{argument} must be {SEED_KINDS}; got {type(value).__name__} {value!r}") from None
    if out < 0:
        raise ValueError(f"{argument} must be a non-negative int (or None), got {out}")
    return out


def seed(value: Any, argument: str = "seed") -> Any:
    """Validate a seed for ``numpy.random.default_rng`` and return it (ints as Python ints).

    Accepted: None, a non-negative integer of any integral type, a
    non-empty 1-D sequence of them, or a ``numpy.random`` ``Generator``,
    ``BitGenerator`` or ``SeedSequence`` (what fastgrad has always passed on
    to ``default_rng``). Bools, floats, strings and negative integers raise
    ``TypeError`` or ``ValueError`` naming ``argument``.
    """
    if value is None or isinstance(value, (np.random.Generator, np.random.BitGenerator, np.random.SeedSequence)):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _seed_int(value[()], argument)
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes)):
        if isinstance(value, np.ndarray) and value.ndim != 1:
            raise ValueError(f"{argument} as an array must be 1-D, got shape {value.shape}")
        if len(value) == 0:
            raise ValueError(f"{argument} is an empty sequence; expected {SEED_KINDS}")
        return [_seed_int(v, f"{argument}[{i}]") for i, v in enumerate(value)]
    return _seed_int(value, argument)


class MissingArrayError(ValueError, TypeError):
    """A required array is None: a ``ValueError`` (a missing value) that is also a ``TypeError`` (None's type)."""


def required(value: Any, argument: str, expected: str) -> None:
    """Raise :class:`MissingArrayError` naming ``argument`` when a required array is None."""
    if value is None:
        raise MissingArrayError(f"{argument} is None; expected {expected}")


def entry_arguments(
    net: Any, X: Any, Y: Any, seed_value: Any, per_param: int, what: str, entries: Any = None
) -> None:
    """Run the checks at the top of :func:`fastgrad.check` and :func:`fastgrad.numerical_gradient`.

    ``X`` and ``Y`` are required (None would reach a Numba kernel);
    ``seed`` is validated whether or not it will be used; and a batch too
    large for the memory left (``per_param`` bytes a parameter plus the
    activations, at the least) is refused before anything is allocated.
    ``entries`` (check's mask) must have a bool dtype: a float or int array
    would be silently cast to a different mask.
    """
    required(X, "X", "an array of shape (N, D), one row per sample")
    required(Y, "Y", "an array of targets of shape (N, K), one row per sample")
    seed(seed_value)
    if entries is not None:
        try:
            kind = np.asarray(entries).dtype
        except Exception:  # noqa: BLE001 - ragged lists and the like
            kind = None
        if kind != np.bool_:
            raise TypeError(f"entries must be a bool mask (dtype bool, one entry per parameter), got dtype {kind}")
    check_work_memory(net, X, per_param, what)


# ------------------------------------------------------------------ memory

#: Largest array fastgrad will try to build, in bytes (NumPy's limit is the
#: largest intp; beyond 2**62 byte counts stop being meaningful anyway).
MAX_BYTES = 2**62


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except (OSError, ValueError):
        return None
    return int(text) if text.isdigit() else None


def _cgroup_stat(path: str, key: str) -> int:
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def available_memory() -> int | None:
    """Bytes of memory a new allocation can use, or None when it cannot be told.

    Linux: ``MemAvailable`` of ``/proc/meminfo``, lowered to what a cgroup
    memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) leaves
    (its usage less the inactive page cache, which is reclaimable).
    Elsewhere: the physical memory (``os.sysconf``), an upper bound.
    """
    found: int | None = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    parts = line.split()
                    found = int(parts[1]) * (1024 if len(parts) > 2 and parts[2].lower() == "kb" else 1)
                    break
    except (OSError, ValueError):
        found = None
    if found is None:
        try:
            found = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            found = None
        if found is not None and found <= 0:
            found = None
    for folder, limit_name, usage_name, inactive_key in (
        ("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
    ):
        limit = _read_int(os.path.join(folder, limit_name))
        if limit is None or limit >= 2**60:  # "max", or v1's "unlimited" (a huge number)
            continue
        usage = _read_int(os.path.join(folder, usage_name)) or 0
        # the usage counts page cache; its inactive part is reclaimed before an allocation fails
        usage -= min(usage, _cgroup_stat(os.path.join(folder, "memory.stat"), inactive_key))
        left = max(0, limit - usage)
        found = left if found is None else min(found, left)
    return found


def format_bytes(n: int | float) -> str:
    """``n`` bytes as a short human figure: ``"80.0 GB"`` (powers of 1000)."""
    n = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB", "EB"):
        if n < 1000.0 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.3g} EB"  # pragma: no cover


#: Below this many bytes the memory available is not looked up (reading it
#: costs ~0.1 ms, which small periodic checks should not pay).
MEMORY_FLOOR = 1 << 26


def memory_shortfall(nbytes: int) -> str | None:
    """None when ``nbytes`` can be allocated; otherwise the end of a message saying why not.

    ``nbytes`` is a Python int (no overflow); refused above :data:`MAX_BYTES`
    or above :func:`available_memory` (looked up from :data:`MEMORY_FLOOR` up).
    """
    if nbytes > MAX_BYTES:
        return "more than any machine can address (2**62 bytes)"
    if nbytes < MEMORY_FLOOR:
        return None
    available = available_memory()
    if available is not None and nbytes > available:
        return f"more than the {format_bytes(available)} of memory available"
    return None


#: Bytes per parameter a check allocates at its peak, measured on a 10^8-parameter net (docs/performance.md,
#: "A 100 M-parameter net": 34-36 above the user's inputs for a full or sampled check, 71 for
#: method="directional", 17 for numerical_gradient; bench/bench_memory.py: near 70 with engine="full"),
#: rounded up. A check is refused up front when they
#: do not fit: an estimate below the peak (the 24 of three P-vectors, before) let a check start that the
#: kernel's out-of-memory killer would end.
CHECK_BYTES_PER_PARAM = 36
DOUBLE_BYTES_PER_PARAM = 72
NUMERICAL_BYTES_PER_PARAM = 17
#: Bytes per sample and unit of the forward pass's pre-activations and activations (two float64 arrays).
ACTIVATION_BYTES = 16


def work_memory(n_params: int, n_units: int, n_samples: int, per_param: int) -> int:
    """Return what a check (``per_param`` bytes a parameter at its peak) allocates, in bytes."""
    return per_param * int(n_params) + ACTIVATION_BYTES * int(n_samples) * int(n_units)


def check_work_memory(net: Any, X: Any, per_param: int, what: str) -> None:
    """Raise ``ValueError`` before a check whose working memory cannot fit.

    Only arrays with a ``shape`` are measured (a list is converted later,
    by :func:`batch`, which then needs its memory anyway).
    """
    shape = getattr(X, "shape", None)
    if not is_model(net) or not isinstance(shape, tuple) or len(shape) != 2:
        return  # (check() names a wrong net or X itself)
    n_samples = int(shape[0])
    n_params = int(net.n_params)
    # an MLP's activations: every unit of every sample (a model without layer sizes is counted by its parameters)
    n_units = sum(net.sizes[1:]) if hasattr(net, "sizes") else 0
    need = work_memory(n_params, n_units, n_samples, per_param)
    short = memory_shortfall(need)
    if short is None:
        return
    params_part = per_param * n_params
    acts_part = need - params_part
    if acts_part >= params_part:
        raise ValueError(
            f"X: {n_samples:,} rows through {n_units:,} units need about {format_bytes(need)} for {what} "
            f"({format_bytes(acts_part)} of activations, {ACTIVATION_BYTES} bytes per row and unit), {short}; "
            "check a smaller batch"
        )
    raise ValueError(f"net: {n_params:,} parameters need about {format_bytes(need)} for {what} "
                     f"({per_param} bytes per parameter, its measured peak), {short}")

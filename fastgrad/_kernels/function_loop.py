"""The compiled per-parameter loop for a user's own Numba-jitted loss (for ``fastgrad.check_function``).

The user gives ``f(params, *args)``, a Numba CPU dispatcher (``@numba.njit``)
taking a tuple of parameter arrays and returning the loss. :func:`loss_table`
evaluates it once per wanted flat entry and multiple of that entry's step
(``+h, -h, +2h, ...``), :func:`complex_table` once per wanted entry with the
entry moved by ``1j h`` (complex step); both in one ``parallel=True`` kernel:

* the ``n`` wanted entries are split statically into one contiguous chunk per
  thread (``numba.get_num_threads()`` chunks, fewer when ``n`` is smaller);
* each chunk makes **one** private copy of the parameter tuple (``threads x
  P`` numbers in all, however many entries; never the caller's arrays), then
  for each of its entries remembers the value ``w``, sets the entry, calls
  ``f``, and after the last multiple puts ``w`` back by assignment. So every
  evaluation sees exactly the caller's parameters but one entry, and the
  table is bitwise the same for any thread count (``f`` being deterministic
  and not writing its arguments: the loop cannot afford to check that, O(P)
  per evaluation).

**Arity.** The parameter tuple is heterogeneous (its arrays' ndims differ),
so it cannot be indexed with a tensor number known only at run time. The
kernels are generated per number of tensors ``T``, the way
:mod:`fastgrad._kernels._registry` generates its dispatchers: one branch
``if t == 0: ... elif t == 1: ...`` per tensor, moving the entry through a flat
view (``c0.reshape(-1)`` of the private C-contiguous copy shares its memory),
and a last ``else`` for an index in no tensor, which ends the chunk with a
code the Python wrapper raises for (:data:`NO_TENSOR`; not a ``raise`` in the
kernel, see below). ``f``'s arguments are spelled out too (``f(params,
args[0], args[1])``), so a kernel is generated once per ``T``, number of
``args`` and set of 0-d tensors, and kept in :data:`_KERNELS`.

**Compilation.** ``f`` is an argument, so Numba compiles each kernel anew
per ``f`` (and per argument types), in memory only: a function given by the
user cannot be cached on disk. Numba optimises a function together with the
code of everything it calls, so ``f``'s code is optimised again in the chunk
function and twice more in the parallel kernel (its ``prange`` body and the
kernel around it): the kernel costs a few times ``f``'s own compilation
(measured on 2 busy cores: 0.7-2 s for the scalar-loop losses of
``tests/test_function_loop.py``, 4 s for the benchmark's MLP loss, 8.6 s of
CPU for a loss of a few NumPy array expressions that compiles alone in
2.5 s). The launch goes through :func:`fastgrad._threading.launch` with an
estimate of the work, so a small table runs the kernel's serial twin (the
same bits), compiled instead of the parallel kernel in a quarter to a
third of its time.

**Exceptions in ``f``.** Numba hands an exception raised in a ``prange``
body to Python only when it happens on the calling thread, and then as a
``SystemError`` ("returned a result with an exception set") whose
``__cause__`` is the exception. Raised on a worker thread, it is lost: the
kernel returns normally, the chunk unfinished (Numba 0.68: always with the
``workqueue`` layer; with ``tbb`` whenever a worker thread ran the chunk;
pinned by ``tests/test_function_loop.py``). And a ``try`` in the ``prange``
body makes Numba run the loop serially (a second exit from the loop). So
the ``prange`` body only calls a serial *chunk* function, which evaluates
``f`` inside ``try``/``except``: the first entry at which ``f`` raises ends
that chunk (its entry restored) and is returned. The Python wrapper then
evaluates ``f`` once more, from Python, at that point of the lowest failing
entry over all chunks, so the same one for any thread count: the exception
raised there, of ``f``'s own type and message, reaches the caller (with a
note naming the entry, on Python >= 3.11). Should that evaluation not raise
(``f`` not deterministic), a :class:`RuntimeError` says so. The other chunks
finish their entries first: a call in which ``f`` raises costs up to a
whole table. A value that is NaN or infinite is no exception: it is written
to the table.

**Interruption.** A kernel call cannot be interrupted (Ctrl-C waits for its
end): callers wanting progress or interruption pass the wanted entries in
blocks, each call costing one copy of the parameters per thread.

Under ``NUMBA_DISABLE_JIT=1`` the same generated source runs as plain
Python (``prange`` is ``range``), with any callable as ``f``.
"""

from __future__ import annotations

import linecache
import sys
import threading
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import prange
from numba.core.registry import CPUDispatcher

from .._threading import guard, launch
from ._jit import njit

#: Options of the parallel kernels: never ``fastmath`` (the table holds the numbers whose differences are the
#: derivatives), no disk cache (``f`` is the user's, see the module docstring), the GIL released.
OPTIONS: dict[str, Any] = dict(cache=False, parallel=True, nogil=True, fastmath=False)
#: The same for the serial chunk functions the kernels call once per thread.
CHUNK_OPTIONS: dict[str, Any] = {**OPTIONS, "parallel": False}

#: ``(kind, T, A, scalars)`` -> the guarded parallel kernel for ``T`` tensors (the 0-d ones numbered in ``scalars``)
#: and ``A`` args; kind ``"loss"`` or ``"complex"``.
_KERNELS: dict[tuple[str, int, int, tuple[int, ...]], Any] = {}
_KERNELS_LOCK = threading.Lock()
#: A chunk's result for an entry whose flat index lies in no tensor's branch (``NO_TENSOR - r``, entry ``r``):
#: the Python wrappers raise for it. Unreachable through them (they check the indices first); the last branch
#: returns it rather than raising inside the ``prange`` body, where an exception can be lost (module docstring).
NO_TENSOR = -2


def is_jitted(f: Any) -> bool:
    """Whether ``f`` is a Numba CPU dispatcher (``@numba.njit``, ``@numba.jit``), not a plain function.

    Under ``NUMBA_DISABLE_JIT=1`` Numba's decorators return the plain function, so this is False for everything.
    """
    return isinstance(f, CPUDispatcher)


def _branch(kind: str, t: int, call: str) -> list[str]:
    """The body of the branch for tensor ``t`` of a chunk function (entry ``r`` at flat index ``i``)."""
    if kind == "loss":
        return [
            f"j = i - offsets[{t}]",
            f"w = v{t}[j]",
            "s = steps[i]",
            "try:",
            "    for k in range(K):",
            f"        v{t}[j] = w + multiples[k] * s",
            f"        out[r, k] = {call}",
            "except Exception:",
            f"    v{t}[j] = w",
            "    return r",
            f"v{t}[j] = w",
        ]
    return [
        f"j = i - offsets[{t}]",
        f"w = v{t}[j]",
        "s = h[i]",
        "try:",
        f"    v{t}[j] = complex(w.real, w.imag + s)",
        f"    value = {call}",
        "except Exception:",
        f"    v{t}[j] = w",
        "    return r",
        f"v{t}[j] = w",
        "out[r] = value.imag / s",
    ]


def _source(kind: str, T: int, A: int, scalars: tuple[int, ...] = ()) -> str:
    """Python source of the chunk function and the parallel kernel of ``kind`` for ``T`` tensors, ``A`` args.

    The tensors numbered in ``scalars`` are 0-d: they come as 1-element 1-D views (:func:`_passed`) and are
    copied back to 0-d arrays.
    """
    # f's arguments spelled out: Numba cannot compile f(params, *args) inside a try block, and a function of
    # its own for the call would cost one more compilation of f's code into it (Numba optimises a function
    # together with everything it calls, once per layer: seconds for a loss of some size)
    call = f"f(params{''.join(f', args[{a}]' for a in range(A))})"
    arrays = ", ".join(f"a{t}" for t in range(T))
    table = "steps, multiples" if kind == "loss" else "h"
    chunk = f"_{kind}_chunk_{T}_{A}"
    kernel = f"{kind}_table_{T}_{A}"
    lines = [
        f"def {chunk}(f, {arrays}, args, indices, offsets, {table}, out, lo, hi):",
        '    """Entries ``lo:hi`` of the table, on one private copy of the parameters; -1, or the first entry'
        ' at which ``f`` raised (>= 0), or NO_TENSOR - r when entry r is in no tensor."""',
    ]
    lines += [f"    c{t} = a{t}.reshape(()).copy()" if t in scalars else f"    c{t} = a{t}.copy()" for t in range(T)]
    lines += [f"    v{t} = c{t}.reshape(-1)" for t in range(T)]
    lines.append(f"    params = ({', '.join(f'c{t}' for t in range(T))},)")
    if kind == "loss":
        lines.append("    K = multiples.shape[0]")
    lines += [
        "    for r in range(lo, hi):",
        "        i = indices[r]",
        "        t = 0",
        f"        while t < {T} and i >= offsets[t + 1]:",
        "            t += 1",
    ]
    for t in range(T):
        lines.append(f"        {'if' if t == 0 else 'elif'} t == {t}:")
        lines += ["            " + line for line in _branch(kind, t, call)]
    lines += [
        "        else:",
        "            return NO_TENSOR - r",
        "    return -1",
        "",
        "",
        f"def {kernel}(f, {arrays}, args, indices, offsets, {table}, out, failed):",
        '    """Run one chunk of the table per entry of ``failed`` (in parallel); each writes -1 or its first'
        ' failing entry there."""',
        "    n = indices.shape[0]",
        "    chunks = failed.shape[0]",
        "    for c in prange(chunks):",
        f"        failed[c] = {chunk}(f, {arrays}, args, indices, offsets, {table}, out, c * n // chunks,"
        " (c + 1) * n // chunks)",
        "",
    ]
    return "\n".join(lines)


def _kernel(kind: str, T: int, A: int, scalars: tuple[int, ...] = ()) -> Any:
    """The guarded parallel kernel of ``kind`` (``"loss"``, ``"complex"``) for T tensors and A args, made once."""
    key = (kind, T, A, scalars)
    with _KERNELS_LOCK:
        if key not in _KERNELS:
            source = _source(kind, T, A, scalars)
            filename = f"<fastgrad.function_loop {kind} T={T} A={A}{f' 0-d {scalars}' if scalars else ''}>"
            # (registered, so that tracebacks and Numba's error messages can quote the generated lines)
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            namespace: dict[str, Any] = {"prange": prange, "NO_TENSOR": NO_TENSOR, "__name__": __name__}
            exec(compile(source, filename, "exec"), namespace)
            chunk = namespace[f"_{kind}_chunk_{T}_{A}"]
            namespace[chunk.__name__] = njit(CHUNK_OPTIONS, chunk)
            fn = namespace[f"{kind}_table_{T}_{A}"]
            fn.__module__ = __name__
            _KERNELS[key] = guard(njit(OPTIONS, fn), OPTIONS)
        return _KERNELS[key]


def _check(f: Any, arrays: tuple, args: tuple, indices: Any, offsets: Any,
           dtype: type) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate the common arguments; return ``indices`` and ``offsets`` (contiguous int64) and the size P."""
    if not (is_jitted(f) or (numba.config.DISABLE_JIT and callable(f))):
        raise TypeError(f"f must be a Numba CPU dispatcher (an @numba.njit function), not {type(f).__name__}")
    if not isinstance(arrays, tuple) or not isinstance(args, tuple):
        raise TypeError("arrays and args must be tuples")
    for t, a in enumerate(arrays):
        if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous:
            raise TypeError(f"arrays[{t}] must be a C-contiguous {np.dtype(dtype).name} ndarray")
    offsets = np.ascontiguousarray(offsets)
    sizes = np.array([a.size for a in arrays], dtype=np.int64)
    if offsets.dtype != np.int64 or offsets.shape != (len(arrays) + 1,) or offsets[0] != 0 or not np.array_equal(
            np.diff(offsets), sizes):
        raise ValueError("offsets must be int64 (T+1,), 0 then the cumulated sizes of the arrays")
    P = int(offsets[-1])
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
        raise TypeError("indices must be a 1-D integer array")
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= P):
        raise IndexError(f"indices must lie in [0, {P})")
    return indices, offsets, P


def _float_vector(x: Any, name: str, size: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 1 or (size is not None and x.shape[0] != size):
        raise ValueError(f"{name} must be 1-D" + ("" if size is None else f" of length {size}"))
    return x


def _scalars(arrays: tuple) -> tuple[int, ...]:
    """The numbers of the 0-d tensors."""
    return tuple(t for t, a in enumerate(arrays) if a.ndim == 0)


def _passed(arrays: tuple) -> tuple:
    """The tensors as the kernels take them: 0-d ones as 1-element 1-D views, the others as they are.

    (Numba's ``prange`` body takes a 0-d array for a scalar, and then fails to type its ``.copy()``.)
    """
    return tuple(a.reshape(1) if a.ndim == 0 else a for a in arrays)


def _chunks(n: int) -> int:
    """One chunk per thread, no more than entries (at least one)."""
    return max(1, min(numba.get_num_threads(), n))


def _raise_failures(failed: np.ndarray, f: Any, arrays: tuple, args: tuple, indices: np.ndarray,
                    values: Callable[[Any, int], list[Any]]) -> None:
    """Raise for the chunks' results ``failed`` (see :func:`_source`), if any is not -1.

    For the lowest entry ``r`` at which ``f`` raised, ``f`` is evaluated again from Python at the points
    ``values(w, i)`` of that entry (flat index ``i``, value ``w``), in order, and what it raises is raised.
    """
    if not (failed != -1).any():
        return
    if (failed <= NO_TENSOR).any():
        row = int((NO_TENSOR - failed[failed <= NO_TENSOR]).min())
        raise IndexError(f"fastgrad function_loop: flat index {int(indices[row])} (indices[{row}]) lies in no "
                         f"tensor's branch of the kernel for {len(arrays)} tensors")
    row = int(failed[failed >= 0].min())
    i = int(indices[row])
    copies = tuple(a.copy() for a in arrays)
    ends = np.cumsum([a.size for a in arrays])
    t = int(np.searchsorted(ends, i, side="right"))
    flat = copies[t].reshape(-1)
    j = i - (int(ends[t - 1]) if t else 0)
    for value in values(flat[j], i):
        flat[j] = value
        try:
            f(copies, *args)
        except Exception as e:
            if sys.version_info >= (3, 11):
                e.add_note(f"(raised by f with flat parameter {i}, indices[{row}], set to {value})")
            raise
    raise RuntimeError(f"f raised inside the compiled loop with flat parameter {i} (indices[{row}]) moved, but "
                       "not when called again from Python at the same points: is f deterministic?")


def loss_table(f: Any, arrays: tuple, args: tuple, indices: np.ndarray, offsets: np.ndarray, steps: np.ndarray,
               multiples: np.ndarray, work: float | None = None) -> np.ndarray:
    """``out[r, k] = f(params with flat entry indices[r] set to w + multiples[k] * steps[indices[r]], *args)``.

    Parameters
    ----------
    f : numba CPU dispatcher
        ``f(params, *args) -> float``, ``params`` a tuple of T arrays shaped like ``arrays``. It must not
        write its arguments (each evaluation must see the caller's parameters but one entry).
    arrays : tuple of ndarray
        The T parameter tensors, float64, C-contiguous, any shapes; not modified (the kernel works on one
        private copy per thread). Flat index space: their C-order ravels, concatenated.
    args : tuple
        Passed to ``f`` after ``params``, unchanged (arrays, scalars).
    indices : ndarray of int64 (n,)
        Flat entries to move, in ``[0, P)``; row ``r`` of the table is ``indices[r]``.
    offsets : ndarray of int64 (T+1,)
        Tensor ``t`` occupies the flat range ``offsets[t]:offsets[t+1]``.
    steps : ndarray of float64 (P,)
        Each entry's step.
    multiples : ndarray of float64 (K,)
        The multiples of the step, e.g. ``[1, -1, 2, -2]``; the entry is set to ``w + multiples[k] * step``.
    work : float, optional
        Estimated floating-point operations of the whole table, which decides between the parallel kernel
        and its serial twin (the same bits; see :data:`fastgrad._threading.PARALLEL_MIN_WORK`). Default
        ``n * K * P``: an evaluation that reads every parameter once.

    Returns
    -------
    ndarray of float64 (n, K)

    Raises
    ------
    Exception
        What ``f`` raises at the lowest row where it raises (evaluated again from Python; see the module
        docstring); TypeError, ValueError or IndexError for arguments outside the contract.
    """
    indices, offsets, P = _check(f, arrays, args, indices, offsets, np.float64)
    steps = _float_vector(steps, "steps", P)
    multiples = _float_vector(multiples, "multiples")
    n, K = indices.shape[0], multiples.shape[0]
    out = np.empty((n, K), dtype=np.float64)
    if n == 0 or K == 0:
        return out
    failed = np.full(_chunks(n), -1, dtype=np.int64)
    kernel = _kernel("loss", len(arrays), len(args), _scalars(arrays))
    launch(kernel, float(n) * K * P if work is None else work, f, *_passed(arrays), args, indices, offsets, steps,
           multiples, out, failed)
    _raise_failures(failed, f, arrays, args, indices, lambda w, i: [w + m * steps[i] for m in multiples])
    return out


def complex_table(f: Any, arrays: tuple, args: tuple, indices: np.ndarray, offsets: np.ndarray, h: np.ndarray,
                  work: float | None = None) -> np.ndarray:
    """``out[r] = imag(f(params with flat entry indices[r] set to w + 1j * h[indices[r]], *args)) / h[indices[r]]``.

    As :func:`loss_table`, with complex128 ``arrays`` and ``f`` returning a complex number (a real one gives
    0). The entry is set to ``complex(w.real, w.imag + h)``: the real part is kept bit for bit (IEEE complex
    addition of ``1j * h`` would turn a real part ``-0.0`` into ``+0.0``). ``work`` as in :func:`loss_table`
    (default ``n * P``).

    Returns
    -------
    ndarray of float64 (n,)
    """
    indices, offsets, P = _check(f, arrays, args, indices, offsets, np.complex128)
    h = _float_vector(h, "h", P)
    n = indices.shape[0]
    out = np.empty(n, dtype=np.float64)
    if n == 0:
        return out
    failed = np.full(_chunks(n), -1, dtype=np.int64)
    kernel = _kernel("complex", len(arrays), len(args), _scalars(arrays))
    launch(kernel, float(n) * P if work is None else work, f, *_passed(arrays), args, indices, offsets, h, out,
           failed)
    _raise_failures(failed, f, arrays, args, indices, lambda w, i: [complex(w.real, w.imag + h[i])])
    return out

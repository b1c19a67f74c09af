"""Check any model's gradient from its loss function: :func:`check_function` and its model, :class:`FunctionModel`.

A user's model is a function ``f(params, *args) -> float`` and its gradient,
in the user's own conventions: ``params`` one array, a list or tuple of
arrays, or a dict of them. :class:`FunctionModel` wraps them in the model
protocol (:mod:`fastgrad.protocol`, kind ``"function"``), so that
:func:`check_function` is :func:`fastgrad.check` on that model, with the
same verdicts, error budgets, hints and reports.

How ``f`` is evaluated at the perturbed points (one owner,
:meth:`FunctionModel.loss_table`):

* a Numba-jitted ``f`` (``@numba.njit``): inside one parallel kernel that
  calls ``f`` directly, each thread on its own copy of the parameters
  (:mod:`fastgrad._kernels.function_loop`); ``f`` then takes the tuple of
  the arrays (list, tuple and dict params in that order; a 1-tuple for one
  array), in Python too;
* a plain Python ``f``: a Python loop, with progress and Ctrl-C; with
  ``workers`` over processes (:mod:`fastgrad.workers`);
* either, with ``workers=client`` (a ``dask.distributed.Client``): the same
  code per block of entries on the Client's workers
  (:func:`fastgrad.workers.client_loss_table`).

Every evaluation sees exactly the original parameters but one entry, so the
numerical gradient is bitwise the same whatever the threads or workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _validate
from . import workers as process_workers
from ._kernels.function_loop import complex_table, is_jitted, loss_table
from .capabilities import FUNCTION_KIND
from .checking import check
from .dask_support import is_client
from .loss_engine import NO_BATCH as _NO_BATCH
from .loss_engine import python_loss_table
from .protocol import ModelBase

#: The names of a single array's and a list's tensors (a dict's are its keys).
SINGLE_NAME = "x"

ProgressFn = Callable[[int, int], Any]


def _structure(params: Any) -> tuple[str, list[str]]:
    """The container kind of ``params`` ("array", "list", "tuple", "dict") and its tensor names."""
    if isinstance(params, dict):
        names = list(params)
        for key in names:
            if not isinstance(key, str):
                raise TypeError(f"params: a dict's keys name the tensors and must be str, got {key!r}")
        if not names:
            raise ValueError("params is an empty dict: there is nothing to check")
        return "dict", names
    if isinstance(params, (list, tuple)):
        if not params:
            raise ValueError(f"params is an empty {type(params).__name__}: there is nothing to check")
        return type(params).__name__, [f"p{i}" for i in range(len(params))]
    return "array", [SINGLE_NAME]


def _tensors(values: Any, kind: str, names: list[str], argument: str) -> list[Any]:
    """The tensors of ``values`` in the order of ``names``, after checking its container matches ``kind``."""
    if kind == "dict":
        if not isinstance(values, dict):
            raise TypeError(f"{argument} must be a dict with the keys of params ({', '.join(names)}), "
                            f"got {type(values).__name__}")
        missing = [n for n in names if n not in values]
        extra = [k for k in values if k not in names]
        if missing or extra:
            raise ValueError(f"{argument} must have the keys of params ({', '.join(names)}); "
                             + (f"missing {', '.join(map(str, missing))}" if missing else "")
                             + ("; " if missing and extra else "")
                             + (f"unexpected {', '.join(map(str, extra))}" if extra else ""))
        return [values[n] for n in names]
    if kind in ("list", "tuple"):
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"{argument} must be a list or tuple of {len(names)} arrays like params, "
                            f"got {type(values).__name__}")
        if len(values) != len(names):
            raise ValueError(f"{argument} has {len(values)} tensors, expected {len(names)} like params")
        return list(values)
    if isinstance(values, (list, tuple, dict)) and not isinstance(values, np.ndarray):
        try:  # a nested list is an array; a list of arrays of different shapes is not
            values = np.asarray(values)
        except ValueError:
            raise TypeError(f"{argument} must be one array like params, got a {type(values).__name__}") from None
    return [values]


def _as_array(value: Any, argument: str, name: str) -> np.ndarray:
    """``value`` as an array (tensors of other libraries by conversion); a real numeric dtype is required."""
    try:
        arr = np.asarray(value)
    except Exception as e:  # noqa: BLE001 - the library's own conversion error, named
        raise TypeError(f"{argument}[{name!r}] cannot be converted to a NumPy array: {e}") from None
    if arr.dtype == np.bool_ or arr.dtype.kind not in "fiu":
        raise TypeError(f"{argument}[{name!r}] must hold real numbers (a float or int dtype), got dtype {arr.dtype}")
    return arr


class FunctionModel(ModelBase):
    """A model given by its loss function ``f(params, *args)`` (kind ``"function"``; see the module docstring).

    Parameters
    ----------
    f : callable
        ``f(params, *args) -> float``; a Numba-jitted ``f`` takes the tuple
        of the arrays (a 1-tuple for one array).
    params : array_like, list, tuple or dict of array_like
        The point, as the user gave it (read, never written).
    args : tuple
        Passed to ``f`` (and to a callable ``grads``) after the parameters.
    workers : int, map-like callable or dask.distributed.Client, optional
        Python ``f`` only: evaluate over this many processes, or through
        ``workers(function, iterable)`` (e.g. ``executor.map``). A Dask
        Client: any ``f`` (a jitted one runs its kernel on the workers), in
        blocks on its workers (:func:`fastgrad.workers.client_loss_table`).
    """

    kind = FUNCTION_KIND

    def __init__(self, f: Callable[..., Any], params: Any, args: tuple = (), workers: Any = None) -> None:
        if not callable(f):
            raise TypeError(f"f must be a callable f(params, *args) -> float, got {type(f).__name__}")
        if not isinstance(args, tuple):
            raise TypeError(f"args must be a tuple of the extra arguments of f, got {type(args).__name__}")
        self.f, self.args = f, args
        self.jitted = is_jitted(f)
        self.container, names = _structure(params)
        arrays = [_as_array(v, "params", n) for v, n in zip(_tensors(params, self.container, names, "params"), names)]
        self.tensor_names = tuple(names)
        self.param_shapes = [tuple(int(s) for s in a.shape) for a in arrays]
        self.dtypes = [a.dtype for a in arrays]
        self.offsets = np.cumsum([0] + [int(a.size) for a in arrays]).astype(np.int64)
        self.n_params = int(self.offsets[-1])
        if self.n_params == 0:
            raise ValueError("params holds no entries: there is nothing to check")
        self.workers = workers
        self.dask_log: process_workers.DaskLog | None = None  # a check on a Dask Client: f's time, lost workers

    def __repr__(self) -> str:
        name = getattr(self.f, "__qualname__", None) or type(self.f).__name__
        shapes = ", ".join(f"{n}{list(s)}" for n, s in zip(self.tensor_names, self.param_shapes))
        return f"check_function({name}, {shapes})"

    # ------------------------------------------------------------------ the protocol
    def flatten(self, params: Any, argument: str = "params") -> np.ndarray:
        """Validate ``params`` (or a gradient, named ``argument``) like the model's; a new flat float64 copy."""
        values = _tensors(params, self.container, list(self.tensor_names), argument)
        flat = np.empty(self.n_params)
        for value, name, shape, lo, hi in zip(values, self.tensor_names, self.param_shapes, self.offsets[:-1],
                                              self.offsets[1:]):
            arr = _as_array(value, argument, name)
            _validate.check_shape(arr, shape, argument, name)
            flat[lo:hi] = arr.reshape(-1)
            bad = np.flatnonzero(~np.isfinite(flat[lo:hi]))
            if bad.size:
                index = tuple(int(i) for i in np.unravel_index(int(bad[0]), shape))
                raise ValueError(f"{argument}: tensor {name!r} has a non-finite value ({flat[lo + bad[0]]}) at index "
                                 f"{_validate._index_str(index)}")
        return flat

    def unflatten(self, theta: np.ndarray) -> list[np.ndarray]:
        """Split a flat vector into arrays shaped like the parameters (views of ``theta``)."""
        return [theta[lo:hi].reshape(shape) for lo, hi, shape in zip(self.offsets[:-1], self.offsets[1:],
                                                                       self.param_shapes)]

    def locate(self, flat_index: int) -> tuple[str, tuple[int, ...]]:
        """Return ``(tensor name, index)`` of a flat parameter index."""
        t = int(np.searchsorted(self.offsets, flat_index, side="right")) - 1
        local = int(flat_index - self.offsets[t])
        return self.tensor_names[t], tuple(int(i) for i in np.unravel_index(local, self.param_shapes[t]))

    def batch(self, X: Any, Y: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """No batch of its own (``args`` carry the data): one empty "sample", so that N = 1 in the budgets."""
        return np.zeros((1, 0)), np.zeros((1, 0))

    def tensors(self, values: Any, argument: str = "params") -> list[Any]:
        """The tensors of ``values`` (structured like params) in order, as given."""
        return _tensors(values, self.container, list(self.tensor_names), argument)

    def pack(self, arrays: list[np.ndarray]) -> Any:
        """The user's structure around ``arrays`` (a jitted ``f`` always gets the tuple, as in its kernel)."""
        if self.jitted or self.container == "tuple":
            return tuple(arrays)
        if self.container == "array":
            return arrays[0]
        if self.container == "dict":
            return dict(zip(self.tensor_names, arrays))
        return list(arrays)

    def call(self, theta: np.ndarray) -> Any:
        """``f`` at the flat point ``theta``, on fresh copies (``f`` may write into what it gets)."""
        return self.f(self.pack([a.copy() for a in self.unflatten(theta)]), *self.args)

    def loss_at(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:
        """Return ``f`` at the flat point ``theta`` as a float; ``TypeError`` when it is not a real number."""
        return _real(self.call(theta))

    def gradient_at(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Not known: :func:`check_function` is always given the gradient."""
        raise TypeError("check_function needs grads: the gradient (or a callable returning it) to check")

    # ------------------------------------------------------------------ evaluation at perturbed points
    def loss_table(self, theta: np.ndarray, indices: np.ndarray, steps: np.ndarray, multiples: np.ndarray,
                   progress: ProgressFn | None = None) -> np.ndarray:
        """``out[r, k] = f(theta + multiples[k] steps[i] e_i)``, ``i = indices[r]`` (see the module docstring)."""
        workers = self.workers
        if is_client(workers):
            if process_workers.worth_a_client(self, theta, indices.size * multiples.size):
                return process_workers.client_loss_table(self, theta, indices, steps, multiples, progress)
            workers = None  # too little work for the cluster: here, the same bits
        if self.jitted:
            arrays = tuple(a.copy() for a in self.unflatten(theta))
            return _in_blocks(indices, multiples.size, progress, lambda block: loss_table(
                self.f, arrays, self.args, block, self.offsets, steps, multiples))
        if workers not in (None, 1):
            return process_workers.loss_table(self, theta, indices, steps, multiples, progress)
        return python_loss_table(self, theta, _NO_BATCH, _NO_BATCH, indices, steps, multiples, progress)

    def complex_table(self, theta: np.ndarray, indices: np.ndarray, h: np.ndarray,
                      progress: ProgressFn | None = None) -> np.ndarray:
        """``Im f(theta + i h_i e_i) / h_i`` for every ``i`` in ``indices``."""
        probe_complex(self, theta)
        if is_client(self.workers) and process_workers.worth_a_client(self, theta, indices.size):
            return process_workers.client_complex_table(self, theta, indices, h, progress)
        if self.jitted:
            arrays_c = tuple(a.astype(np.complex128) for a in self.unflatten(theta))
            return _in_blocks(indices, 0, progress, lambda block: complex_table(
                self.f, arrays_c, self.args, block, self.offsets, h))
        return complex_loop(self, theta, indices, h, progress)


def complex_loop(model: FunctionModel, theta: np.ndarray, indices: np.ndarray, h: np.ndarray,
                 progress: ProgressFn | None = None) -> np.ndarray:
    """A Python ``f``'s complex steps ``Im f(theta + i h_i e_i) / h_i``, one entry at a time."""
    point = theta.astype(np.complex128)
    out = np.empty(indices.size)
    for r, i in enumerate(indices.tolist()):
        w = point[i]
        point[i] = w + 1j * h[i]
        out[r] = _imag(model.call(point)) / h[i]
        point[i] = w
        if progress is not None:
            progress(r + 1, indices.size)
    return out


#: A jitted ``f``'s table is computed in blocks of at least this many entries (and at most 16 blocks): a
#: kernel call cannot be interrupted or report progress, and each call copies the parameters once per thread.
JIT_BLOCK = 4096


def _in_blocks(indices: np.ndarray, width: int, progress: ProgressFn | None,
               table: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``table`` over blocks of ``indices``, concatenated (``width`` 0: a vector), with progress between blocks."""
    size = max(JIT_BLOCK, -(-indices.size // 16))
    parts = []
    for lo in range(0, indices.size, size):
        parts.append(table(indices[lo:lo + size]))
        if progress is not None:
            progress(min(lo + size, indices.size), indices.size)
    if not parts:
        return np.empty((0, width)) if width else np.empty(0)
    return np.concatenate(parts)



def _real(value: Any) -> float:
    """``f``'s value as a float; ``TypeError`` naming ``f`` for anything else (an array, a complex number)."""
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "fiub":
        raise TypeError(f"f must return one real number (the loss), got {type(value).__name__}"
                        + (f" of shape {arr.shape}" if arr.size != 1 else f" of dtype {arr.dtype}"))
    return float(arr.reshape(()))


def _imag(value: Any) -> float:
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind != "c":
        raise TypeError("method='complex': f returned a real number for complex parameters, so it drops their "
                        "imaginary part (abs, .real, float(), np.maximum, a comparison...) and cannot be "
                        "differentiated by the complex step; use method='central' or 'richardson'")
    return float(arr.reshape(()).imag)


def probe_complex(model: FunctionModel, theta: np.ndarray) -> None:
    """Raise a clear ``TypeError`` when ``f`` does not take complex parameters (called before the loop)."""
    try:
        value = model.f(model.pack([a.astype(np.complex128) for a in model.unflatten(theta)]), *model.args)
    except Exception as e:  # noqa: BLE001 - any failure on complex input means: not this method
        raise TypeError(f"method='complex' calls f with complex128 parameters, and f raised {type(e).__name__}: "
                        f"{e}; use method='central' or 'richardson'") from e
    _imag(value)


def check_function(
    f: Callable[..., Any],
    params: Any,
    grads: Any,
    *,
    args: tuple = (),
    method: str = "central",
    eps: float | None = None,
    safety: float = 10.0,
    rtol: float | None = None,
    atol: float | None = None,
    sample: int | float | None = None,
    seed: int | None = None,
    threads: int | None = None,
    workers: Any = None,
    progress: ProgressFn | None = None,
) -> Any:
    """Check the gradient of any loss ``f(params, *args)``, entry by entry, with :func:`fastgrad.check`'s verdicts.

    Parameters
    ----------
    f : callable
        ``f(params, *args) -> float``, called with float64 copies structured
        like ``params`` (the user's arrays are never written). A
        Numba-jitted ``f`` (``@numba.njit``) takes the tuple of the arrays
        (list, tuple and dict params, in that order; a 1-tuple for one
        array) and is evaluated inside a parallel kernel.
    params : array_like, or list, tuple or dict of array_like
        The point. Tensor names in the report: a dict's keys; ``"p0"``,
        ``"p1"``, ... for a list or tuple; ``"x"`` for one array. Arrays of
        other libraries (PyTorch CPU tensors, JAX arrays) are converted.
    grads : same structure as ``params``, or callable
        The gradient to check, or ``grads(params, *args)`` returning it
        (called twice on copies: a callable that answers differently or
        writes into its arguments fails the check with a note).
    args : tuple
        Passed to ``f`` and ``grads`` after the parameters, as given.
    method : {"central", "richardson", "complex", "directional"}
        ``"complex"`` needs an ``f`` that takes complex parameters (a clear
        error when it does not); ``"directional"``: one random projection per
        tensor and bisection to localise (:mod:`fastgrad.function_directional`:
        a few dozen evaluations of ``f`` for a million parameters).
    eps, safety, rtol, atol, sample, seed, threads, progress
        As in :func:`fastgrad.check` (``eps`` default: ``1e-4 max(1, |w|)``
        central, ``1e-3 max(1, |w|)`` Richardson, 1e-20 complex).
    workers : int, callable or dask.distributed.Client, optional
        Python ``f``: evaluate over this many processes, or through a
        map-like ``workers(function, iterable)`` (:mod:`fastgrad.workers`).
        A Dask Client (process workers; ``pip install "fastgrad[dask]"``):
        any ``f``, in blocks on its workers, the model scattered once; the
        same bits as ``workers=None``. Workers lost during the check are in
        ``result.lost_workers`` and a remark; with an ``f`` that answered
        differently to the same call, a note that fails the check.

    Returns
    -------
    CheckResult
        As :func:`fastgrad.check`'s. An entry whose second differences show
        a kink or a jump within reach of its steps is inconclusive, never
        failed.
    """
    model = FunctionModel(f, params, args, process_workers.validate(workers))
    if grads is None:
        raise TypeError("grads is required: the gradient of f at params (structured like params), or a callable "
                        "grads(params, *args) returning it")
    given = grads
    if callable(grads) and not isinstance(grads, (np.ndarray, list, tuple, dict)):
        def given(p: Any, X: Any, Y: Any) -> Any:  # check's backprop signature, around the user's
            return grads(p, *args)

    result = check(model, params, _NO_BATCH, _NO_BATCH, given, eps=eps, rtol=rtol, atol=atol, method=method,
                   engine="full", threads=threads, progress=progress, safety=safety, sample=sample, seed=seed)
    return process_workers.annotate(model, result)

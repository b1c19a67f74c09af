"""How an MLP's parameters are given: a list or a dict, weights (in, out) or (out, in), biases (k,), (k, 1) or (1, k).

The kernels see one flat vector in one order: for each layer, ``W`` as
(fan_in, fan_out) row by row, then ``b``. Users write theirs in their own
conventions, and glue written by hand to convert them is where mistakes
hide. :class:`ParamFormat` converts at the boundary, both ways:

* ``weight_layout="out_in"``: weights given (and gradients returned) as
  (fan_out, fan_in), as PyTorch's ``nn.Linear`` and much textbook code
  store them; indices in every message and result are in that layout;
* a bias may be (k,), a column (k, 1) or a row (1, k), in either layout,
  and what fastgrad returns for it has the shape the user gave;
* ``params`` (and ``grads``) may be a dict with the keys ``"W1"``, ``"b1"``, ...
  (a missing or an extra key is named in the error); results for a dict
  come back as a dict.

Nothing here writes into a user's array: conversions are views (a
transpose, a reshape) read by the copy that validates them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _validate
from ._scratch import take

#: ``weight_layout=``: (fan_in, fan_out) as the kernels have it, or (fan_out, fan_in).
WEIGHT_LAYOUTS = ("in_out", "out_in")


class ParamFormat:
    """The user-facing shapes of an MLP's tensors, and the conversions to and from the flat vector.

    Parameters
    ----------
    names : sequence of str
        ``W1, b1, W2, b2, ...``
    flat_shapes : sequence of tuple
        Each tensor's shape in the flat vector: ``(fan_in, fan_out)`` and ``(fan_out,)``.
    weight_layout : {"in_out", "out_in"}
    """

    def __init__(self, names: Sequence[str], flat_shapes: Sequence[tuple[int, ...]], weight_layout: str) -> None:
        self.names = tuple(names)
        self.flat_shapes = [tuple(s) for s in flat_shapes]
        self.transposed = weight_layout == "out_in"
        #: Each tensor's shape as the user gives it (a bias: the (k,) form; (k, 1) and (1, k) are accepted too).
        self.shapes = [s[::-1] if self.transposed and len(s) == 2 else s for s in self.flat_shapes]
        self.sizes = [int(np.prod(s)) for s in self.flat_shapes]

    # ------------------------------------------------------------ containers
    def tensors(self, values: Any, argument: str) -> list[Any]:
        """The tensors of ``values`` (a list, a tuple or a dict keyed by name), in the model's order."""
        if isinstance(values, Mapping):
            missing = [n for n in self.names if n not in values]
            extra = [str(k) for k in values if k not in self.names]
            if missing or extra:
                said = "; ".join(part for part in (f"missing keys {missing}" if missing else "",
                                                   f"unexpected keys {extra}" if extra else "") if part)
                raise ValueError(f"{argument}: a dict needs exactly the keys {list(self.names)}; {said}")
            return [values[n] for n in self.names]
        if isinstance(values, np.ndarray) or not isinstance(values, (list, tuple)):
            raise TypeError(f"{argument} must be a list of arrays [{', '.join(self.names)}], got "
                            f"{type(values).__name__}; a dict keyed by those names works too")
        if len(values) != len(self.names):
            raise ValueError(f"{argument} has {len(values)} tensors, expected {len(self.names)} "
                             f"({', '.join(self.names)})")
        return list(values)

    def _accepted(self, t: int) -> list[tuple[int, ...]]:
        shape = self.shapes[t]
        if len(shape) == 1:
            return [shape, (shape[0], 1), (1, shape[0])]
        return [shape]

    def validate(self, values: Any, argument: str, finite: bool = True) -> list[np.ndarray]:
        """Check every tensor's dtype and shape (and, with ``finite``, its entries); return them as float64.

        Float64 C-contiguous tensors come back as the caller's own arrays (the
        caller copies them). Messages name the argument, the tensor and, for
        a NaN or inf, its index in the user's own layout.
        """
        out = []
        for t, (value, name) in enumerate(zip(self.tensors(values, argument), self.names)):
            arr = _validate.as_float_array(value, argument, name, copy=False, finite=finite)
            accepted = self._accepted(t)
            if arr.shape not in accepted:
                said = " or ".join(str(s) for s in accepted)
                note = " (weight_layout='out_in': (fan_out, fan_in))" if self.transposed and arr.ndim == 2 and \
                    len(self.shapes[t]) == 2 else ""
                raise ValueError(f"{argument}: tensor {name!r} has shape {arr.shape}, expected {said}{note}")
            out.append(arr)
        return out

    # ------------------------------------------------------------ conversions
    def _to_flat_view(self, t: int, arr: np.ndarray) -> np.ndarray:
        """A user's tensor as a view in the flat vector's shape (a transpose, a reshape)."""
        if len(self.flat_shapes[t]) == 1:
            return arr.reshape(self.flat_shapes[t])
        return arr.T if self.transposed else arr

    def flat_copy(self, values: Any, argument: str, keep_as: str | None = None) -> np.ndarray:
        """Validate ``values`` and copy them into one new flat float64 vector (NaN/inf named in the user's layout).

        ``keep_as``: into the kept scratch buffer of that name (:func:`fastgrad._scratch.take`) instead.
        """
        tensors = self.validate(values, argument, finite=False)
        flat = take(keep_as, sum(self.sizes))
        start = 0
        for t, (arr, name) in enumerate(zip(tensors, self.names)):
            stop = start + self.sizes[t]
            view = self._to_flat_view(t, arr)
            if view.flags.c_contiguous:
                bad = _validate._copy_count_nonfinite(view.reshape(-1), flat[start:stop])
            else:  # a transposed weight: one strided copy, then the scan
                flat[start:stop].reshape(self.flat_shapes[t])[...] = view
                bad = _validate._count_nonfinite(flat[start:stop])
            if bad:
                _validate.raise_non_finite(arr, argument, name)
            start = stop
        return flat

    def unflatten(self, theta: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
        """Views of ``theta`` in the user-facing shapes (a transposed weight is a transposed view)."""
        out = []
        for t, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
            view = theta[lo:hi].reshape(self.flat_shapes[t])
            out.append(view.T if self.transposed and view.ndim == 2 else view)
        return out

    def user_index(self, t: int, local: int) -> tuple[int, ...]:
        """The index, in the user-facing shape, of entry ``local`` of tensor ``t`` in the flat order."""
        index = tuple(int(i) for i in np.unravel_index(local, self.flat_shapes[t]))
        return index[::-1] if self.transposed and len(index) == 2 else index

    def shaped_like(self, arrays: list[np.ndarray], like: Any) -> Any:
        """``arrays`` (user-facing shapes), each bias in the shape ``like`` gave it; a dict if ``like`` is one."""
        given = self.tensors(like, "params")
        out = []
        for arr, ref in zip(arrays, given):
            shape = np.shape(ref)
            out.append(arr.reshape(shape) if arr.ndim == 1 and shape != arr.shape and
                       int(np.prod(shape)) == arr.size else arr)
        if isinstance(like, Mapping):
            return dict(zip(self.names, out))
        return out

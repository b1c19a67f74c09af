"""Scratch arrays kept between calls, one set per thread.

Why: a check's temporaries (the parameters' and batch's copies, the forward
pass, the Taylor coefficients, the series blocks) are a few MB. Freed at the
end of a call, glibc hands them back to the kernel, and the next call touches
fresh pages: 784-128-10 took 366 minor page faults per numerical gradient,
2.4 us each on a 2-vCPU VM, 0.5-0.9 ms of a 2 ms check. Kept, a repeated
call (a training loop's periodic check, a benchmark) touches none.

The rules that make keeping safe:

- Only the outermost :func:`scope` on a thread hands out kept buffers; a call
  made inside it (from a progress callback, say) gets fresh arrays, so it
  cannot overwrite its caller's.
- A name is one array's: two arrays alive at once never share a name.
  Names are prefixed by their owner (``"engines."``, ``"inputs."``).
- A kept buffer never leaves fastgrad: it is never returned, never stored
  in a result, never handed to user code. Callers that cannot promise that
  for an array allocate it with NumPy.
- The contents are undefined, as ``np.empty``'s.

A thread keeps at most :data:`KEEP_BYTES` (``FASTGRAD_SCRATCH_BYTES``; 0
keeps nothing); beyond it arrays are allocated per call. The buffers are
freed with their thread (:class:`threading.local`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

#: Bytes of scratch one thread keeps between calls.
KEEP_BYTES = int(os.environ.get("FASTGRAD_SCRATCH_BYTES", str(16 << 20)))


class _Pool(threading.local):
    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}
        self.depth = 0


_pool = _Pool()


@contextmanager
def scope() -> Iterator[None]:
    """Let :func:`take` hand out this thread's kept buffers until the block ends (outermost scope only)."""
    _pool.depth += 1
    try:
        yield
    finally:
        _pool.depth -= 1


def take(name: str | None, shape: Any, dtype: Any = np.float64) -> np.ndarray:
    """An uninitialised C-contiguous array: this thread's kept buffer ``name`` inside the outermost scope, else new.

    With ``name`` None (a caller that cannot keep this array), outside any
    scope, inside a nested one, or beyond :data:`KEEP_BYTES`, it is
    ``np.empty(shape, dtype)``.
    """
    dtype = np.dtype(dtype)
    if name is None or _pool.depth != 1:
        return np.empty(shape, dtype=dtype)
    count = math.prod(shape) if isinstance(shape, tuple) else int(shape)
    nbytes = count * dtype.itemsize
    buffers = _pool.buffers
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        kept = sum(b.nbytes for key, b in buffers.items() if key != name)
        if kept + nbytes > KEEP_BYTES:
            return np.empty(shape, dtype=dtype)
        buffers.pop(name, None)  # (freed before the larger one is made)
        # float64 elements: every dtype taken here is at most 8 bytes, so the view is aligned for it
        buf = np.empty(-(-nbytes // 8), dtype=np.float64)
        buffers[name] = buf
    return buf.view(np.uint8)[:nbytes].view(dtype).reshape(shape)


def kept_bytes() -> int:
    """Bytes this thread keeps."""
    return sum(b.nbytes for b in _pool.buffers.values())


def release() -> None:
    """Free this thread's kept buffers (they are made again by the next call that needs them)."""
    if _pool.depth:
        raise RuntimeError("scratch buffers are in use by a running call on this thread")
    _pool.buffers.clear()

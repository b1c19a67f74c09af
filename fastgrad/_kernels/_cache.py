"""Numba's on-disk cache for fastgrad's kernels, keyed by every source file of the package.

Numba keys a cached function by its own bytecode and its file's modification
stamp, not by the functions it calls: a kernel in ``series.py`` that calls an
activation's ``change`` in ``activations/elu.py`` would load its old machine
code from the cache after ``elu.py`` changed (a ``git pull`` or an edit that
leaves ``series.py`` alone), silently running the old activation. So every
kernel's cache key also holds a digest of all of fastgrad's ``.py`` files:
any change to the package compiles afresh, once.
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import numba
from numba.core.caching import FunctionCache

_PACKAGE = pathlib.Path(__file__).resolve().parent.parent


def sources_digest(root: pathlib.Path = _PACKAGE) -> str:
    """SHA-256 over the relative paths and contents of every ``.py`` file below ``root``, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


#: The digest of this installation's sources (a few ms at import).
SOURCES = sources_digest()


class KernelCache(FunctionCache):
    """Numba's function cache with :data:`SOURCES` in every index key."""

    def _index_key(self, sig: Any, codegen: Any) -> tuple[Any, ...]:
        return (*super()._index_key(sig, codegen), SOURCES)


def compile_kernel(fn: Any, options: dict[str, Any]) -> Any:
    """``numba.njit(**options)(fn)``, its disk cache (when ``options["cache"]``) keyed by :data:`SOURCES`."""
    dispatcher = numba.njit(**options)(fn)
    if options.get("cache") and hasattr(dispatcher, "enable_caching"):  # (a plain function under DISABLE_JIT)
        dispatcher._cache = KernelCache(dispatcher.py_func)
    return dispatcher

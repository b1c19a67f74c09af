"""The one place kernels get their Numba options, and their on-disk cache.

**Where the cache lives.** fastgrad uses Numba's own cache files and
locators (``numba/core/caching.py``): ``$NUMBA_CACHE_DIR`` when set
(``UserProvidedCacheLocator``), else the ``__pycache__`` directory beside
the kernel's source (``InTreeCacheLocator``), else, when that is not
writable (a read-only install), Numba's user-wide directory
``$XDG_CACHE_HOME/numba`` (``~/.cache/numba``; ``UserWideCacheLocator``).
Each locator's ``from_function`` probes its directory
(``_CacheLocator.ensure_cache_path``: ``os.makedirs`` and a
``tempfile.TemporaryFile`` in it) and declines on ``OSError``, so the next
one is tried. When none is writable Numba raises ``RuntimeError("cannot
cache function ...: no locator available")`` at decoration, that is at
``import fastgrad``: fastgrad then compiles in memory, without a cache,
and logs why (``logging.getLogger("fastgrad")``).

**Several processes at once.** Numba writes each file through a temporary
file and ``os.replace``, so no file is ever half-written, but the index of
a function (which signature is in which data file) is read, extended and
rewritten without a lock (``IndexDataCacheFile.save``): two processes
compiling different signatures of one function can both pick data file
``.1.nbc`` and leave an index that names the other's machine code for a
signature (Numba does not check the signature of what it loads). And every
process compiles everything itself: 8 processes starting on an empty cache
each spend the whole compile time (8 x 40 s of CPU on 2 cores). fastgrad's
:class:`_LockedCache` takes an exclusive ``flock`` per kernel file
(``<cache dir>/<kernel>.lock``) from the cache lookup to the save: the first
process compiles, the others wait, then load what it saved. Kernels call
each other without cycles, and a process takes these locks caller first,
so waits cannot go round in a circle; a lock still held after
:data:`LOCK_TIMEOUT` seconds (a stuck process) is ignored and the kernel
compiled anyway. ``flock`` is released by the system when a process dies.
Where ``fcntl`` does not exist (Windows), Numba's own behaviour is kept.

**Keyed by every source file.** Numba keys a cached function by its own
bytecode and its file's modification stamp, not by the functions it calls:
a kernel in ``series.py`` that calls an activation's ``change`` in
``activations/elu.py`` would load its old machine code after ``elu.py``
changed (a ``git pull``, an edit that leaves ``series.py`` alone), silently
running the old activation. So every index key also holds
:data:`SOURCES`, a digest of all of fastgrad's ``.py`` files: any change to
the package compiles afresh, once.

**Errors.** A cache that cannot be read (an index written by something else,
a truncated file) or written (a full disk, a directory that became
read-only) costs a compilation, never the check: the error is logged once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import time
from typing import Any

import numba
from numba.core import event
from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.core.dispatcher import Dispatcher

from .. import _compile_notice  # (importing it registers the notice's listener before any kernel compiles)
from .._config import CACHE
from .._threading import guard

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("fastgrad")

def sources_digest(root: pathlib.Path = pathlib.Path(__file__).resolve().parent.parent) -> str:
    """SHA-256 over the relative paths and contents of every ``.py`` file below ``root`` (fastgrad), sorted."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


#: The digest of this installation's sources, part of every kernel's cache key (a few ms at import).
SOURCES = sources_digest()

#: Seconds a process waits for another one compiling the same kernel before compiling it too.
LOCK_TIMEOUT = 300.0
_POLL = 0.05
_logged: set[str] = set()


def _log_once(key: str, level: int, message: str, *args: Any) -> None:
    # one line per kind of trouble and process, not one per kernel
    if key not in _logged:
        _logged.add(key)
        logger.log(level, message, *args)
    else:
        logger.debug(message, *args)


def _acquire(path: str) -> int | None:
    """Take an exclusive ``flock`` on ``path`` (created if needed); the descriptor, or None without a lock."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        _log_once("lockfile", logging.INFO, "fastgrad: no cache lock file %s (%s); compiling without it", path, e)
        return None
    deadline = None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:  # another process compiles this kernel: wait for it, then load its result
                if deadline is None:
                    deadline = time.monotonic() + LOCK_TIMEOUT
                    _compile_notice.begin(os.path.dirname(path))  # a wait as long as a compile: say so too
                elif time.monotonic() > deadline:
                    _log_once("timeout", logging.WARNING, "fastgrad: %s still locked after %.0f s; compiling "
                              "anyway", path, LOCK_TIMEOUT)
                    os.close(fd)
                    return None
                time.sleep(_POLL)
            except OSError as e:  # a file system without locks
                _log_once("flock", logging.INFO, "fastgrad: cannot lock %s (%s); compiling without it", path, e)
                os.close(fd)
                return None
    finally:
        if deadline is not None:
            _compile_notice.end()


def _release(fd: int | None) -> None:
    if fd is None:
        return
    try:
        # unlock explicitly: a child forked meanwhile shares the descriptor, and close alone would not release
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class _IndexFile(IndexDataCacheFile):
    """Numba's index and data files of one kernel; an index that cannot be read counts as empty."""

    def _load_index(self) -> dict:
        try:
            return super()._load_index()
        except Exception as e:  # noqa: BLE001 - e.g. not a pickle: the next save rewrites it whole
            _log_once("load", logging.INFO, "fastgrad: cannot read the kernel cache index %s (%s: %s); compiling",
                      self._index_path, type(e).__name__, e)
            return {}


class _LockedCache(FunctionCache):
    """Numba's cache of one kernel, locked across processes from lookup to save (see the module docstring).

    Numba calls ``load_overload`` and, on a miss, compiles and calls
    ``save_overload``, all under its global compiler lock (one thread of a
    process at a time). On a miss the lock stays held through the compile;
    a compile that raises ends the ``"numba:compile"`` event as failed, and
    :class:`_Releaser` lets go of the lock then.
    """

    def __init__(self, py_func: Any) -> None:
        super().__init__(py_func)
        files: Any = getattr(self, "_cache_file")  # (numba's, set by Cache.__init__)
        self._cache_file = _IndexFile(files._cache_path, self._impl.filename_base, files._source_stamp)
        self._lock_path = os.path.join(self.cache_path, self._impl.filename_base + ".lock")
        self._fd: int | None = None

    def release(self) -> None:
        """Let go of the inter-process lock, if held."""
        fd, self._fd = self._fd, None
        _release(fd)

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        """Return the cached compile result for ``sig``, or None (then keep the lock: this process compiles)."""
        self.release()  # (left by a compile that failed before the event started)
        self._fd = _acquire(self._lock_path)
        try:
            cres = super().load_overload(sig, target_context)
        except Exception as e:  # noqa: BLE001 - an unreadable cache entry costs a compile, not the check
            _log_once("load", logging.INFO, "fastgrad: cannot read the kernel cache in %s (%s: %s); compiling",
                      self.cache_path, type(e).__name__, e)
            cres = None
        if cres is not None:
            self.release()
        return cres

    def _index_key(self, sig: Any, codegen: Any) -> tuple[Any, ...]:
        return (*super()._index_key(sig, codegen), SOURCES)

    def save_overload(self, sig: Any, data: Any) -> None:
        """Save the compile result, then let go of the lock."""
        try:
            super().save_overload(sig, data)
        except OSError as e:  # the kernel is compiled: a cache that cannot be written is not an error
            _log_once("save", logging.WARNING, "fastgrad: cannot write the kernel cache in %s (%s); "
                      "the kernels will compile again next time", self.cache_path, e)
        finally:
            self.release()


class _Releaser(event.Listener):
    """Let go of a kernel's cache lock when its compilation fails (no save follows)."""

    def on_start(self, ev: event.Event) -> None:
        pass

    def on_end(self, ev: event.Event) -> None:
        if ev.is_failed:
            cache = getattr((ev.data or {}).get("dispatcher"), "_cache", None)
            if isinstance(cache, _LockedCache):
                cache.release()


event.register("numba:compile", _Releaser())


def enable_cache(dispatcher: Any) -> Any:
    """Give ``dispatcher`` fastgrad's locked disk cache, or none when no cache directory is writable."""
    if not isinstance(dispatcher, Dispatcher):  # NUMBA_DISABLE_JIT=1: the Python function itself, nothing to cache
        return dispatcher
    try:
        setattr(dispatcher, "_cache", _LockedCache(dispatcher.py_func))  # (numba's attribute, made by enable_caching)
    except RuntimeError as e:  # numba: "cannot cache function ...: no locator available"
        _log_once("nolocator", logging.INFO, "fastgrad: no writable cache directory (%s); kernels compile in "
                  "memory in every process (set NUMBA_CACHE_DIR to a writable directory to cache them)", e)
    return dispatcher


def njit(options: dict[str, Any], fn: Any) -> Any:
    """``numba.njit(**options)(fn)``, with :func:`enable_cache` in place of ``cache=True``."""
    dispatcher = numba.njit(**{**options, "cache": False})(fn)
    return enable_cache(dispatcher) if options.get("cache") else dispatcher


def jit(parallel: bool = False, inline: bool = False):
    """Return a decorator that compiles a kernel with fastgrad's options.

    ``fastmath`` is never enabled: the kernels take differences whose rounding
    is the quantity being measured. ``cache`` follows ``FASTGRAD_CACHE`` (see
    the module docstring for where and how). ``inline=True`` inlines the
    function into its callers at Numba IR level,
    which removes the per-call reference counting of array arguments: use it
    for helpers called once per parameter or per sample in a hot loop.

    Every other kernel is wrapped in a :class:`fastgrad._threading.Kernel`,
    through which each call from Python passes the fork and thread guards of
    the threading layer (compiled callers call the Numba dispatcher directly).
    """
    options = dict(cache=CACHE, parallel=parallel, nogil=True, fastmath=False,
                   inline="always" if inline else "never")

    def decorate(fn):
        dispatcher = njit(options, fn)
        return dispatcher if inline else guard(dispatcher, options)

    return decorate

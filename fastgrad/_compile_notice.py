"""Say once per process that fastgrad's kernels are compiling, when that takes more than a second.

On a fresh install (an empty Numba cache) the first check compiles fastgrad's
kernels for tens of seconds; without a word, that looks like a frozen
terminal. This module listens to Numba's ``"numba:compile"`` event, which
Numba broadcasts around the compilation of a function and *not* when it
loads the function from the on-disk cache (``Dispatcher.compile`` in
``numba/core/dispatcher.py`` returns the cached overload before it triggers
the event). So only real compilation is timed: a check that loads its
kernels from the cache and then computes for a minute says nothing.

How it works: when a fastgrad kernel starts compiling (the outermost one:
compilations nest, callee inside caller, and Numba's global compiler lock
makes them strictly nested in the whole process, whatever the thread), a
:class:`threading.Timer` is started for what is left of :data:`THRESHOLD`
seconds of compile time; it is cancelled when that compilation ends, and the
time spent is added up. When compile time adds up to more than a second,
the timer fires, during the compilation, and the notice goes out, once per
process (a lock and a flag: threads cannot make it twice). Waiting for
another process that compiles the same kernel (the cache lock of
:mod:`fastgrad._kernels._jit`) counts as compiling: it is as long.

The cost: nothing per kernel call (no hook in the call path); per
compilation, one event callback (microseconds, beside compiles of 0.1-30 s).

Where it goes: by default to ``logging.getLogger("fastgrad")`` at INFO (a
library prints nothing on its own); the command line (while it runs:
:func:`on_stderr`) and :class:`fastgrad.Monitor` (from its creation on:
:func:`print_to_stderr`) have it printed on stderr, never stdout
(``fastgrad check --json -`` keeps stdout for the JSON).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from numba.core import event

logger = logging.getLogger("fastgrad")

#: Seconds of compilation after which the notice goes out.
THRESHOLD = 1.0
#: The notice (the cache directory is appended when known).
MESSAGE = "compiling fastgrad kernels, first run only"

_lock = threading.Lock()
_said = False
_to_stderr = False
_depth = 0  # nesting of fastgrad compilations now running
_spent = 0.0  # seconds of (outermost) fastgrad compilation that ended, so far
_started = 0.0
_timer: threading.Timer | None = None
_cache_dir: str | None = None


def print_to_stderr(on: bool = True) -> bool:
    """Print the notice on stderr from now on (``Monitor``), instead of logging it; return the previous setting."""
    global _to_stderr
    previous, _to_stderr = _to_stderr, bool(on)
    return previous


@contextlib.contextmanager
def on_stderr() -> Iterator[None]:
    """Print the notice on stderr while the body runs (the command line, which may be called from Python)."""
    previous = print_to_stderr()
    try:
        yield
    finally:
        print_to_stderr(previous)


def said() -> bool:
    """Whether the notice went out in this process."""
    return _said


def _message() -> str:
    if _cache_dir:
        return f"{MESSAGE} (later runs load them from the cache in {_cache_dir}) ..."
    return f"{MESSAGE} (the disk cache is off: FASTGRAD_CACHE=0 or no writable cache directory) ..."


def _say() -> None:
    """Emit the notice unless it went out already (the timer thread calls this)."""
    global _said
    with _lock:
        if _said:
            return
        _said = True
        to_stderr = _to_stderr
    text = _message()
    if to_stderr:
        try:
            print(f"fastgrad: {text}", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # stderr closed: a notice is not worth an error
            pass
    else:
        logger.info(text)


def _ours(ev: event.Event) -> Any:
    """Return the dispatcher of the event if it compiles a fastgrad kernel, else None (the user's are not ours)."""
    dispatcher = (ev.data or {}).get("dispatcher") if isinstance(ev.data, dict) else None
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", None) or ""
    return dispatcher if module == "fastgrad" or module.startswith("fastgrad.") else None


def begin(cache_dir: str | None = None) -> None:
    """Count the start of a fastgrad kernel's compilation (or of a wait for another process compiling it)."""
    global _depth, _started, _timer, _cache_dir
    with _lock:
        _depth += 1
        if _depth != 1 or _said:
            return
        _started = time.perf_counter()
        if _cache_dir is None:
            _cache_dir = cache_dir
        _timer = threading.Timer(max(0.0, THRESHOLD - _spent), _say)
        _timer.daemon = True  # never keeps a finished process alive
        _timer.start()


def end() -> None:
    """Count the end of what :func:`begin` counted."""
    global _depth, _spent, _timer
    with _lock:
        if _depth == 0:  # the listener was registered during a compilation
            return
        _depth -= 1
        if _depth == 0:
            _spent += time.perf_counter() - _started
            if _timer is not None:
                _timer.cancel()
                _timer = None


class _Listener(event.Listener):
    """Times fastgrad's compilations (see the module docstring)."""

    def on_start(self, ev: event.Event) -> None:
        dispatcher = _ours(ev)
        if dispatcher is not None:
            begin(getattr(getattr(dispatcher, "_cache", None), "cache_path", None))

    def on_end(self, ev: event.Event) -> None:
        if _ours(ev) is not None:
            end()


_listener = _Listener()
event.register("numba:compile", _listener)


def _state() -> tuple:
    """Return the module's state (tests save it and put it back)."""
    return _said, _to_stderr, _spent, _cache_dir, THRESHOLD


def _reset_for_tests(threshold: float = 1.0, state: tuple | None = None) -> None:
    """Forget the notice and the time counted, or put back a saved :func:`_state` (tests only)."""
    global _said, _to_stderr, _depth, _spent, _timer, _cache_dir, THRESHOLD
    with _lock:
        if _timer is not None:
            _timer.cancel()
        _depth, _timer = 0, None
        if state is not None:
            _said, _to_stderr, _spent, _cache_dir, THRESHOLD = state
        else:
            _said = _to_stderr = False
            _spent, _cache_dir, THRESHOLD = 0.0, None, threshold

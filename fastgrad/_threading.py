"""Which Numba threading layer fastgrad's parallel kernels run on, and the guards that make any layer safe.

fastgrad must be safe to call from any process and any thread: after a check,
a ``multiprocessing`` pool (``fork``, ``spawn`` or ``forkserver``) must work,
and several Python threads may call :func:`fastgrad.check` at once. Numba's
threading layers differ here (Numba's documentation, "The Threading Layers"):

============  ==========  ============  =========================================
layer         fork-safe   thread-safe   fastgrad
============  ==========  ============  =========================================
``tbb``       yes         yes           preferred; nothing to guard
``omp``       no (GNU)    yes           a child forked after the parent started
                                        GNU OpenMP terminates ("fork() called from
                                        a process already using GNU OpenMP") or
                                        hangs: there fastgrad runs *serial twins*
``workqueue`` yes         no            two parallel launches at once abort the
                                        process (SIGABRT): fastgrad serialises
                                        its launches with one process-wide lock
============  ==========  ============  =========================================

**The choice**, made once at ``import fastgrad``, before any parallel kernel
has run (the layer is fixed by Numba at the first launch):

1. A layer already running (a parallel kernel ran before ``import
   fastgrad``), or one the user chose (``NUMBA_THREADING_LAYER`` or
   ``numba.config.THREADING_LAYER`` set to anything but ``"default"``), is
   left alone: fastgrad guards it.
2. Otherwise ``FASTGRAD_THREADING_LAYER`` (``tbb``, ``omp``, ``workqueue``,
   or Numba's ``safe``, ``threadsafe``, ``forksafe``; ``auto`` is the default)
   names the layer, e.g. to compare layers.
3. Otherwise (``auto``): ``tbb`` when the ``tbb`` package (a dependency of
   fastgrad where PyPI has its wheel: Linux x86-64 and Windows x86-64) or a
   system ``libtbb`` of interface version >= 12060 (oneTBB 2021.6) loads;
   else ``workqueue``, which is fork-safe, and which the lock below makes
   thread-safe for fastgrad's own kernels. GNU OpenMP, Numba's own default
   without TBB, is never chosen.

The ``tbb`` wheel puts ``libtbb.so.12`` in ``<prefix>/lib``, where the
dynamic loader of a virtual environment (or of a Python not built with that
rpath) does not look, so ``numba -s`` reports TBB unavailable; fastgrad
loads the wheel's library by its path first, after which Numba finds it.
The choice sets ``numba.config.THREADING_LAYER`` of the process, so it also
applies to the user's own ``parallel=True`` functions that run after
``import fastgrad`` (nothing is written to ``os.environ``).

**The guards** (applied per launch, by :class:`Kernel`, the wrapper that
:func:`fastgrad._kernels._jit.jit` puts around every kernel, so that every
launch is covered, whether it comes from :func:`fastgrad.check`, from
:meth:`fastgrad.MLP.forward` or from a test):

* layer ``workqueue``: the launch of a kernel that runs a parallel region
  holds a process-wide lock (concurrent checks run their kernels one at a
  time; results are bitwise the same, as for any thread count);
* a process forked from one in which GNU OpenMP had started: the kernels
  run serial twins (the same Python source compiled without
  ``parallel=True``, so ``prange`` is ``range``; bitwise the same results,
  cached on disk separately), because that child cannot start OpenMP
  threads. A fork child also gets a fresh lock (one held by another thread
  of the parent at the fork would never be released).

``fastgrad.threading_layer()`` tells the layer in use, and :func:`status`
how it was chosen and which guard is active::

    python -c "import fastgrad; print(fastgrad.threading_layer())"
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import os
import sys
import threading
import types
import warnings
from dataclasses import dataclass
from typing import Any

import numba

#: Layers Numba knows, and the behaviours it resolves to a layer.
LAYERS = ("tbb", "omp", "workqueue")
PURPOSES = ("safe", "threadsafe", "forksafe")
#: The oneTBB runtime interface version Numba's TBB layer needs (2021.6).
TBB_INTERFACE_MIN = 12060
#: The shared library of oneTBB (its name is also its SONAME / DLL name).
_LIBTBB = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}

_ENV = "FASTGRAD_THREADING_LAYER"


@dataclass
class Choice:
    """How the layer was chosen at import (see the module docstring)."""

    #: What was asked of Numba: a layer, a purpose ("safe", ...) or "default".
    requested: str
    #: Who asked: "fastgrad", FASTGRAD_THREADING_LAYER, "numba" (the user's
    #: NUMBA_THREADING_LAYER / numba.config.THREADING_LAYER) or "running"
    #: (a layer had already started before fastgrad was imported).
    by: str
    #: Why fastgrad asked what it asked (empty when it asked nothing).
    reason: str


def _layer_running() -> str | None:
    """The layer Numba has started, or None when no parallel kernel has run yet."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _preload_tbb() -> str | None:
    """Load the ``tbb`` wheel's libtbb by its path (so that Numba finds it); return that path."""
    name = _LIBTBB.get("win32" if sys.platform == "win32" else sys.platform)
    if name is None:
        return None
    try:
        dist = importlib.metadata.distribution("tbb")
        files = dist.files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == name:
            path = os.path.realpath(str(dist.locate_file(f)))
            if not os.path.exists(path):
                continue
            try:
                if sys.platform == "win32":
                    os.add_dll_directory(os.path.dirname(path))
                ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            except OSError:
                return None
            return path
    return None


def tbb_problem() -> str | None:
    """Why Numba's TBB layer cannot load here (None: it can); loads libtbb as a side effect."""
    _preload_tbb()
    name = _LIBTBB.get("win32" if sys.platform == "win32" else sys.platform)
    if name is None:
        return f"no oneTBB library name known for platform {sys.platform}"
    try:
        lib = ctypes.CDLL(name)
        version = lib.TBB_runtime_interface_version
        version.argtypes = []
        version.restype = ctypes.c_int
        interface = int(version())
    except (OSError, AttributeError) as e:
        return f"{name} not loadable ({e}); `pip install tbb` provides it"
    if interface < TBB_INTERFACE_MIN:
        return f"{name} has interface version {interface}, Numba needs >= {TBB_INTERFACE_MIN} (oneTBB 2021.6)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module("numba.np.ufunc.tbbpool")
    except Exception as e:  # noqa: BLE001 - any failure to import means: not available
        return f"numba.np.ufunc.tbbpool does not import ({type(e).__name__}: {e})"
    return None


def _choose() -> Choice:
    """Set ``numba.config.THREADING_LAYER`` unless the user or an earlier launch decided it."""
    running = _layer_running()
    if running is not None:
        return Choice(running, "running", "")
    configured = str(numba.config.THREADING_LAYER).strip().lower()
    if configured not in ("", "default"):  # (an empty NUMBA_THREADING_LAYER counts as unset)
        if configured in ("tbb", "safe", "threadsafe", "forksafe"):
            _preload_tbb()  # so that the user's choice of TBB works from a virtual environment too
        return Choice(configured, "numba", "")
    asked = os.environ.get(_ENV, "auto").strip().lower() or "auto"
    if asked != "auto":
        if asked not in LAYERS + PURPOSES:
            raise ValueError(
                f"{_ENV}={os.environ[_ENV]!r}: expected auto, {', '.join(LAYERS)}, or {', '.join(PURPOSES)}"
            )
        if asked != "omp" and asked != "workqueue":
            _preload_tbb()
        numba.config.THREADING_LAYER = asked
        return Choice(asked, _ENV, "")
    problem = tbb_problem()
    if problem is None:
        layer, reason = "tbb", "TBB is fork- and thread-safe"
    else:
        layer, reason = "workqueue", f"TBB unavailable ({problem}); workqueue is fork-safe, and launches are locked"
    numba.config.THREADING_LAYER = layer
    return Choice(layer, "fastgrad", reason)


CHOICE = _choose()

# ---------------------------------------------------------------------------
# guards
# ---------------------------------------------------------------------------

#: Modes of :class:`Kernel` calls: not decided yet (no launch yet), call the
#: kernel directly, hold the launch lock, or run the serial twin.
_UNDECIDED, _DIRECT, _LOCK, _SERIAL = "undecided", "direct", "lock", "serial"
_mode = _UNDECIDED
_mode_lock = threading.Lock()
#: Held during every launch of a parallel region when the layer is not thread-safe.
_launch_lock = threading.RLock()
#: Held while a serial twin is made (a twin makes its callees' twins: reentrant).
_twin_lock = threading.RLock()


def _is_gnu_openmp() -> bool:
    try:
        from numba.np.ufunc import omppool  # type: ignore[attr-defined]  # (built only where OpenMP is)
    except ImportError:
        return False
    return getattr(omppool, "openmp_vendor", "") == "GNU"


def _start_layer() -> str:
    """Start Numba's layer if no launch did yet (with fastgrad's choice); return its name."""
    name = _layer_running()
    if name is None:
        if CHOICE.by in ("fastgrad", _ENV) and str(numba.config.THREADING_LAYER).strip().lower() in ("", "default"):
            # Numba re-reads NUMBA_* variables when one changes, which resets the config
            numba.config.THREADING_LAYER = CHOICE.requested
        numba.get_num_threads()  # starts the layer
        name = numba.threading_layer()
    return name


def _decide() -> str:
    global _mode
    with _mode_lock:
        if _mode == _UNDECIDED:
            _mode = _LOCK if _start_layer() == "workqueue" else _DIRECT
        return _mode


def _after_fork_in_child() -> None:
    global _launch_lock, _mode, _mode_lock, _twin_lock
    _launch_lock = threading.RLock()
    _mode_lock = threading.Lock()
    _twin_lock = threading.RLock()
    if _layer_running() == "omp" and _is_gnu_openmp():
        _mode = _SERIAL


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threading_layer() -> str:
    """The Numba threading layer fastgrad's kernels run on: ``"tbb"``, ``"omp"`` or ``"workqueue"``.

    Starts the layer if no parallel kernel has run yet (it is then fixed for
    the process). See :mod:`fastgrad._threading` for how it is chosen.
    """
    _decide()
    return numba.threading_layer()


def status() -> dict[str, Any]:
    """How the layer was chosen and which guard is active (starts the layer, as :func:`threading_layer`)."""
    mode = _decide()
    return {
        "layer": numba.threading_layer(),
        "requested": CHOICE.requested,
        "chosen_by": CHOICE.by,
        "reason": CHOICE.reason,
        "guard": {_DIRECT: None, _LOCK: "launch lock (layer not thread-safe)",
                  _SERIAL: "serial kernels (forked after GNU OpenMP started)"}[mode],
        "openmp_vendor": "GNU" if _is_gnu_openmp() else None,
    }


#: A parallel kernel whose array arguments hold fewer elements than this in
#: all runs its serial twin (``FASTGRAD_PARALLEL_MIN_SIZE`` overrides; 0:
#: always parallel). Below it a parallel region does not pay: starting the
#: threads costs more than the work, and compiling a ``parallel=True``
#: kernel costs 0.3-5 s more than its serial twin, which is what a first run
#: on a small net would otherwise wait for. The twin is the same source and
#: every kernel's result is independent of the thread count, so the choice
#: changes no bit of any result.
PARALLEL_MIN_SIZE = int(os.environ.get("FASTGRAD_PARALLEL_MIN_SIZE", "65536"))
#: The same threshold for a launch whose caller knows its work (:meth:`Kernel.launch`), in floating-point
#: operations: about a millisecond on one core, where two threads start to pay.
PARALLEL_MIN_WORK = 16.0 * PARALLEL_MIN_SIZE


def _small(args: tuple[Any, ...]) -> bool:
    """Whether a launch with these arguments is below :data:`PARALLEL_MIN_SIZE` (arrays' elements summed)."""
    if PARALLEL_MIN_SIZE <= 0:
        return False
    total = 0
    for a in args:
        for x in a if isinstance(a, tuple) else (a,):  # (a named tuple of arrays counts as its arrays)
            size = getattr(x, "size", None)
            if size is not None:
                total += size
    return total < PARALLEL_MIN_SIZE


class Kernel:
    """A compiled kernel, called through the guards of this module.

    Calls from Python go through :meth:`__call__`; kernels that call it from
    compiled code see the Numba dispatcher itself (``_numba_type_``), so the
    wrapper costs nothing there.
    """

    def __init__(self, dispatcher: Any, options: dict[str, Any]) -> None:
        self.dispatcher = dispatcher
        self.options = options
        self.parallel = bool(options.get("parallel"))
        self._launches: bool | None = None
        self._serial: Any = None
        self.__wrapped__ = dispatcher.py_func
        for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
            setattr(self, attr, getattr(dispatcher.py_func, attr))

    def __call__(self, *args: Any) -> Any:
        if self.launches and _small(args):
            return self.serial(*args)
        return self._parallel(*args)

    def launch(self, work: float, *args: Any) -> Any:
        """Call with ``args``, choosing the serial twin by the caller's estimate of the work (flops).

        For the engines' kernels, whose work is not their arrays' size (the full engine on a small net
        recomputes the net once per parameter): serial below :data:`PARALLEL_MIN_WORK`.
        """
        if self.launches and PARALLEL_MIN_SIZE > 0 and work < PARALLEL_MIN_WORK:
            return self.serial(*args)
        return self._parallel(*args)

    def _parallel(self, *args: Any) -> Any:
        if _mode == _DIRECT:
            return self.dispatcher(*args)
        mode = _decide() if _mode == _UNDECIDED else _mode
        if mode == _DIRECT or not self.launches:
            return self.dispatcher(*args)
        if mode == _SERIAL:
            return self.serial(*args)
        with _launch_lock:
            return self.dispatcher(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dispatcher, name)

    def __repr__(self) -> str:
        return f"<fastgrad kernel {self.__qualname__} ({'parallel' if self.parallel else 'serial'})>"

    @property
    def _numba_type_(self) -> Any:
        return self.dispatcher._numba_type_

    def _callees(self) -> list[tuple[str, Kernel]]:
        fn = self.dispatcher.py_func
        return [(n, fn.__globals__[n]) for n in fn.__code__.co_names if isinstance(fn.__globals__.get(n), Kernel)]

    @property
    def launches(self) -> bool:
        """Whether a call runs a parallel region: the kernel is parallel or calls one that does."""
        if self._launches is None:
            self._launches = False  # a recursion guard; kernels do not recurse, but be safe
            self._launches = self.parallel or any(k.launches for _, k in self._callees())
        return self._launches

    @property
    def serial(self) -> Any:
        """The serial twin: the same source compiled without ``parallel``, calling the twins of its callees."""
        with _twin_lock:
            if self._serial is None:
                self._serial = self._make_serial()
        return self._serial

    def _make_serial(self) -> Any:
        fn = self.dispatcher.py_func
        namespace = dict(fn.__globals__)
        for name, kernel in self._callees():
            if kernel.launches:
                namespace[name] = kernel.serial
        twin = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "__serial"  # its own on-disk cache entry
        twin.__module__ = fn.__module__
        twin.__doc__ = fn.__doc__
        from ._kernels._jit import njit  # (not at import: _jit imports this module)

        return njit({**self.options, "parallel": False}, twin)  # the same disk cache rules as the kernel's


def launch(kernel: Any, work: float, *args: Any) -> Any:
    """``kernel.launch(work, *args)`` (:meth:`Kernel.launch`); a plain function (``NUMBA_DISABLE_JIT=1``) is called."""
    if isinstance(kernel, Kernel):
        return kernel.launch(work, *args)
    return kernel(*args)


def guard(dispatcher: Any, options: dict[str, Any]) -> Any:
    """Wrap a Numba dispatcher made with ``options`` (see :class:`Kernel`).

    Under ``NUMBA_DISABLE_JIT=1`` Numba returns the plain Python function,
    which runs no parallel region and needs no guard: it is returned as is.
    """
    if numba.config.DISABLE_JIT:
        return dispatcher
    return Kernel(dispatcher, options)

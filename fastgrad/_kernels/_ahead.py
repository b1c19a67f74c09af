"""Compile ahead: on a cold cache, a second process compiles the end of a check's kernels while this one starts.

Numba compiles one function at a time per process (a global compiler lock),
so a first check on an empty cache compiles its ~30 kernels one after the
other: 11-12 s of compilation on one core of a 2-core machine while the
other core idles. When the first check of a process starts compiling (a
cache miss, seen through Numba's ``"numba:compile"`` event), this module
starts one helper process, ``python -m fastgrad._kernels._ahead PLAN``,
that compiles the same kernels, with the same signatures, into the same disk
cache, **in reverse order**: this process compiles the forward pass, the
backprop and the engine, the helper the verdict, the budget and the
engine's last kernels, and where they meet the cache locks of
:mod:`fastgrad._kernels._jit` make the later one wait and load what the
other one saved. Nothing is compiled twice and nothing is compiled
differently: a kernel loaded from the cache is the machine code any warm
start runs.

**What the helper compiles** comes from :data:`fastgrad._kernels.ahead_plans.PLANS`:
per plan (``"check/incremental/central/serial"``: a check, its engine and
method, and whether its launches ran the serial twins or the parallel
kernels), the kernels a cold first check compiled, in order, with their
argument types, recorded by ``python -c "import fastgrad._kernels._ahead as a; a.record_all()"``
(each plan in a fresh process on an empty cache). A stale list costs time,
never a result: an entry whose signature no longer matches compiles a
specialisation nobody calls, or fails to type and is skipped;
``tests/test_ahead.py`` fails when the default plan has drifted.

**When** (all must hold, else nothing is started): the first fastgrad
compilation in this process happens while a check or
``numerical_gradient`` is computing with a plan in the list; the disk
cache is on and locked (``FASTGRAD_CACHE`` not 0, ``fcntl`` available); at
least two CPUs are available to this process; ``FASTGRAD_COMPILE_AHEAD`` is
not ``0``; not under ``NUMBA_DISABLE_JIT``. At most one helper per process,
ever. The helper gets the parent's environment (so the same
``NUMBA_CACHE_DIR``) and the parent's ``fastgrad`` on its ``PYTHONPATH``;
it exits at once when its sources differ from the parent's (their digest
is passed along). Its output goes nowhere; when the parent exits first, the
helper is terminated (a save is a ``os.replace``, never half a file; a
lock dies with its holder).
"""

from __future__ import annotations

import atexit
import importlib
import os
import subprocess
import sys
import threading
from typing import Any

import numba
import numpy as np
from numba.core import event, types
from numba.core.types.containers import BaseNamedTuple
from numba.np.numpy_support import as_dtype

#: How the helper (and :func:`record_all`'s children) start: not ``-m`` (importing the package imports this module,
#: which ``-m`` would then run a second time as ``__main__``).
_ENTRY = "import sys; from fastgrad._kernels._ahead import main; sys.exit(main(sys.argv[1:]))"
#: The environment switch (``0`` turns compiling ahead off).
ENV = "FASTGRAD_COMPILE_AHEAD"

_lock = threading.Lock()
_local = threading.local()  # .plan: the plan of the computation this thread runs, if any (Numba compiles a
#                             kernel in the thread that calls it first)
_started = False  # a helper was started (or the chance passed): never again in this process
_helper: subprocess.Popen | None = None


# ------------------------------------------------------------------ signatures as plain data
def describe(t: Any) -> Any:
    """A JSON-able description of a kernel argument's Numba type (what :func:`rebuild` turns back into it)."""
    if isinstance(t, types.Array):
        if t.layout != "C":
            raise ValueError(f"compile ahead: only C-contiguous arrays are described, not {t}")
        return ["array", as_dtype(t.dtype).str, t.ndim, bool(t.mutable)]
    if isinstance(t, (types.Integer, types.Float, types.Boolean)):
        return ["scalar", as_dtype(t).str]
    if isinstance(t, BaseNamedTuple):
        cls = t.instance_class
        return ["namedtuple", f"{cls.__module__}:{cls.__qualname__}", [describe(x) for x in t.types]]
    raise ValueError(f"compile ahead: no description for the argument type {t!r}")


def _example(d: Any) -> Any:
    kind = d[0]
    if kind == "array":
        a = np.zeros((0,) * d[2], dtype=np.dtype(d[1]))
        a.flags.writeable = d[3]
        return a
    if kind == "scalar":
        return np.dtype(d[1]).type(0)
    if kind == "namedtuple":
        module, name = d[1].split(":")
        return getattr(importlib.import_module(module), name)(*[_example(x) for x in d[2]])
    raise ValueError(f"compile ahead: unknown description {d!r}")


def rebuild(d: Any) -> Any:
    """The Numba type that :func:`describe` described."""
    return numba.typeof(_example(d))


def _dispatcher(module: str, qualname: str) -> Any:
    """The Numba dispatcher compiled under ``module.qualname`` (a kernel's serial twin ends in ``__serial``)."""
    name = qualname.removesuffix("__serial")
    kernel = getattr(importlib.import_module(module), name)
    if qualname.endswith("__serial"):
        return kernel.serial
    return getattr(kernel, "dispatcher", kernel)


# ------------------------------------------------------------------ recording a plan
class Recorder(event.Listener):
    """Collects the outermost fastgrad compilations of this process, in order, as plan entries."""

    def __init__(self) -> None:
        self.entries: list[list[Any]] = []
        self._depth = 0

    def on_start(self, ev: event.Event) -> None:
        fn = ev.data["dispatcher"].py_func
        self._depth += 1
        if self._depth == 1 and fn.__module__.startswith("fastgrad."):
            self.entries.append([fn.__module__, fn.__qualname__, [describe(t) for t in ev.data["args"]]])

    def on_end(self, ev: event.Event) -> None:
        self._depth -= 1


# ------------------------------------------------------------------ the parent's side
def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def enabled() -> bool:
    """Whether this process may start a helper at all (see the module docstring, "When")."""
    from .._config import CACHE
    from ._jit import fcntl

    return (os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")
            and CACHE and fcntl is not None and not numba.config.DISABLE_JIT and _cpus() >= 2)


class computing:
    """Context manager: the body computes ``plan`` (``"check/<engine>/<method>"``).

    A cold compile in the body may start the helper (see :class:`_Trigger`).
    """

    def __init__(self, plan: str) -> None:
        self.plan = plan
        self._previous: str | None = None

    def __enter__(self) -> None:
        self._previous = getattr(_local, "plan", None)
        _local.plan = None if _started else self.plan

    def __exit__(self, *exc: Any) -> None:
        _local.plan = self._previous


def _start(plan: str) -> None:
    """Start the helper for ``plan`` (the caller holds :data:`_lock` and has checked everything else)."""
    global _helper
    from . import ahead_plans
    from ._jit import SOURCES

    if plan not in ahead_plans.PLANS or not enabled():
        return
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, **{ENV: "0"})  # a helper never starts one of its own
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        _helper = subprocess.Popen([sys.executable, "-c", _ENTRY, plan, SOURCES], env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, close_fds=True)
    except OSError:  # no interpreter to start: compile alone, as without the helper
        return
    atexit.register(_stop)


def _stop() -> None:
    helper = _helper
    if helper is not None and helper.poll() is None:
        helper.terminate()
        try:
            helper.wait(timeout=5)
        except subprocess.TimeoutExpired:
            helper.kill()


def helper() -> subprocess.Popen | None:
    """The helper process this process started, if any (tests and benchmarks look at it)."""
    return _helper


class _Trigger(event.Listener):
    """Starts the helper at the first fastgrad compilation inside :class:`computing`."""

    def on_start(self, ev: event.Event) -> None:
        global _started
        plan = getattr(_local, "plan", None)
        if _started or plan is None:
            return
        fn = getattr(ev.data.get("dispatcher"), "py_func", None)
        module = getattr(fn, "__module__", "") or ""
        if fn is None or not module.startswith("fastgrad."):
            return
        with _lock:
            if _started:
                return
            _started = True
            variant = "serial" if fn.__qualname__.endswith("__serial") else "parallel"
            _start(f"{plan}/{variant}")

    def on_end(self, ev: event.Event) -> None:
        pass


event.register("numba:compile", _Trigger())


# ------------------------------------------------------------------ the helper's side
def compile_plan(plan: str) -> int:
    """Compile ``plan``'s kernels in reverse order into the disk cache; return how many compiled or loaded."""
    from . import ahead_plans

    done = 0
    for module, qualname, described in reversed(ahead_plans.PLANS[plan]):
        try:
            _dispatcher(module, qualname).compile(tuple(rebuild(d) for d in described))
            done += 1
        except Exception:  # noqa: BLE001 - a stale entry: the parent compiles what it needs itself
            continue
    return done


def _record(plan: str) -> list[list[Any]]:
    """Run ``plan``'s first check here, on whatever cache ``NUMBA_CACHE_DIR`` names, and return what compiled."""
    kind, engine, method, variant = plan.split("/")
    recorder = Recorder()
    event.register("numba:compile", recorder)
    import fastgrad

    net = fastgrad.MLP([4, 5, 3])
    params = net.init(0)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(8, 4)), rng.uniform(size=(8, 3))
    if kind == "check":
        fastgrad.check(net, params, X, Y, engine=engine, method=method)
    else:
        fastgrad.numerical_gradient(net, params, X, Y, engine=engine, method=method)
    event.unregister("numba:compile", recorder)
    return recorder.entries


#: The plans :func:`record_all` writes: what a first check or numerical_gradient compiles, per engine and variant.
RECORDED = [f"{kind}/{engine}/central/{variant}" for kind in ("check", "values")
            for engine in ("incremental", "full", "unit") for variant in ("serial", "parallel")]


def record_all(path: str = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ahead_plans.py")) -> None:
    """Record every plan of :data:`RECORDED`, each in a fresh process on an empty cache, and write the module."""
    import json
    import tempfile

    plans = {}
    for plan in RECORDED:
        with tempfile.TemporaryDirectory(prefix="fastgrad-ahead-") as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, **{ENV: "0"})
            env["FASTGRAD_PARALLEL_MIN_SIZE"] = "1000000000" if plan.endswith("/serial") else "0"
            out = subprocess.run([sys.executable, "-c", _ENTRY, "--record-one", plan], env=env,
                                 capture_output=True, text=True, check=True)
            plans[plan] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{plan}: {len(plans[plan])} kernels", file=sys.stderr)
    write_plans(plans, path)


def write_plans(plans: dict[str, list[list[Any]]], path: str) -> None:
    """Write ``plans`` as the module :mod:`fastgrad._kernels.ahead_plans` (one kernel per line)."""
    lines = ['"""What a first check compiles, per plan, in order (see fastgrad._kernels._ahead).',
             "",
             "Written by ``python -c 'import fastgrad._kernels._ahead as a; a.record_all()'``: do not edit.",
             '"""',
             "",
             "# fmt: off",
             "PLANS: dict = {"]
    for plan in sorted(plans):
        lines.append(f"    {plan!r}: [")
        lines.extend(f"        {entry!r}," for entry in plans[plan])
        lines.append("    ],")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--record"]:
        record_all()
        return 0
    if argv[:1] == ["--record-one"]:
        import json

        print(json.dumps(_record(argv[1])))
        return 0
    plan, sources = argv[0], argv[1]
    from ._jit import SOURCES

    if sources != SOURCES:  # not the parent's fastgrad: what it would compile is not what the parent needs
        return 1
    compile_plan(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

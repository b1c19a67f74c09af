"""Cold and warm start: a fresh process imports fastgrad and checks a 4-5-3 net; per-kernel compile times.

Usage::

    python bench/startup.py                 # cold, then warm, in a new empty NUMBA_CACHE_DIR
    python bench/startup.py --json out.json # the same, and the numbers as JSON
    python bench/startup.py --child         # one measurement in this process (JSON on stdout)
    python bench/startup.py --baseline      # import numpy and numba alone, in this process (JSON on stdout)

Cold: the Numba cache is empty, so the first check compiles every kernel it
uses (and writes the cache), sharing the work with the helper process it
starts (fastgrad/_kernels/_ahead.py); "cold, one process" is the same in
another empty cache with ``FASTGRAD_COMPILE_AHEAD=0`` (no helper), side by
side. Warm: a process with the first cache loads the kernels. Each line
reports the process's wall time (interpreter start
included) and, measured inside the process, the import and first check.
A third kind of process imports numpy and Numba alone: the issue's warm
target is about the time beyond that (``warm beyond numpy+numba``).

The one-process cold child also records each kernel's compile time, from Numba's
``"numba:compile"`` event (fired around a real compilation, not a cache
load): inclusive (the kernel and the callees it compiled on the way) and
exclusive (inclusive minus those callees), per ``module.qualname``; the
table lists the top 25 by exclusive time and the total.
``bench_startup.py`` records the same runs in the benchmark output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _CompileTimes:
    """A ``numba:compile`` listener: inclusive and exclusive seconds and count per compiled function."""

    def __init__(self) -> None:
        from numba.core import event

        class Listener(event.Listener):
            def on_start(_, ev):
                self.start(ev)

            def on_end(_, ev):
                self.end(ev)

        self.stack: list[list] = []  # [name, start, seconds spent in callees' compiles]
        self.times: dict[str, dict] = {}
        event.register("numba:compile", Listener())

    def start(self, ev) -> None:
        fn = ev.data["dispatcher"].py_func
        self.stack.append([f"{fn.__module__}.{fn.__qualname__}", time.perf_counter(), 0.0])

    def end(self, ev) -> None:
        name, t0, inner = self.stack.pop()
        seconds = time.perf_counter() - t0
        row = self.times.setdefault(name, {"inclusive": 0.0, "exclusive": 0.0, "count": 0})
        row["inclusive"] += seconds
        row["exclusive"] += seconds - inner
        row["count"] += 1
        if self.stack:
            self.stack[-1][2] += seconds

    def table(self) -> list[dict]:
        """Rows sorted by exclusive time, largest first."""
        rows = [{"kernel": k, **v} for k, v in self.times.items()]
        return sorted(rows, key=lambda r: -r["exclusive"])


def baseline() -> dict:
    """Import numpy and numba alone, in this process (what any Numba program pays)."""
    t0 = time.perf_counter()
    import numba  # noqa: F401
    import numpy  # noqa: F401

    return {"import_seconds": time.perf_counter() - t0}


def child() -> dict:
    """Import fastgrad and run ``fastgrad.check`` twice on a 4-5-3 net, in this process."""
    t0 = time.perf_counter()
    times = _CompileTimes()  # imports numba (counted in the import time, as fastgrad would import it)
    import numpy as np

    import fastgrad

    t1 = time.perf_counter()
    net = fastgrad.MLP([4, 5, 3])
    params = net.init(0)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(8, 4)), rng.uniform(size=(8, 3))
    result = fastgrad.check(net, params, X, Y)
    t2 = time.perf_counter()
    again = fastgrad.check(net, params, X, Y)
    t3 = time.perf_counter()
    import numba

    from fastgrad._kernels import _ahead

    return {
        "import_seconds": t1 - t0,
        "first_check_seconds": t2 - t1,
        "second_check_seconds": t3 - t2,
        "passed": bool(result.passed and again.passed),
        "helper": _ahead.helper() is not None,
        "max_rel_error": float(result.max_rel_error),
        "n_params": net.n_params,
        "numba_version": numba.__version__,
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR", ""),
        "compile_seconds": sum(r["exclusive"] for r in times.table()),
        "compile_times": times.table(),
    }


def run_child(cache_dir: str, mode: str = "--child", ahead: bool = True) -> dict:
    """Run :func:`child` (or ``mode``'s) in a new interpreter with ``NUMBA_CACHE_DIR=cache_dir``; add its wall time.

    ``ahead=False``: without the compile-ahead helper (``FASTGRAD_COMPILE_AHEAD=0``).
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    for name in ("FASTGRAD_CACHE", "NUMBA_DISABLE_JIT", "FASTGRAD_COMPILE_AHEAD",
                 "FASTGRAD_PARALLEL_MIN_SIZE"):  # measure the defaults
        env.pop(name, None)
    if not ahead:
        env["FASTGRAD_COMPILE_AHEAD"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), mode], env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"startup child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = wall
    return out


def measure(cache_dir: str | None = None) -> dict:
    """Cold then warm start in ``cache_dir`` (default: a new temporary directory, removed after).

    The one-process cold start runs in a second new temporary directory, after the others.
    """
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="fastgrad-numba-cache-") as tmp:
            return measure(tmp)
    if os.listdir(cache_dir):
        raise ValueError(f"{cache_dir} is not empty: a cold start needs an empty cache")
    cold = run_child(cache_dir)
    warm = run_child(cache_dir)
    with tempfile.TemporaryDirectory(prefix="fastgrad-numba-cache-") as other:
        alone = run_child(other, ahead=False)
    return {"cold": cold, "cold_one_process": alone, "warm": warm,
            "numpy_numba": run_child(cache_dir, "--baseline")}


def report(result: dict, top: int = 25) -> str:
    """Return the markdown tables of :func:`measure`'s result."""
    lines = ["| start | process wall s | import s | first check s | second check s | passed |",
             "|---|---|---|---|---|---|"]
    names = {"cold": "cold (with its helper)" if result["cold"].get("helper") else "cold (no helper started)",
             "cold_one_process": "cold, one process", "warm": "warm"}
    for name, label in names.items():
        r = result[name]
        lines.append(f"| {label} | {r['process_seconds']:.2f} | {r['import_seconds']:.2f} | "
                     f"{r['first_check_seconds']:.2f} | {r['second_check_seconds']:.3f} | {r['passed']} |")
    base = result["numpy_numba"]
    lines.append(f"| numpy + numba alone | {base['process_seconds']:.2f} | {base['import_seconds']:.2f} | | | |")
    warm = result["warm"]
    beyond = warm["import_seconds"] + warm["first_check_seconds"] - base["import_seconds"]
    lines += ["", f"warm start beyond numpy+numba (import + first check - numpy+numba import): {beyond:.2f} s; "
              f"process wall beyond: {warm['process_seconds'] - base['process_seconds']:.2f} s (target <= 0.5 s)", ""]
    rows = result["cold_one_process"]["compile_times"]
    lines += [f"Cold start in one process, compile time per kernel (top {min(top, len(rows))} of {len(rows)} "
              "by exclusive time):", "",
              "| kernel | exclusive s | inclusive s | compiles |", "|---|---|---|---|"]
    for r in rows[:top]:
        lines.append(f"| {r['kernel']} | {r['exclusive']:.2f} | {r['inclusive']:.2f} | {r['count']} |")
    lines.append(f"| **total ({len(rows)} functions)** | **{result['cold_one_process']['compile_seconds']:.2f}** | | "
                 f"{sum(r['count'] for r in rows)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--child"]:
        print(json.dumps(child()))
        return 0
    if argv == ["--baseline"]:
        print(json.dumps(baseline()))
        return 0
    if argv and not (argv[0] == "--json" and len(argv) == 2):
        print(__doc__, file=sys.stderr)
        return 2
    result = measure()
    print(report(result))
    if argv:
        with open(argv[1], "w") as f:
            json.dump(result, f, indent=2)
    return 0 if all(result[k]["passed"] for k in ("cold", "cold_one_process", "warm")) else 1


if __name__ == "__main__":
    sys.exit(main())

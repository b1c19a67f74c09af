"""Cold and warm start: a fresh process imports fastgrad and checks a 4-5-3 net.

Usage::

    python bench/startup.py                 # cold, then warm, in a new empty NUMBA_CACHE_DIR
    python bench/startup.py --json out.json # the same, and the numbers as JSON
    python bench/startup.py --child         # one measurement in this process (JSON on stdout)

Cold: the Numba cache is empty, so the first check compiles every kernel it
uses (and writes the cache). Warm: a second process with the same cache
loads them. Each line reports the process's wall time (interpreter start
included) and, measured inside the process, the import and first check.
``bench_startup.py`` records the same two runs in the benchmark output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child() -> dict:
    """Import fastgrad and run ``fastgrad.check`` twice on a 4-5-3 net, in this process."""
    t0 = time.perf_counter()
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

    return {
        "import_seconds": t1 - t0,
        "first_check_seconds": t2 - t1,
        "second_check_seconds": t3 - t2,
        "passed": bool(result.passed and again.passed),
        "max_rel_error": float(result.max_rel_error),
        "n_params": net.n_params,
        "numba_version": numba.__version__,
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR", ""),
    }


def run_child(cache_dir: str) -> dict:
    """Run :func:`child` in a new interpreter with ``NUMBA_CACHE_DIR=cache_dir``; add its wall time."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    for name in ("FASTGRAD_CACHE", "NUMBA_DISABLE_JIT"):  # measure the defaults
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"startup child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = wall
    return out


def measure(cache_dir: str | None = None) -> dict:
    """Cold then warm start in ``cache_dir`` (default: a new temporary directory, removed after)."""
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="fastgrad-numba-cache-") as tmp:
            return measure(tmp)
    if os.listdir(cache_dir):
        raise ValueError(f"{cache_dir} is not empty: a cold start needs an empty cache")
    return {"cold": run_child(cache_dir), "warm": run_child(cache_dir)}


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--child"]:
        print(json.dumps(child()))
        return 0
    if argv and not (argv[0] == "--json" and len(argv) == 2):
        print(__doc__, file=sys.stderr)
        return 2
    result = measure()
    print("| start | process wall s | import s | first check s | second check s | passed |")
    print("|---|---|---|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['process_seconds']:.2f} | {r['import_seconds']:.2f} | {r['first_check_seconds']:.2f}"
              f" | {r['second_check_seconds']:.3f} | {r['passed']} |")
    if argv:
        with open(argv[1], "w") as f:
            json.dump(result, f, indent=2)
    return 0 if all(r["passed"] for r in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

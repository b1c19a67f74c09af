"""A script for ``test_processes.py``: checks in a parent, then in pool workers or in concurrent threads.

Run as ``python process_worker.py MODE`` with MODE one of ``fork``, ``spawn``,
``forkserver`` (a ``multiprocessing`` pool of that start method, started
after a check in this process) or ``threads`` (4 Python threads calling the
checkers at once). Prints one JSON line: the layer, the guard each process
saw, and whether every result was bitwise the parent's serial one. A script
(not ``python -c``) so that spawn and forkserver workers can import
:func:`work` from it. ``FASTGRAD_TEST_HIDE_TBB=1`` makes Numba's TBB layer
unimportable before fastgrad is imported (as where no tbb is installed).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import threading

import numpy as np

if os.environ.get("FASTGRAD_TEST_HIDE_TBB") == "1":
    sys.modules["numba.np.ufunc.tbbpool"] = None  # type: ignore[assignment]  # import raises ImportError

import fastgrad  # noqa: E402

N_CASES = 4
N_THREADS = 4


def case(i: int):
    """Small net and data number ``i`` (two architectures, two losses)."""
    rng = np.random.default_rng(1000 + i)
    if i % 2:
        net = fastgrad.MLP([5, 7, 4], hidden="tanh", output="softmax", loss="cross_entropy")
    else:
        net = fastgrad.MLP([6, 9, 8, 3], hidden=("sigmoid", "softplus")[i // 2 % 2], output="sigmoid", loss="mse")
    params = [0.5 * rng.standard_normal(s) for s in net.param_shapes]
    X = rng.standard_normal((12, net.sizes[0]))
    Y = rng.uniform(0.0, 1.0, (12, net.sizes[-1]))
    if i % 2:
        Y /= Y.sum(axis=1, keepdims=True)
    return net, params, X, Y


def work(i: int) -> bytes:
    """Every entry point on case ``i``; the results as bytes (compared bitwise)."""
    net, params, X, Y = case(i)
    result = fastgrad.check(net, params, X, Y)
    full = fastgrad.numerical_gradient(net, params, X, Y, engine="full")
    parts = [*result.numerical, *result.budget, [result.max_rel_error, result.loss, float(result.passed)], *full,
             net.forward(params, X), *net.backprop(params, X, Y)]
    return np.concatenate([np.ravel(np.asarray(p, dtype=np.float64)) for p in parts]).tobytes()


def status() -> dict:
    """How this process's layer was chosen and guarded ({} before fastgrad had fastgrad._threading)."""
    module = getattr(fastgrad, "_threading", None)
    return module.status() if module is not None else {}


def guard() -> str | None:
    """The guard of this process (None: kernels are called directly)."""
    return status().get("guard", "(no fastgrad._threading)")


def work_in_child(i: int) -> tuple[bytes, str | None]:
    return work(i), guard()


def main(mode: str) -> None:
    serial = [work(i) for i in range(N_CASES)]  # the parent's results; the layer starts here
    import numba

    out = {"mode": mode, "layer": numba.threading_layer(), "status": status()}
    if mode == "threads":
        barrier = threading.Barrier(N_THREADS)
        got: dict[tuple[int, int], bytes] = {}
        errors: list[str] = []

        def run(t: int) -> None:
            try:
                barrier.wait()
                for r in range(2):
                    for k in range(N_CASES):
                        i = (t + k) % N_CASES
                        got[(t, r, i)] = work(i)
            except BaseException as e:  # noqa: BLE001 - reported to the test
                errors.append(f"{type(e).__name__}: {e}")

        threads = [threading.Thread(target=run, args=(t,)) for t in range(N_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["errors"] = errors
        out["results"] = len(got)
        out["bitwise"] = len(got) == N_THREADS * 2 * N_CASES and all(v == serial[k[2]] for k, v in got.items())
    else:
        with mp.get_context(mode).Pool(2) as pool:
            answers = pool.map(work_in_child, [i % N_CASES for i in range(2 * N_CASES)])
        out["results"] = len(answers)
        out["bitwise"] = all(b == serial[i % N_CASES] for i, (b, _) in enumerate(answers))
        out["child_guards"] = sorted({str(g) for _, g in answers})
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])

"""fastgrad in other processes and threads, under every threading layer this machine has (issue 12, item 7).

Each case runs ``process_worker.py`` in a subprocess of its own, with a
timeout, so that a hang fails the test instead of hanging the run: checks in
the parent, then a ``multiprocessing`` pool of each start method (whose
workers check again), or 4 Python threads checking at once. Every result
must be bitwise the parent's serial one.

Before fastgrad chose and guarded the layer, Numba's default here was GNU
OpenMP, and a fork pool after a check never returned (each worker printed
"Terminating: fork() called from a process already using GNU OpenMP");
under ``NUMBA_THREADING_LAYER=workqueue`` the 4 threads aborted the process
("Concurrent access has been detected").
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import fastgrad

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("process_worker.py")
#: Seconds a case may take: a cold Numba compile in a fresh process (and, under
#: GNU OpenMP, of the serial kernels in each fork child) takes 20-70 s on a
#: busy 2-core machine; the on-disk cache makes later runs take about 5 s.
TIMEOUT = 240
LAYERS = ("tbb", "omp", "workqueue")
MODES = ("fork", "spawn", "forkserver", "threads")
SERIAL_GUARD = "serial kernels (forked after GNU OpenMP started)"
LOCK_GUARD = "launch lock (layer not thread-safe)"


def _env(**overrides: str | None) -> dict[str, str]:
    """The environment of a case: this fastgrad first on the path, no threading-layer choice unless given."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "FASTGRAD_THREADING_LAYER")}
    root = str(Path(fastgrad.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.pop("FASTGRAD_TEST_HIDE_TBB", None)
    env.update({k: v for k, v in overrides.items() if v is not None})
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run a Python subprocess in a session of its own; on timeout kill it and its pool workers, and fail."""
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"hung: no answer within {timeout} s\nstdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@cache
def _layer_problem(layer: str) -> str | None:
    """Why ``layer`` cannot start on this machine (None: it can), asked of a fresh process."""
    code = "import fastgrad, numba; numba.get_num_threads(); print(numba.threading_layer())"
    proc = _run(["-c", code], _env(NUMBA_THREADING_LAYER=layer), timeout=120)
    if proc.returncode == 0 and proc.stdout.split()[-1:] == [layer]:
        return None
    return (proc.stderr.strip().splitlines() or ["?"])[-1]


def _case(mode: str, **env: str | None) -> dict:
    if mode != "threads" and mode not in mp.get_all_start_methods():
        pytest.skip(f"start method {mode} is not available on this platform")
    proc = _run([str(WORKER), mode], _env(**env))
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if mode == "threads":
        assert out["errors"] == []
        assert out["results"] == 4 * 2 * 4
    else:
        assert out["results"] == 8
    assert out["bitwise"], out
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layer", LAYERS)
def test_pool_or_threads_after_a_check_under_each_layer(layer, mode):
    """The user chose the layer (NUMBA_THREADING_LAYER): fastgrad keeps it and guards it."""
    problem = _layer_problem(layer)
    if problem is not None:
        pytest.skip(f"threading layer {layer} is not available here: {problem}")
    out = _case(mode, NUMBA_THREADING_LAYER=layer)
    assert out["layer"] == layer
    assert out["status"]["chosen_by"] == "numba"
    if layer == "workqueue":
        assert out["status"]["guard"] == LOCK_GUARD
    if mode == "fork" and layer == "omp" and out["status"]["openmp_vendor"] == "GNU":
        assert out["child_guards"] == [SERIAL_GUARD]


@pytest.mark.parametrize("mode", MODES)
def test_pool_or_threads_after_a_check_by_default(mode):
    """No choice by the user: fastgrad's (TBB where it loads, else workqueue), never GNU OpenMP."""
    out = _case(mode)
    assert out["status"]["chosen_by"] == "fastgrad"
    assert out["layer"] == ("tbb" if _layer_problem("tbb") is None else "workqueue")
    if mode != "threads":
        assert out["child_guards"] == [str(out["status"]["guard"])]


@pytest.mark.parametrize("mode", ["fork", "threads"])
def test_without_tbb_falls_back_to_workqueue_with_its_lock(mode):
    out = _case(mode, FASTGRAD_TEST_HIDE_TBB="1")
    assert out["layer"] == "workqueue"
    assert out["status"]["chosen_by"] == "fastgrad"
    assert "TBB unavailable" in out["status"]["reason"]
    assert out["status"]["guard"] == LOCK_GUARD


def test_fastgrad_threading_layer_variable():
    code = "import fastgrad, fastgrad._threading as t; print(fastgrad.threading_layer(), t.CHOICE.by)"
    proc = _run(["-c", code], _env(FASTGRAD_THREADING_LAYER="workqueue"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["workqueue", "FASTGRAD_THREADING_LAYER"]
    # the user's NUMBA_THREADING_LAYER wins over it
    proc = _run(["-c", code], _env(FASTGRAD_THREADING_LAYER="workqueue", NUMBA_THREADING_LAYER="omp"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["omp", "numba"]
    proc = _run(["-c", "import fastgrad"], _env(FASTGRAD_THREADING_LAYER="gnu"), timeout=120)
    assert proc.returncode != 0
    assert "FASTGRAD_THREADING_LAYER='gnu': expected auto, tbb, omp, workqueue" in proc.stderr


def test_threading_layer_is_numbas():
    import numba

    assert fastgrad.threading_layer() in LAYERS
    assert fastgrad.threading_layer() == numba.threading_layer()
    status = fastgrad._threading.status()
    assert status["layer"] == numba.threading_layer()
    assert status["chosen_by"] in ("fastgrad", "numba", "FASTGRAD_THREADING_LAYER", "running")

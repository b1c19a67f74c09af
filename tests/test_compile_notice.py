"""The compile notice ("compiling fastgrad kernels, first run only ..."), issue 13.

The notice listens to Numba's ``"numba:compile"`` event (fastgrad/_compile_notice.py). The fast tests drive it
with tiny functions compiled in this process, whose module is made to look like fastgrad's, and a threshold of
0 s (a notice at once) or an hour (never); the slow ones run the real command line and library in subprocesses
on an empty and then a warm Numba cache.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numba
import pytest

import fastgrad
from fastgrad import _compile_notice

NOTICE = "compiling fastgrad kernels, first run only"
ROOT = str(Path(fastgrad.__file__).resolve().parent.parent)
#: A cold compile of the kernels the command uses: 30-70 s on a busy 2-core machine.
TIMEOUT = 600


@pytest.fixture
def notice():
    """Reset the notice module (process-wide) before and after the test, and hand it over."""
    saved = _compile_notice._state()  # the real notice of this test process is put back after
    _compile_notice._reset_for_tests(threshold=0.0)
    yield _compile_notice
    _compile_notice._reset_for_tests(state=saved)


def _fresh_function(module: str, k: int):
    """Return a new, uncompiled Numba function whose module is ``module``."""
    code = f"def f(x):\n    return x * {k} + 1\n"
    namespace: dict = {"__name__": module}
    exec(compile(code, f"<notice test {k}>", "exec"), namespace)  # noqa: S102 - a test-only function
    fn = namespace["f"]
    fn.__module__ = module
    return numba.njit(cache=False)(fn)


def _wait_for_notice(timeout: float = 30.0) -> bool:
    # the notice comes from a timer thread: wait for it rather than for a fixed time
    for t in threading.enumerate():
        if isinstance(t, threading.Timer):
            t.join(timeout)
    return _compile_notice.said()


def test_library_logs_and_prints_nothing(notice, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="fastgrad"):
        assert _fresh_function("fastgrad._notice_test", 1)(2) == 3
        assert _wait_for_notice()
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert NOTICE in caplog.records[0].getMessage()
    assert capsys.readouterr() == ("", "")


def test_stderr_once_under_threads(notice, capsys):
    notice.print_to_stderr()
    fns = [_fresh_function("fastgrad._notice_test", k) for k in range(8)]
    results = [None] * 8

    def work(i):
        results[i] = fns[i](1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [k + 1 for k in range(8)]
    assert _wait_for_notice()
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count(NOTICE) == 1, err


def test_quiet_below_the_threshold_and_for_user_functions(notice, caplog, capsys):
    notice._reset_for_tests(threshold=3600.0)  # no compilation takes an hour: never said
    notice.print_to_stderr()
    assert _fresh_function("fastgrad._notice_test", 3)(1) == 4
    assert not _wait_for_notice(timeout=0.0)
    notice._reset_for_tests(threshold=0.0)
    notice.print_to_stderr()
    assert _fresh_function("my_training_script", 4)(1) == 5  # not fastgrad's: not timed
    assert not _wait_for_notice(timeout=0.0)
    assert notice._depth == 0
    assert capsys.readouterr().err == ""


def _run(args, cache_dir, **env):
    full = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]), **env)
    full.pop("FASTGRAD_CACHE", None)
    full.pop("NUMBA_DISABLE_JIT", None)
    return subprocess.run([sys.executable, *args], env=full, capture_output=True, text=True, timeout=TIMEOUT)


LIBRARY = """
import logging, numpy as np, fastgrad
logging.basicConfig(level=logging.INFO, format="LOG %(name)s %(message)s", stream=__import__("sys").stdout)
net = fastgrad.MLP([4, 5, 3]); rng = np.random.default_rng(0)
r = fastgrad.check(net, net.init(0), rng.normal(size=(8, 4)), rng.uniform(size=(8, 3)))
print("passed", r.passed)
"""


@pytest.mark.slow
def test_cli_says_so_once_cold_and_not_warm(tmp_path):
    args = ["-m", "fastgrad", "check", "--sizes", "4,5,3", "--batch", "8", "--json", "-"]
    cold = _run(args, tmp_path)
    assert cold.returncode == 0, cold.stderr[-3000:]
    assert cold.stderr.count(NOTICE) == 1, cold.stderr
    assert NOTICE not in cold.stdout
    assert '"passed": true' in cold.stdout  # stdout is the JSON alone
    warm = _run(args, tmp_path)
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert NOTICE not in warm.stderr + warm.stdout
    # the library (here with logging configured to stdout): logged once, nothing on stderr, on a new cache
    lib = _run(["-c", LIBRARY], tmp_path / "lib")
    assert lib.returncode == 0, lib.stderr[-3000:]
    assert lib.stdout.count(NOTICE) == 1 and "LOG fastgrad" in lib.stdout, lib.stdout
    assert "passed True" in lib.stdout
    assert lib.stderr == "", lib.stderr


def test_cli_prints_while_it_runs_only(notice, monkeypatch):
    from fastgrad import cli

    seen = []
    monkeypatch.setattr(cli, "cmd_check", lambda args, out: seen.append(notice._to_stderr) or 0)
    assert cli.main(["check", "--sizes", "4,5,3"]) == 0
    assert seen == [True]  # the command's compilations would be announced on stderr...
    assert notice._to_stderr is False  # ...and a library call after it, in the same process, only logs

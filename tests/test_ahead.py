"""Compiling ahead in a helper process on a cold cache (fastgrad/_kernels/_ahead.py, issue 13).

The helper compiles, in reverse order, the kernels a first check compiles, with the signatures recorded in
``fastgrad/_kernels/ahead_plans.py``. What must hold: the recorded plan is exactly what a first check needs
(after the helper alone, a check compiles nothing: a drifted plan fails here), a cold check with the helper
gives the same bits as one without, the helper starts only when it can help, and a stale plan entry costs
time, never an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba.core import event, types

import fastgrad
from fastgrad._kernels import _ahead, ahead_plans
from fastgrad._kernels.state import BaseState

ROOT = Path(fastgrad.__file__).resolve().parent.parent
TIMEOUT = 900
PLAN = "check/incremental/central/serial"

#: A first check of a 4-5-3 net: prints what this process compiled itself, whether it started a helper (and
#: how the helper ended), and the numerical gradient's bytes.
CHECK = """
import hashlib, json, numpy as np
from numba.core import event
compiled = []
class L(event.Listener):
    def on_start(self, ev):
        if ev.data["dispatcher"].py_func.__module__.startswith("fastgrad"):
            compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", L())
import fastgrad
from fastgrad._kernels import _ahead
net = fastgrad.MLP([4, 5, 3])
rng = np.random.default_rng(0)
r = fastgrad.check(net, net.init(0), rng.normal(size=(8, 4)), rng.uniform(size=(8, 3)))
helper = _ahead.helper()
code = None if helper is None else helper.wait(timeout=600)
values = np.concatenate([n.ravel() for n in r.numerical])
print(json.dumps({"compiled": compiled, "helper": helper is not None, "helper_exit": code, "passed": r.passed,
                  "values": hashlib.sha256(values.tobytes()).hexdigest()}))
"""


def _run(code: str, cache: Path, *args: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "FASTGRAD_CACHE", "NUMBA_DISABLE_JIT",
                                                            _ahead.ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.update(NUMBA_CACHE_DIR=str(cache), FASTGRAD_PARALLEL_MIN_SIZE="1000000000", **extra)  # the serial plan
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


# ------------------------------------------------------------------ the plan and the helper, end to end
@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """A cold first check without a helper: what it compiles, and its numerical gradient's bytes."""
    out = _run(CHECK, tmp_path_factory.mktemp("alone"), **{_ahead.ENV: "0"})
    assert not out["helper"] and out["passed"]
    return out


@pytest.mark.slow
def test_after_the_helper_alone_a_first_check_compiles_nothing(tmp_path, alone):
    # the helper's whole plan, in a process of its own, on an empty cache; then a check on that cache loads
    # every kernel it needs: the plan is exactly the first check's (put back a stale plan: this fails)
    cache = tmp_path / "cache"
    cache.mkdir()
    _run(_ahead._ENTRY, cache, PLAN, fastgrad._kernels._jit.SOURCES, **{_ahead.ENV: "0"})
    after = _run(CHECK, cache, **{_ahead.ENV: "0"})
    assert after["compiled"] == []
    assert after["values"] == alone["values"]
    # and the plan names what a cold check compiles, in the order it does
    assert [entry[1] for entry in ahead_plans.PLANS[PLAN]] == [q for q in alone["compiled"]
                                                               if q in {e[1] for e in ahead_plans.PLANS[PLAN]}]


@pytest.mark.slow
def test_a_cold_check_with_the_helper_gives_the_same_bits(tmp_path, alone):
    cache = tmp_path / "cache"
    cache.mkdir()
    out = _run(CHECK, cache, **{_ahead.ENV: "1"})
    assert out["helper"], "no helper was started on an empty cache"
    assert out["helper_exit"] == 0
    assert out["values"] == alone["values"] and out["passed"]
    # the two processes shared the work: this one compiled less than a check alone does
    assert len(out["compiled"]) < len(alone["compiled"]), (out["compiled"], alone["compiled"])
    # a warm start compiles nothing and starts no helper
    warm = _run(CHECK, cache, **{_ahead.ENV: "1"})
    assert warm["compiled"] == [] and not warm["helper"]
    assert warm["values"] == alone["values"]


def test_the_helper_exits_at_once_when_its_sources_are_not_the_parents():
    assert _ahead.main([PLAN, "0" * 64]) == 1


# ------------------------------------------------------------------ when a helper starts
@pytest.fixture
def fresh(monkeypatch):
    """The module's state as in a new process, with :func:`_ahead._start` recording what it would start."""
    started: list[str] = []
    monkeypatch.setattr(_ahead, "_started", False)
    monkeypatch.setattr(_ahead, "_local", __import__("threading").local())
    monkeypatch.setattr(_ahead, "_start", started.append)
    return started


def _fake_compile(qualname: str, module: str = "fastgrad._kernels.forward") -> None:
    def fn():
        pass

    fn.__module__, fn.__qualname__ = module, qualname

    class Dispatcher:
        py_func = fn

    with event.trigger_event("numba:compile", data={"dispatcher": Dispatcher(), "args": ()}):
        pass


def test_the_first_compile_inside_a_computation_starts_the_helper_once(fresh):
    _fake_compile("forward_batch__serial")  # outside a computation: nothing
    assert fresh == []
    with _ahead.computing("check/incremental/central"):
        _fake_compile("someone_elses", module="userpackage")  # a user's function: not ours
        assert fresh == []
        _fake_compile("forward_batch__serial")
        _fake_compile("loss_from_activations")
    assert fresh == ["check/incremental/central/serial"]
    with _ahead.computing("check/full/central"):  # once per process, ever
        _fake_compile("forward_batch")
    assert fresh == ["check/incremental/central/serial"]


def test_a_computation_in_another_thread_does_not_arm_this_one(fresh):
    import threading

    inside, go_on = threading.Event(), threading.Event()

    def other():
        with _ahead.computing("check/full/central"):
            inside.set()
            go_on.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(10)
    _fake_compile("forward_batch")  # this thread computes nothing
    go_on.set()
    thread.join()
    _fake_compile("forward_batch")
    assert fresh == []


def test_a_parallel_first_kernel_picks_the_parallel_plan(fresh):
    with _ahead.computing("values/full/central"):
        _fake_compile("forward_batch")
    assert fresh == ["values/full/central/parallel"]


@pytest.mark.parametrize("setting", ["env", "one cpu", "no cache", "no lock"])
def test_no_helper_where_it_cannot_help(monkeypatch, setting):
    monkeypatch.setenv(_ahead.ENV, "1")
    monkeypatch.setattr(_ahead, "_cpus", lambda: 2)
    assert _ahead.enabled()
    if setting == "env":
        monkeypatch.setenv(_ahead.ENV, "0")
    elif setting == "one cpu":
        monkeypatch.setattr(_ahead, "_cpus", lambda: 1)
    elif setting == "no cache":
        monkeypatch.setattr(fastgrad._config, "CACHE", False)
    else:
        monkeypatch.setattr(fastgrad._kernels._jit, "fcntl", None)
    assert not _ahead.enabled()


def test_an_unknown_plan_starts_nothing(monkeypatch):
    monkeypatch.setattr(_ahead, "_helper", None)
    _ahead._start("check/incremental/nosuchmethod/serial")
    assert _ahead.helper() is None


# ------------------------------------------------------------------ plan entries
@pytest.mark.parametrize("value", [
    np.zeros((2, 3)), np.zeros(4, dtype=np.int64), np.zeros(1, dtype=np.uint8), np.zeros(2, dtype=bool),
    np.float64(1.5), np.int64(3), np.bool_(True),
    BaseState(*[np.zeros((1,) * d) for d in (2, 2, 3, 2, 2, 1)]),
])
def test_a_described_type_rebuilds_to_itself(value):
    import numba

    t = numba.typeof(value)
    assert _ahead.rebuild(json.loads(json.dumps(_ahead.describe(t)))) == t


def test_read_only_arrays_keep_their_type():
    import numba

    a = np.zeros(3)
    a.flags.writeable = False
    t = numba.typeof(a)
    assert not t.mutable and _ahead.rebuild(_ahead.describe(t)) == t


@pytest.mark.parametrize("t", [types.unicode_type, types.Array(types.float64, 2, "F")])
def test_an_undescribable_type_raises(t):
    with pytest.raises(ValueError, match="compile ahead"):
        _ahead.describe(t)


def test_a_stale_plan_entry_is_skipped(monkeypatch):
    good = ahead_plans.PLANS[PLAN][1]  # the loss kernel: compiled (or loaded) in this process
    stale = [
        ["fastgrad._kernels.loss", "no_such_kernel", []],
        [good[0], good[1], good[2][:-1]],  # one argument short: fails to type
    ]
    monkeypatch.setitem(ahead_plans.PLANS, "test/stale", [good, *stale])
    assert _ahead.compile_plan("test/stale") == 1


def test_every_plan_entry_names_a_kernel_and_rebuilds():
    for plan, entries in ahead_plans.PLANS.items():
        assert entries, plan
        for module, qualname, described in entries:
            assert hasattr(_ahead._dispatcher(module, qualname), "compile"), (plan, qualname)
            for d in described:
                _ahead.rebuild(d)

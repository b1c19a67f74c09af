"""``fastgrad bench``: a tiny sweep end to end, its JSON and plot, bad flags, and a check with teeth."""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import numba
import numpy as np
import pytest

import fastgrad
from fastgrad import bench, cli

#: A tiny sweep: 784-4-10 and 784-8-10 (P = 3,190 and 6,370), N = 8, one thread.
TINY = ["bench", "--quick", "--sizes", "4,8", "--batch", "8", "--threads", "1"]
#: The full engine (two forward passes per parameter) takes minutes as plain Python.
ENGINES = ("incremental",) if numba.config.DISABLE_JIT else ("incremental", "full")
ONE_NET = ["bench", "--quick", "--sizes", "4", "--batch", "8", "--threads", "1"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(argv, capsys):
    """``main(argv)`` in-process; (exit code, stdout, stderr without the once-per-process compile notice)."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = "".join(line for line in captured.err.splitlines(keepends=True) if not line.startswith("fastgrad: compiling"))
    return code, captured.out, err


def _strict_json(path):
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    with open(path, encoding="utf-8") as fh:
        return json.load(fh, parse_constant=no_constants)


def test_tiny_sweep_writes_json_with_every_row(tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    code, out, err = run(TINY + ["--engines", ",".join(ENGINES), "--peers", "naive", "--json", out_json], capsys)
    assert code == 0, out + err
    doc = _strict_json(out_json)
    assert doc["command"].startswith("fastgrad bench --quick --sizes 4,8")
    assert doc["passed"] is True
    for key in ("cpu", "cores", "numba_version", "numpy_version", "threads_tested", "numba_num_threads"):
        assert key in doc["machine"], key
    assert doc["machine"]["threads_tested"] == [1]
    assert doc["options"]["peers_run"] == ["naive"]
    rows = doc["rows"]
    # 2 nets x (incremental + full + naive)
    assert len(rows) == 2 * (len(ENGINES) + 1)
    assert sorted({r["n_params"] for r in rows}) == [3190, 6370]
    assert sorted((r["n_params"], r["engine"] or r["peer"]) for r in rows) == sorted(
        (p, what) for p in (3190, 6370) for what in ENGINES + ("naive",)
    )
    for r in rows:
        assert r["passed"] is True
        assert r["seconds"] > 0 and r["params_per_second"] > 0 and r["forward_pass_equivalents"] > 0
        assert r["max_rel_error"] <= r["tolerance"]
        assert r["batch"] == 8 and r["threads"] == 1
        if r["kind"] == "fastgrad":
            assert r["first_call_seconds"] > 0 and r["warm_calls"] >= 1
            assert set(r["speedups"]) == {"naive"}
    inc = [r for r in rows if r["engine"] == "incremental"]
    assert all(r["max_rel_error"] <= 1e-9 for r in inc)
    if not numba.config.DISABLE_JIT:  # plain-Python times: no cost model
        assert all(r["cost_model_seconds"] > 0 for r in inc)
        assert "cost model (incremental central, 1 thr" in out and "predicted" in out and "measured" in out
        assert "np.dot GFLOP/s" in out and "memory bandwidth" in out and "cost model per phase" in out
        for r in inc:  # every phase predicted and measured, and the prediction is the phases' sum
            assert set(r["phases"]) == set(bench.PHASES) | {"total"}
            assert all(c["predicted"] > 0 and c["measured"] >= 0 for c in r["phases"].values())
            assert r["phases"]["total"]["predicted"] == pytest.approx(r["cost_model_seconds"])
        rates = doc["cost_model"]["1"][0]
        assert rates["dot_flops"]["forward"] > 0 and rates["memory_bytes"] > 0 and rates["threads"] == 1
    assert [c["engine"] for c in doc["first_calls"]] == list(ENGINES)
    # the table and its footer
    assert "params/s" in out and "fwd-pass eq." in out and "vs naive" in out
    assert "growth exponent" in out
    assert "compilation (first call" in out


def test_peer_timed_on_a_subset_says_extrapolated(capsys, monkeypatch):
    # every subset at its minimum size
    monkeypatch.setattr(bench.options, "QUICK_PRESET", dataclasses.replace(bench.QUICK_PRESET, budget=1e-6))
    code, out, err = run(ONE_NET + ["--engines", "incremental", "--peers", "naive"], capsys)
    assert code == 0, out + err
    line = next(li for li in out.splitlines() if "naive NumPy loop" in li)
    assert "extrapolated from" in line


def _peer_options(peer, budget):
    return bench.Options(sizes=((784, 2, 10),), batch=8, methods=("central",), engines=("incremental",),
                         peers=(peer,), threads=(1,), repeats=2, budget=budget, seed=0, quick=True, json=None,
                         plot=None)


@pytest.mark.parametrize("peer", ["naive", "scipy"])
def test_per_parameter_peer_whose_whole_check_fits_is_timed_on_every_parameter(peer):
    """A full check (no subset needed): the peer gets every index, not None, and its row is not extrapolated."""
    if peer == "scipy":
        pytest.importorskip("scipy")
    opts = _peer_options(peer, budget=1e3)
    case = bench.sweep.build_case((784, 2, 10), opts)
    module, why = bench.peer_module(peer)
    assert why is None
    row = bench.peers.peer_row(case, peer, module, opts)
    assert row.subset is None and row.seconds == row.measured_seconds
    assert row.passed and row.max_rel_error <= row.tolerance


def test_projection_only_peer_is_made_once_on_every_parameter(monkeypatch):
    """torch-fast and jax check a projection of every parameter: one whole check, never a subset or warm-up."""
    made = []

    def fake_jax_plan(jax, case):
        def make(ix):
            made.append(ix)
            return lambda: True

        return bench.measure.PeerPlan(make, bench.measure.verdict_check, "returned True")

    monkeypatch.setattr(bench.peers, "jax_plan", fake_jax_plan)
    opts = _peer_options("jax", budget=1e3)
    case = bench.sweep.build_case((784, 2, 10), opts)
    row = bench.peers.peer_row(case, "jax", None, opts)
    assert len(made) == 1 and np.array_equal(made[0], np.arange(case.net.n_params))
    assert row.subset is None and row.passed and row.projection_only and row.warm_calls == opts.repeats


def test_help_exits_0(capsys):
    code, out, _ = run(["bench", "--help"], capsys)
    assert code == 0
    for flag in ("--sizes", "--batch", "--methods", "--engines", "--peers", "--threads", "--quick", "--json",
                 "--plot"):
        assert flag in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--peers", "nope"],
        ["--methods", "forward"],
        ["--engines", "fast"],
        ["--sizes", "4,x"],
        ["--sizes", "784-0-10"],
        ["--threads", "0"],
        ["--threads", "999"],
        ["--batch", "0"],
        ["--no-such-flag"],
        ["--json", "/no/such/dir/b.json"],
    ],
)
def test_bad_flag_exits_2_with_one_line(argv, capsys):
    code, out, err = run(["bench"] + argv, capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastgrad: error: "), err
    assert "Traceback" not in err


def test_plot_without_matplotlib_exits_2_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    png = tmp_path / "b.png"
    code, out, err = run(TINY + ["--peers", "none", "--plot", png], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("fastgrad: error: ")
    assert "matplotlib" in err and '.[plot]' in err
    assert not png.exists()
    assert out == ""  # refused before anything was timed


def test_plot_is_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "b.png"
    code, out, err = run(TINY + ["--engines", "incremental", "--peers", "naive", "--plot", png], capsys)
    assert code == 0, out + err
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_wrong_numerical_gradient_fails_the_bench(tmp_path, capsys, monkeypatch):
    """The check inside the benchmark has teeth: a 1e-6 relative error is a failure, exit status 1."""
    real = fastgrad.numerical_gradient

    def slightly_wrong(*args, **kwargs):
        return [g * (1.0 + 1e-6) for g in real(*args, **kwargs)]

    monkeypatch.setattr(fastgrad, "numerical_gradient", slightly_wrong)
    out_json = tmp_path / "bench.json"
    code, out, err = run(TINY + ["--engines", "incremental", "--peers", "none", "--json", out_json], capsys)
    assert code == 1, out + err
    assert "fastgrad bench FAILED: 2 of 2 timed results are wrong" in out
    assert "CHECK FAILED" in out
    doc = _strict_json(out_json)
    assert doc["passed"] is False
    assert all(not r["passed"] and r["max_rel_error"] > 1e-7 for r in doc["rows"])


def test_wrong_peer_fails_the_bench(capsys, monkeypatch):
    monkeypatch.setattr(bench.peer_naive, "naive_numerical", lambda net, params, X, Y, eps, idx: np.zeros(len(idx)))
    code, out, err = run(ONE_NET + ["--engines", "incremental", "--peers", "naive"], capsys)
    assert code == 1, out + err
    assert re.search(r"naive NumPy loop, 1 thr, 784-4-10: max rel error (0\.\d+|1) > tolerance 1e-06", out), out


def test_parse_sizes():
    assert bench.parse_sizes("4,784-32-16-10") == ((784, 4, 10), (784, 32, 16, 10))


@pytest.mark.parametrize("sizes", [[784, 40, 10], [784, 400, 10], [100, 50, 50, 10]])
def test_full_engine_subset_gives_every_thread_a_chunk(sizes):
    # A subset of the full engine smaller than this would run as one serial
    # chunk, and its 2-thread time, extrapolated, would show no speedup.
    from fastgrad import engines
    from fastgrad._kernels.numgrad import differences_cost

    net = fastgrad.MLP(sizes)
    X = np.zeros((64, sizes[0]))
    case = bench.Case(net=net, params=[], X=X, Y=np.zeros((64, sizes[-1])), theta=np.zeros(0),
                      analytic=np.zeros(0), scale=1.0, forward_s=1e-3)
    per_param, per_chunk = differences_cost(net.layout, 64, engines.METHOD_CODES["central"])
    for threads in (1, 2, 4):
        k = bench.sweep._full_engine_floor(case, "central", threads)
        idx = bench.spread_indices(net, k, seed=0)
        work = per_param[idx].sum()
        parts = min(threads * engines.CHUNKS_PER_THREAD, work // (engines.FULL_CHUNK_PASSES * per_chunk))
        assert parts >= threads or idx.size == net.n_params, (threads, k, parts)
        # and not much larger than needed
        assert k <= 2 * threads * engines.FULL_CHUNK_PASSES * per_chunk / per_param.min() + 16

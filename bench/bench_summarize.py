"""summarize.py on a synthetic pytest-benchmark JSON (no timing involved)."""

from __future__ import annotations

import json

from summarize import fit_slope, main, rows_of, summarize


def _bench(group, name, median, rounds=5, **info):
    return {"group": group, "name": name, "stats": {"median": median, "rounds": rounds}, "extra_info": info}


def _synthetic():
    ref = "ref 784-128-10 N=64"
    benches = [
        _bench(ref, "fwd", 0.001, label="one NumPy forward pass (the unit)", role="forward", n_params=101770,
               threads=1, forward_pass_seconds=0.5),
        _bench(ref, "fast[1]", 0.10, label="fastgrad incremental (default)", role="fastgrad", n_params=101770,
               threads=1, forward_pass_seconds=0.5, max_rel_error_vs_backprop=2e-13, flops_estimate=1e9),
        _bench(ref, "fast[all]", 0.0625, label="fastgrad incremental (default)", role="fastgrad",
               n_params=101770, threads=2, forward_pass_seconds=0.5),
        _bench(ref, "naive", 0.2, label="naive NumPy loop", role="peer", n_params=101770, threads=1,
               blas_threads=2, extrapolated_from=200, scale_to_full=500.0, forward_pass_seconds=0.5,
               flops=4e8),
        # a run with --benchmark-disable has no stats: skipped, not a crash
        {"group": ref, "name": "untimed", "stats": None, "extra_info": {}},
    ]
    scaling = "scaling 784-H-10 N=64"
    for P in (500, 1e3, 1e4, 1e5, 1e6):
        off = 100.0 if P < 1e3 else 1.0  # below 1e3: excluded from the fit
        benches.append(_bench(scaling, f"fast[{P}]", off * 1e-3 * P / 1e3, label="fastgrad incremental (default)",
                              role="fastgrad", n_params=P, threads=2))
        benches.append(_bench(scaling, f"naive[{P}]", off * 1e-6 * (P / 1e3) ** 2 / 10, label="naive NumPy loop",
                              role="peer", n_params=P, threads=1, extrapolated_from=10, scale_to_full=10.0))
    return {
        "machine_info": {"cpu": {"brand_raw": "Test CPU 9000", "count": 2}, "numba_version": "0.99.0"},
        "commit_info": {"id": "abcdef0123456789", "dirty": True},
        "datetime": "2026-01-01T00:00:00",
        "benchmarks": benches,
    }


def test_fit_slope():
    assert abs(fit_slope([(1e3, 1.0), (1e4, 10.0), (1e5, 100.0)]) - 1.0) < 1e-12
    assert abs(fit_slope([(1e3, 1.0), (1e5, 1e4)]) - 2.0) < 1e-12
    assert fit_slope([(1e3, 1.0), (1e3, 2.0)]) is None


def test_summarize_synthetic(tmp_path, capsys):
    data = _synthetic()
    rows = rows_of(data)
    assert len(rows) == 14  # the untimed benchmark is skipped
    naive = next(r for r in rows if r["name"] == "naive")
    assert naive["full"] == 100.0 and naive["subset"] == 200

    text = summarize(data)
    assert "Test CPU 9000" in text and "cores 2" in text and "numba 0.99.0" in text and "(dirty)" in text
    assert "## ref 784-128-10 N=64" in text and "## scaling 784-H-10 N=64" in text
    naive_line = next(line for line in text.splitlines() if line.startswith("| 101,770 | naive"))
    assert "**extrapolated from 200 params**" in naive_line
    assert "| 100 |" in naive_line  # full-check seconds: 0.2 s x 500
    assert "1,000×" in naive_line and "1,600×" in naive_line  # vs fastgrad on 1 thread and on 2
    assert "100,000" in naive_line  # forward-pass equivalents: 100 s / the forward row's 1 ms
    fwd_line = next(line for line in text.splitlines() if "forward pass" in line)
    assert "| 1 |" in fwd_line and "×" not in fwd_line
    assert "| 2 |" in naive_line.replace("(BLAS 2)", "")  # GFLOP/s: 4e8 flops / 0.2 s
    fast_line = next(line for line in text.splitlines() if line.startswith("| 101,770 | fastgrad") and "| 1 |" in line)
    assert "| 100 |" in fast_line and "~10" in fast_line and "2.0e-13" in fast_line
    assert "2-thread/1-thread speedup 1.60×" in text
    slope_lines = [line for line in text.splitlines() if "slope" in line and "sizes" in line]
    assert len(slope_lines) == 2
    assert any("fastgrad" in s and "slope 1.00" in s and "4 sizes" in s for s in slope_lines)
    assert any("naive" in s and "slope 2.00" in s for s in slope_lines)

    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    assert main([str(path)]) == 0
    assert capsys.readouterr().out == text
    assert main([]) == 2


def test_summarize_untimed_only():
    text = summarize({"benchmarks": [{"group": "g", "name": "x", "stats": None}]})
    assert "No timed benchmarks" in text


def test_interleaved_scaling_is_reported_apart_from_the_tables():
    info = {"label": "thread scaling, ref", "role": "scaling", "n_params": 101770, "threads": 2,
            "medians_seconds": {"fastgrad_1": 0.008, "fastgrad_all": 0.005, "reference_1": 0.008,
                                "reference_all": 0.0045},
            "fastgrad_ratio": 1.6, "reference_ratio": 0.008 / 0.0045, "efficiency_vs_reference": 0.9}
    data = {"benchmarks": [_bench("threads (interleaved)", "t", 3.0, rounds=1, **info)]}
    data["benchmarks"][0]["extra_info"]["rounds"] = 60
    assert rows_of(data) == []  # the experiment's own time is not a result
    text = summarize(data)
    assert "**1.60×**" in text and "**1.78×**" in text and "efficiency relative to it 90%" in text


def test_interleaved_scaling_reports_the_throughput_reference_when_present():
    info = {"label": "thread scaling, ref", "role": "scaling", "n_params": 101770, "threads": 2,
            "medians_seconds": {"fastgrad_1": 0.008, "fastgrad_all": 0.005}, "fastgrad_ratio": 1.6,
            "reference_ratio": 1.95, "efficiency_vs_reference": 1.6 / 1.95,
            "throughput_reference_ratio": 1.25, "efficiency_vs_throughput_reference": 1.28}
    text = summarize({"benchmarks": [_bench("threads (interleaved)", "t", 3.0, rounds=1, **info)]})
    assert "throughput reference (vectorised, in L1) **1.25×**, efficiency relative to it 128%" in text
    del info["throughput_reference_ratio"]  # results recorded before it existed still print
    text = summarize({"benchmarks": [_bench("threads (interleaved)", "t", 3.0, rounds=1, **info)]})
    assert "**1.95×**" in text and "throughput" not in text


def test_interleaved_scaling_reports_the_per_round_relative_speedup():
    rel = {"median": 0.93, "min": 0.71, "max": 1.2, "rounds": 9, "enough_rounds": True, "per_round": [0.93] * 9}
    info = {"label": "thread scaling, ref", "role": "scaling", "n_params": 101770, "threads": 2,
            "medians_seconds": {"fastgrad_1": 0.008, "fastgrad_all": 0.005}, "fastgrad_ratio": 1.6,
            "reference_ratio": 1.95, "efficiency_vs_reference": 1.6 / 1.95,
            "throughput_reference_ratio": 1.25, "efficiency_vs_throughput_reference": 1.28, "relative_speedup": rel}
    text = summarize({"benchmarks": [_bench("threads (interleaved)", "t", 3.0, rounds=1, **info)]})
    assert "median 0.93, range 0.71–1.20 over 9 rounds" in text and "fewer rounds" not in text
    rel.update(rounds=2, enough_rounds=False)
    text = summarize({"benchmarks": [_bench("threads (interleaved)", "t", 3.0, rounds=1, **info)]})
    assert "over 2 rounds** (fewer rounds than the 8 the figure needs)" in text


def test_cost_model_table():
    phases = {"forward": {"predicted": 0.001, "measured": 0.0015, "ratio": 1.5},
              "total": {"predicted": 0.004, "measured": 0.005, "ratio": 1.25}}
    rates = {"threads": 1, "dot_flops": {"forward": 4.5e10, "assembly": 4.4e10}, "memory_bytes": 2e10,
             "cache_bytes": 2e11, "chain_flops": 2.5e9, "launch_seconds": 1.5e-6}
    info = {"label": "cost model, 784-2-10", "role": "cost_model", "sizes": "784-2-10", "n_params": 1600,
            "threads": 1, "phases": phases, "rates": rates}
    data = {"benchmarks": [_bench("cost model (quick sweep nets)", "m", 2.0, rounds=1, **info)]}
    assert rows_of(data) == []  # the experiment's own time is not a result
    text = summarize(data)
    assert "| 784-2-10 | 1,600 | 1 | 1.5 / 1 (1.50) | 5 / 4 (1.25) |" in text
    assert "Total measured ÷ predicted: 1.25–1.25 over 1 runs" in text
    assert "np.dot GFLOP/s on the phases' shapes (forward 45, assembly 44)" in text
    assert "memory bandwidth 20 GB/s" in text

"""Summarize a pytest-benchmark JSON of fastgrad's suite as Markdown tables.

Usage::

    pytest bench --benchmark-json=bench.json      # timed run (see bench_engines.py)
    python bench/summarize.py bench.json          # Markdown on stdout

One table per benchmark group (one network size), with for every row: P
(parameters), engine or peer, threads, the median time of the **full
check** (a peer timed on a subset is scaled by ``extra_info["scale_to_full"]``
and marked "extrapolated from k params"), how many times faster fastgrad's
default engine is (1 thread and all threads), forward-pass equivalents
(full-check time / one NumPy forward pass of the batch: the median of the
group's "forward" row, else ``extra_info["forward_pass_seconds"]``), GFLOP/s where the
row records its work (``flops``: counted; ``flops_estimate``: fastgrad's
cost model, marked ~), and the error against backprop. Under each table:
the all-threads/1-thread speedup of rows timed both ways and, where a row
was timed at several sizes (the scaling group), the least-squares slope of
log time against log P over the sizes with P >= 1e3. Then the interleaved
thread-scaling benchmarks (``bench_threads.py``): fastgrad's ratio beside a
reference kernel's, measured in the same rounds, and the per-round ratio of
fastgrad's speedup to the throughput reference's (median and range). Last,
the cost model (``bench_cost_model.py``): per net and thread count, each
phase's measured and predicted time, and the measured rates it used (np.dot
GFLOP/s, memory bandwidth).

Needs the standard library and ``fastgrad.bench`` (the growth exponent's fit);
``summarize(data)`` returns the text for a loaded JSON.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable

from fastgrad.bench import SLOPE_MIN_PARAMS, fit_slope


def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rows_of(data: dict) -> list[dict]:
    """One dict per benchmark with stats: group, label, role, P, threads, median, full-check time."""
    rows = []
    for b in data.get("benchmarks", []):
        stats, info = b.get("stats") or {}, b.get("extra_info") or {}
        median = _num(stats.get("median"))
        if median is None or info.get("role") in ("scaling", "cost_model"):  # untimed; or reported apart
            continue
        scale = _num(info.get("scale_to_full")) or 1.0
        rows.append({
            "group": b.get("group") or "(no group)",
            "name": b.get("name", ""),
            "label": info.get("label") or info.get("engine") or b.get("name", "?"),
            "role": info.get("role", "peer"),
            "P": _num(info.get("n_params")),
            "threads": info.get("threads"),
            "median": median,
            "rounds": stats.get("rounds"),
            "full": median * scale,
            "subset": _num(info.get("extrapolated_from")),
            "info": info,
        })
    return rows


def _seconds(t: float) -> str:
    return f"{t:.3g}" if t < 1000 else f"{t:,.0f}"


def _times(x: float) -> str:
    return f"{x:,.0f}×" if x >= 10 else f"{x:.3g}×"


def _equiv(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _int(x) -> str:
    return f"{int(x):,}" if _num(x) is not None else ""


def _thread_count(t) -> int | None:
    return t if isinstance(t, int) and not isinstance(t, bool) else None


def _threads_cell(row: dict) -> str:
    text = str(row["threads"]) if row["threads"] is not None else ""
    blas = row["info"].get("blas_threads")
    return f"{text} (BLAS {blas})" if blas is not None else text


def _notes(row: dict) -> str:
    info, notes = row["info"], []
    if row["subset"] is not None:
        notes.append(f"**extrapolated from {_int(row['subset'])} params** (median {_seconds(row['median'])} s "
                     f"× {info.get('scale_to_full', 1):.4g})")
    if info.get("deep_mode"):
        notes.append(f"deep mode: {info['deep_mode']}")
    if _num(info.get("first_check_seconds")) is not None:
        notes.append(f"in process: import {info.get('import_seconds', 0):.2f} s, "
                     f"first check {info['first_check_seconds']:.2f} s")
    if info.get("eps") is not None:
        notes.append(f"eps={info['eps']:g}")
    return "; ".join(notes)


def _gflops(row: dict) -> str:
    info = row["info"]
    if _num(info.get("flops")):
        return f"{info['flops'] / row['median'] / 1e9:.3g}"
    if _num(info.get("flops_estimate")):
        return f"~{info['flops_estimate'] / row['median'] / 1e9:.3g}"
    return ""


def _group_table(rows: list[dict]) -> list[str]:
    fast = {}  # (P, threads) -> full-check seconds of fastgrad's default engine
    forward = {}  # P -> median of the group's timed NumPy forward pass
    for r in rows:
        if r["role"] == "fastgrad" and _thread_count(r["threads"]) is not None:
            fast[(r["P"], r["threads"])] = r["full"]
        if r["role"] == "forward":
            forward[r["P"]] = r["median"]
    has_fast = bool(fast)
    head = ["P", "engine / peer", "threads", "median s (full check)", "rounds"]
    if has_fast:
        head += ["fastgrad faster (1 thr)", "fastgrad faster (all thr)"]
    head += ["fwd-pass equiv.", "GFLOP/s", "max rel err vs backprop", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {"forward": 0, "blas": 0, "fastgrad": 1, "peer": 2}
    for r in sorted(rows, key=lambda r: (r["P"] or 0, order.get(r["role"], 2), r["label"],
                                         _thread_count(r["threads"]) or 0)):
        cells = [_int(r["P"]), r["label"],
                 _threads_cell(r), _seconds(r["full"]), str(r["rounds"] or "")]
        if has_fast:
            same = {t: s for (p, t), s in fast.items() if p == r["P"]}
            one = same.get(1)
            many = same.get(max(same)) if same and max(same) > 1 else None
            if r["role"] in ("fastgrad", "forward", "blas"):  # (a product, not a check: no speedup)
                cells += ["—", "—"]
            else:
                cells += [_times(r["full"] / one) if one else "", _times(r["full"] / many) if many else ""]
        fwd = forward.get(r["P"]) or _num(r["info"].get("forward_pass_seconds"))
        err = _num(r["info"].get("max_rel_error_vs_backprop"))
        cells += [_equiv(r["full"] / fwd) if fwd else "", _gflops(r), f"{err:.1e}" if err is not None else "",
                  _notes(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _thread_speedups(rows: list[dict]) -> list[str]:
    lines = []
    by_key: dict = {}
    for r in rows:
        n = _thread_count(r["threads"])
        if n is not None:
            by_key.setdefault((r["label"], r["P"]), {})[n] = r["full"]
    for (label, P), times in sorted(by_key.items(), key=lambda kv: (kv[0][1] or 0, kv[0][0])):
        many = max(times)
        if 1 in times and many > 1:
            where = f", P = {_int(P)}" if P else ""
            lines.append(f"- {label}{where}: 1 thread {_seconds(times[1])} s, {many} threads "
                         f"{_seconds(times[many])} s: **{many}-thread/1-thread speedup "
                         f"{times[1] / times[many]:.2f}×**")
    return lines


def _slopes(rows: list[dict]) -> list[str]:
    series: dict = {}
    for r in rows:
        if r["P"] is not None and r["P"] >= SLOPE_MIN_PARAMS:
            series.setdefault((r["label"], r["threads"]), []).append((r["P"], r["full"]))
    lines = []
    for (label, threads), pts in sorted(series.items(), key=lambda kv: str(kv[0])):
        slope = fit_slope(pts)
        if slope is None:
            continue
        pts.sort()
        last = fit_slope(pts[-2:])
        lines.append(f"- {label} (threads {threads}): **slope {slope:.2f}** over {len(pts)} sizes, "
                     f"P = {_int(pts[0][0])}..{_int(pts[-1][0])} (between the two largest: {last:.2f})")
    if lines:
        lines.insert(0, f"Log-log slope of full-check time against P (least squares, P ≥ {SLOPE_MIN_PARAMS:g}):")
    return lines


def interleaved_scaling(data: dict) -> list[str]:
    """Lines for the interleaved thread-scaling benchmarks (``bench_threads.py``)."""
    lines = []
    for b in data.get("benchmarks", []):
        info = b.get("extra_info") or {}
        if info.get("role") != "scaling" or _num(info.get("fastgrad_ratio")) is None:
            continue
        med = info.get("medians_seconds") or {}
        n = info.get("threads")
        lines.append(
            f"- {info.get('label')}, P = {_int(info.get('n_params'))}, {info.get('rounds')} interleaved rounds: "
            f"fastgrad 1 thread {_seconds(med.get('fastgrad_1', math.nan))} s, {n} threads "
            f"{_seconds(med.get('fastgrad_all', math.nan))} s: **{info['fastgrad_ratio']:.2f}×**; "
            f"reference kernel (ideal parallel loop) in the same rounds **{info['reference_ratio']:.2f}×**; "
            f"fastgrad's efficiency relative to it {info['efficiency_vs_reference']:.0%}"
            + (f"; throughput reference (vectorised, in L1) **{info['throughput_reference_ratio']:.2f}×**, "
               f"efficiency relative to it {info['efficiency_vs_throughput_reference']:.0%}"
               if _num(info.get("throughput_reference_ratio")) is not None else "")
            + _relative_text(info.get("relative_speedup"))
        )
    if lines:
        lines.insert(0, "## threads (interleaved: 1 and all threads, fastgrad and two reference kernels, each round)")
        lines.insert(1, "")
    return lines


def _relative_text(rel) -> str:
    """Issue 18's figure: per round, fastgrad's speedup / the throughput reference's; median and range."""
    if not isinstance(rel, dict) or _num(rel.get("median")) is None:
        return ""
    few = "" if rel.get("enough_rounds", True) else " (fewer rounds than the 8 the figure needs)"
    return (f"; **per round, fastgrad's speedup / the throughput reference's: median {rel['median']:.2f}, "
            f"range {rel['min']:.2f}–{rel['max']:.2f} over {rel['rounds']} rounds**{few}")


def cost_model_lines(data: dict) -> list[str]:
    """The cost model's benchmarks (``bench_cost_model.py``): per phase, measured / predicted, and the rates used."""
    found = [b.get("extra_info") or {} for b in data.get("benchmarks", [])]
    found = [i for i in found if i.get("role") == "cost_model" and isinstance(i.get("phases"), dict)]
    if not found:
        return []
    phases = list(found[0]["phases"])
    lines = ["## cost model (each phase: measured / predicted ms, and measured ÷ predicted)", "",
             "| net | P | threads | " + " | ".join(phases) + " |", "|" + "---|" * (3 + len(phases))]
    ratios = []
    for info in sorted(found, key=lambda i: (i.get("n_params") or 0, i.get("threads") or 0)):
        cells = [str(info.get("sizes", "")), _int(info.get("n_params")), str(info.get("threads", ""))]
        for phase in phases:
            c = info["phases"].get(phase) or {}
            m, p, r = _num(c.get("measured")), _num(c.get("predicted")), _num(c.get("ratio"))
            cells.append("" if m is None or p is None else f"{m * 1e3:.3g} / {p * 1e3:.3g}"
                         + (f" ({r:.2f})" if r is not None else ""))
        total = _num((info["phases"].get("total") or {}).get("ratio"))
        if total is not None:
            ratios.append(total)
        lines.append("| " + " | ".join(cells) + " |")
    if ratios:
        lines += ["", f"Total measured ÷ predicted: {min(ratios):.2f}–{max(ratios):.2f} over {len(ratios)} runs "
                  "(goal 0.5–2)."]
    lines += [""] + [_rates_line(info) for info in found if isinstance(info.get("rates"), dict)][:1]
    return lines


def _rates_line(info: dict) -> str:
    """The measured rates of the first run (each run measured its own; the JSON has them all)."""
    r = info["rates"]
    dot = ", ".join(f"{k} {v / 1e9:.3g}" for k, v in (r.get("dot_flops") or {}).items())
    return (f"Rates measured in the run (first net, {r.get('threads')} thr): np.dot GFLOP/s on the phases' shapes "
            f"({dot}), memory bandwidth {r.get('memory_bytes', 0) / 1e9:.3g} GB/s, L1 multiply-add loop "
            f"{r.get('cache_bytes', 0) / 1e9:.3g} GB/s, scalar chain {r.get('chain_flops', 0) / 1e9:.3g} GFLOP/s, "
            f"parallel launch {r.get('launch_seconds', 0) * 1e6:.2g} µs.")


def _machine(data: dict) -> list[str]:
    mi = data.get("machine_info") or {}
    cpu = mi.get("cpu") or {}
    fields = [
        ("cpu", cpu.get("brand_raw") or mi.get("processor")),
        ("cores", cpu.get("count") or mi.get("cpu_count")),
        ("numba", mi.get("numba_version")),
        ("numba threads", mi.get("numba_num_threads")),
        ("threading layer", mi.get("numba_threading_layer")),
        ("numpy", mi.get("numpy_version")),
        ("BLAS threads", mi.get("blas_threads")),
        ("python", mi.get("python_version")),
        ("run", data.get("datetime")),
    ]
    commit = data.get("commit_info") or {}
    if commit.get("id"):
        fields.append(("commit", commit["id"][:10] + (" (dirty)" if commit.get("dirty") else "")))
    return ["Machine: " + ", ".join(f"{k} {v}" for k, v in fields if v not in (None, ""))]


def summarize(data: dict) -> str:
    """Return the Markdown summary of a loaded pytest-benchmark JSON."""
    rows = rows_of(data)
    out = ["# fastgrad benchmarks", ""] + _machine(data) + [""]
    scaling = interleaved_scaling(data)
    model = cost_model_lines(data)
    if not rows and not scaling and not model:
        out.append("No timed benchmarks in this file (was it written with --benchmark-disable?).")
        return "\n".join(out) + "\n"
    groups: dict = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    for name, group in groups.items():
        out += [f"## {name}", ""] + _group_table(group)
        extra = _thread_speedups(group) + _slopes(group)
        out += ([""] + extra if extra else []) + [""]
    if scaling:
        out += scaling + [""]
    if model:
        out += model + [""]
    return "\n".join(out)


def json_to_markdown(render: Callable[[dict], str], doc: str | None, argv: list[str] | None = None) -> int:
    """The command line of a bench file's table: ``python bench/X.py FILE.json`` prints ``render(the run)``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(doc, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print(render(json.load(f)), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python bench/summarize.py FILE.json``."""
    return json_to_markdown(summarize, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

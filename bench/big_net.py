"""A 100 M-parameter MLP on one machine (issue 16): time and peak memory per parameter, per operation.

Usage::

    python bench/big_net.py                       # 4096-8192-8192-10, N = 32: every operation below
    python bench/big_net.py --full-slice 64       # the full-check slices check 64 units of each hidden layer
    python bench/big_net.py --full                # also run the whole full check (see the results file first)
    python bench/big_net.py --sizes 64-128-128-10 --n 8 --out -    # a quick run, markdown on stdout

Every operation runs in a fresh subprocess (``--one OP``), after that
process has built the net's inputs and loaded the warm kernels, so that
each peak is its own: the peak RSS above the process's RSS before the call
(``/proc/self/clear_refs`` resets ``VmHWM``; Linux only, otherwise the
column is empty), next to the peak ``tracemalloc`` saw (NumPy's buffers;
not the kernels' own allocations). A first subprocess compiles the parallel
kernels into Numba's disk cache (a big net's first check compiles them,
several minutes on 2 cores, which no row should count).

The full check is estimated from slices: ``check(..., entries=mask)`` over
all the parameters of ``K`` units of each layer (``--full-slice K``), minus
a check of one entry (what every check pays whatever it checks: forward
pass, backprop, the budget's base), scaled to the layer's units, plus that
fixed cost. The cost model (:func:`fastgrad.engines.unit_cost`) gives the
same extrapolation in floating-point work; both are written out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import fastgrad

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # peak_memory.py beside this file (a script run)
from peak_memory import measure  # noqa: E402

SIZES = (4096, 8192, 8192, 10)
N_SAMPLES = 32
SAMPLE = 1000
OPERATIONS = ("init", "forward", "backprop", "check_sample", "check_directional", "check_fixed", "full_slices")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "epyc-2core-big-net.md")


def warm(threads_parallel: bool = True) -> None:
    """Compile (or load from the disk cache) every kernel the operations run, on a tiny net.

    With ``threads_parallel`` the parallel kernels too: a small net would
    otherwise run their serial twins, and the big net's first call compile
    the parallel ones (minutes) inside the timing.
    """
    from fastgrad import _threading

    small = fastgrad.MLP([5, 6, 6, 3])
    p = small.init(seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((4, 5)), rng.uniform(size=(4, 3))
    saved = _threading.PARALLEL_MIN_SIZE, _threading.PARALLEL_MIN_WORK
    if threads_parallel:
        _threading.PARALLEL_MIN_SIZE = _threading.PARALLEL_MIN_WORK = 0
    try:
        small.forward(p, X)
        g = small.backprop(p, X, Y)
        fastgrad.check(small, p, X, Y, g)
        fastgrad.check(small, p, X, Y, g, sample=3, seed=0)
        fastgrad.check(small, p, X, Y, g, method="directional", seed=0)
    finally:
        _threading.PARALLEL_MIN_SIZE, _threading.PARALLEL_MIN_WORK = saved


def build(sizes: tuple[int, ...], n: int) -> tuple[fastgrad.MLP, list[np.ndarray], np.ndarray, np.ndarray]:
    """The net (sigmoid, MSE), its parameters (seed 0) and a batch of ``n`` rows."""
    net = fastgrad.MLP(list(sizes))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, sizes[0]))
    Y = rng.uniform(size=(n, sizes[-1]))
    return net, net.init(seed=0), X, Y


def unit_mask(net: fastgrad.MLP, layer: int, units: int) -> np.ndarray:
    """Entries mask of every parameter (weights and bias) of the first ``units`` units of ``layer``.

    The flat order holds an MLP's weights as (fan_in, fan_out): unit ``j``'s
    weights are the column ``j``.
    """
    mask = np.zeros(net.n_params, dtype=bool)
    w_lo, b_lo = int(net.offsets[2 * layer]), int(net.offsets[2 * layer + 1])
    fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
    mask[w_lo:b_lo].reshape(fan_in, fan_out)[:, :units] = True
    mask[b_lo:b_lo + units] = True
    return mask


def run_one(op: str, sizes: tuple[int, ...], n: int, slice_units: int) -> list[dict[str, Any]]:
    """Run one operation (measured) in this process; rows of ``{op, seconds, rss_bytes, ...}``."""
    warm()
    if op == "init":
        net = fastgrad.MLP(list(sizes))
        m = measure(lambda: net.init(seed=0))
        return [_row(op, "net.init(seed=0)", m, net.n_params)]
    net, params, X, Y = build(sizes, n)
    if op == "forward":
        return [_row(op, "net.loss(params, X, Y)", measure(lambda: net.loss(params, X, Y)), net.n_params)]
    if op == "backprop":
        return [_row(op, "net.backprop(params, X, Y)", measure(lambda: net.backprop(params, X, Y)), net.n_params)]
    g = net.backprop(params, X, Y)
    if op == "check_sample":
        m = measure(lambda: fastgrad.check(net, params, X, Y, g, sample=SAMPLE, seed=0))
        return [_row(op, f"check(..., sample={SAMPLE})", m, net.n_params, checked=m["value"].n_checked)]
    if op == "check_directional":
        m = measure(lambda: fastgrad.check(net, params, X, Y, g, method="directional", seed=0))
        return [_row(op, 'check(..., method="directional")', m, net.n_params, checked=m["value"].n_checked)]
    if op == "check_fixed":  # what any check pays: one bias entry of the output layer
        mask = np.zeros(net.n_params, dtype=bool)
        mask[-1] = True
        return [_row(op, "check(..., entries=one entry)", measure(
            lambda: fastgrad.check(net, params, X, Y, g, entries=mask)), net.n_params, checked=1)]
    if op == "full_slices":
        rows = []
        for layer in range(net.n_layers):
            k = min(slice_units, net.sizes[layer + 1])
            mask = unit_mask(net, layer, k)
            m = measure(lambda: fastgrad.check(net, params, X, Y, g, entries=mask))
            rows.append(_row(op, f"check(..., entries={k} units of layer {layer + 1})", m, net.n_params,
                             checked=int(mask.sum()), layer=layer, units=k))
            del m  # (its result would otherwise be held during the next slice's peak)
        return rows
    if op == "check_full":
        m = measure(lambda: fastgrad.check(net, params, X, Y, g, progress=_progress_logger()))
        return [_row(op, "check(...) (every entry)", m, net.n_params, checked=m["value"].n_checked)]
    raise ValueError(f"unknown operation {op!r}")


def _progress_logger() -> Callable[[int, int], None]:
    started, last = time.perf_counter(), [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter() - started
        if now - last[0] >= 30.0:  # a long run shows it is alive, on stderr (stdout carries the JSON)
            last[0] = now
            print(f"  {done:,}/{total:,} entries after {now:.0f} s", file=sys.stderr, flush=True)

    return progress


def _row(op: str, call: str, m: dict[str, Any], n_params: int, **extra: Any) -> dict[str, Any]:
    result = m["value"]
    passed = getattr(result, "passed", None)
    return {"op": op, "call": call, "seconds": m["seconds"], "rss_bytes": m["rss_bytes"],
            "traced_bytes": m["traced_bytes"], "process_peak_bytes": m["process_peak_bytes"],
            "n_params": n_params, "passed": passed, **extra}


def in_subprocess(op: str, sizes: tuple[int, ...], n: int, slice_units: int) -> list[dict[str, Any]]:
    """Run ``--one op`` in a fresh Python process; its rows."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", op, "--sizes", "-".join(map(str, sizes)),
           "--n", str(n), "--full-slice", str(slice_units)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def full_estimate(net: fastgrad.MLP, n: int, fixed: dict[str, Any], slices: list[dict[str, Any]]) -> dict[str, Any]:
    """Extrapolate the full check's time from the slices, by unit count and by the cost model's work."""
    from fastgrad.engines import unit_cost

    by_units = by_work = fixed["seconds"]
    per_layer = []
    for row in slices:
        layer, k = row["layer"], row["units"]
        units = net.sizes[layer + 1]
        spent = max(0.0, row["seconds"] - fixed["seconds"])
        work = unit_cost(net, layer, n) * k
        by_units += spent * units / k
        by_work += spent / work * unit_cost(net, layer, n) * units if work else 0.0
        per_layer.append({"layer": layer + 1, "units": units, "slice_units": k, "slice_seconds": spent,
                          "layer_seconds": spent * units / k, "gflop": unit_cost(net, layer, n) * units / 1e9,
                          "gflops_rate": work / spent / 1e9 if spent > 0 else None})
    return {"seconds": by_units, "seconds_by_work": by_work, "per_layer": per_layer}


def _bpp(nbytes: int | None, n_params: int) -> str:
    return "–" if nbytes is None else f"{nbytes / n_params:.1f}"


def _seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.2f} s"


def render(sizes: tuple[int, ...], n: int, rows: list[dict[str, Any]], estimate: dict[str, Any] | None,
           header: str = "") -> str:
    """The markdown report."""
    P = rows[0]["n_params"]
    out = [f"# {'-'.join(map(str, sizes))}, N = {n}: {P:,} parameters (float64, sigmoid MSE, default engine)", ""]
    if header:
        out += [header, ""]
    out += ["| operation | time | peak RSS above the start, B/param | traced peak, B/param | process peak RSS, "
            "B/param | entries checked | passed |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['call']}` | {_seconds(r['seconds'])} | {_bpp(r['rss_bytes'], P)} | "
                   f"{_bpp(r['traced_bytes'], P)} | {_bpp(r['process_peak_bytes'], P)} | "
                   f"{r.get('checked', '–') if r.get('checked') is not None else '–'} | "
                   f"{'–' if r['passed'] is None else r['passed']} |")
    if estimate is not None:
        out += ["", "Full check, extrapolated from the slices (the one-entry check's time is the fixed part):", "",
                "| layer | units | slice: units, s above the fixed part | layer, s | cost model, GFLOP | "
                "rate, GFLOP/s |", "|---|---|---|---|---|---|"]
        for pl in estimate["per_layer"]:
            rate = "–" if pl["gflops_rate"] is None else f"{pl['gflops_rate']:.1f}"
            out.append(f"| {pl['layer']} | {pl['units']:,} | {pl['slice_units']}, {pl['slice_seconds']:.2f} | "
                       f"{pl['layer_seconds']:.1f} | {pl['gflop']:.1f} | {rate} |")
        out += ["", f"Estimate of the full check: {_seconds(estimate['seconds'])} by units "
                f"({_seconds(estimate['seconds_by_work'])} by the cost model's work at each slice's rate)."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="-".join(map(str, SIZES)))
    ap.add_argument("--n", type=int, default=N_SAMPLES)
    ap.add_argument("--full-slice", type=int, default=32, help="units per layer in the full-check slices")
    ap.add_argument("--full", action="store_true", help="also run the whole full check")
    ap.add_argument("--out", default=DEFAULT_OUT, help="markdown file ('-': stdout)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # (the subprocesses)
    args = ap.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split("-"))
    if args.one:
        print(json.dumps(run_one(args.one, sizes, args.n, args.full_slice)))
        return 0
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import big_net; "
                    "big_net.warm()", HERE], check=True)
    rows: list[dict[str, Any]] = []
    for op in OPERATIONS + (("check_full",) if args.full else ()):
        started = time.perf_counter()
        rows += in_subprocess(op, sizes, args.n, args.full_slice)
        print(f"{op}: {time.perf_counter() - started:.1f} s wall", file=sys.stderr, flush=True)
    net = fastgrad.MLP(list(sizes))
    fixed = next(r for r in rows if r["op"] == "check_fixed")
    estimate = full_estimate(net, args.n, fixed, [r for r in rows if r["op"] == "full_slices"])
    header = (f"`python bench/big_net.py --sizes {args.sizes} --n {args.n} --full-slice {args.full_slice}"
              f"{' --full' if args.full else ''}`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, numba "
              f"threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}; every row a fresh process.")
    text = render(sizes, args.n, rows, estimate, header)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w") as fh:
            fh.write(text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"sizes": sizes, "n": args.n, "rows": rows, "estimate": estimate}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

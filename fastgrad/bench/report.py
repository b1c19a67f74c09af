"""What a run reports: growth exponents, speedups, the text table with its footer, and the JSON document."""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections.abc import Sequence
from typing import IO, Any

import fastgrad

from .machine import machine_info
from .measure import Row
from .options import ENGINE_NAMES, METHODS, PEER_EPS, PEERS, BenchUsageError, Options
from .phases import PHASES
from .rates import MachineRates, median_rates

#: Sizes below this many parameters are left out of the growth exponent (fixed costs dominate them).
SLOPE_MIN_PARAMS = 1e3


def fit_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of log t against log P.

    Parameters
    ----------
    points : sequence of (float, float)
        ``(P, t)`` pairs; those with a non-positive or non-finite value are left out.

    Returns
    -------
    float or None
        The slope, or None with fewer than 2 distinct sizes.
    """
    pts = [(math.log(p), math.log(t)) for p, t in points if p > 0 and t > 0 and math.isfinite(t)]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def growth_exponents(rows: Sequence[Row]) -> dict[str, float]:
    """Per series, the slope of log time against log P (sizes with P >= 1e3 when there are 2 of them).

    Parameters
    ----------
    rows : sequence of Row
        The run's rows.

    Returns
    -------
    dict
        Series name (:attr:`Row.series`) to slope, for series with 2 sizes or more.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        series.setdefault(r.series, []).append((float(r.n_params), r.seconds))
    out = {}
    for name, pts in series.items():
        big = [p for p in pts if p[0] >= SLOPE_MIN_PARAMS]
        slope = fit_slope(big if len({p for p, _ in big}) >= 2 else pts)
        if slope is not None:
            out[name] = slope
    return out


def _seconds(t: float) -> str:
    if not math.isfinite(t):
        return "inf"
    if t >= 1000:
        return f"{t:,.0f}"
    return f"{t:.3g}"


def _times(x: float) -> str:
    if not math.isfinite(x):
        return ""
    return f"{x:,.0f}×" if x >= 10 else f"{x:.2g}×"


def _rate(x: float) -> str:
    if not math.isfinite(x):
        return ""
    return f"{x:.3g}" if x < 1e3 else f"{x:.2e}".replace("e+0", "e").replace("e+", "e")


def _format_table(head: list[str], body: list[list[str]], left: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    return [line(head), line(["-" * w for w in widths])] + [line(r) for r in body]


def compute_speedups(rows: Sequence[Row]) -> None:
    """For every fastgrad row: each peer's full-check time at the same net over this row's time.

    Parameters
    ----------
    rows : sequence of Row
        The run's rows; the fastgrad rows' ``speedups`` are filled in place.
    """
    peers = [(r.peer, r) for r in rows if r.kind == "peer" and r.peer is not None]  # a peer's row names it
    for r in rows:
        if r.kind != "fastgrad":
            continue
        for name, p in peers:
            if p.net == r.net and r.seconds > 0:
                r.speedups[name] = p.seconds / r.seconds


def row_order(r: Row) -> tuple[Any, ...]:
    """Sort key of the table and the plot: by P and net, fastgrad (by engine, method) before the peers."""
    if r.kind == "fastgrad":
        what = (0, ENGINE_NAMES.index(r.engine), METHODS.index(r.method))
    else:
        what = (1, PEERS.index(r.peer), 0)
    return (r.n_params, r.net, what, r.threads)


def table_lines(rows: Sequence[Row]) -> list[str]:
    """Return the table: one line per row, sorted by P, fastgrad first.

    Parameters
    ----------
    rows : sequence of Row
        The run's rows (speedups computed).

    Returns
    -------
    list of str
        The header, a rule, then one line per row.
    """
    peer_names = [p for p in PEERS if any(r.peer == p for r in rows)]
    has_model = any(r.cost_model_seconds is not None for r in rows)
    head = ["P", "net", "what", "thr", "time s", "params/s", "fwd-pass eq."]
    head += [f"vs {p}" for p in peer_names]
    head += ["model s"] if has_model else []
    head += ["max err", "notes"]
    body = []
    for r in sorted(rows, key=row_order):
        cells = [f"{r.n_params:,}", r.net, r.what, str(r.threads), _seconds(r.seconds), _rate(r.params_per_second),
                 _rate(r.forward_equivalents)]
        cells += [_times(r.speedups[p]) if p in r.speedups else "" for p in peer_names]
        if has_model:
            cells.append(_seconds(r.cost_model_seconds) if r.cost_model_seconds is not None else "")
        if r.max_rel_error is not None:
            cells.append(f"{r.max_rel_error:.1e}")
        else:
            cells.append("passed" if r.passed else "FAILED")
        notes = []
        if r.subset is not None:
            notes.append(f"extrapolated from {r.subset:,} params ({_seconds(r.measured_seconds)} s)")
        if not r.passed:
            tol = f" > tol {r.tolerance:g}" if r.tolerance is not None and r.max_rel_error is not None else ""
            notes.append(f"CHECK FAILED{tol}")
        notes += r.notes
        cells.append("; ".join(notes))
        body.append(cells)
    left = {1, 2, len(head) - 1}
    return _format_table(head, body, left)


def footer_lines(rows: Sequence[Row], models: dict[int, list[MachineRates]],
                 first_calls: Sequence[dict[str, Any]]) -> list[str]:
    """Return the footer: steps, growth exponents, thread speedups, compile times and the cost model's predictions.

    Parameters
    ----------
    rows : sequence of Row
        The run's rows.
    models : dict
        Thread count to the machine rates the cost model used (one per net).
    first_calls : sequence of dict
        What :func:`fastgrad.bench.sweep.measure_first_calls` measured.

    Returns
    -------
    list of str
        One line per item present in this run.
    """
    lines = []
    steps = {f"{r.engine} {r.method} {r.eps:g}·max(1,|w|)" for r in rows if r.kind == "fastgrad"}
    if steps:
        peers = " (peers: eps " + f"{PEER_EPS:g})" if any(r.kind == "peer" for r in rows) else ""
        lines.append("steps: fastgrad defaults, " + ", ".join(sorted(steps)) + peers)
    slopes = growth_exponents(rows)
    if slopes:
        lines.append("growth exponent (least-squares slope of log time vs log P): "
                     + "; ".join(f"{name} {s:.2f}" for name, s in slopes.items()))
    by_key: dict[str, dict[tuple[int, str], dict[int, Row]]] = {}
    for r in rows:
        if r.kind == "fastgrad":
            by_key.setdefault(r.what, {}).setdefault((r.n_params, r.net), {})[r.threads] = r
    speed = []
    for what, nets in by_key.items():
        both = [(key, per) for key, per in nets.items() if 1 in per and max(per) > 1]
        if both:
            (_, net), per = max(both, key=lambda item: item[0])  # the largest net timed both ways
            many = max(per)
            speed.append(f"{what} {many} thr vs 1 at {net}: {per[1].seconds / per[many].seconds:.2f}×")
    if speed:
        lines.append("threads: " + "; ".join(speed))
    if first_calls:
        lines.append(f"compilation (first call in this process, {first_calls[0]['net']} net, includes Numba's "
                     "compilation or on-disk cache load) vs warm median: " + "; ".join(
                         f"{c['engine']} {c['method']} {_seconds(c['first_call_seconds'])} s vs "
                         f"{c['warm_median_seconds'] * 1e3:.2g} ms" for c in first_calls))
    for threads, taken in sorted(models.items()):
        preds = [(r, predicted) for r in rows
                 if (predicted := r.cost_model_seconds) is not None and r.threads == threads]
        if not preds or not taken:
            continue
        big, big_predicted = max(preds, key=lambda pair: pair[0].n_params)
        ratios = [r.seconds / predicted for r, predicted in preds]
        lines.append(
            f"cost model (incremental central, {threads} thr; each phase's counted flops and bytes over "
            f"{rates_text(median_rates(taken))}): predicted {_seconds(big_predicted)} s, measured "
            f"{_seconds(big.seconds)} s for {big.net}; measured/predicted {min(ratios):.2g}..{max(ratios):.2g} "
            f"over {len(preds)} sizes")
    lines += phase_lines(rows)
    return lines


def rates_text(rates: MachineRates) -> str:
    """The measured rates a prediction used, in words (medians over the nets when several)."""
    dot = ", ".join(f"{phase} {v / 1e9:.3g}" for phase, v in rates.dot_flops.items())
    return (f"this machine's rates measured in the run: np.dot GFLOP/s on the phases' shapes ({dot}; one BLAS "
            f"thread), memory bandwidth {rates.memory_bytes / 1e9:.3g} GB/s, L1 multiply-add loop "
            f"{rates.cache_bytes / 1e9:.3g} GB/s at {rates.threads} thr ({rates.scaling:.2f}× one thread's), "
            f"scalar chain {rates.chain_flops / 1e9:.3g} GFLOP/s, parallel launch {rates.launch_seconds * 1e6:.2g} µs, "
            f"fixed Python {rates.python_seconds * 1e3:.2g} ms")


def phase_lines(rows: Sequence[Row]) -> list[str]:
    """Return the cost model's table: per net and thread count, each phase's measured / predicted milliseconds.

    Parameters
    ----------
    rows : sequence of Row
        The run's rows; those with :attr:`Row.phases` are shown.

    Returns
    -------
    list of str
        A title, the table (cells ``measured/predicted ms (ratio)``), and the range of the total's ratio.
    """
    modelled = sorted((r for r in rows if r.phases), key=lambda r: (r.n_params, r.threads))
    if not modelled:
        return []
    head = ["net", "thr"] + [*PHASES, "total"]
    body = []
    for r in modelled:
        cells = [r.net, str(r.threads)]
        for phase in (*PHASES, "total"):
            c = r.phases.get(phase, {})
            m, p, ratio = c.get("measured"), c.get("predicted"), c.get("ratio")
            cells.append("" if m is None or p is None else
                         f"{m * 1e3:.3g}/{p * 1e3:.3g}" + (f" ({ratio:.2g})" if ratio is not None else ""))
        body.append(cells)
    ratios = [r.phases["total"]["ratio"] for r in modelled if r.phases.get("total", {}).get("ratio") is not None]
    title = ("cost model per phase (phases timed one by one, medians of interleaved rounds; "
             "measured/predicted ms (measured/predicted)):")
    tail = [f"total measured/predicted {min(ratios):.2g}..{max(ratios):.2g} over {len(ratios)} runs"] if ratios else []
    return [title, *_format_table(head, body, {0}), *tail]


#: The legend printed under the table.
LEGEND = ("time: full per-parameter check (peers and slow engines timed on a subset, extrapolated linearly); "
          "fwd-pass eq.: time / one NumPy forward pass of the batch; vs X: X's time / this row's time; "
          "max err: max |numerical - backprop| / max |backprop|")


def failure_lines(rows: Sequence[Row]) -> list[str]:
    """Return the closing report of the rows whose check failed (none when every row passed).

    Parameters
    ----------
    rows : sequence of Row
        The run's rows.

    Returns
    -------
    list of str
        A headline, then one line per failed row with its error and tolerance (or how it was checked).
    """
    failed = [r for r in rows if not r.passed]
    if not failed:
        return []
    lines = [f"fastgrad bench FAILED: {len(failed)} of {len(rows)} timed results are wrong "
             "(a time is meaningless when the answer is wrong):"]
    for r in failed:
        detail = f"max rel error {r.max_rel_error:.3g} > tolerance {r.tolerance:g}" \
            if r.max_rel_error is not None and r.tolerance is not None else r.check
        notes = f" ({'; '.join(r.notes)})" if r.notes else ""
        lines.append(f"  {r.what}, {r.threads} thr, {r.net}: {detail}{notes}")
    return lines


def command_line(argv: Sequence[str] | None) -> str:
    """Return the command as typed (``fastgrad bench ...``; ``sys.argv`` when ``argv`` is None)."""
    return shlex.join(["fastgrad", *(argv if argv is not None else sys.argv[1:])])


def json_document(opts: Options, argv: Sequence[str] | None, peers_run: Sequence[str], rows: Sequence[Row],
                  models: dict[int, list[MachineRates]], first_calls: Sequence[dict[str, Any]],
                  peer_errors: Sequence[str],
                  wall: float) -> dict[str, Any]:
    """Return everything a run measured, with the machine and the command, as a JSON-ready dict.

    Parameters
    ----------
    opts : Options
        The run's options.
    argv : sequence of str or None
        The command-line arguments (``sys.argv[1:]`` when None).
    peers_run : sequence of str
        The peers that were importable and ran.
    rows : sequence of Row
        The run's rows.
    models : dict
        Thread count to the machine rates the cost model used (one per net).
    first_calls : sequence of dict
        Compilation measurements.
    peer_errors : sequence of str
        Messages of the peers that failed on a net and were skipped there.
    wall : float
        Seconds the run took.

    Returns
    -------
    dict
        The document ``--json`` writes.
    """
    return {
        "fastgrad_version": fastgrad.__version__,
        "command": command_line(argv),
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "options": {
            "sizes": [list(s) for s in opts.sizes], "batch": opts.batch, "methods": list(opts.methods),
            "engines": list(opts.engines), "peers": list(opts.peers), "peers_run": list(peers_run),
            "threads": list(opts.threads), "peer_threads": opts.peer_threads, "repeats": opts.repeats,
            "subset_budget_seconds": opts.budget, "seed": opts.seed, "quick": opts.quick, "peer_eps": PEER_EPS,
        },
        "machine": machine_info(opts),
        "wall_seconds": wall,
        "passed": all(r.passed for r in rows),
        "growth_exponents": growth_exponents(rows),
        "first_calls": list(first_calls),
        "peer_errors": list(peer_errors),
        "cost_model": {str(t): [m.to_dict() for m in taken] for t, taken in models.items()},
        "rows": [r.to_dict() for r in rows],
    }


def write_json(path: str, document: dict[str, Any], out: IO[str]) -> None:
    """Write ``document`` as strict JSON to ``path`` (``-``: to ``out``).

    Parameters
    ----------
    path : str
        The file name, or ``-``.
    document : dict
        What :func:`json_document` returned.
    out : file
        The command's output stream.

    Raises
    ------
    BenchUsageError
        When the file cannot be written.
    """
    text = json.dumps(document, indent=2, allow_nan=False)
    if path == "-":
        print(text, file=out)
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        raise BenchUsageError(f"--json {path!r}: cannot write: {exc}") from None

"""784-128-10, N=64 with each of MLP's new options (issue 15), timed beside today's net (the 1.5x acceptance).

Run in CI:   pytest bench/bench_conventions.py --benchmark-disable     (every variant once, results asserted)
Per variant: pytest bench/bench_conventions.py -k "not interleaved" --benchmark-json=cv.json
The table (``R=bench/results/epyc-2core-conventions``)::

    pytest bench/bench_conventions.py -k interleaved --benchmark-json=$R.json
    python bench/bench_conventions.py $R.json > $R.md

The net, parameters and inputs are ``bench_engines.py``'s reference case (``make_case(**REFERENCE)``:
784-128-10, N = 64, Glorot weights at seed 0, biases N(0, 0.1)); the targets are one-hot rows (labels
drawn at ``LABEL_SEED``) for every variant, so that the cross-entropy ones can take the same labels as
integers. Every variant uses these same numbers, only the options change (``VARIANTS``): today's net
(sigmoid hidden and output, mse, (in, out) weights, a list, (k,) biases, float one-hot Y), each new option
alone, and the options together where they go together. Each is timed twice, ``fastgrad.check(net,
params, X, Y, grads)`` and ``fastgrad.numerical_gradient(net, params, X, Y)`` (default engine, method,
eps and threads), ``grads`` being ``net.backprop`` in the variant's own format.

Two modes:

- ``test_check`` / ``test_numerical_gradient``: one pytest-benchmark row per variant, in the groups
  ``CHECK_GROUP`` and ``NUMGRAD_GROUP``. pytest-benchmark times one variant after the other, so on the
  shared machine drift between them is not told apart from the variants' own cost (a sequential run
  here had the baseline at 7.6 ms and the others at 8.9-12 ms, while interleaved they agree within
  noise): use the rows for absolute times, and for the ratios
- ``test_interleaved``: every variant's check and numerical_gradient in each of ``ROUNDS`` rounds, in a
  fresh random order per round, all compiled and warmed first, in one process; the medians, ranges and
  ratios to the baseline (and to the closest net that existed before, ``Variant.closest``) of the same
  rounds go to ``extra_info``, and ``python bench/bench_conventions.py JSON`` prints them as Markdown.
  The benchmark's own time is the whole experiment and means nothing.

Every run asserts results, never speed: the check passes on the variant's backprop with nothing
inconclusive, numerical_gradient agrees with backprop to ``BACKPROP_RTOL`` and comes back in the
variant's format (dict or list, (out, in) weights, column biases).

Environment: ``FASTGRAD_BENCH_CONVENTIONS_ROUNDS`` (default 15; 1 under ``--benchmark-disable``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pytest
from bench_engines import REFERENCE  # the reference case: 784-128-10, N = 64

import fastgrad
from fastgrad.bench import make_case

CHECK_GROUP = "conventions: check 784-128-10 N=64"
NUMGRAD_GROUP = "conventions: numerical_gradient 784-128-10 N=64"
INTERLEAVED_GROUP = "conventions interleaved 784-128-10 N=64"
ROUNDS = int(os.environ.get("FASTGRAD_BENCH_CONVENTIONS_ROUNDS", "15"))
LABEL_SEED = 7
ORDER_SEED = 0
#: numerical_gradient against backprop, worst tensor's max |n - a| / max |a| (bench_engines' is 1e-9 for
#: sigmoid; the kinked and the new activations are given a little more, still far below any real bug).
BACKPROP_RTOL = 1e-8
#: The acceptance line of issue 15 (printed beside the ratios, never asserted).
LIMIT = 1.5


@dataclass(frozen=True)
class Variant:
    """One net of the comparison: ``MLP`` options, how params and Y are given, what it is compared with."""

    name: str
    options: dict = field(default_factory=dict)
    #: Containers/shapes of params and grads: any of "dict", "column" ((k, 1) biases); "out_in" comes from options.
    formats: tuple[str, ...] = ()
    #: Y as integer labels (N,) instead of one-hot rows (cross_entropy only).
    labels: bool = False
    #: The nets that existed before issue 15 closest to this one (beside the baseline), by variant name.
    closest: tuple[str, ...] = ()
    note: str = ""


_ALL = dict(weight_layout="out_in", l2=1e-3)
_ALL_FORMATS = ("dict", "column")

VARIANTS = [
    Variant("baseline", note="today's net: sigmoid/sigmoid, mse, in_out, list, one-hot float Y"),
    Variant("reduction_sum", dict(reduction="sum")),
    Variant("mean_all_scale", dict(reduction="mean_all", scale=0.5), note='reduction="mean_all", scale=0.5'),
    Variant("l2", dict(l2=1e-3), note="l2=1e-3"),
    Variant("out_in", dict(weight_layout="out_in"), note="transposed params and grads"),
    Variant("dict", formats=("dict",), note='{"W1": ..., "b1": ...}'),
    Variant("column_bias", formats=("column",), note="biases (k, 1)"),
    Variant("relu", dict(hidden="relu"), note="existing: the relu-family baseline"),
    Variant("leaky_0.01", dict(hidden="leaky_relu"), closest=("relu",), note="existing: default slope (code 4)"),
    Variant("leaky_0.3", dict(hidden="leaky_relu", leaky_slope=0.3), closest=("leaky_0.01", "relu"),
            note="slope decoded from the code"),
    Variant("tanh", dict(hidden="tanh"), note="existing"),
    Variant("softplus", dict(hidden="softplus"), note="existing"),
    Variant("gelu", dict(hidden="gelu"), closest=("softplus", "tanh"), note="new activation (erf form)"),
    Variant("silu", dict(hidden="silu"), closest=("softplus", "tanh"), note="new activation"),
    Variant("bce", dict(loss="bce"), note="new loss; closest existing: the baseline (mse on sigmoid)"),
    Variant("ce_onehot", dict(output="softmax", loss="cross_entropy"), note="existing: softmax, one-hot Y"),
    Variant("ce_labels", dict(output="softmax", loss="cross_entropy"), labels=True, closest=("ce_onehot",),
            note="integer labels (N,)"),
    Variant("all_bce", dict(hidden="leaky_relu", leaky_slope=0.3, loss="bce", reduction="mean_all", scale=0.5,
                            **_ALL), formats=_ALL_FORMATS, closest=("relu",),
            note="leaky 0.3, bce, mean_all x0.5, l2, out_in, dict, (k,1)"),
    Variant("all_ce", dict(hidden="gelu", output="softmax", loss="cross_entropy", reduction="sum", **_ALL),
            formats=_ALL_FORMATS, labels=True, closest=("ce_onehot", "softplus"),
            note="gelu, softmax CE, int labels, sum, l2, out_in, dict, (k,1)"),
    Variant("all_silu_mse", dict(hidden="silu", reduction="mean_all", scale=0.5, **_ALL), formats=_ALL_FORMATS,
            closest=("softplus",), note="silu, mse mean_all x0.5, l2, out_in, dict, (k,1)"),
]
BY_NAME = {v.name: v for v in VARIANTS}


@dataclass
class Case:
    """A variant's net and its arguments, in the variant's own formats."""

    variant: Variant
    net: fastgrad.MLP
    params: Any
    X: np.ndarray
    Y: np.ndarray
    grads: Any


_CASES: dict[str, Case] = {}


def _base():
    """The reference case's params and X (bench_engines), with one-hot targets; built once."""
    _, params, X, _ = make_case(**REFERENCE)
    labels = np.random.default_rng(LABEL_SEED).integers(0, REFERENCE["sizes"][-1], size=X.shape[0])
    return params, X, labels


def case(name: str) -> Case:
    """The variant's case (cached: every test and round times the same arrays)."""
    if name not in _CASES:
        v = BY_NAME[name]
        params, X, labels = _base()
        net = fastgrad.MLP(REFERENCE["sizes"], **v.options)
        p: Any = [np.ascontiguousarray(t.T) if net.weight_layout == "out_in" and t.ndim == 2 else t.copy()
                  for t in params]
        if "column" in v.formats:
            p = [t.reshape(-1, 1) if t.ndim == 1 else t for t in p]
        if "dict" in v.formats:
            p = dict(zip(net.tensor_names, p))
        Y = labels.copy() if v.labels else np.eye(net.sizes[-1])[labels]
        _CASES[name] = Case(v, net, p, X, Y, net.backprop(p, X, Y))
    return _CASES[name]


def _flat(values: Any, c: Case) -> list[np.ndarray]:
    return [np.asarray(t) for t in c.net.tensors(values)]


def _assert_format(result: Any, c: Case) -> None:
    """The numerical gradient comes back in the variant's own containers and shapes."""
    assert isinstance(result, dict) == isinstance(c.params, dict), type(result)
    for got, given in zip(_flat(result, c), _flat(c.params, c)):
        assert got.shape == given.shape, (got.shape, given.shape)


def max_rel_error(numerical: Any, c: Case) -> float:
    """Worst tensor's ``max |n - a| / max |a|`` against the variant's backprop."""
    return max(float(np.max(np.abs(n - a)) / max(np.max(np.abs(a)), 1e-300))
               for n, a in zip(_flat(numerical, c), _flat(c.grads, c)))


def run_check(c: Case) -> Any:
    return fastgrad.check(c.net, c.params, c.X, c.Y, c.grads)


def run_numgrad(c: Case) -> Any:
    return fastgrad.numerical_gradient(c.net, c.params, c.X, c.Y)


def assert_check(result: Any) -> None:
    assert result.passed, str(result)
    assert len(result.inconclusive) == 0, str(result)


def assert_numgrad(result: Any, c: Case) -> float:
    _assert_format(result, c)
    err = max_rel_error(result, c)
    assert err <= BACKPROP_RTOL, f"{c.variant.name}: numerical gradient off backprop by {err:.3g} (relative)"
    return err


def _info(benchmark, c: Case, what: str, extra: dict) -> None:
    benchmark.extra_info.update(
        label=f"{what} {c.variant.name}", role="peer", variant=c.variant.name, options=repr(c.net),
        formats=",".join(c.variant.formats), labels=c.variant.labels, n_params=c.net.n_params,
        n_samples=c.X.shape[0], sizes="-".join(map(str, c.net.sizes)), threads=numba.get_num_threads(), **extra)


# ------------------------------------------------------------------ one benchmark row per variant
@pytest.mark.parametrize("name", list(BY_NAME))
def test_check(benchmark, name):
    c = case(name)
    assert_check(run_check(c))  # compiles (or loads) and warms
    benchmark.group = CHECK_GROUP
    result = benchmark(run_check, c)
    assert_check(result)
    _info(benchmark, c, "check", {})


@pytest.mark.parametrize("name", list(BY_NAME))
def test_numerical_gradient(benchmark, name):
    c = case(name)
    run_numgrad(c)
    benchmark.group = NUMGRAD_GROUP
    err = assert_numgrad(benchmark(run_numgrad, c), c)
    _info(benchmark, c, "numerical_gradient", {"max_rel_error_vs_backprop": err})


# ------------------------------------------------------------------ interleaved rounds: the table
def _stats(times: list[float]) -> dict:
    return {"median": float(np.median(times)), "min": float(min(times)), "max": float(max(times))}


def interleaved(rounds: int, seed: int = ORDER_SEED) -> dict:
    """Time every variant's check and numerical_gradient in ``rounds`` rounds, a random order per round.

    Returns ``{"check": {name: seconds per round}, "numerical_gradient": {...}, "errors": {name: rel err}}``.
    Results are asserted in every round (a fast wrong answer must not look good).
    """
    cases = [case(v.name) for v in VARIANTS]
    errors = {}
    for c in cases:  # compile (or load) and warm every kernel before any timing
        assert_check(run_check(c))
        errors[c.variant.name] = assert_numgrad(run_numgrad(c), c)
    times: dict[str, dict[str, list[float]]] = {"check": {}, "numerical_gradient": {}}
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        for i in rng.permutation(len(cases)):
            c = cases[i]
            start = time.perf_counter()
            result = run_check(c)
            times["check"].setdefault(c.variant.name, []).append(time.perf_counter() - start)
            assert_check(result)
            start = time.perf_counter()
            result = run_numgrad(c)
            times["numerical_gradient"].setdefault(c.variant.name, []).append(time.perf_counter() - start)
            assert_numgrad(result, c)
    return {**times, "errors": errors}


def ratios(times: dict[str, list[float]], name: str, other: str) -> dict:
    """``name``'s time over ``other``'s: of the medians, and the median and range of the per-round ratios."""
    a, b = np.asarray(times[name]), np.asarray(times[other])
    paired = a / b
    return {"of_medians": float(np.median(a) / np.median(b)), "paired_median": float(np.median(paired)),
            "paired_min": float(paired.min()), "paired_max": float(paired.max())}


def test_interleaved(benchmark):
    rounds = 1 if getattr(benchmark, "disabled", False) else ROUNDS  # CI: the assertions, not the numbers
    out: dict = {}
    benchmark.group = INTERLEAVED_GROUP
    benchmark.pedantic(lambda: out.update(interleaved(rounds)), rounds=1, iterations=1)
    table = {}
    for what in ("check", "numerical_gradient"):
        t = out[what]
        table[what] = {
            v.name: {**_stats(t[v.name]), "vs": {ref: ratios(t, v.name, ref) for ref in ("baseline",) + v.closest}}
            for v in VARIANTS}
    benchmark.extra_info.update(
        label="MLP options on 784-128-10 N=64, interleaved", role="scaling",  # (bench/summarize.py skips it)
        rounds=rounds, threads=numba.get_num_threads(), n_params=case("baseline").net.n_params,
        n_samples=REFERENCE["n_samples"], limit=LIMIT,
        variants={v.name: {"options": repr(case(v.name).net), "given": v.options, "formats": list(v.formats),
                           "labels": v.labels,
                           "note": v.note, "closest": list(v.closest)} for v in VARIANTS},
        seconds=table, raw_seconds={w: out[w] for w in ("check", "numerical_gradient")},
        max_rel_error_vs_backprop=out["errors"])


# ------------------------------------------------------------------ the summary
def _ms(s: dict) -> tuple[str, str]:
    return f"{s['median'] * 1e3:.2f}", f"{s['min'] * 1e3:.2f}–{s['max'] * 1e3:.2f}"


def _ratio_cells(row: dict, closest: list[str]) -> tuple[str, str]:
    def cell(r: dict) -> str:
        flag = " ⚠" if r["of_medians"] > LIMIT else ""
        return f"{r['of_medians']:.2f}×{flag} ({r['paired_min']:.2f}–{r['paired_max']:.2f})"

    base = cell(row["vs"]["baseline"])
    near = "; ".join(f"{cell(row['vs'][ref])} vs {ref}" for ref in closest) or "–"
    return base, near


def summary(data: dict) -> str:
    """The Markdown table of a pytest-benchmark JSON holding ``test_interleaved``."""
    mi = data.get("machine_info") or {}
    cpu = (mi.get("cpu") or {}).get("brand_raw") or mi.get("processor") or "?"
    commit = (data.get("commit_info") or {}).get("id", "")[:10]
    rows = [b for b in data.get("benchmarks", []) if b.get("group") == INTERLEAVED_GROUP]
    if not rows:
        return "no test_interleaved in this file (run it with -k interleaved)\n"
    e = rows[-1]["extra_info"]
    lines = ["# MLP options (issue 15) on 784-128-10, N = 64", "",
             f"Machine: cpu {cpu}, cores {mi.get('cpu_count')}, numba {mi.get('numba_version')}, "
             f"numba threads {mi.get('numba_num_threads')}, threading layer {mi.get('numba_threading_layer')}, "
             f"numpy {mi.get('numpy_version')}, python {mi.get('python_version')}, run {data.get('datetime')}"
             + (f", commit {commit}" if commit else ""), "",
             f"{e['rounds']} interleaved rounds in one process (a random order per round, every kernel warm), "
             f"{e['threads']} threads, default engine and method. Times in ms: median (min–max over the rounds). "
             f"Ratios: of the medians, (min–max of the per-round ratios); ⚠ above {e['limit']}×.", ""]
    for what, title in (("check", "`fastgrad.check(net, params, X, Y, grads)`"),
                        ("numerical_gradient", "`fastgrad.numerical_gradient(net, params, X, Y)`")):
        lines += [f"## {title}", "",
                  "| variant | options (besides today's net's) | median ms | range ms | ÷ baseline | "
                  "÷ closest existing net |",
                  "|---|---|---|---|---|---|"]
        for name, row in e["seconds"][what].items():
            v = e["variants"][name]
            med, rng = _ms(row)
            base, near = _ratio_cells(row, v["closest"])
            opts = ", ".join([f"{k}={x!r}" for k, x in v["given"].items()] + v["formats"]
                             + (["int labels"] if v["labels"] else [])) or "(today's net)"
            lines.append(f"| {name} | {opts} | {med} | {rng} | {base} | {near} |")
        lines.append("")
    errs = e["max_rel_error_vs_backprop"]
    lines.append("numerical_gradient vs backprop (worst tensor's max |n - a| / max |a|): "
                 + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python bench/bench_conventions.py FILE.json`` prints the Markdown table."""
    from summarize import json_to_markdown  # (bench/summarize.py: the same command line for every table)

    return json_to_markdown(summary, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

"""``check_function`` with a jitted loss against scipy's and torch's checkers, per entry checked, P = 1e3..1e6.

Run in CI:   pytest bench/bench_check_function.py --benchmark-disable   (P = 1e3 and 1e4, one round each, asserted)
Full sweep (about 6 minutes on the project's 2 cores; torch's test runs only where torch is installed)::

    FASTGRAD_BENCH_CHECK_FUNCTION_SIZES=1e3,1e4,1e5,1e6 pytest bench/bench_check_function.py --benchmark-json=cf.json
    python bench/bench_check_function.py cf.json          # the Markdown tables (bench/results/*-check-function.md)

The loss, ``f(params, c) = sum(c * w / sqrt(1 + w**2)) + sum(w)**2 / P`` with ``params = (w,)``, ``w`` and ``c``
of shape ``(P / 1000, 1000)``, is smooth, costs O(P) per evaluation (one pass, no allocation) and couples
every entry to every other (the second term), so no checker can evaluate it more cheaply after moving one
entry. Its algebraic sigmoid, rather than ``tanh``, keeps the jitted loop and its NumPy twin at about the
same cost per evaluation (Numba's scalar ``tanh`` was 5x slower than NumPy's vectorised one here), so that
the tools are compared, not two ``tanh`` implementations. A full per-entry check of such an ``f`` costs
O(P^2), so every tool checks the **same 1000 entries** (``ENTRIES``; all of them at P = 1000): the sample
``check_function(..., sample=1000, seed=0)`` draws (a 2-D ``w``: a 1-D tensor counts as a bias and is always
checked in full), the others held fixed. Per size, the rounds interleave (as in ``bench_threads.py``, so that
the shared machine's drift hits all alike):

- ``fastgrad_1``, ``fastgrad_all``: ``check_function(f, w, g, args=(c,), sample=1000, seed=0, threads=n)``
  for n = 1 and all threads; ``f`` is the ``@numba.njit`` loss, evaluated inside the parallel kernel
  (``fastgrad/_kernels/function_loop.py``): 4 evaluations per entry (+-h, +-2h: the central difference and
  the second differences that find kinks) and 17 more for the point and the budget's noise (counted with a
  Python ``f``: 4,017 for 1,000 entries);
- ``reference_1``, ``reference_all``: the latency reference kernel of ``bench_threads.py`` (an ideal parallel
  loop), sized like the 1-thread check (at most ``REFERENCE_SECONDS``): what parallelism the machine gave
  in that round;
- ``approx_fprime``: ``scipy.optimize.approx_fprime`` (forward differences, scipy's default step) of
  ``x -> f`` with the 1000 entries set from ``x``: one evaluation per entry (+1), each a call of the same
  jitted ``f`` from Python (``f_seconds_jitted`` beside the NumPy twin's ``f_seconds_numpy``);
- ``check_grad``: ``scipy.optimize.check_grad`` of the same function and its gradient: ``approx_fprime``'s
  work plus one gradient, and it returns one number, ``||numerical - gradient||``, not a per-entry verdict;
- for P <= ``WHOLE_MAX`` also ``approx_fprime_whole`` and ``check_grad_whole``: the tools as usually called,
  on the whole vector (P evaluations of O(P), hence their O(P^2)); their entries per second (P / time) show
  the 1000-entry figures are what the whole run gets per entry.

``test_torch_gradcheck`` times ``torch.autograd.gradcheck`` (``fast_mode=False``, central differences, torch
on one thread) of a torch version of the same loss as a function of the same 1000 entries, interleaved with
``fastgrad_1``; it is skipped where torch is not installed. Its autograd gradient is asserted equal to the
exact one first, so gradcheck checks the same gradient.

``extra_info``: the medians, entries checked per second of every tool, the ratios (``check_function``'s
entries per second / the peer's), the parallel efficiency ``rate(all) / (threads * rate(1))`` beside the
reference's, each tool's max error against the exact gradient. ``fastgrad_ratio``, ``reference_ratio``
and ``efficiency_vs_reference`` are what ``bench/summarize.py`` prints for the thread scaling. The
benchmark's own time is the whole experiment and means nothing. Every run asserts the results, never the
speed: the check passes on the exact gradient with no inconclusive entry and fails on exactly the entry of
a wrong one; 1 and all threads give bitwise the same numerical gradient; the peers' numerical gradients
agree with the exact one.

Environment: ``FASTGRAD_BENCH_CHECK_FUNCTION_SIZES``, comma-separated P (multiples of 1000 above 1000;
default ``1e3,1e4``).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
from bench_threads import reference_kernel  # the latency reference, timed in the same rounds
from numba import njit

import fastgrad
from fastgrad._config import threads_context

SIZES = [int(float(s)) for s in os.environ.get("FASTGRAD_BENCH_CHECK_FUNCTION_SIZES", "1e3,1e4").split(",")]
#: Entries every tool checks (each its own way), the same ones; all of them when P is smaller.
ENTRIES = 1000
#: Columns of w (P / COLUMNS rows).
COLUMNS = 1000
SEED = 0
#: Whole-vector scipy runs (P evaluations of O(P)) up to this P.
WHOLE_MAX = 10_000
#: The reference kernel's 1-thread time is the 1-thread check's, at most this.
REFERENCE_SECONDS = 1.0
REFERENCE_TASKS = 64
#: torch.autograd.gradcheck's step and tolerances (as bench_engines.py's peer).
TORCH_EPS, TORCH_ATOL, TORCH_RTOL = 1e-4, 1e-5, 1e-3
#: A peer's numerical gradient must agree with the exact one to this, relative to the exact one's largest entry
#: (loose: scipy's forward differences with step 1.5e-8 lose about 1e-11 / 1.5e-8 to the rounding of f's sum
#: of P terms at P = 1e6).
PEER_RTOL = 5e-2


def _rounds(P: int) -> int:
    """Interleaved rounds when timed."""
    return 15 if P <= 10_000 else 7 if P <= 100_000 else 5


@njit(nogil=True)
def coupled_loss(params, c):
    """``sum(c * w / sqrt(1 + w**2)) + sum(w)**2 / P``, ``params = (w,)``, w 2-D; one pass, no allocation."""
    (w,) = params
    total = 0.0
    s = 0.0
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            x = w[i, j]
            total += c[i, j] * x / np.sqrt(1.0 + x * x)
            s += x
    return total + s * s / w.size


def numpy_loss(w, c):
    """:func:`coupled_loss` in NumPy (its twin: the loss a scipy user would more likely have)."""
    return float(np.sum(c * w / np.sqrt(1.0 + w * w)) + w.sum() ** 2 / w.size)


def coupled_gradient(w, c):
    """The exact gradient of :func:`coupled_loss`, shaped like ``w``."""
    return c / (1.0 + w * w) ** 1.5 + 2.0 * w.sum() / w.size


def _problem(P: int):
    if P <= COLUMNS:
        shape = (1, P)
    elif P % COLUMNS == 0:
        shape = (P // COLUMNS, COLUMNS)
    else:
        raise ValueError(f"FASTGRAD_BENCH_CHECK_FUNCTION_SIZES: P = {P} must be at most {COLUMNS} or a multiple")
    rng = np.random.default_rng(SEED)
    w = rng.normal(size=shape)
    c = rng.normal(size=shape)
    return w, c, coupled_gradient(w, c)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best_per_call(fn, target: float = 0.05) -> float:
    """Seconds per call of ``fn``, best of 3 batches of about ``target`` seconds."""
    n = max(1, int(target / max(_seconds(fn), 1e-7)))
    return min(_seconds(lambda: [fn() for _ in range(n)]) / n for _ in range(3))


def _check(w, c, g, n_threads):
    return fastgrad.check_function(coupled_loss, w, g, args=(c,), sample=ENTRIES, seed=SEED, threads=n_threads)


def _assert_passes(result, n_entries):
    assert result.passed, str(result)
    assert len(result.inconclusive) == 0, str(result)
    assert int(result.checked[0].sum()) == n_entries


class _ScipyProblem:
    """``f`` and its gradient as functions of the checked entries (the others fixed), called from Python."""

    def __init__(self, w, c, indices):
        self.c, self.indices = c, indices
        self.work = w.copy()
        self.flat = self.work.reshape(-1)  # a view: setting it moves the entries of work
        self.params = (self.work,)
        self.x0 = w.reshape(-1)[indices].copy()

    def f(self, x):
        self.flat[self.indices] = x
        return coupled_loss(self.params, self.c)

    def grad(self, x):
        self.flat[self.indices] = x
        return coupled_gradient(self.work, self.c).reshape(-1)[self.indices]


def _peer_error(numerical, exact) -> float:
    error = float(np.max(np.abs(numerical - exact)))
    assert error <= PEER_RTOL * float(np.max(np.abs(exact))), error
    return error


@pytest.mark.parametrize("P", SIZES, ids=[f"P={p:.0e}".replace("+0", "") for p in SIZES])
def test_check_function_vs_scipy(benchmark, P, max_threads):
    optimize = pytest.importorskip("scipy.optimize")
    w, c, g = _problem(P)
    n_entries = min(P, ENTRIES)
    rounds = 1 if getattr(benchmark, "disabled", False) else _rounds(P)  # CI: the assertions, not the numbers
    threads = sorted({1, max_threads})

    # warm up (compiles the kernel for coupled_loss, in memory) and pin the entries every tool checks
    first_call_seconds = _seconds(lambda: _check(w, c, g, max_threads))
    first = {n: _check(w, c, g, n) for n in threads}
    for result in first.values():
        _assert_passes(result, n_entries)
    checked = first[1].checked[0].reshape(-1)
    indices = np.flatnonzero(checked)
    numerical = first[1].numerical[0].reshape(-1)[indices]
    exact = g.reshape(-1)[indices]
    # a wrong entry is found, and only it
    wrong = g.copy()
    bad = int(indices[n_entries // 2])
    wrong.reshape(-1)[bad] += 1e-3 * max(1.0, abs(wrong.reshape(-1)[bad]))
    result = _check(w, c, wrong, max_threads)
    assert not result.passed and np.flatnonzero(result.failed[0].reshape(-1)).tolist() == [bad], str(result)

    sp = _ScipyProblem(w, c, indices)
    whole = P <= WHOLE_MAX
    shape = w.shape

    def f_whole(x):
        return coupled_loss((x.reshape(shape),), c)

    def g_whole(x):
        return coupled_gradient(x.reshape(shape), c).reshape(-1)

    f_seconds_jitted = _best_per_call(lambda: coupled_loss((w,), c))
    f_seconds_numpy = _best_per_call(lambda: numpy_loss(w, c))
    out = np.empty(REFERENCE_TASKS)
    reference_kernel(out, 10)
    with threads_context(1):
        probe = _seconds(lambda: reference_kernel(out, 100_000))
    one_check = _seconds(lambda: _check(w, c, g, 1))
    steps = max(10, int(100_000 * min(one_check, REFERENCE_SECONDS) / max(probe, 1e-9)))

    keys = [f"fastgrad_{n}" for n in ("1", "all")] + ["reference_1", "reference_all", "approx_fprime", "check_grad"]
    if whole:
        keys += ["approx_fprime_whole", "check_grad_whole"]
    times: dict[str, list[float]] = {key: [] for key in keys}
    errors: dict[str, float] = {"fastgrad": float(np.max(np.abs(numerical - exact)))}

    def timed(key, fn):
        start = time.perf_counter()
        value = fn()
        times[key].append(time.perf_counter() - start)
        return value

    def experiment():
        for _ in range(rounds):
            for key, n in (("1", 1), ("all", max_threads)):
                result = timed(f"fastgrad_{key}", lambda: _check(w, c, g, n))
                _assert_passes(result, n_entries)
                got = result.numerical[0].reshape(-1)[indices]
                assert np.array_equal(got.view(np.int64), numerical.view(np.int64)), "not bitwise equal"
            for key, n in (("1", 1), ("all", max_threads)):
                with threads_context(n):
                    timed(f"reference_{key}", lambda: reference_kernel(out, steps))
            approx = timed("approx_fprime", lambda: optimize.approx_fprime(sp.x0.copy(), sp.f))
            errors["approx_fprime"] = _peer_error(approx, exact)
            norm = timed("check_grad", lambda: optimize.check_grad(sp.f, sp.grad, sp.x0.copy()))
            assert norm <= PEER_RTOL * float(np.linalg.norm(exact)), norm
            errors["check_grad_norm"] = float(norm)
            if whole:
                x0 = w.reshape(-1).copy()
                approx = timed("approx_fprime_whole", lambda: optimize.approx_fprime(x0, f_whole))
                errors["approx_fprime_whole"] = _peer_error(approx, g.reshape(-1))
                norm = timed("check_grad_whole", lambda: optimize.check_grad(f_whole, g_whole, x0))
                assert norm <= PEER_RTOL * float(np.linalg.norm(g)), norm

    benchmark.group = "check_function vs scipy"
    benchmark.pedantic(experiment, rounds=1, iterations=1)
    med = {key: float(np.median(v)) for key, v in times.items()}
    rate = {key: n_entries / t for key, t in med.items() if not key.startswith("reference")}
    if whole:
        rate["approx_fprime_whole"] = P / med["approx_fprime_whole"]
        rate["check_grad_whole"] = P / med["check_grad_whole"]
    fastgrad_ratio = med["fastgrad_1"] / med["fastgrad_all"]
    reference_ratio = med["reference_1"] / med["reference_all"]
    benchmark.extra_info.update(
        label=f"check_function (jitted f, {n_entries:,} entries) vs scipy",
        role="scaling",  # (bench/summarize.py: not a row of the engines' tables; its thread-scaling line)
        n_params=P,
        entries=n_entries,
        rounds=rounds,
        threads=max_threads,
        first_call_seconds=first_call_seconds,  # includes compiling the kernel for coupled_loss (in memory)
        f_seconds_jitted=f_seconds_jitted,  # one evaluation called from Python
        f_seconds_numpy=f_seconds_numpy,
        medians_seconds=med,
        entries_per_second=rate,
        # seconds per evaluation of f inside check_function (4 per entry) and approx_fprime (1 per entry)
        fastgrad_1_seconds_per_evaluation=med["fastgrad_1"] / (4 * n_entries),
        approx_fprime_seconds_per_evaluation=med["approx_fprime"] / (n_entries + 1),
        speedup_vs_approx_fprime={n: rate[f"fastgrad_{n}"] / rate["approx_fprime"] for n in ("1", "all")},
        speedup_vs_check_grad={n: rate[f"fastgrad_{n}"] / rate["check_grad"] for n in ("1", "all")},
        fastgrad_ratio=fastgrad_ratio,
        reference_ratio=reference_ratio,
        efficiency=fastgrad_ratio / max_threads,
        reference_efficiency=reference_ratio / max_threads,
        efficiency_vs_reference=fastgrad_ratio / reference_ratio,
        max_abs_error=errors,
        max_abs_exact=float(np.max(np.abs(exact))),
        reference_steps=steps,
    )
    assert all(v > 0 for v in med.values())


@pytest.mark.parametrize("P", SIZES, ids=[f"P={p:.0e}".replace("+0", "") for p in SIZES])
def test_torch_gradcheck(benchmark, P):
    torch = pytest.importorskip("torch")
    from fastgrad.bench import peer_threads

    w, c, g = _problem(P)
    n_entries = min(P, ENTRIES)
    rounds = 1 if getattr(benchmark, "disabled", False) else _rounds(P)
    first = _check(w, c, g, 1)  # (compiles) and the entries
    _assert_passes(first, n_entries)
    indices = np.flatnonzero(first.checked[0].reshape(-1))
    exact = g.reshape(-1)[indices]

    base = torch.tensor(w.reshape(-1))
    ct = torch.tensor(c.reshape(-1))
    where = torch.tensor(indices, dtype=torch.int64)

    def loss(x):  # the same loss, as a function of the checked entries (out of place: differentiable in x)
        v = base.index_put((where,), x)
        return (ct * v / torch.sqrt(1.0 + v * v)).sum() + v.sum() ** 2 / P

    x0 = base[where].clone().requires_grad_(True)
    value = loss(x0)
    assert abs(float(value.detach()) - coupled_loss((w,), c)) <= 1e-12 * max(1.0, float(np.sum(np.abs(c))))
    (autograd,) = torch.autograd.grad(value, x0)
    np.testing.assert_allclose(autograd.numpy(), exact, rtol=1e-9, atol=1e-12)  # gradcheck checks this gradient
    times: dict[str, list[float]] = {"fastgrad_1": [], "gradcheck": []}

    def experiment():
        for _ in range(rounds):
            start = time.perf_counter()
            result = _check(w, c, g, 1)
            times["fastgrad_1"].append(time.perf_counter() - start)
            _assert_passes(result, n_entries)
            with peer_threads(1, torch):
                start = time.perf_counter()
                ok = torch.autograd.gradcheck(loss, (x0,), eps=TORCH_EPS, atol=TORCH_ATOL, rtol=TORCH_RTOL,
                                              fast_mode=False)
                times["gradcheck"].append(time.perf_counter() - start)
            assert ok

    benchmark.group = "check_function vs torch"
    benchmark.pedantic(experiment, rounds=1, iterations=1)
    med = {key: float(np.median(v)) for key, v in times.items()}
    rate = {key: n_entries / t for key, t in med.items()}
    benchmark.extra_info.update(
        label=f"check_function (jitted f, {n_entries:,} entries) vs torch.autograd.gradcheck",
        role="scaling",
        n_params=P,
        entries=n_entries,
        rounds=rounds,
        threads=1,
        torch_version=torch.__version__,
        torch_threads=1,
        medians_seconds=med,
        entries_per_second=rate,
        speedup_vs_gradcheck=rate["fastgrad_1"] / rate["gradcheck"],
    )


# ---------------------------------------------------------------------------------------------- the summary
def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None else f"{x:,.0f}" if x >= 10 ** digits else f"{x:.{digits}g}"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs" if seconds >= 1e-4 else f"{seconds * 1e6:.1f} µs"


def summary(data: dict) -> str:
    """The Markdown tables of a pytest-benchmark JSON of this file."""
    mi = data.get("machine_info") or {}
    cpu = (mi.get("cpu") or {}).get("brand_raw") or mi.get("processor") or "?"
    commit = (data.get("commit_info") or {}).get("id", "")[:10]
    lines = ["# check_function against scipy and torch", "",
             f"Machine: cpu {cpu}, cores {mi.get('cpu_count')}, numba {mi.get('numba_version')}, "
             f"numba threads {mi.get('numba_num_threads')}, threading layer {mi.get('numba_threading_layer')}, "
             f"numpy {mi.get('numpy_version')}, python {mi.get('python_version')}, run {data.get('datetime')}"
             + (f", commit {commit}" if commit else ""), ""]
    scipy_rows = [b for b in data.get("benchmarks", []) if b.get("group") == "check_function vs scipy"]
    torch_rows = [b for b in data.get("benchmarks", []) if b.get("group") == "check_function vs torch"]
    if scipy_rows:
        T = scipy_rows[0]["extra_info"]["threads"]
        lines += [
            "Entries checked per second (the same entries for every tool; median of the interleaved rounds). "
            "check_function: the jitted f in its kernel, 4 evaluations per entry; scipy: the same jitted f "
            "called from Python, 1 evaluation per entry (forward differences).", "",
            f"| P | entries | rounds | one f from Python: jitted / NumPy twin | check_function, 1 thread | "
            f"check_function, {T} threads | scipy approx_fprime | approx_fprime, whole vector | scipy check_grad | "
            f"check_grad, whole vector | check_function (1 / {T} thr) ÷ approx_fprime | "
            f"check_function (1 / {T} thr) ÷ check_grad |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for b in scipy_rows:
            e = b["extra_info"]
            r = e["entries_per_second"]
            sa, sc = e["speedup_vs_approx_fprime"], e["speedup_vs_check_grad"]
            lines.append(
                f"| {e['n_params']:,} | {e['entries']:,} | {e['rounds']} | "
                f"{_us(e['f_seconds_jitted'])} / {_us(e['f_seconds_numpy'])} | {_fmt(r['fastgrad_1'])} | "
                f"{_fmt(r['fastgrad_all'])} | {_fmt(r['approx_fprime'])} | {_fmt(r.get('approx_fprime_whole'))} | "
                f"{_fmt(r['check_grad'])} | {_fmt(r.get('check_grad_whole'))} | "
                f"{sa['1']:.2f}× / {sa['all']:.2f}× | {sc['1']:.2f}× / {sc['all']:.2f}× |")
        lines += [
            "", f"Parallel efficiency ({T} threads vs 1, interleaved rounds) and accuracy:", "",
            f"| P | check_function 1 thread, s | {T} threads, s | ratio | efficiency | reference kernel ratio "
            f"(same rounds) | efficiency ÷ reference's | s per evaluation in check_function (1 thr) | "
            f"s per evaluation in approx_fprime | max abs error: check_function / approx_fprime "
            f"(max abs gradient) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for b in scipy_rows:
            e = b["extra_info"]
            m, err = e["medians_seconds"], e["max_abs_error"]
            lines.append(
                f"| {e['n_params']:,} | {m['fastgrad_1']:.4g} | {m['fastgrad_all']:.4g} | "
                f"{e['fastgrad_ratio']:.2f}× | {e['efficiency']:.0%} | {e['reference_ratio']:.2f}× | "
                f"{e['efficiency_vs_reference']:.0%} | {_us(e['fastgrad_1_seconds_per_evaluation'])} | "
                f"{_us(e['approx_fprime_seconds_per_evaluation'])} | {err['fastgrad']:.1e} / "
                f"{err['approx_fprime']:.1e} ({e['max_abs_exact']:.2g}) |")
    if torch_rows:
        lines += ["", "| P | entries | check_function, 1 thread (entries/s) | torch.autograd.gradcheck, 1 thread "
                  "(entries/s) | ratio |", "|---|---|---|---|---|"]
        for b in torch_rows:
            e = b["extra_info"]
            r = e["entries_per_second"]
            lines.append(f"| {e['n_params']:,} | {e['entries']:,} | {_fmt(r['fastgrad_1'])} | "
                         f"{_fmt(r['gradcheck'])} | {e['speedup_vs_gradcheck']:.2f}× |")
    else:
        lines += ["", "torch.autograd.gradcheck: not in this run (torch not installed: test_torch_gradcheck skipped)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python bench/bench_check_function.py FILE.json`` prints the tables."""
    from summarize import json_to_markdown  # (bench/summarize.py: the same command line for every table)

    return json_to_markdown(summary, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

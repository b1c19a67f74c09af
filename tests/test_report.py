"""Reporting a result: the worst failures selected in O(P), built on demand; JSON-safe ``to_dict``.

Results are built directly (``CheckResult(...)``) where the test is about the
reporting alone: any size, any hostile value, no numerical gradient to wait for.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tracemalloc

import numpy as np
import pytest

import fastgrad
import fastgrad.entries as entries_module
import fastgrad.result as result_module
from fastgrad import cli
from fastgrad.result import CheckResult, Failure, TensorSummary

SHAPES = [(7, 5), (5,), (3, 7), (3,)]
NAMES = ["W1", "b1", "W2", "b2"]


def make_result(analytic, numerical, failed, *, budget=None, rel=None, ratio=None, rtol=1e-5, atol=1e-8,
                names=None, verdict="budget", **extra):
    """A CheckResult over the given per-tensor arrays (summaries filled in roughly; only counts matter here)."""
    names = names or [f"T{k}" for k in range(len(analytic))]
    summaries = [
        TensorSummary(name=name, shape=np.shape(a), passed=not np.any(f) if np.asarray(f).dtype == bool else
                      not len(f), n_failed=int(np.count_nonzero(f)) if np.asarray(f).dtype == bool else len(f),
                      max_rel_error=float("nan"), worst_index=(0,) * np.ndim(a), worst_analytic=float("nan"),
                      worst_numerical=float("nan"))
        for name, a, f in zip(names, analytic, failed)
    ]
    return CheckResult(
        passed=not any(s.n_failed for s in summaries), max_rel_error=float("nan"), tensors=summaries,
        analytic=analytic, numerical=numerical, rel_error=rel if rel is not None else [], rtol=rtol, atol=atol,
        verdict=verdict, budget=budget if budget is not None else [], budget_ratio=ratio if ratio is not None else [],
        failed=failed, **extra,
    )


def reference_ranking(result):
    """Every failing entry as (tensor number, flat index), the old way: a full stable sort, NaN first."""
    found = []
    for t, (r, f) in enumerate(zip(result.rel_error, result.failed)):
        for i in np.flatnonzero(np.asarray(f).ravel()):
            found.append((float(r.flat[i]), t, int(i)))
    found.sort(key=lambda item: (not math.isnan(item[0]), -item[0] if not math.isnan(item[0]) else 0.0))
    return [(t, i) for _, t, i in found]


def rel_of(a, n, rtol, atol):
    """fastgrad.check's relative error (``fastgrad.relative_error``): 0 where a == n, inf where not finite."""
    return fastgrad.relative_error(np.asarray(a, dtype=float), np.asarray(n, dtype=float), rtol, atol)


def ratio_of(a, n, budget):
    """fastgrad.check's budget ratio |a - n| / budget, inf where either side is not finite."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        ratio = np.abs(a - n) / budget
    ratio[~(np.isfinite(a) & np.isfinite(n))] = np.inf
    return ratio


def same(failures, expected):
    """Equal lists of failures, NaN fields equal to NaN."""
    return [repr(f) for f in failures] == [repr(f) for f in expected]


def random_result(rng, shapes=SHAPES, p_fail=0.6):
    """Failing entries with many ties (values on a coarse grid), NaN and inf numerical values."""
    analytic = [np.round(rng.normal(size=s), 1) for s in shapes]
    numerical = [np.round(a + rng.choice([0.0, 0.1, 0.2, 1.0], size=s), 1) for a, s in zip(analytic, shapes)]
    numerical[0].flat[3] = np.nan
    numerical[2].flat[0] = np.inf
    numerical[2].flat[5] = np.nan
    rtol, atol = 1e-5, 1e-8
    rel = [rel_of(a.ravel(), n.ravel(), rtol, atol).reshape(a.shape)
           for a, n in zip(analytic, numerical)]
    rel[1].flat[2] = np.nan  # a stored NaN relative error (hostile) ranks first
    failed = [(rng.uniform(size=s) < p_fail) | np.isnan(r) for s, r in zip(shapes, rel)]
    budget = [rng.uniform(1e-3, 1e-2, size=s) for s in shapes]
    ratio = [ratio_of(a, n, b) for a, n, b in zip(analytic, numerical, budget)]
    return make_result(analytic, numerical, failed, budget=budget, rel=rel, ratio=ratio, rtol=rtol, atol=atol,
                       names=NAMES)


# ----------------------------------------------------------- worst-k selection


@pytest.mark.parametrize("piece", [3, 1 << 20])
def test_worst_failures_equal_a_full_stable_sort(rng, monkeypatch, piece):
    """Any k, any slice: the same entries in the same order as sorting them all (ties in parameter order)."""
    # piece 3: many pieces, each keeping its own k worst
    monkeypatch.setattr(entries_module, "RANK_PIECE", piece)  # where the ranking reads it
    result = random_result(rng)
    expected = reference_ranking(result)
    n = len(expected)
    assert len(result.failures) == n == sum(int(np.count_nonzero(f)) for f in result.failed)
    everything = result.worst_failures(None)
    assert [(NAMES.index(f.tensor), int(np.ravel_multi_index(f.index, SHAPES[NAMES.index(f.tensor)])))
            for f in everything] == expected
    assert math.isnan(everything[0].rel_error)
    for k in [0, 1, 2, 3, 7, n - 1, n, n + 5]:
        assert same(result.worst_failures(k), everything[:k])
    view = result.failures
    assert same(list(view), everything)
    for s in [slice(None, 3), slice(4, 11, 3), slice(-4, None), slice(None, None, -1), slice(n + 1, None)]:
        assert same(view[s], everything[s])
    for i in [0, 5, n - 1, -1, -n]:
        assert same([view[i]], [everything[i]])
    with pytest.raises(IndexError):
        view[n]
    cols = view.arrays(5)
    assert [(int(t), int(i)) for t, i in zip(cols["tensor"], cols["flat_index"])] == expected[:5]
    np.testing.assert_array_equal(cols["budget_ratio"], [f.budget_ratio for f in everything[:5]])


def test_ranking_needs_only_analytic_numerical_budget_and_failed_indices(rng):
    """Without stored rel/ratio arrays and with failed entries as index arrays: the same failures, same bits."""
    stored = random_result(rng)
    stored.rel_error[1].flat[2] = rel_of(  # no hostile NaN: on-demand values must agree
        stored.analytic[1].flat[2:3], stored.numerical[1].flat[2:3], stored.rtol, stored.atol)[0]
    lean = make_result(stored.analytic, stored.numerical, [np.flatnonzero(f) for f in stored.failed],
                       budget=stored.budget, names=NAMES)
    assert vars(lean)["_rel_error"] == [] and vars(lean)["_budget_ratio"] == []  # not stored (see result._Derived)
    assert len(lean.failures) == len(stored.failures)
    assert same(lean.worst_failures(None), stored.worst_failures(None))
    assert same(lean.failures[:4], stored.failures[:4])


def test_a_real_check_ranks_as_before(make_case):
    net, params, X, Y = make_case([4, 6, 3], "tanh", "sigmoid", "mse", N=6)
    grads = net.backprop(params, X, Y)
    grads = [g * np.linspace(0.5, 2.0, g.size).reshape(g.shape) for g in grads]
    result = fastgrad.check(net, params, X, Y, grads)
    assert result.n_failed == len(result.failures) > 10
    everything = result.worst_failures(None)
    at = [(NAMES.index(f.tensor), int(np.ravel_multi_index(f.index, net.param_shapes[NAMES.index(f.tensor)])))
          for f in everything]
    assert at == reference_ranking(result)
    assert everything[0].rel_error == result.max_rel_error
    view = result.failures
    assert view == everything and view == tuple(everything) and view == result.failures
    assert view != everything[:-1] and view != everything[::-1] and view != "not a list"
    for f in everything:
        k = NAMES.index(f.tensor)
        assert f.budget == result.budget[k][f.index] and f.budget_ratio == result.budget_ratio[k][f.index]
        assert f.rel_error == result.rel_error[k][f.index]
    # without the stored rel/ratio arrays and with index lists for masks: the same bits as check's kernel
    lean = dataclasses.replace(result, rel_error=[], budget_ratio=[],
                               failed=[np.flatnonzero(f) for f in result.failed])
    assert lean.worst_failures(None) == everything and lean.failures[:5] == everything[:5]


def test_passing_result_has_no_failures(make_case):
    net, params, X, Y = make_case([3, 4, 2], "sigmoid", "sigmoid", "mse")
    result = fastgrad.check(net, params, X, Y)
    assert result.passed
    assert result.failures == [] and not result.failures and len(result.failures) == 0
    assert result.worst_failures(3) == [] and result.to_dict()["failures"] == []
    assert isinstance(result.failures, result_module.FailureView)


class CountingFailure(Failure):
    built = 0

    def __init__(self, *args, **kwargs):
        type(self).built += 1
        super().__init__(*args, **kwargs)


def all_failing(P, T=3, seed=0):
    """P entries over T tensors, every one failing (numerical = analytic + noise), like a zero gradient."""
    rng = np.random.default_rng(seed)
    sizes = [P // T] * (T - 1) + [P - (P // T) * (T - 1)]
    analytic = [rng.normal(size=(s,)) for s in sizes]
    numerical = [a + rng.uniform(0.5, 1.5, size=a.shape) for a in analytic]
    budget = [np.full(a.shape, 1e-12) for a in analytic]
    rel = [rel_of(a, n, 1e-5, 1e-8) for a, n in zip(analytic, numerical)]
    ratio = [np.abs(a - n) / b for a, n, b in zip(analytic, numerical, budget)]
    failed = [np.ones(a.shape, dtype=bool) for a in analytic]
    return make_result(analytic, numerical, failed, budget=budget, rel=rel, ratio=ratio, safety=10.0)


def test_only_the_failures_shown_are_built(monkeypatch):
    """failures[:3], str and to_dict build 3, 10 and 100 Failure objects, not one per failing entry."""
    monkeypatch.setattr(entries_module, "Failure", CountingFailure)  # where the views build them
    result = all_failing(30_000)

    def built(action):
        CountingFailure.built = 0
        out = action()
        return CountingFailure.built, out

    assert built(lambda: len(result.failures)) == (0, 30_000)
    n, worst = built(lambda: result.failures[:3])
    assert n == 3 and len(worst) == 3
    assert worst[0].rel_error == max(float(r.max()) for r in result.rel_error)
    assert built(lambda: result.failures[0])[0] == 1
    assert built(lambda: result.worst_failures(3))[0] == 3
    n, text = built(lambda: str(result))
    assert n <= 10 and "worst failing entries (10 of 30000)" in text
    n, doc = built(lambda: result.to_dict())
    assert n <= 100 and len(doc["failures"]) == 100 and doc["n_failed"] == 30_000
    n, cols = built(lambda: result.failures.arrays())
    assert n == 0 and cols["rel_error"].shape == (30_000,)


def test_selecting_the_worst_few_allocates_a_bounded_amount():
    """Worst-3 of 3 M failing entries: temporaries of a few pieces, not a Python object per entry."""
    result = all_failing(3_000_000)
    tracemalloc.start()
    try:
        worst = result.worst_failures(3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(worst) == 3
    assert peak < 64e6, f"peak {peak / 1e6:.0f} MB"  # one failing entry as a Python tuple alone is ~100 B


# ------------------------------------------------------------------ JSON safety


def _strict(doc):
    """Serialise with allow_nan=False and parse back refusing NaN/Infinity constants."""
    text = json.dumps(doc, allow_nan=False)

    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


def hostile_result():
    nan, inf = float("nan"), float("inf")
    analytic = [np.array([[nan, 1.0], [inf, -inf]]), np.array([0.0, 2.0], dtype=np.float32)]
    numerical = [np.array([[0.5, nan], [inf, 1e308]]), np.array([nan, np.float32(3.0)], dtype=np.float32)]
    budget = [np.array([[inf, nan], [0.0, 1e-300]]), np.array([nan, inf])]
    rel = [np.full((2, 2), nan), np.array([inf, nan])]
    ratio = [np.array([[nan, inf], [-inf, nan]]), np.array([inf, nan])]
    failed = [np.ones((2, 2), dtype=bool), np.ones(2, dtype=bool)]
    result = make_result(analytic, numerical, failed, budget=budget, rel=rel, ratio=ratio, names=["W1", "b1"],
                         rtol=inf, atol=nan, eps=np.float32(nan), loss=-inf, seconds=nan, safety=np.float64(inf),
                         n_samples=np.int64(3), forward_passes=np.int64(7), notes=["a note"])
    result.tensors[0] = TensorSummary(
        name="W1", shape=(np.int64(2), np.int64(2)), passed=np.bool_(False), n_failed=np.int64(4),
        max_rel_error=nan, worst_index=(np.int64(1), np.int32(0)), worst_analytic=np.float32(inf),
        worst_numerical=-inf, n_inconclusive=np.int64(0), max_budget_ratio=np.float64(nan), hint="h")
    result.inconclusive = [fastgrad.Inconclusive("b1", (np.int64(1),), "kink")]
    return result


def test_to_dict_is_strict_json_with_hostile_values():
    """NaN/inf anywhere (numerical values, budgets, ratios, loss, tolerances) and NumPy scalars: strict JSON."""
    result = hostile_result()
    doc = _strict(result.to_dict())
    for key in ["rtol", "atol", "eps", "loss", "seconds", "safety", "max_rel_error", "max_budget_ratio"]:
        assert doc[key] is None, key
    assert doc["n_samples"] == 3 and doc["forward_passes"] == 7 and doc["n_failed"] == 6
    W1 = doc["tensors"][0]
    assert W1["shape"] == [2, 2] and W1["worst_index"] == [1, 0] and W1["passed"] is False
    assert W1["worst_analytic"] is None and W1["worst_numerical"] is None and W1["max_rel_error"] is None
    assert len(doc["failures"]) == 6
    for f in doc["failures"]:
        for key in ["analytic", "numerical", "abs_error", "rel_error", "budget", "budget_ratio"]:
            assert f[key] is None or math.isfinite(f[key]), (key, f)
    assert any(f["analytic"] == 1.0 and f["numerical"] is None for f in doc["failures"])
    assert doc["inconclusive"] == [{"tensor": "b1", "index": [1], "reason": "kink"}]
    assert _strict(result.to_dict(max_failures=None))["failures"] == doc["failures"]
    assert _strict(result.to_dict(max_failures=2))["failures"] == doc["failures"][:2]
    assert "FAILED" in str(result)


def test_to_dict_of_a_check_with_nan_numerical_values(make_case):
    """A real result holding NaN numerical values (here put there by hand) serialises strictly."""
    net, params, X, Y = make_case([4, 5, 3], "sigmoid", "sigmoid", "mse")
    result = fastgrad.check(net, params, X, Y, [np.zeros(p.shape) for p in params])
    result.numerical[0][1, 2] = np.nan
    result.budget[1][0] = np.inf
    doc = _strict(result.to_dict())
    assert any(f["numerical"] is None for f in doc["failures"])


def test_cli_json_with_nan_numerical_values(tmp_path, capsys, monkeypatch, rng):
    """--json writes strict JSON (exit 1: failed) when the numerical gradient holds NaN, not exit 3."""
    net = fastgrad.MLP([20, 8, 3])
    params = [rng.normal(0.0, 0.5, size=shape) for shape in net.param_shapes]
    np.savez(tmp_path / "params.npz", **dict(zip(net.tensor_names, params)))
    np.savez(tmp_path / "data.npz", X=rng.standard_normal((5, 20)), Y=rng.uniform(size=(5, 3)))
    real_check = fastgrad.check

    def check_with_nan(*args, **kwargs):  # what an overflowing step gave before issue 12 item 2 was fixed
        result = real_check(*args, **kwargs)
        result.numerical[0][0, 0] = np.nan
        result.failed[0][0, 0] = True
        result.budget_ratio[0][0, 0] = np.inf
        result.rel_error[0][0, 0] = np.inf
        result.passed = False
        result.tensors[0] = TensorSummary(**{**vars(result.tensors[0]), "passed": False, "n_failed": 1,
                                             "worst_numerical": float("nan"), "max_budget_ratio": float("inf")})
        return result

    monkeypatch.setattr(fastgrad, "check", check_with_nan)
    out_json = tmp_path / "r.json"
    code = cli.main(["check", "--params", str(tmp_path / "params.npz"), "--data", str(tmp_path / "data.npz"),
                     "--json", str(out_json)])
    captured = capsys.readouterr()
    assert code == 1, captured.out + captured.err
    assert "Traceback" not in captured.err
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    doc = json.loads(out_json.read_text(encoding="utf-8"), parse_constant=no_constants)["result"]
    assert doc["failures"][0]["numerical"] is None and doc["failures"][0]["budget_ratio"] is None
    assert doc["tensors"][0]["worst_numerical"] is None

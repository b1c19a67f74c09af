"""check_function(method="directional"): one random projection per tensor, bisection to localise.

What must hold: a correct gradient of a 10^6-parameter Numba-jitted loss passes in at most 100 evaluations
of f (counted by f itself, and reported as ``forward_passes``); one entry off by 1e-3 among those 10^6 is
named, and nothing else fails; no false alarm on smooth functions at every scale; wrong entries in two
tensors both found (those method="central" finds); kinks inconclusive, never failed; entries no projection
can tell from zero are checked one by one or reported inconclusive, never passed silently.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from test_check_function import smooth_case

import fastgrad
from fastgrad import function_directional
from fastgrad._kernels.verdict import RESOLUTION
from fastgrad.function import FunctionModel

# ------------------------------------------------------------------ a million parameters, compiled by Numba
SHAPES = ((1000, 700), (299_990,), (10,))


@numba.njit
def _add(s, comp, term):
    """Neumaier's compensated sum: ``s + comp`` carries the sum to about one rounding."""
    t = s + term
    if abs(s) >= abs(term):
        comp += (s - t) + term
    else:
        comp += (term - t) + s
    return t, comp


@numba.njit
def million_loss(p, calls, compensated):
    """``sum log1p(a^2) + 0.1 a + sum 0.5 tanh(b) + 0.01 b^2`` plus a few couplings; ``calls[0]`` counts calls.

    ``compensated``: sum the 10^6 terms with Neumaier's compensation (else naively, as most code does).
    """
    calls[0] += 1
    a, b, c = p
    s = 0.0
    comp = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            x = a[i, j]
            term = math.log1p(x * x) + 0.1 * x
            if compensated:
                s, comp = _add(s, comp, term)
            else:
                s += term
    for i in range(b.shape[0]):
        term = 0.5 * math.tanh(b[i]) + 0.01 * b[i] * b[i]
        if compensated:
            s, comp = _add(s, comp, term)
        else:
            s += term
    s += comp
    s += c[0] * a[0, 0] * b[0] + math.sin(c[1] * b[1]) + 0.5 * (c[2] + c[3] + a[5, 5]) ** 2
    s += math.exp(0.1 * (c[4] - b[2]))
    for k in range(c.shape[0]):
        s += 0.25 * c[k] ** 4
    return s


@numba.njit
def million_grad(a, b, c):
    ga, gb, gc = np.empty_like(a), np.empty_like(b), np.empty_like(c)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            x = a[i, j]
            ga[i, j] = 2.0 * x / (1.0 + x * x) + 0.1
    for i in range(b.shape[0]):
        t = math.tanh(b[i])
        gb[i] = 0.5 * (1.0 - t * t) + 0.02 * b[i]
    for k in range(c.shape[0]):
        gc[k] = c[k] ** 3
    ga[0, 0] += c[0] * b[0]
    gb[0] += c[0] * a[0, 0]
    gc[0] += a[0, 0] * b[0]
    gb[1] += math.cos(c[1] * b[1]) * c[1]
    gc[1] += math.cos(c[1] * b[1]) * b[1]
    q = c[2] + c[3] + a[5, 5]
    gc[2] += q
    gc[3] += q
    ga[5, 5] += q
    e = math.exp(0.1 * (c[4] - b[2]))
    gc[4] += 0.1 * e
    gb[2] -= 0.1 * e
    return ga, gb, gc


def _million_case(seed=0):
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=SHAPES[0]), 2.0 * rng.normal(size=SHAPES[1]), rng.normal(size=SHAPES[2])
    return (a, b, c), million_grad(a, b, c)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_a_correct_gradient_of_a_million_parameters_passes_in_at_most_100_evaluations(seed):
    params, grads = _million_case()
    calls = np.zeros(1, dtype=np.int64)
    result = fastgrad.check_function(million_loss, params, grads, args=(calls, True), method="directional",
                                     seed=seed)
    assert result.passed, str(result)
    assert sum(t.size for t in result.tensors) == 10**6
    assert result.forward_passes == calls[0] <= 100  # measured: 43-55
    assert not result.inconclusive and result.n_checked < 20  # each tensor's largest entry, and a few more


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_one_wrong_entry_among_a_million_is_named_and_nothing_else_fails(seed):
    params, grads = _million_case()
    wrong = [g.copy() for g in grads]
    assert 0.5 < abs(grads[0][3, 4]) < 2.0  # an entry of typical size (the entries' median |g| is ~0.5)
    wrong[0][3, 4] *= 1 + 1e-3
    calls = np.zeros(1, dtype=np.int64)
    result = fastgrad.check_function(million_loss, params, wrong, args=(calls, True), method="directional",
                                     seed=seed)
    assert not result.passed and result.n_failed == 1, str(result)
    assert (result.failures[0].tensor, result.failures[0].index) == ("p0", (3, 4))
    assert not result.notes
    # 1 + 2 x 3 tensors, ~20 halvings of 4 evaluations, the two leaves, the largest entries: measured 131-137
    assert result.forward_passes == calls[0] <= 200


@pytest.mark.slow
def test_a_naively_summed_million_parameter_loss_passes_and_a_wrong_entry_is_named():
    """A running sum of 10^6 terms carries ~sqrt(k) u |E| of rounding in a projection moving k of them.

    The spread measures it (no false alarm), and the entries the big projections cannot resolve because
    of it are projected again in small groups, so the count stays low; a large projection vouches for each
    entry only to a few times what a single entry's central difference would, hence an error of 1e-2 here.
    """
    params, grads = _million_case()
    calls = np.zeros(1, dtype=np.int64)
    result = fastgrad.check_function(million_loss, params, grads, args=(calls, False), method="directional",
                                     seed=0)
    assert result.passed and result.forward_passes == calls[0] <= 100, str(result)  # measured: 65-73
    wrong = [g.copy() for g in grads]
    wrong[1][123_456] *= 1 + 1e-2
    result = fastgrad.check_function(million_loss, params, wrong, args=(calls, False), method="directional",
                                     seed=0)
    assert [(f.tensor, f.index) for f in result.failures] == [("p1", (123_456,))], str(result)


# ------------------------------------------------------------------ families of smooth functions
def _mixed_units_case(seed):
    """A random smooth loss of a few hundred to a few thousand parameters in three tensors, and its gradient.

    ``scale * (sum_j c_j phi_j(a_j . w + b_j) + sum_p e_p psi(w_p / m_p))``: sparse couplings through the
    ``phi_j``, an elementwise term in units ``m_p`` over four decades (so the parameters' truncations differ
    by orders of magnitude and a group's sums up), ``scale`` from 1e-3 to 1e3.
    """
    rng = np.random.default_rng((15, seed))
    sizes = [int(x) for x in rng.integers(1, 1000, size=3)]
    P, J = sum(sizes), int(rng.integers(1, 30))
    m = 10.0 ** rng.uniform(-2, 2, size=P)
    A = rng.normal(size=(J, P)) / np.sqrt(P) * (rng.random((J, P)) < 0.3) / m
    b, c, kinds, kind = rng.normal(size=J), rng.normal(size=J), rng.integers(0, 3, size=J), int(rng.integers(0, 3))
    e = rng.normal(size=P) * 10.0 ** rng.uniform(-2, 1, size=P)
    scale = float(10.0 ** rng.uniform(-3, 3))
    w0 = rng.normal(size=P) * m * 0.3

    def phi(k, x):  # values and derivatives
        if k == 0:
            return np.tanh(x), 1.0 - np.tanh(x) ** 2
        if k == 1:
            return np.exp(0.5 * x), 0.5 * np.exp(0.5 * x)
        return np.sin(x), np.cos(x)

    def flat(p):
        return np.concatenate([np.ravel(x) for x in p])

    def f(p):
        w = flat(p)
        z = A @ w + b
        return scale * float(sum(c[j] * phi(kinds[j], z[j])[0] for j in range(J)) + e @ phi(kind, w / m)[0])

    def grad(p):
        w = flat(p)
        z = A @ w + b
        d = np.array([c[j] * phi(kinds[j], z[j])[1] for j in range(J)])
        g = scale * (A.T @ d + e * phi(kind, w / m)[1] / m)
        return np.split(g, np.cumsum(sizes)[:-1])

    return f, np.split(w0, np.cumsum(sizes)[:-1]), grad


@pytest.mark.parametrize("block", range(4))
def test_no_false_alarm_on_smooth_functions_at_every_scale(block):
    bad = []
    for seed in range(50 * block, 50 * block + 50):
        f, params, grad = smooth_case(seed)
        result = fastgrad.check_function(f, params, grad(params), method="directional", seed=seed)
        if not result.passed:
            bad.append((seed, str(result)))
    assert not bad, bad[0]


def test_no_false_alarm_on_larger_functions_in_mixed_units():
    bad = []
    for seed in range(30):
        f, params, grad = _mixed_units_case(seed)
        result = fastgrad.check_function(f, params, grad(params), method="directional", seed=seed)
        if not result.passed or result.inconclusive:
            bad.append((seed, str(result)))
    assert not bad, bad[0]


def _names(result):
    return {(f.tensor, f.index) for f in result.failures}


def test_wrong_entries_in_two_tensors_are_both_found():
    both = 0
    for seed in range(40):
        f, params, grad = smooth_case(seed)
        g = grad(params)
        top = np.abs(np.concatenate(g)).max()
        picks = []
        for t in (0, 1):
            i = int(np.argsort(np.abs(g[t]))[-2 if g[t].size > 1 else -1])  # not the largest, where there is one
            if abs(g[t][i]) > 1e-3 * top:
                picks.append((t, i))
        if len(picks) < 2:
            continue
        wrong = [x.copy() for x in g]
        for t, i in picks:
            wrong[t][i] *= 1 + 1e-3
        central = fastgrad.check_function(f, params, wrong)
        result = fastgrad.check_function(f, params, wrong, method="directional", seed=seed)
        assert _names(result) == _names(central), (seed, str(result))
        both += _names(result) == {(f"p{t}", (i,)) for t, i in picks}
    assert both >= 20  # of 28 cases with two entries; central differences find both in as many


def test_wrong_entries_in_two_large_tensors_are_found_where_central_finds_them():
    """Two entries off by 1e-3 among hundreds, in tensors whose truncations sum up in a projection.

    A projection's truncation is the sum of its entries' (those in small units dominate), which hid a 1e-3
    error in another entry until such projections were also compared by extrapolation (``D(4h)``).
    """
    both = 0
    for seed in range(15):
        f, params, grad = _mixed_units_case(seed)
        g = grad(params)
        rng = np.random.default_rng(seed)
        wrong = [x.copy() for x in g]
        picks = set()
        for t in rng.choice(3, size=2, replace=False):
            i = int(rng.choice(np.flatnonzero(np.abs(g[t]) > 1e-2 * np.abs(g[t]).max())))
            wrong[t][i] *= 1 + 1e-3
            picks.add((f"p{t}", (i,)))
        central = fastgrad.check_function(f, params, wrong)
        result = fastgrad.check_function(f, params, wrong, method="directional", seed=seed)
        assert _names(result) == _names(central), (seed, str(result))
        assert not result.passed
        both += _names(result) == picks
    assert both >= 12


def test_forward_passes_count_every_evaluation_of_f():
    calls = []
    f0, params, grad = _mixed_units_case(3)

    def f(p):
        calls.append(1)
        return f0(p)

    g = grad(params)
    result = fastgrad.check_function(f, params, g, method="directional", seed=0)
    assert result.passed and result.forward_passes == len(calls) < 4 * sum(x.size for x in g) // 20
    wrong = [x.copy() for x in g]
    wrong[1][7] += 1e-2 * np.abs(g[1]).max()
    calls.clear()
    result = fastgrad.check_function(f, params, wrong, method="directional", seed=0)
    assert _names(result) == {("p1", (7,))} and result.forward_passes == len(calls)


def test_the_seed_makes_the_check_reproducible():
    f, params, grad = _mixed_units_case(5)
    g = grad(params)
    runs = [fastgrad.check_function(f, params, g, method="directional", seed=7) for _ in range(2)]
    assert runs[0].forward_passes == runs[1].forward_passes
    assert all(np.array_equal(a, b) for a, b in zip(runs[0].budget, runs[1].budget))
    other = fastgrad.check_function(f, params, g, method="directional", seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0].budget, other.budget))


# ------------------------------------------------------------------ what a projection cannot vouch for
def test_every_entry_is_checked_or_vouched_for_to_below_its_value():
    """``result.budget`` of an entry not checked is what its projection vouches for: it tells the value from 0.

    (Or it is negligible for the tensor, as method="central" confirms exact zeros.)
    """
    for seed in range(6):
        f, params, grad = _mixed_units_case(seed)
        g = grad(params)
        result = fastgrad.check_function(f, params, g, method="directional", seed=seed)
        assert result.passed, str(result)
        for a, budget, checked in zip(g, result.budget, result.checked):
            vouched = ~checked
            assert np.all(np.isfinite(budget[vouched]) & (budget[vouched] > 0))
            told = result.safety * budget < RESOLUTION * np.abs(a)
            negligible = budget <= 1e-6 * np.abs(a).max()
            assert np.all((told | negligible)[vouched]), seed
            assert checked[np.argmax(np.abs(a))]  # each tensor's largest entry is checked one by one


def _offset_quadratic():
    """``1e8 + sum c_i w_i^2 / 2``: the loss's rounding (~1e-8 of 1e8) hides gradients below ~1e-3."""
    rng = np.random.default_rng(1)
    c = rng.uniform(0.5, 2.0, 500)
    w = rng.normal(size=500)
    w[[3, 77, 201, 402]] = [1e-13, -3e-12, 0.0, 2e-14]

    def f(p):
        return float(1e8 + 0.5 * np.sum(c * p**2))

    return f, w, c * w


def test_entries_central_cannot_tell_from_zero_are_reported_inconclusive_without_evaluations():
    f, w, g = _offset_quadratic()
    central = fastgrad.check_function(f, w, g)
    expected = sorted(i.index for i in central.inconclusive)
    assert central.passed and {(3,), (77,), (201,), (402,)} <= set(expected)
    for seed in range(3):
        result = fastgrad.check_function(f, w, g, method="directional", seed=seed)
        assert result.passed and sorted(i.index for i in result.inconclusive) == expected, str(result)
        assert result.forward_passes <= 1 + 6 + 4  # the projection, the largest entry: nothing for those
        flat = [i[0] for i in expected]
        assert np.array_equal(result.numerical[0][flat], g[flat])  # no value of their own was measured
        assert np.all(result.safety * result.budget[0][flat] >= RESOLUTION * np.abs(g[flat]))


def test_a_wrong_value_central_can_resolve_fails_as_with_central():
    f, w, g = _offset_quadratic()
    wrong = g.copy()
    wrong[10] += 0.05  # central's budget here is ~5e-4
    assert _names(fastgrad.check_function(f, w, wrong)) == {("x", (10,))}
    for seed in range(3):
        result = fastgrad.check_function(f, w, wrong, method="directional", seed=seed)
        assert _names(result) == {("x", (10,))}, str(result)


def _running_sum_case():
    """``1e6 + sum c_i w_i^2 / 2`` summed left to right over 5000 entries, 40 of them with gradients 1e-4..2e-3.

    A projection moving k entries carries ~sqrt(k) roundings of the running sum (a single entry's central
    difference, one): the projection of all 5000 vouches for each entry only to ~1e-5, ten times central's
    budget, and cannot resolve the 40 small ones; central can.
    """
    rng = np.random.default_rng(2)
    c = rng.uniform(0.5, 2.0, 5000)
    w = rng.normal(size=5000)
    w[:40] = rng.choice([-1.0, 1.0], 40) * rng.uniform(2e-4, 1e-3, 40)

    def f(p):
        return float(np.cumsum(np.concatenate(([1e6], 0.5 * c * p**2)))[-1])

    return f, w, c * w


def test_entries_central_could_resolve_are_projected_again_or_checked_one_by_one(monkeypatch):
    f, w, g = _running_sum_case()
    central = fastgrad.check_function(f, w, g)
    small = np.arange(40)
    assert central.passed and not central.inconclusive
    assert np.all(central.safety * central.budget[0][small] < RESOLUTION * np.abs(g[small]))
    for seed in range(3):
        result = fastgrad.check_function(f, w, g, method="directional", seed=seed)
        assert result.passed and not result.inconclusive, str(result)
        told = result.safety * result.budget[0][small] < RESOLUTION * np.abs(g[small])
        assert np.all(told | result.checked[0][small])
        assert result.forward_passes <= 40  # measured 27-29: a second projection of the small ones resolves them
    monkeypatch.setattr(function_directional, "REFINEMENTS", 0)  # without it: one by one
    result = fastgrad.check_function(f, w, g, method="directional", seed=0)
    assert result.passed and not result.inconclusive and result.n_checked >= 20


# ------------------------------------------------------------------ kinks
def test_a_kink_within_reach_is_inconclusive_not_failed():
    c = np.linspace(-1.0, 1.0, 10)
    w = c + 0.1
    w[3] = c[3] + 3e-5
    w[7] = c[7]

    def f(p):
        return float(np.sum(np.abs(p - c)) + np.sum(p**2))

    grad = np.sign(w - c) + 2 * w
    grad[7] = 1.0 + 2 * w[7]
    result = fastgrad.check_function(f, w, grad, method="directional", seed=0)
    assert sorted(i.index for i in result.inconclusive) == [(3,), (7,)], str(result)
    assert result.passed and not result.failures
    grad[5] += 1e-3
    result = fastgrad.check_function(f, w, grad, method="directional", seed=0)
    assert [x.index for x in result.failures] == [(5,)]


def test_kinks_among_thousands_of_entries_are_found_and_inconclusive():
    rng = np.random.default_rng(0)
    n = 2000
    c = rng.normal(size=n)
    w = c + rng.choice([-1.0, 1.0], n) * rng.uniform(0.01, 1.0, n)
    w[[10, 500, 1500]] = c[[10, 500, 1500]] + np.array([2e-5, -5e-5, 0.0])

    def f(p):
        return float(np.sum(np.abs(p - c)) + np.sum(np.sin(p)))

    g = np.sign(w - c) + np.cos(w)
    g[1500] = 1.0 + np.cos(w[1500])
    central = fastgrad.check_function(f, w, g)
    result = fastgrad.check_function(f, w, g, method="directional", seed=0)
    assert sorted(i.index for i in result.inconclusive) == sorted(i.index for i in central.inconclusive) == [
        (10,), (500,), (1500,)]
    assert result.passed and result.forward_passes < 4 * n // 10  # measured: 283-295


# ------------------------------------------------------------------ the model protocol
def test_a_function_model_of_the_protocol_runs_directional():
    from toy_models import TanhRegression

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(6, 3)), rng.uniform(-0.5, 0.5, size=(6, 2))
    model = TanhRegression(3, 2)
    params = model.init(0)
    result = fastgrad.check(model, params, X, Y, engine="full", method="directional", seed=0)
    assert result.passed and result.method == "directional" and result.forward_passes == model.loss_calls
    wrong = fastgrad.check(TanhRegression(3, 2, wrong_bias=1.001), params, X, Y, engine="full",
                           method="directional", seed=0)
    assert _names(wrong) == {("b", (0,)), ("b", (1,))}


def test_counted_hides_the_parallel_table_and_counts():
    f, w, g = _offset_quadratic()
    model = FunctionModel(f, w)
    counted = function_directional.Counted(model)
    assert counted.loss_table is None and counted.n_params == 500 and counted.tensor_names == ("x",)
    counted.loss_at(w, np.zeros((1, 0)), np.zeros((1, 0)))
    assert counted.calls == 1

"""fastgrad.check_function: any loss and its gradient, with check's verdicts (issue 14).

What must hold: the structures users write (one array, list, tuple, dict; array-likes) with their names; the
same verdicts as ``check`` on MLPs; no false alarm on correct gradients of smooth functions at every scale,
and a single entry off by 1e-6 caught (complex, Richardson); a kink within reach inconclusive, never failed;
clear errors; the user's arrays never written; the same bits with and without worker processes.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastgrad
from fastgrad.function import FunctionModel

# ------------------------------------------------------------------ a smooth function family with its gradient
KINDS = ("tanh", "exp", "log1p_sq", "cube", "sin")


def smooth_case(seed: int):
    """A random smooth ``f(p) = scale * sum_j c_j g_j(a_j . w + b_j)`` over params ``[u, v]``, and its gradient."""
    rng = np.random.default_rng((14, seed))
    sizes = (int(rng.integers(1, 7)), int(rng.integers(1, 7)))
    P, J = sum(sizes), int(rng.integers(1, 5))
    A = rng.normal(size=(J, P)) / np.sqrt(P)
    b, c = rng.normal(size=J), rng.normal(size=J)
    kinds = [KINDS[int(k)] for k in rng.integers(0, len(KINDS), size=J)]
    scale = float(10.0 ** rng.uniform(-3, 3))
    w0 = rng.normal(size=P)

    def terms(z):
        out = np.empty_like(z)
        der = np.empty_like(z)
        for j, kind in enumerate(kinds):
            x = z[j]
            if kind == "tanh":
                out[j], der[j] = np.tanh(x), 1.0 - np.tanh(x) ** 2
            elif kind == "exp":
                out[j], der[j] = np.exp(0.5 * x), 0.5 * np.exp(0.5 * x)
            elif kind == "log1p_sq":
                out[j], der[j] = np.log1p(x * x), 2.0 * x / (1.0 + x * x)
            elif kind == "cube":
                out[j], der[j] = x * x * x, 3.0 * x * x
            else:
                out[j], der[j] = np.sin(x), np.cos(x)
        return out, der

    def f(p):
        w = np.concatenate([np.ravel(p[0]), np.ravel(p[1])])
        return scale * float(c @ terms(A @ w + b)[0])

    def grad(p):
        w = np.concatenate([np.ravel(p[0]), np.ravel(p[1])])
        g = scale * (A.T @ (c * terms(A @ w + b)[1]))
        return [g[:sizes[0]], g[sizes[0]:]]

    return f, [w0[:sizes[0]].copy(), w0[sizes[0]:].copy()], grad


@pytest.mark.parametrize("block", range(4))
def test_no_false_alarm_on_200_smooth_functions(block):
    bad = []
    for seed in range(50 * block, 50 * block + 50):
        f, params, grad = smooth_case(seed)
        for method in ("central", "richardson"):
            result = fastgrad.check_function(f, params, grad(params), method=method)
            if not result.passed:
                bad.append((seed, method, str(result)))
    assert not bad, bad[0]


@pytest.mark.parametrize("method", ["richardson", "central"])
def test_one_entry_off_by_1e_6_is_caught_in_its_tensor(method):
    missed = []
    for seed in range(60):
        f, params, grad = smooth_case(seed)
        g = grad(params)
        t = seed % 2
        i = int(np.argmax(np.abs(g[t])))
        if abs(g[t][i]) < 1e-3 * max(np.abs(np.concatenate(g)).max(), 1e-300):
            continue  # a near-zero entry: 1e-6 of it is below any honest budget
        wrong = [x.copy() for x in g]
        wrong[t][i] *= 1.0 + 1e-6
        result = fastgrad.check_function(f, params, wrong, method=method)
        failed = {s.name for s in result.tensors if not s.passed}
        if failed != {f"p{t}"}:
            missed.append((seed, failed))
    # Richardson resolves 1e-6 at every scale; central's truncation (h = 1e-4) can exceed it on sharp cases
    assert len(missed) <= (0 if method == "richardson" else 12), missed


def test_complex_step_catches_1e_6():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))

    def f(p):
        return float(np.sum(np.exp(X @ p[0]) * p[1][0])) if not np.iscomplexobj(p[0]) else np.sum(
            np.exp(X @ p[0]) * p[1][0])

    def grad(p):
        e = np.exp(X @ p[0])
        return [X.T @ e * p[1][0], np.array([e.sum()])]

    params = [rng.normal(size=3) * 0.3, np.array([0.7])]
    assert fastgrad.check_function(f, params, grad(params), method="complex").passed
    wrong = grad(params)
    wrong[0][1] *= 1 + 1e-6
    result = fastgrad.check_function(f, params, wrong, method="complex")
    assert not result.passed and {s.name for s in result.tensors if not s.passed} == {"p0"}


def test_a_kink_within_reach_is_inconclusive_not_failed():
    c = np.linspace(-1.0, 1.0, 10)
    w = c + 0.1
    w[3] = c[3] + 3e-5  # within the central step (1e-4) of the kink of |w3 - c3|
    w[7] = c[7]  # on the kink itself

    def f(p):
        return float(np.sum(np.abs(p - c)) + np.sum(p ** 2))

    grad = np.sign(w - c) + 2 * w
    grad[7] = 1.0 + 2 * w[7]  # a one-sided slope: whichever side, the numerical value is the average
    result = fastgrad.check_function(f, w, grad)
    assert sorted(i.index for i in result.inconclusive) == [(3,), (7,)], str(result)
    assert not result.failures and result.passed, str(result)
    # and a wrong entry next to them still fails
    grad[5] += 1e-3
    result = fastgrad.check_function(f, w, grad)
    assert [x.index for x in result.failures] == [(5,)]


# ------------------------------------------------------------------ the same verdicts as check on MLPs
def _net_case(seed):
    rng = np.random.default_rng((141, seed))
    sizes = [int(rng.integers(1, 5)) for _ in range(int(rng.integers(2, 4)))]
    hidden = ["tanh", "sigmoid", "softplus"][seed % 3]
    net = fastgrad.MLP(sizes, hidden=hidden)
    params = net.init(seed=seed)
    X = rng.normal(size=(int(rng.integers(1, 6)), sizes[0]))
    Y = rng.uniform(size=(X.shape[0], sizes[-1]))
    return net, params, X, Y


@pytest.mark.parametrize("block", range(4))
def test_same_verdicts_as_check_on_200_mlps(block):
    disagree = []
    for seed in range(50 * block, 50 * block + 50):
        net, params, X, Y = _net_case(seed)
        grads = net.backprop(params, X, Y)
        wrong = [g.copy() for g in grads]
        t = seed % len(wrong)
        wrong[t].flat[0] = wrong[t].flat[0] * (1 + 1e-3) + 1e-3
        for g in (grads, wrong):
            expected = fastgrad.check(net, params, X, Y, g, engine="full")
            got = fastgrad.check_function(net.loss, params, g, args=(X, Y))
            mine = {s.name.replace("p", "") for s in got.tensors if not s.passed}
            theirs = {str(i) for i, s in enumerate(expected.tensors) if not s.passed}
            if got.passed != expected.passed or mine != theirs:
                disagree.append((seed, got.passed, expected.passed, mine, theirs))
    assert not disagree, disagree[:3]


# ------------------------------------------------------------------ structures, names, errors, nothing written
def _quadratic(p):
    return float(sum(np.sum(np.asarray(x) ** 2) for x in (p.values() if isinstance(p, dict) else
                                                        (p if isinstance(p, (list, tuple)) else [p]))))


@pytest.mark.parametrize("params, names", [
    (np.arange(6.0).reshape(2, 3), ["x"]),
    ([np.ones(2), np.ones((2, 2))], ["p0", "p1"]),
    ((np.ones(2), np.ones(3)), ["p0", "p1"]),
    ({"W": np.ones((2, 3)), "bias": np.ones(3)}, ["W", "bias"]),
])
def test_structures_and_names(params, names):
    def double(v):
        return ({k: 2 * np.asarray(x) for k, x in v.items()} if isinstance(v, dict) else
                  type(v)(2 * np.asarray(x) for x in v) if isinstance(v, (list, tuple)) else 2 * v)
    result = fastgrad.check_function(_quadratic, params, double(params))
    assert result.passed and [s.name for s in result.tensors] == names
    assert fastgrad.check_function(_quadratic, params, lambda p: double(p)).passed


def test_the_users_arrays_are_never_written():
    params = {"W": np.ones((2, 2)), "b": np.zeros(2)}
    before = {k: v.copy() for k, v in params.items()}

    def f(p):
        p["W"] += 1.0  # f writes into what it gets: a copy
        return float(np.sum(p["W"] ** 2) + np.sum(p["b"]))

    grads = {"W": 2 * (params["W"] + 1.0), "b": np.ones(2)}
    fastgrad.check_function(f, params, grads)
    assert all(np.array_equal(params[k], before[k]) for k in params)


class ArrayLike:
    """A tensor of another library: converted through ``__array__``."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float32)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def test_array_likes_are_converted_and_float32_loosens_the_budget():
    params = [ArrayLike([0.5, -1.5]), ArrayLike([[2.0]])]
    grads = [ArrayLike([1.0, -3.0]), ArrayLike([[4.0]])]
    assert fastgrad.check_function(_quadratic, params, grads).passed


@pytest.mark.parametrize("grads, error, match", [
    ({"W": np.ones(2)}, ValueError, "missing b"),
    ([np.ones(2), np.ones(2)], TypeError, "must be a dict"),
    ({"W": np.ones(3), "b": np.ones(2)}, ValueError, "grads.*W"),
    ({"W": np.array([1.0, np.nan]), "b": np.ones(2)}, ValueError, r"'W'.*nan.*\(1,\)"),
    (None, TypeError, "grads is required"),
])
def test_bad_grads_name_the_argument_and_the_tensor(grads, error, match):
    with pytest.raises(error, match=match):
        fastgrad.check_function(_quadratic, {"W": np.ones(2), "b": np.ones(2)}, grads)


def test_bad_params_and_f():
    with pytest.raises(TypeError, match=r"params\['p1'\].*real numbers"):
        fastgrad.check_function(_quadratic, [np.ones(2), np.ones(2, dtype=complex)], [np.ones(2)] * 2)
    with pytest.raises(ValueError, match=r"params: tensor 'x' has a non-finite value \(inf\) at index \(0, 1\)"):
        fastgrad.check_function(_quadratic, np.array([[0.0, np.inf]]), np.zeros((1, 2)))
    with pytest.raises(TypeError, match="f must return one real number"):
        fastgrad.check_function(lambda p: p * 2, np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match="f must be a callable"):
        fastgrad.check_function(3.0, np.ones(2), np.ones(2))


def test_complex_method_on_an_f_that_drops_the_imaginary_part_says_so():
    with pytest.raises(TypeError, match="drops their imaginary part"):
        fastgrad.check_function(lambda p: float(np.sum(np.abs(p))), np.ones(2), np.ones(2), method="complex")
    with pytest.raises(TypeError, match="complex128 parameters, and f raised"):
        fastgrad.check_function(lambda p: float(np.maximum(p, 0).sum()), np.ones(2), np.ones(2), method="complex")


def test_a_nondeterministic_grads_callable_fails_with_a_note():
    calls = []

    def grads(p):
        calls.append(1)
        return 2 * p * len(calls)  # accumulates

    result = fastgrad.check_function(_quadratic, np.ones(3), grads)
    assert not result.passed and any("nondeterministic" in n for n in result.notes)


def test_progress_is_reported():
    seen = []
    fastgrad.check_function(_quadratic, np.ones(5), 2 * np.ones(5), progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1] == (5, 5)


def test_sample_checks_a_subset():
    result = fastgrad.check_function(_quadratic, np.ones((20, 10)), 2 * np.ones((20, 10)), sample=20, seed=1)
    assert result.passed and 20 <= result.tensors[0].n_checked < 200


# ------------------------------------------------------------------ processes
def loss_for_workers(p, X):
    """Module level: reachable by reference from a spawned worker."""
    return float(np.sum(np.tanh(X @ p[0]) ** 2) + np.sum(p[1] ** 3))


def grad_for_workers(p, X):
    t = np.tanh(X @ p[0])
    return [X.T @ (2 * t * (1 - t * t)), 3 * p[1] ** 2]


@pytest.mark.slow
def test_workers_give_the_same_bits():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(7, 4))
    params = [rng.normal(size=4), rng.normal(size=5)]
    grads = grad_for_workers(params, X)
    results = [fastgrad.check_function(loss_for_workers, params, grads, args=(X,), workers=w) for w in (None, 1, 2)]
    assert all(r.passed for r in results)
    for r in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(r.numerical, results[0].numerical))
    mapped = fastgrad.check_function(loss_for_workers, params, grads, args=(X,), workers=map)
    assert all(np.array_equal(a, b) for a, b in zip(mapped.numerical, results[0].numerical))


def test_workers_need_a_picklable_f():
    with pytest.raises(TypeError, match="picklable"):
        fastgrad.check_function(lambda p: float(np.sum(p ** 2)), np.ones(3), 2 * np.ones(3), workers=2)
    with pytest.raises(ValueError, match="at least 1"):
        fastgrad.check_function(_quadratic, np.ones(3), 2 * np.ones(3), workers=0)


def test_function_model_satisfies_the_protocol():
    from fastgrad.protocol import is_model

    model = FunctionModel(_quadratic, {"a": np.ones((2, 3)), "b": np.zeros(1)})
    assert is_model(model) and model.kind == "function" and model.n_params == 7
    assert model.locate(5) == ("a", (1, 2)) and model.locate(6) == ("b", (0,))


# ------------------------------------------------------------------ a Numba-jitted loss: the parallel kernel
@pytest.fixture(scope="module")
def jitted():
    import numba

    @numba.njit
    def f(p, X, y):  # loops, not X @ W: Numba's matrix product needs scipy, which the test extras do not have
        W, b = p
        total = 0.05 * np.sum(W * W)
        for n in range(X.shape[0]):
            for k in range(W.shape[1]):
                z = b[k]
                for d in range(X.shape[1]):
                    z += X[n, d] * W[d, k]
                r = np.tanh(z) - y[n, k]
                total += 0.5 * r * r
        return total

    def grad(p, X, y):
        t = np.tanh(X @ p[0] + p[1])
        d = (t - y) * (1.0 - t * t)
        return (X.T @ d + 0.1 * p[0], d.sum(axis=0))

    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(12, 6)), rng.normal(size=(12, 3))
    params = (0.3 * rng.normal(size=(6, 3)), 0.1 * rng.normal(size=3))
    return f, grad, params, (X, y)


def test_a_jitted_loss_gives_the_same_bits_on_1_and_2_threads(jitted):
    f, grad, params, args = jitted
    one = fastgrad.check_function(f, params, grad, args=args, threads=1)
    two = fastgrad.check_function(f, params, grad, args=args, threads=2)
    assert one.passed and two.passed
    assert all(np.array_equal(a, b) for a, b in zip(one.numerical, two.numerical))


def test_a_jitted_loss_catches_a_wrong_entry_in_its_tensor(jitted):
    f, grad, params, args = jitted
    wrong = [g.copy() for g in grad(params, *args)]
    wrong[1][2] *= 1 + 1e-6
    result = fastgrad.check_function(f, params, wrong, args=args, method="richardson")
    assert [(x.tensor, x.index) for x in result.failures] == [("p1", (2,))]


def test_a_jitted_loss_of_one_array_takes_a_1_tuple():
    import numba

    @numba.njit
    def f(p):
        return np.sum(np.exp(p[0]))

    x = np.linspace(-1, 1, 7)
    assert fastgrad.check_function(f, x, np.exp(x)).passed
    assert fastgrad.check_function(f, x, np.exp(x), method="complex").passed
    wrong = np.exp(x)
    wrong[4] *= 1 + 1e-6
    assert not fastgrad.check_function(f, x, wrong, method="complex").passed


def test_an_exception_in_a_jitted_loss_reaches_the_caller():
    import numba

    @numba.njit
    def f(p):
        if p[0][1] > 0.5 + 5e-5:
            raise ValueError("out of the domain")
        return np.sum(p[0] ** 2)

    x = np.array([0.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="out of the domain"):
        fastgrad.check_function(f, x, 2 * x)
    assert np.array_equal(x, [0.0, 0.5, 0.1])


def test_a_loss_that_sums_large_terms_to_a_small_total_is_not_failed():
    # f = 1e-3 from terms of ~33: its rounding is ~1e-14, far above u |f| (the examples' author found false
    # FAILs and false kinks here while the budget assumed u |f|); the measured noise covers it, and a wrong
    # entry is still seen
    rng = np.random.default_rng(0)
    p, d = rng.standard_normal(50), rng.standard_normal(50)
    d -= (p @ d) / (p @ p) * p - 1e-3 * p / (p @ p)

    def f(q, d):
        return float(np.sum(q * d))

    result = fastgrad.check_function(f, p, d.copy(), args=(d,))
    assert result.passed and not result.inconclusive, str(result)
    wrong = d.copy()
    wrong[3] *= 1 + 1e-8
    assert [x.index for x in fastgrad.check_function(f, p, wrong, args=(d,)).failures] == [(3,)]


def test_a_sample_of_a_long_vector_is_a_sample():
    # an MLP's 1-D tensors are biases, always checked whole; a function's long vector is sampled like any other
    x = np.linspace(-1.0, 1.0, 5000)
    result = fastgrad.check_function(_quadratic, x, 2 * x, sample=50, seed=0)
    assert result.passed and result.tensors[0].n_checked == 50
    assert result.checked[0][0] and result.checked[0][-1]  # the corners


@pytest.mark.parametrize("workers", [None, 2])
def test_ctrl_c_stops_the_check_and_leaves_the_arrays_alone(workers):
    # Ctrl-C arrives as KeyboardInterrupt wherever Python runs: here from the progress callback, mid-check
    rng = np.random.default_rng(4)
    X = rng.normal(size=(7, 4))
    params = [rng.normal(size=4), rng.normal(size=40)]
    before = [p.copy() for p in params]
    grads = grad_for_workers(params, X)

    def progress(done, total):
        if done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fastgrad.check_function(loss_for_workers, params, grads, args=(X,), workers=workers, progress=progress)
    assert all(np.array_equal(a, b) for a, b in zip(params, before))

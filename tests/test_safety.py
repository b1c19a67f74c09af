"""Inputs stay untouched, bad inputs raise clearly, threads/dtypes change nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
import reference as ref

import fastgrad

SIZES = [3, 4, 2]
N = 5


def fragments_pattern(*fragments):
    """Build a ``match=`` regex requiring every fragment (literally), in any order."""
    return "(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)


@pytest.fixture
def case(rng):
    net = fastgrad.MLP(SIZES, hidden="sigmoid", output="sigmoid", loss="mse")
    params = ref.random_params(rng, SIZES)
    X = rng.standard_normal((N, SIZES[0]))
    Y = rng.uniform(0.0, 1.0, (N, SIZES[-1]))
    grads = ref.backprop(params, X, Y, "sigmoid", "sigmoid", "mse")
    return net, params, X, Y, grads


def snapshot(obj):
    """Deep copy of arrays / lists of arrays, keeping dtype, order and flags."""
    if isinstance(obj, list):
        return [snapshot(o) for o in obj]
    return obj.copy(order="K")


def assert_unchanged(before, after):
    if isinstance(before, list):
        assert isinstance(after, list) and len(after) == len(before)
        for b, a in zip(before, after):
            assert_unchanged(b, a)
        return
    assert after.dtype == before.dtype
    assert after.shape == before.shape
    assert after.strides == before.strides
    assert np.array_equal(after, before, equal_nan=True)
    # bitwise, so -0.0 vs 0.0 and NaN payloads count too
    assert after.tobytes() == before.tobytes()


def run_all(net, params, X, Y, grads):
    """Every public entry point once."""
    net.forward(params, X)
    net.loss(params, X, Y)
    net.backprop(params, X, Y)
    fastgrad.numerical_gradient(net, params, X, Y)
    fastgrad.numerical_gradient(net, params, X, Y, eps=1e-3, threads=1)
    fastgrad.check(net, params, X, Y)
    fastgrad.check(net, params, X, Y, grads=grads)


# --------------------------------------------------------------------------
# Never writes into its inputs
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "mixed"])
def test_inputs_unchanged(case, dtype):
    net, params, X, Y, grads = case
    if dtype == "float32":
        params = [p.astype(np.float32) for p in params]
        X, Y = X.astype(np.float32), Y.astype(np.float32)
        grads = [g.astype(np.float32) for g in grads]
    elif dtype == "int64":
        params = [np.round(3 * p).astype(np.int64) for p in params]
        X = np.round(2 * X).astype(np.int64)
        Y = (Y > 0.5).astype(np.int64)
        grads = [np.round(g).astype(np.int64) for g in grads]
    elif dtype == "mixed":
        params = [
            p.astype(np.float32) if i % 2 else np.asfortranarray(p)
            for i, p in enumerate(params)
        ]
        X = np.round(2 * X).astype(np.int32)
        Y = Y.astype(np.float32)
    saved = snapshot([params, X, Y, grads])
    ids = [id(p) for p in params], [id(g) for g in grads]
    run_all(net, params, X, Y, grads)
    assert_unchanged(saved, [params, X, Y, grads])
    assert ([id(p) for p in params], [id(g) for g in grads]) == ids


def test_read_only_inputs_work(case):
    net, params, X, Y, grads = case
    for a in [*params, X, Y, *grads]:
        a.setflags(write=False)
    run_all(net, params, X, Y, grads)  # would raise if anything wrote into them


def test_non_contiguous_inputs_give_same_results(case):
    net, params, X, Y, grads = case
    # Strided views and Fortran order of the very same values.
    Xbig = np.zeros((2 * N, 2 * SIZES[0]))
    Xbig[::2, ::2] = X
    Xview = Xbig[::2, ::2]
    Yf = np.asfortranarray(Y)
    pviews = []
    for p in params:
        big = np.zeros(tuple(2 * s for s in p.shape))
        big[tuple(slice(None, None, 2) for _ in p.shape)] = p
        pviews.append(big[tuple(slice(None, None, 2) for _ in p.shape)])
    assert not Xview.flags.c_contiguous
    assert np.array_equal(net.forward(pviews, Xview), net.forward(params, X))
    assert net.loss(pviews, Xview, Yf) == net.loss(params, X, Y)
    for a, b in zip(net.backprop(pviews, Xview, Yf), net.backprop(params, X, Y)):
        assert np.array_equal(a, b)
    for a, b in zip(
        fastgrad.numerical_gradient(net, pviews, Xview, Yf),
        fastgrad.numerical_gradient(net, params, X, Y),
    ):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("where", ["grads", "params", "X"])
def test_inputs_unchanged_after_a_call_that_raises(case, where):
    net, params, X, Y, grads = case
    if where == "grads":
        grads[1][2] = np.nan
    elif where == "params":
        params[2][1, 0] = np.inf
    else:
        X[3, 1] = np.nan
    saved = snapshot([params, X, Y, grads])
    with pytest.raises(ValueError, match=where):
        fastgrad.check(net, params, X, Y, grads=grads)
    if where != "grads":
        with pytest.raises(ValueError, match=where):
            fastgrad.numerical_gradient(net, params, X, Y, threads=1)
        with pytest.raises(ValueError, match=where):
            net.backprop(params, X, Y)
    assert_unchanged(saved, [params, X, Y, grads])


def test_progress_exception_propagates_and_restores(case):
    net, params, X, Y, grads = case
    saved = snapshot([params, X, Y])
    before = numba.get_num_threads()

    def boom(done, total):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        fastgrad.numerical_gradient(net, params, X, Y, threads=1, progress=boom)
    assert numba.get_num_threads() == before
    assert_unchanged(saved, [params, X, Y])


# --------------------------------------------------------------------------
# Bad inputs: documented exception type, message names the argument
# --------------------------------------------------------------------------


def _set(index, value, tensor=None):
    def mutate(params, X, Y, grads):
        target = {"X": X, "Y": Y}.get(tensor)
        if target is None:
            which, t = tensor.split(":")
            target = (params if which == "params" else grads)[int(t)]
        target[index] = value
        return params, X, Y, grads

    return mutate


def _replace(which, value_fn):
    def mutate(params, X, Y, grads):
        parts = dict(params=params, X=X, Y=Y, grads=grads)
        parts[which] = value_fn(parts[which])
        return parts["params"], parts["X"], parts["Y"], parts["grads"]

    return mutate


def _replace_tensor(which, t, value_fn):
    def mutate(params, X, Y, grads):
        lst = list(params if which == "params" else grads)
        lst[t] = value_fn(lst[t])
        return (lst, X, Y, grads) if which == "params" else (params, X, Y, lst)

    return mutate


# (id, mutate, exception, required message fragments)
DATA_ERRORS = [
    (
        "params-nan",
        _set((0, 3), np.nan, "params:0"),
        ValueError,
        ["params", "'W1'", "nan", "(0, 3)"],
    ),
    (
        "params-inf",
        _set((1,), np.inf, "params:3"),
        ValueError,
        ["params", "'b2'", "inf", "(1,)"],
    ),
    (
        "params-neginf",
        _set((2, 0), -np.inf, "params:2"),
        ValueError,
        ["params", "'W2'", "inf", "(2, 0)"],
    ),
    ("X-nan", _set((1, 2), np.nan, "X"), ValueError, ["X", "nan", "(1, 2)"]),
    ("Y-inf", _set((4, 0), np.inf, "Y"), ValueError, ["Y", "inf", "(4, 0)"]),
    (
        "params-b2-shape",
        _replace_tensor("params", 3, lambda b: np.zeros(3)),
        ValueError,
        ["params", "'b2'", "(3,)", "(2,)"],
    ),
    (
        "params-W1-transposed",
        _replace_tensor("params", 0, lambda W: W.T.copy()),
        ValueError,
        ["params", "'W1'", "(4, 3)", "(3, 4)"],
    ),
    (
        "params-W1-1d",
        _replace_tensor("params", 0, lambda W: W.ravel()),
        ValueError,
        ["params", "'W1'"],
    ),
    ("params-too-few", _replace("params", lambda p: p[:3]), ValueError, ["params"]),
    (
        "params-too-many",
        _replace("params", lambda p: p + [np.zeros(2)]),
        ValueError,
        ["params"],
    ),
    ("params-empty", _replace("params", lambda p: []), ValueError, ["params"]),
    ("X-1d", _replace("X", lambda X: X[0].copy()), ValueError, ["X"]),
    ("X-3d", _replace("X", lambda X: X[None]), ValueError, ["X"]),
    ("Y-1d", _replace("Y", lambda Y: Y[:, 0].copy()), ValueError, ["Y"]),
    ("X-columns", _replace("X", lambda X: np.ones((N, 4))), ValueError, ["X"]),
    ("Y-columns", _replace("Y", lambda Y: np.ones((N, 3))), ValueError, ["Y"]),
    (
        "params-complex",
        _replace_tensor("params", 0, lambda W: W.astype(complex)),
        TypeError,
        ["params", "'W1'"],
    ),
    (
        "params-bool",
        _replace_tensor("params", 1, lambda b: b > 0),
        TypeError,
        ["params", "'b1'"],
    ),
    (
        "params-object",
        _replace_tensor("params", 2, lambda W: W.astype(object)),
        TypeError,
        ["params", "'W2'"],
    ),
    ("X-object", _replace("X", lambda X: X.astype(object)), TypeError, ["X"]),
    ("X-str", _replace("X", lambda X: X.astype(str)), TypeError, ["X"]),
    ("X-complex", _replace("X", lambda X: X.astype(np.complex128)), TypeError, ["X"]),
    ("X-bool", _replace("X", lambda X: X > 0), TypeError, ["X"]),
    ("Y-complex", _replace("Y", lambda Y: Y.astype(np.complex64)), TypeError, ["Y"]),
    ("Y-bool", _replace("Y", lambda Y: Y > 0.5), TypeError, ["Y"]),
    ("Y-str", _replace("Y", lambda Y: Y.astype("U8")), TypeError, ["Y"]),
]

# errors where only "X or Y" can be named
XY_ERRORS = [
    ("batch-mismatch", _replace("Y", lambda Y: Y[:4].copy()), ValueError),
    ("empty-batch", lambda p, X, Y, g: (p, X[:0], Y[:0], g), ValueError),
]

GRAD_ERRORS = [
    (
        "grads-nan",
        _set((2,), np.nan, "grads:1"),
        ValueError,
        ["grads", "'b1'", "nan", "(2,)"],
    ),
    (
        "grads-inf",
        _set((0, 1), -np.inf, "grads:2"),
        ValueError,
        ["grads", "'W2'", "inf", "(0, 1)"],
    ),
    (
        "grads-shape",
        _replace_tensor("grads", 2, lambda W: W.T.copy()),
        ValueError,
        ["grads", "'W2'", "(2, 4)", "(4, 2)"],
    ),
    ("grads-too-few", _replace("grads", lambda g: g[:3]), ValueError, ["grads"]),
    (
        "grads-too-many",
        _replace("grads", lambda g: g + [np.zeros(2)]),
        ValueError,
        ["grads"],
    ),
    (
        "grads-complex",
        _replace_tensor("grads", 0, lambda W: W.astype(complex)),
        TypeError,
        ["grads", "'W1'"],
    ),
    (
        "grads-bool",
        _replace_tensor("grads", 3, lambda b: b > 0),
        TypeError,
        ["grads", "'b2'"],
    ),
]

ENTRY_POINTS = ["check", "numerical_gradient", "backprop", "loss", "forward"]


def call(entry, net, params, X, Y, grads=None, **kw):
    if entry == "check":
        return fastgrad.check(net, params, X, Y, grads=grads, **kw)
    if entry == "numerical_gradient":
        return fastgrad.numerical_gradient(net, params, X, Y, **kw)
    if entry == "backprop":
        return net.backprop(params, X, Y)
    if entry == "loss":
        return net.loss(params, X, Y)
    if entry == "forward":
        return net.forward(params, X)
    raise AssertionError(entry)


def _uses_Y(case_id):
    return case_id.startswith("Y") or case_id in ("batch-mismatch", "empty-batch")


DATA_ERROR_CALLS = [
    pytest.param(entry, *c, id=f"{c[0]}-{entry}")
    for c in DATA_ERRORS
    for entry in ENTRY_POINTS
    if not (entry == "forward" and _uses_Y(c[0]))  # forward takes no Y
]


@pytest.mark.parametrize("entry,case_id,mutate,exc,fragments", DATA_ERROR_CALLS)
def test_bad_data_raises(case, entry, case_id, mutate, exc, fragments):
    net, params, X, Y, grads = case
    params, X, Y, grads = mutate([p.copy() for p in params], X.copy(), Y.copy(), grads)
    with pytest.raises(exc, match=fragments_pattern(*fragments)):
        call(entry, net, params, X, Y)


@pytest.mark.parametrize("entry", ["check", "numerical_gradient", "backprop", "loss"])
@pytest.mark.parametrize("case_id,mutate,exc", XY_ERRORS, ids=[c[0] for c in XY_ERRORS])
def test_bad_batch_raises(case, entry, case_id, mutate, exc):
    net, params, X, Y, grads = case
    params, X, Y, grads = mutate(params, X.copy(), Y.copy(), grads)
    with pytest.raises(exc, match=r"\b[XY]\b"):
        call(entry, net, params, X, Y)


def test_empty_batch_forward_raises(case):
    net, params, X, Y, grads = case
    with pytest.raises(ValueError, match=r"\bX\b"):
        net.forward(params, X[:0])


@pytest.mark.parametrize(
    "case_id,mutate,exc,fragments", GRAD_ERRORS, ids=[c[0] for c in GRAD_ERRORS]
)
def test_bad_grads_raise(case, case_id, mutate, exc, fragments):
    net, params, X, Y, grads = case
    params, X, Y, grads = mutate(params, X, Y, [g.copy() for g in grads])
    with pytest.raises(exc, match=fragments_pattern(*fragments)):
        fastgrad.check(net, params, X, Y, grads=grads)


@pytest.mark.parametrize("entry", ["check", "numerical_gradient"])
@pytest.mark.parametrize(
    "eps,exc",
    [
        (0.0, ValueError),
        (-1e-4, ValueError),
        (np.nan, ValueError),
        (np.inf, ValueError),
        (-np.inf, ValueError),
        ("1e-4", TypeError),
        ([1e-4], TypeError),
        (1e-4 + 0j, TypeError),
    ],
    ids=["zero", "negative", "nan", "inf", "neginf", "str", "list", "complex"],
)
def test_bad_eps_raises(case, entry, eps, exc):
    net, params, X, Y, grads = case
    with pytest.raises(exc, match=r"\beps\b"):
        call(entry, net, params, X, Y, eps=eps)


@pytest.mark.parametrize("eps", [1e-3, np.float32(1e-3), np.float64(1e-3)])
def test_numpy_scalar_eps_accepted(case, eps):
    net, params, X, Y, grads = case
    got = fastgrad.numerical_gradient(net, params, X, Y, eps=eps)
    want = fastgrad.numerical_gradient(net, params, X, Y, eps=float(eps))
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize(
    "value,exc",
    [
        (-1e-5, ValueError),
        (np.nan, ValueError),
        (np.inf, ValueError),
        ("1e-5", TypeError),
    ],
    ids=["negative", "nan", "inf", "str"],
)
def test_bad_tolerance_raises(case, name, value, exc):
    net, params, X, Y, grads = case
    with pytest.raises(exc, match=rf"\b{name}\b"):
        fastgrad.check(net, params, X, Y, **{name: value})


@pytest.mark.parametrize("entry", ["check", "numerical_gradient"])
@pytest.mark.parametrize(
    "threads,exc",
    [
        (0, ValueError),
        (-1, ValueError),
        ("max", ValueError),
        ("2", TypeError),
        (1.5, TypeError),
    ],
    ids=["zero", "negative", "too-many", "str", "float"],
)
def test_bad_threads_raises(case, entry, threads, exc):
    net, params, X, Y, grads = case
    if threads == "max":
        threads = numba.config.NUMBA_NUM_THREADS + 1
    before = numba.get_num_threads()
    with pytest.raises(exc, match=r"\bthreads\b"):
        call(entry, net, params, X, Y, threads=threads)
    assert numba.get_num_threads() == before


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(sizes=[3]), ValueError, "sizes"),
        (dict(sizes=[]), ValueError, "sizes"),
        (dict(sizes=[3, 0, 2]), ValueError, "sizes"),
        (dict(sizes=[3, -1]), ValueError, "sizes"),
        (dict(sizes=[3, 2.5]), (TypeError, ValueError), "sizes"),
        (dict(sizes=[3, 4, 2], hidden="bogus"), ValueError, "hidden"),
        (
            dict(
                sizes=[3, 4, 2],
                hidden="softmax",
                output="softmax",
                loss="cross_entropy",
            ),
            ValueError,
            "hidden",
        ),
        (dict(sizes=[3, 4, 2], output="bogus"), ValueError, "output"),
        (dict(sizes=[3, 4, 2], loss="l1"), ValueError, "loss"),
        (
            dict(sizes=[3, 4, 2], output="softmax", loss="mse"),
            ValueError,
            "output|loss",
        ),
        (
            dict(sizes=[3, 4, 2], output="softmax", loss="half_sse"),
            ValueError,
            "output|loss",
        ),
        (
            dict(sizes=[3, 4, 2], output="sigmoid", loss="cross_entropy"),
            ValueError,
            "output|loss",
        ),
        (
            dict(sizes=[3, 2], output="identity", loss="cross_entropy"),
            ValueError,
            "output|loss",
        ),
        (
            dict(sizes=[3, 2], output="tanh", loss="bce"),
            ValueError,
            "output|loss",
        ),
        (
            dict(sizes=[3, 2], output="softmax", loss="bce"),
            ValueError,
            "output|loss",
        ),
    ],
    ids=[
        "sizes-one",
        "sizes-empty",
        "sizes-zero",
        "sizes-negative",
        "sizes-float",
        "hidden-unknown",
        "hidden-softmax",
        "output-unknown",
        "loss-unknown",
        "softmax-mse",
        "softmax-half_sse",
        "ce-sigmoid",
        "ce-identity",
        "bce-tanh",
        "bce-softmax",
    ],
)
def test_bad_model_spec_raises(kwargs, exc, name):
    with pytest.raises(exc, match=rf"\b({name})\b"):
        fastgrad.MLP(**kwargs)


# --------------------------------------------------------------------------
# Threads: bitwise identical results
# --------------------------------------------------------------------------

THREAD_SCRIPT = textwrap.dedent(
    """
    import sys
    import numba
    import numpy as np
    import fastgrad

    out = sys.argv[1]
    rng = np.random.default_rng(20240611)
    flats = []
    for sizes, hidden, output, loss in (
        ([10, 32, 16, 4], "tanh", "sigmoid", "mse"),
        ([7, 9, 9, 5], "relu", "softmax", "cross_entropy"),
    ):
        net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
        params = [0.5 * rng.standard_normal(s) for s in net.param_shapes]
        X = rng.standard_normal((16, sizes[0]))
        Y = rng.uniform(0.0, 1.0, (16, sizes[-1]))
        if loss == "cross_entropy":
            Y /= Y.sum(axis=1, keepdims=True)
        grads = fastgrad.numerical_gradient(net, params, X, Y)
        flats.append(np.concatenate([g.ravel() for g in grads]))
        result = fastgrad.check(net, params, X, Y)
        flats.append(np.array([result.max_rel_error, result.loss]))
    np.save(out, np.concatenate(flats))
    print(numba.get_num_threads())
    """
)


@pytest.mark.slow
def test_numba_num_threads_env_gives_bitwise_identical_results(tmp_path):
    results = {}
    for n in (1, 2, 3):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
        out = tmp_path / f"threads{n}.npy"
        proc = subprocess.run(
            [sys.executable, "-c", THREAD_SCRIPT, str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == str(n)
        results[n] = np.load(out)
    assert results[1].size > 1000
    assert np.all(np.isfinite(results[1]))
    assert np.array_equal(results[1], results[2])
    assert np.array_equal(results[1], results[3])


def test_threads_argument_bitwise_identical(rng):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    sizes = [8, 24, 12, 3]
    net = fastgrad.MLP(sizes, hidden="softplus", output="identity", loss="sse")
    params = ref.random_params(rng, sizes)
    X = rng.standard_normal((12, sizes[0]))
    Y = rng.standard_normal((12, sizes[-1]))
    before = numba.get_num_threads()
    one = fastgrad.numerical_gradient(net, params, X, Y, threads=1)
    assert numba.get_num_threads() == before
    two = fastgrad.numerical_gradient(net, params, X, Y, threads=2)
    assert numba.get_num_threads() == before
    default = fastgrad.numerical_gradient(net, params, X, Y)
    for a, b, c in zip(one, two, default):
        assert np.array_equal(a, b)
        assert np.array_equal(a, c)
    r1 = fastgrad.check(net, params, X, Y, threads=1)
    r2 = fastgrad.check(net, params, X, Y, threads=2)
    assert numba.get_num_threads() == before
    assert r1.max_rel_error == r2.max_rel_error
    assert [t.worst_index for t in r1.tensors] == [t.worst_index for t in r2.tensors]


def test_threads_restored_when_numba_count_was_lowered(case):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    net, params, X, Y, grads = case
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        fastgrad.numerical_gradient(net, params, X, Y, threads=2)
        assert numba.get_num_threads() == 1
        fastgrad.check(net, params, X, Y, threads=2)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(previous)


# --------------------------------------------------------------------------
# dtypes: int and float32 computed in float64
# --------------------------------------------------------------------------


def _same_results(net, a, b, same_verdict=True):
    """Every entry point gives bitwise identical results on inputs a and b.

    ``same_verdict=False``: except the check's verdict, which depends on the
    dtype of the gradient (its rounding is part of the error budget).
    """
    (pa, Xa, Ya, ga), (pb, Xb, Yb, gb) = a, b
    fa, fb = net.forward(pa, Xa), net.forward(pb, Xb)
    assert fa.dtype == np.float64 and np.array_equal(fa, fb)
    assert net.loss(pa, Xa, Ya) == net.loss(pb, Xb, Yb)
    for x, y in zip(net.backprop(pa, Xa, Ya), net.backprop(pb, Xb, Yb)):
        assert x.dtype == np.float64 and np.array_equal(x, y)
    for x, y in zip(
        fastgrad.numerical_gradient(net, pa, Xa, Ya),
        fastgrad.numerical_gradient(net, pb, Xb, Yb),
    ):
        assert x.dtype == np.float64 and np.array_equal(x, y)
    ra = fastgrad.check(net, pa, Xa, Ya, grads=ga)
    rb = fastgrad.check(net, pb, Xb, Yb, grads=gb)
    assert all(np.array_equal(x, y) for x, y in zip(ra.numerical, rb.numerical))
    assert ra.max_rel_error == rb.max_rel_error
    if not same_verdict:
        return ra, rb
    assert ra.passed == rb.passed
    assert ra.loss == rb.loss
    assert [(f.tensor, tuple(f.index), f.analytic) for f in ra.failures] == [
        (f.tensor, tuple(f.index), f.analytic) for f in rb.failures
    ]


def test_float32_inputs_same_as_float64(rng):
    net = fastgrad.MLP(SIZES, hidden="tanh", output="sigmoid", loss="mse")
    p32 = [p.astype(np.float32) for p in ref.random_params(rng, SIZES)]
    X32 = rng.standard_normal((N, SIZES[0])).astype(np.float32)
    Y32 = rng.uniform(0, 1, (N, SIZES[-1])).astype(np.float32)
    g32 = [
        g.astype(np.float32)
        for g in ref.backprop(p32, X32, Y32, "tanh", "sigmoid", "mse")
    ]
    as64 = (
        [p.astype(np.float64) for p in p32],
        X32.astype(np.float64),
        Y32.astype(np.float64),
        [g.astype(np.float64) for g in g32],
    )
    as32, as_float64 = _same_results(net, (p32, X32, Y32, g32), as64, same_verdict=False)
    # A float32 gradient carries float32 rounding: it passes when it comes
    # as float32, and the same numbers handed over as float64 are judged at
    # float64's precision, where the rounding to float32 shows.
    assert as32.passed, str(as32)
    assert not as_float64.passed
    # and the float64 values of float32 numbers are what is computed on
    out = net.forward(p32, X32)
    np.testing.assert_allclose(
        out, ref.output_of(as64[0], as64[1], "tanh", "sigmoid"), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.uint8, np.int8])
def test_int_inputs_same_as_float64(rng, int_dtype):
    net = fastgrad.MLP(SIZES, hidden="sigmoid", output="identity", loss="half_sse")
    lo = 0 if np.issubdtype(int_dtype, np.unsignedinteger) else -2
    pint = [rng.integers(lo, 3, s).astype(int_dtype) for s in ref.param_shapes(SIZES)]
    Xint = rng.integers(lo, 4, (N, SIZES[0])).astype(int_dtype)
    Yint = rng.integers(0, 3, (N, SIZES[-1])).astype(int_dtype)
    gint = [np.zeros(s, dtype=int_dtype) for s in ref.param_shapes(SIZES)]
    as64 = (
        [p.astype(np.float64) for p in pint],
        Xint.astype(np.float64),
        Yint.astype(np.float64),
        [g.astype(np.float64) for g in gint],
    )
    _same_results(net, (pint, Xint, Yint, gint), as64)
    # int8/uint8 arithmetic must not wrap: compare with the float64 reference
    np.testing.assert_allclose(
        net.backprop(pint, Xint, Yint)[0],
        ref.backprop(as64[0], as64[1], as64[2], "sigmoid", "identity", "half_sse")[0],
        rtol=1e-12,
        atol=1e-13,
    )


def test_mixed_dtypes_and_int_y_for_cross_entropy(rng):
    sizes = [3, 4, 3]
    net = fastgrad.MLP(sizes, hidden="relu", output="softmax", loss="cross_entropy")
    params = ref.random_params(rng, sizes)
    labels = rng.integers(0, 3, N)
    Yint = np.eye(3, dtype=np.int64)[labels]  # one-hot ints
    X32 = rng.standard_normal((N, 3)).astype(np.float32)
    mixed = (
        [p.astype(np.float32) if i == 0 else p for i, p in enumerate(params)],
        X32,
        Yint,
        None,
    )
    as64 = (
        [
            p.astype(np.float32).astype(np.float64) if i == 0 else p
            for i, p in enumerate(params)
        ],
        X32.astype(np.float64),
        Yint.astype(np.float64),
        None,
    )
    _same_results(net, mixed, as64)

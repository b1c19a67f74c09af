"""The compiled per-parameter loop over a user's jitted loss (fastgrad/_kernels/function_loop.py).

Every table is compared bit for bit with a slow, obviously correct twin: a Python loop over the rows that
copies the parameters, sets one entry and calls ``f`` (the same compiled ``f``, called from Python; under
``NUMBA_DISABLE_JIT=1`` the plain function). The losses are written as scalar loops so that they compile
quickly: the kernels take ``f`` as an argument and cannot be cached on disk, so every loss here costs a
compilation of its own (conftest forces the parallel kernels, ``FASTGRAD_PARALLEL_MIN_SIZE=0``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

from fastgrad import _threading
from fastgrad._config import threads_context
from fastgrad._kernels import function_loop as fl
from fastgrad._kernels.function_loop import complex_table, is_jitted, loss_table

ROOT = Path(__file__).resolve().parent.parent
JIT = not numba.config.DISABLE_JIT
THREADS = min(2, numba.config.NUMBA_NUM_THREADS)
MULTIPLES = np.array([1.0, -1.0, 2.0, -2.0])

# ---------------------------------------------------------------------------
# losses: f(params, *args); generic over float64 and complex128 parameters
# ---------------------------------------------------------------------------


@numba.njit
def loss_one(params, x):
    """One 1-D tensor; args: one array."""
    (w,) = params
    acc = w[0] * 0.0
    total = w[0] * 0.0
    for i in range(w.shape[0]):
        acc += np.sin(w[i]) * x[i]
        total += w[i]
    return acc + total * total / 3.0


@numba.njit
def loss_two(params, X, s):
    """A (3, 4) matrix and a (4,) bias: a tiny linear layer and a squared loss; args: an array and a scalar."""
    W, b = params
    acc = W[0, 0] * 0.0
    for n in range(X.shape[0]):
        for j in range(W.shape[1]):
            z = b[j]
            for i in range(W.shape[0]):
                z += X[n, i] * W[i, j]
            acc += np.exp(0.3 * z) + s * z * z
    return acc / X.shape[0]


@numba.njit
def loss_three(params, X, Y, s):
    """Tensors of ndim 3, 2 and 1 (one of each); args: two arrays and a scalar."""
    A, B, c = params
    acc = c[0] * 0.0
    for n in range(X.shape[0]):
        for k in range(A.shape[2]):
            h = c[k]
            for i in range(A.shape[0]):
                for j in range(A.shape[1]):
                    h += A[i, j, k] * X[n, i] * B[j, k]
            d = np.sin(h) - Y[n, k]
            acc += s * d * d
    return acc


@numba.njit
def loss_noargs(params):
    """No args at all; two 2-D tensors."""
    P, Q = params
    acc = P[0, 0] * 0.0
    for i in range(P.shape[0]):
        for j in range(P.shape[1]):
            acc += P[i, j] * Q[j, i] + P[i, j] * P[i, j]
    return acc


@numba.njit
def loss_raises(params, limit):
    """Raises ValueError when an entry exceeds ``limit``; infinite (not an error) when an entry is exactly 7."""
    (w,) = params
    acc = 0.0
    for i in range(w.shape[0]):
        if w[i] > limit:
            raise ValueError("an entry is above the limit")
        if w[i] == 7.0:
            return np.inf
        acc += w[i] * w[i]
    return acc


def _case(name: str, rng: np.random.Generator, dtype=np.float64):
    """(f, arrays, args) of a named case; arrays of ``dtype``."""
    if name == "one":
        arrays = (rng.normal(size=7),)
        args = (rng.normal(size=7),)
        f = loss_one
    elif name == "two":
        arrays = (rng.normal(size=(3, 4)), rng.normal(size=4))
        args = (rng.normal(size=(5, 3)), 0.7)
        f = loss_two
    elif name == "three":
        arrays = (rng.normal(size=(2, 3, 2)), rng.normal(size=(3, 2)), rng.normal(size=2))
        args = (rng.normal(size=(4, 2)), rng.normal(size=(4, 2)), 1.3)
        f = loss_three
    else:
        arrays = (rng.normal(size=(3, 2)), rng.normal(size=(2, 3)))
        args = ()
        f = loss_noargs
    return f, tuple(np.ascontiguousarray(a, dtype=dtype) for a in arrays), args


def _offsets(arrays) -> np.ndarray:
    return np.cumsum([0] + [a.size for a in arrays]).astype(np.int64)


def _steps(arrays, eps=1e-3) -> np.ndarray:
    flat = np.concatenate([a.ravel().real for a in arrays])
    return eps * np.maximum(1.0, np.abs(flat))


def _set(arrays, i, value):
    """Copies of ``arrays`` with flat entry ``i`` set to ``value``."""
    copies = [a.copy() for a in arrays]
    offsets = _offsets(arrays)
    t = int(np.searchsorted(offsets, i, side="right")) - 1
    copies[t].reshape(-1)[i - offsets[t]] = value
    return tuple(copies)


def _flat(arrays, i):
    offsets = _offsets(arrays)
    t = int(np.searchsorted(offsets, i, side="right")) - 1
    return arrays[t].reshape(-1)[i - offsets[t]]


def twin_loss(f, arrays, args, indices, steps, multiples):
    out = np.empty((len(indices), len(multiples)))
    for r, i in enumerate(indices):
        w = _flat(arrays, i)
        for k, m in enumerate(multiples):
            out[r, k] = f(_set(arrays, i, w + m * steps[i]), *args)
    return out


def twin_complex(f, arrays, args, indices, h):
    out = np.empty(len(indices))
    for r, i in enumerate(indices):
        w = _flat(arrays, i)
        out[r] = np.imag(f(_set(arrays, i, complex(w.real, w.imag + h[i])), *args)) / h[i]
    return out


def bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.int64)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(bits(a), bits(b))


def _snapshot(arrays, args):
    return [a.copy() for a in arrays], [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def _unchanged(arrays, args, snapshot) -> bool:
    arrays0, args0 = snapshot
    return all(same_bits(a, b) for a, b in zip(arrays, arrays0)) and all(
        same_bits(a, b) if isinstance(a, np.ndarray) else a == b for a, b in zip(args, args0))


# ---------------------------------------------------------------------------
# tables against their twins
# ---------------------------------------------------------------------------


@pytest.mark.nojit
@pytest.mark.parametrize("name", ["one", "two", "three", "noargs"])
def test_loss_table_matches_python_twin_bitwise(name, rng):
    f, arrays, args = _case(name, rng)
    P = sum(a.size for a in arrays)
    indices = np.arange(P, dtype=np.int64)
    steps = _steps(arrays)
    snapshot = _snapshot(arrays, args)
    out = loss_table(f, arrays, args, indices, _offsets(arrays), steps, MULTIPLES)
    assert out.shape == (P, len(MULTIPLES)) and out.dtype == np.float64
    assert same_bits(out, twin_loss(f, arrays, args, indices, steps, MULTIPLES))
    assert _unchanged(arrays, args, snapshot)


@pytest.mark.nojit
# ("three" alone compiles two kernels for loss_three: 6 s on 2 busy cores)
@pytest.mark.parametrize("name", ["one", "two", pytest.param("three", marks=pytest.mark.slow)])
def test_complex_table_matches_python_complex_step_bitwise(name, rng):
    f, arrays, args = _case(name, rng, np.complex128)
    P = sum(a.size for a in arrays)
    indices = np.arange(P, dtype=np.int64)
    h = np.full(P, 1e-20)
    snapshot = _snapshot(arrays, args)
    out = complex_table(f, arrays, args, indices, _offsets(arrays), h)
    assert out.shape == (P,) and out.dtype == np.float64
    assert same_bits(out, twin_complex(f, arrays, args, indices, h))
    assert _unchanged(arrays, args, snapshot)
    # and it is the derivative: against central differences of the real loss (same f, float64 parameters)
    real = tuple(a.real.copy() for a in arrays)
    steps = _steps(real, 1e-5)
    table = loss_table(f, real, args, indices, _offsets(real), steps, np.array([1.0, -1.0]))
    central = (table[:, 0] - table[:, 1]) / (2.0 * steps)
    np.testing.assert_allclose(out, central, rtol=1e-6, atol=1e-8)


@pytest.mark.nojit
def test_complex_step_keeps_the_real_part_bit_for_bit():
    # a real part -0.0 stays -0.0 (IEEE complex addition of 1j h would make it +0.0), and f sees it
    @numba.njit
    def sign_of_real(params):
        (z,) = params
        return complex(np.copysign(1.0, z[0].real), 0.0) + z[1] * z[1]

    arrays = (np.array([complex(-0.0, 0.0), 2.0 + 0.0j]),)
    out = complex_table(sign_of_real, arrays, (), np.array([0, 1]), _offsets(arrays), np.array([1e-20, 1e-20]))
    assert same_bits(out, twin_complex(sign_of_real, arrays, (), [0, 1], np.array([1e-20, 1e-20])))
    assert out[1] == 4.0


@pytest.mark.nojit
def test_complex_table_of_a_real_valued_f_is_zero():
    @numba.njit
    def real_part(params):
        (z,) = params
        return (z[0] * z[1]).real

    arrays = (np.array([1.0 + 0j, 2.0 + 0j]),)
    out = complex_table(real_part, arrays, (), np.array([0, 1]), _offsets(arrays), np.full(2, 1e-20))
    assert list(out) == [0.0, 0.0]


@pytest.mark.nojit
def test_subset_unsorted_repeated_indices_and_empty(rng):
    f, arrays, args = _case("three", rng)
    P = sum(a.size for a in arrays)
    offsets, steps = _offsets(arrays), _steps(arrays)
    indices = np.array([P - 1, 3, 0, 3, 12, P - 2], dtype=np.int64)  # across all three tensors, one twice
    out = loss_table(f, arrays, args, indices, offsets, steps, MULTIPLES)
    assert same_bits(out, twin_loss(f, arrays, args, indices, steps, MULTIPLES))
    assert same_bits(out[1], out[3])
    one = loss_table(f, arrays, args, indices[:1], offsets, steps, np.array([1.0]))  # fewer entries than threads
    assert same_bits(one, out[:1, :1])
    empty = loss_table(f, arrays, args, np.empty(0, dtype=np.int64), offsets, steps, MULTIPLES)
    assert empty.shape == (0, len(MULTIPLES))
    h = np.full(P, 1e-20)
    carrays = tuple(a.astype(np.complex128) for a in arrays)
    assert complex_table(f, carrays, args, np.empty(0, dtype=np.int64), offsets, h).shape == (0,)


@pytest.mark.nojit
def test_empty_tensors_and_a_scalar_tensor(rng):
    # a tensor of size 0 between two others, and a 0-d one: the flat index space skips / holds them
    @numba.njit
    def f(params, x):
        a, e, s, b = params
        return (a * a).sum() * s[()] + b.sum() * x + e.size

    arrays = (rng.normal(size=3), np.empty((2, 0)), np.array(1.5), rng.normal(size=(2, 2)))
    indices = np.arange(8, dtype=np.int64)
    steps = _steps(arrays)
    out = loss_table(f, arrays, (0.25,), indices, _offsets(arrays), steps, MULTIPLES)
    assert same_bits(out, twin_loss(f, arrays, (0.25,), indices, steps, MULTIPLES))


# ---------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------


@pytest.mark.nojit
@pytest.mark.skipif(THREADS < 2, reason="needs 2 Numba threads")
def test_one_and_two_threads_bitwise(rng):
    f, arrays, args = _case("two", rng)
    P = sum(a.size for a in arrays)
    indices = rng.permutation(P).astype(np.int64)
    offsets, steps = _offsets(arrays), _steps(arrays)
    carrays = tuple(a.astype(np.complex128) for a in arrays)
    h = np.full(P, 1e-20)
    tables, complexes = [], []
    for threads in (1, 2, 1, 2):
        with threads_context(threads):
            tables.append(loss_table(f, arrays, args, indices, offsets, steps, MULTIPLES))
            complexes.append(complex_table(f, carrays, args, indices, offsets, h))
    assert all(same_bits(t, tables[0]) for t in tables)
    assert all(same_bits(c, complexes[0]) for c in complexes)
    assert same_bits(tables[0], twin_loss(f, arrays, args, indices, steps, MULTIPLES))


@pytest.mark.skipif(not JIT, reason="10^7 operations: too slow in plain Python")
@pytest.mark.skipif(THREADS < 2, reason="needs 2 Numba threads")
def test_one_and_two_threads_bitwise_long(rng):
    # long enough (~10^7 operations) that a worker thread surely takes the second chunk (a table of a few
    # microseconds may run both chunks on the calling thread)
    arrays, args = (rng.normal(size=1500),), (rng.normal(size=1500),)
    indices, offsets, steps = np.arange(1500, dtype=np.int64), _offsets(arrays), _steps(arrays)
    tables = []
    for threads in (1, 2):
        with threads_context(threads):
            tables.append(loss_table(loss_one, arrays, args, indices, offsets, steps, MULTIPLES))
    assert same_bits(tables[0], tables[1])
    rows = [0, 749, 750, 1499]  # the ends of both chunks, against the twin (all of it is slow in plain Python)
    assert same_bits(tables[1][rows], twin_loss(loss_one, arrays, args, indices[rows], steps, MULTIPLES))


@pytest.mark.skipif(not JIT, reason="the serial twin is a compiled kernel")
@pytest.mark.skipif(THREADS < 2, reason="needs 2 Numba threads")
def test_serial_twin_same_bits(rng, monkeypatch):
    f, arrays, args = _case("one", rng)
    P = arrays[0].size
    indices, offsets, steps = np.arange(P, dtype=np.int64), _offsets(arrays), _steps(arrays)
    parallel = loss_table(f, arrays, args, indices, offsets, steps, MULTIPLES)
    monkeypatch.setattr(_threading, "PARALLEL_MIN_SIZE", 10**12)
    monkeypatch.setattr(_threading, "PARALLEL_MIN_WORK", 1e30)
    kernel = fl._kernel("loss", 1, 1)
    with threads_context(2):
        serial = loss_table(f, arrays, args, indices, offsets, steps, MULTIPLES)
    assert kernel._serial is not None and kernel._serial.signatures  # the twin ran
    assert same_bits(serial, parallel)


# ---------------------------------------------------------------------------
# exceptions and non-finite values
# ---------------------------------------------------------------------------


@pytest.mark.nojit
@pytest.mark.parametrize("threads", [1, 2])
def test_exception_in_f_reaches_the_caller(threads):
    w = np.arange(10.0) / 2.0
    arrays, args = (w,), (100.0,)
    snapshot = _snapshot(arrays, args)
    offsets, ones = _offsets(arrays), np.ones(10)
    big = ones.copy()
    big[[2, 8]] = 200.0  # moved by +-1 nothing is above 100; moved by +200, entries 2 and 8 are
    # entry 8 is row 1 (the first chunk with 2 threads), entry 2 row 3 (the second): the lowest row is reported,
    # whichever thread met it
    indices = np.array([0, 8, 1, 2, 9], dtype=np.int64)
    with threads_context(min(threads, THREADS)):
        ok = loss_table(loss_raises, arrays, args, indices, offsets, ones, MULTIPLES)
        assert same_bits(ok, twin_loss(loss_raises, arrays, args, indices, ones, MULTIPLES))
        with pytest.raises(ValueError, match="an entry is above the limit") as info:
            loss_table(loss_raises, arrays, args, indices, offsets, big, MULTIPLES)
    if sys.version_info >= (3, 11):
        assert "flat parameter 8, indices[1], set to 204.0" in "".join(info.value.__notes__)
    assert _unchanged(arrays, args, snapshot)  # the caller's arrays, also after the exception
    # and nothing is left over: the next call is as before
    again = loss_table(loss_raises, arrays, args, indices, offsets, ones, MULTIPLES)
    assert same_bits(again, ok)


@pytest.mark.nojit
def test_exception_in_f_in_complex_table():
    @numba.njit
    def f(params):
        (z,) = params
        if z[1].imag != 0.0:
            raise ZeroDivisionError("entry 1 moved")
        return z[0] * z[0] + z[1]

    arrays = (np.array([1.0 + 0j, 2.0 + 0j, 3.0 + 0j]),)
    snapshot = _snapshot(arrays, ())
    with pytest.raises(ZeroDivisionError, match="entry 1 moved"):
        complex_table(f, arrays, (), np.array([0, 2, 1], dtype=np.int64), _offsets(arrays), np.full(3, 1e-20))
    assert _unchanged(arrays, (), snapshot)
    out = complex_table(f, arrays, (), np.array([0, 2], dtype=np.int64), _offsets(arrays), np.full(3, 1e-20))
    assert list(out) == [2.0, 0.0]


@pytest.mark.nojit
def test_nondeterministic_failure_says_so():
    # the kernel saw f raise at entry 0, Python does not: a RuntimeError names the entry
    arrays = (np.zeros(3),)
    failed = np.array([-1, 0], dtype=np.int64)
    with pytest.raises(RuntimeError, match=r"flat parameter 2 \(indices\[0\]\).*deterministic"):
        fl._raise_failures(failed, loss_one, arrays, (np.ones(3),), np.array([2, 1], dtype=np.int64),
                           lambda w, i: [w + 1.0])


@pytest.mark.nojit
def test_nonfinite_values_are_values():
    w = np.array([1.0, 2.0, 6.0, 3.0])
    arrays, args = (w,), (1e300,)
    steps = np.ones(4)
    out = loss_table(loss_raises, arrays, args, np.arange(4, dtype=np.int64), _offsets(arrays), steps,
                     np.array([1.0, -1.0]))
    assert out[2, 0] == np.inf  # entry 2 moved to 7.0
    assert np.isfinite(np.delete(out.ravel(), 4)).all()
    assert same_bits(out, twin_loss(loss_raises, arrays, args, range(4), steps, np.array([1.0, -1.0])))


@pytest.mark.nojit
def test_unknown_branch_raises():
    # flat index P lies in no tensor: the kernel's last branch reports it (called directly, past the checks)
    arrays = (np.zeros(3),)
    kernel = fl._kernel("loss", 1, 1)
    out, failed = np.empty((2, 1)), np.full(1, -1, dtype=np.int64)
    fl.launch(kernel, 0.0, loss_one, *arrays, (np.ones(3),), np.array([1, 3], dtype=np.int64), _offsets(arrays),
              np.ones(4), np.array([1.0]), out, failed)
    assert list(failed) == [fl.NO_TENSOR - 1]
    with pytest.raises(IndexError, match=r"flat index 3 \(indices\[1\]\) lies in no tensor"):
        fl._raise_failures(failed, loss_one, arrays, (), np.array([1, 3]), lambda w, i: [w])


@pytest.mark.slow
@pytest.mark.skipif(not JIT, reason="threading layers")
@pytest.mark.parametrize("layer", ["workqueue", "tbb"])
def test_exception_on_a_worker_thread_is_not_lost(layer):
    # What the chunk functions work around (pinned here for Numba 0.68; if the first assertion fails after a
    # Numba upgrade, Numba changed: re-read function_loop's docstring): a plain prange kernel whose second chunk
    # raises, on a worker thread, returns normally with that chunk unfinished (tbb: unless the calling thread
    # ran the chunk, then a SystemError). loss_table raises f's exception every time, on either layer.
    code = textwrap.dedent("""
        import collections, json
        import numba, numpy as np
        from numba import prange
        from fastgrad._kernels.function_loop import loss_table

        @numba.njit
        def f(params, limit):
            (w,) = params
            acc = 0.0
            for rep in range(2000):  # long enough for a worker thread to take the second chunk
                for i in range(w.shape[0]):
                    if w[i] > limit:
                        raise ValueError("above the limit")
                    acc += w[i] * rep
            return acc

        @numba.njit(parallel=True, nogil=True)
        def raw(w, steps, out):
            n = w.shape[0]
            for c in prange(2):
                copy = w.copy()
                for i in range(c * n // 2, (c + 1) * n // 2):
                    copy[i] = w[i] + steps[i]
                    out[i] = f((copy,), 50.0)
                    copy[i] = w[i]

        w = np.zeros(40)
        offsets = np.array([0, 40], dtype=np.int64)
        raw_outcomes = collections.Counter()
        for rep in range(20):
            steps = np.ones(40)
            steps[39] = 100.0  # only the last entry, in the second chunk, raises
            out = np.zeros(40)
            try:
                raw(w, steps, out)
                raw_outcomes["returned" if out[39] == 0.0 else "returned, finished?"] += 1
            except SystemError as e:
                raw_outcomes[f"SystemError from {e.__cause__!r}"] += 1
            for bad in (39, 0, 25):  # the second chunk, the first, the second again
                steps = np.ones(40)
                steps[bad] = 100.0
                try:
                    loss_table(f, (w,), (50.0,), np.arange(40, dtype=np.int64), offsets, steps, np.array([1.0]))
                except ValueError as e:
                    assert "above the limit" in str(e), e
                else:
                    raise SystemExit(f"lost: entry {bad}, repeat {rep}")
        print(json.dumps([numba.threading_layer(), raw_outcomes]))
    """)
    env = {**os.environ, "FASTGRAD_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "2",
           "FASTGRAD_PARALLEL_MIN_SIZE": "0", "PYTHONPATH": str(ROOT)}
    env.pop("NUMBA_THREADING_LAYER", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    name, outcomes = json.loads(done.stdout)
    assert name == layer
    assert outcomes.get("returned", 0) >= 1, outcomes  # Numba lost the exception at least once
    assert set(outcomes) <= {"returned", "SystemError from ValueError('above the limit')"}, outcomes


# ---------------------------------------------------------------------------
# the contract's checks, is_jitted, the kernels' cache
# ---------------------------------------------------------------------------


@pytest.mark.skipif(not JIT, reason="under NUMBA_DISABLE_JIT nothing is a dispatcher")
def test_is_jitted():
    assert is_jitted(loss_one)
    assert not is_jitted(loss_one.py_func)
    assert not is_jitted(len) and not is_jitted(None)
    with pytest.raises(TypeError, match="Numba CPU dispatcher"):
        loss_table(loss_one.py_func, (np.zeros(2),), (np.ones(2),), np.array([0]), np.array([0, 2]), np.ones(2),
                   MULTIPLES)


@pytest.mark.nojit
def test_arguments_outside_the_contract_raise():
    a = np.zeros((2, 3))
    offsets, idx = np.array([0, 6], dtype=np.int64), np.array([0], dtype=np.int64)
    f = loss_noargs

    def call(arrays=(a, a), offs=None, indices=idx, st=None):
        offs = np.array([0, 6, 12], dtype=np.int64) if offs is None else offs
        return loss_table(f, arrays, (), indices, offs, np.ones(12) if st is None else st, MULTIPLES)

    with pytest.raises(TypeError, match="C-contiguous float64"):
        call(arrays=(a, np.zeros((3, 2)).T))
    with pytest.raises(TypeError, match="C-contiguous float64"):
        call(arrays=(a, a.astype(np.float32)))
    with pytest.raises(TypeError, match="C-contiguous complex128"):
        complex_table(f, (a, a), (), idx, np.array([0, 6, 12], dtype=np.int64), np.ones(12))
    with pytest.raises(ValueError, match="offsets"):
        call(offs=np.array([0, 6, 11], dtype=np.int64))
    with pytest.raises(ValueError, match="offsets"):
        call(offs=offsets)
    with pytest.raises(IndexError, match=r"\[0, 12\)"):
        call(indices=np.array([12], dtype=np.int64))
    with pytest.raises(IndexError, match=r"\[0, 12\)"):
        call(indices=np.array([-1], dtype=np.int64))
    with pytest.raises(TypeError, match="integer"):
        call(indices=np.array([0.0]))
    with pytest.raises(ValueError, match="steps must be 1-D of length 12"):
        call(st=np.ones(6))
    with pytest.raises(TypeError, match="tuples"):
        loss_table(f, [a, a], (), idx, np.array([0, 6, 12], dtype=np.int64), np.ones(12), MULTIPLES)


@pytest.mark.nojit
def test_kernels_are_made_once_per_kind_arity_and_args():
    assert fl._kernel("loss", 2, 1) is fl._kernel("loss", 2, 1)
    assert fl._kernel("loss", 2, 1) is not fl._kernel("complex", 2, 1)
    assert fl._kernel("loss", 2, 1) is not fl._kernel("loss", 2, 2)
    source = fl._source("loss", 3, 2)
    assert "elif t == 2:" in source and "return NO_TENSOR - r" in source
    assert "f(params, args[0], args[1])" in source and "fastmath" not in source
    assert fl.OPTIONS["parallel"] and not fl.OPTIONS["cache"] and not fl.OPTIONS["fastmath"]

"""Check the gradient of a Numba-compiled loss, and time it against the same check of a NumPy loss.

A linear softmax classifier with D = 1000 inputs and K = 10 classes
(10,010 parameters), on N examples with one-hot labels Y:

    s = X W + b,   E = -(1/N) sum_n sum_k Y[n, k] log softmax(s_n)_k
    dE/dW = X^T (softmax(s) - Y) / N,   dE/db = sum_n (softmax(s_n) - Y_n) / N

``softmax_loss`` is an ``@numba.njit`` function of the tuple (W, b) and the
arguments X, Y (plain loops: no BLAS call inside Numba's threads).
fastgrad.check_function calls a compiled loss from one parallel kernel (at
+-h and +-2h of each parameter: 4 evaluations each) without returning to
Python. ``softmax_loss_numpy`` is the same loss in NumPy, which fastgrad
calls from a Python loop. Both checks judge the same hand-written gradient;
the script prints both reports, their times and the speedup (how large it is
depends on the cores free and on how much of a NumPy call is Python's
overhead: here the loss's own arithmetic dominates), then checks a gradient
whose db lacks its 1/N (it must fail in b, named "p1": the tuple's second
entry).

The compiled check's first call also compiles fastgrad's kernel for this
loss (seconds: it cannot be cached on disk), so it is timed twice and the
second call is the one compared.

Run:  python examples/jitted_loss.py   (exit status 0 = both checks pass the right gradient, the wrong db fails)
"""

import sys
import time

import numba
import numpy as np

import fastgrad

N, D, K = 5, 1000, 10  # examples, inputs, classes


@numba.njit
def softmax_loss(params, X, Y):
    """Mean cross-entropy of softmax(X W + b) against one-hot Y; params = (W (D, K), b (K,))."""
    W, b = params
    scores = np.empty(b.shape[0])
    total = 0.0
    for n in range(X.shape[0]):
        scores[:] = b
        for d in range(X.shape[1]):
            x = X[n, d]
            for k in range(scores.shape[0]):
                scores[k] += x * W[d, k]
        top = scores.max()  # exp cannot overflow
        norm = 0.0
        for k in range(scores.shape[0]):
            norm += np.exp(scores[k] - top)
        log_norm = top + np.log(norm)
        for k in range(scores.shape[0]):
            total -= Y[n, k] * (scores[k] - log_norm)
    return total / X.shape[0]


def softmax_loss_numpy(params, X, Y):
    """The same loss with NumPy."""
    W, b = params
    scores = X @ W + b
    top = scores.max(axis=1, keepdims=True)
    log_p = scores - top - np.log(np.exp(scores - top).sum(axis=1, keepdims=True))
    return -np.sum(Y * log_p) / len(X)


def gradient(params, X, Y, db_without_1_over_n=False):
    """(dE/dW, dE/db); ``db_without_1_over_n=True`` sums db over the examples without dividing by N (bug)."""
    W, b = params
    scores = X @ W + b
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    residual = p - Y
    db = residual.sum(axis=0)
    return X.T @ residual / len(X), db if db_without_1_over_n else db / len(X)


def make_case(rng):
    """Parameters (W, b), inputs X (N, D) and one-hot labels Y (N, K)."""
    params = (rng.normal(0.0, 0.05, size=(D, K)), rng.normal(0.0, 0.5, size=K))
    X = rng.standard_normal((N, D))
    Y = np.eye(K)[rng.integers(0, K, size=N)]
    return params, X, Y


def timed_check(f, params, grads, args):
    """Fastgrad.check_function's result and its wall time in seconds."""
    start = time.perf_counter()
    result = fastgrad.check_function(f, params, grads, args=args)
    return result, time.perf_counter() - start


def main():
    """Run the checks and print the speedup; return 0 if the right gradient passes and the wrong one fails in b."""
    params, X, Y = make_case(np.random.default_rng(0))
    grads = gradient(params, X, Y)
    _, cold = timed_check(softmax_loss, params, grads, (X, Y))  # compiles
    jitted, warm = timed_check(softmax_loss, params, grads, (X, Y))
    plain, python_time = timed_check(softmax_loss_numpy, params, grads, (X, Y))
    print("== @numba.njit loss (fastgrad's parallel path)")
    print(jitted)
    print("== NumPy loss, evaluated from Python")
    print(plain)
    print(f"check time: compiled loss {warm:.3f} s (first call, compiling, {cold:.3f} s), NumPy loss "
          f"{python_time:.3f} s; speedup of the compiled loss's check {python_time / warm:.2f}x")

    wrong = gradient(params, X, Y, db_without_1_over_n=True)
    caught, _ = timed_check(softmax_loss, params, wrong, (X, Y))
    failed = {t.name for t in caught.tensors if not t.passed}
    print(f"== db without 1/N: failing tensors {sorted(failed) or 'none'} (expected ['p1'])")
    print(caught)
    return 0 if jitted.passed and plain.passed and failed == {"p1"} else 1


if __name__ == "__main__":
    sys.exit(main())

"""What NumPy's BLAS reaches on this machine, on the deep net's shapes (GFLOP/s ceiling).

The deep net 784-256-256-256-10 at N=64 is products of these shapes; their
GFLOP/s (``extra_info["flops"]`` / median) is the rate fastgrad's deep check
can be held against (its own work estimate is ``extra_info["flops_estimate"]``
of the ``deep`` group). Threads: 1 and all, when NumPy's BLAS is OpenBLAS
(its thread count is set through its C API); otherwise only the default.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastgrad.bench import blas_threads, openblas_thread_functions, peer_threads

BLAS_GROUP = "blas np.dot (deep-net shapes)"
#: (rows, inner, cols, repeats): (4*64, 256) @ (256, 256) is four batches of
#: a 256-wide layer at once; (64, 784) @ (784, 256) is the first layer.
SHAPES = [(4 * 64, 256, 256, 32), (64, 256, 256, 64), (64, 784, 256, 32)]


def _repeated_dot(A, B, out, repeats):
    for _ in range(repeats):
        np.dot(A, B, out=out)
    return out


@pytest.mark.parametrize("threads", [1, "all"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}@{s[1]}x{s[2]}x{s[3]}")
def test_blas_dot(benchmark, shape, threads):
    m, k, n, repeats = shape
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(m, k)), rng.normal(size=(k, n))
    out = np.empty((m, n))
    default = blas_threads()
    n_threads = default if threads == "all" else 1
    if threads == 1 and openblas_thread_functions() is None:
        pytest.skip("NumPy's BLAS is not OpenBLAS: its thread count cannot be set here")
    with peer_threads(n_threads if n_threads is not None else 1):
        benchmark.group = BLAS_GROUP
        C = benchmark(_repeated_dot, A, B, out, repeats)
    # the product is right: a few rows against an elementwise sum (no BLAS)
    np.testing.assert_allclose(C[:3], (A[:3, :, None] * B[None, :, :]).sum(axis=1), rtol=1e-10, atol=1e-10)
    benchmark.extra_info.update(
        label=f"np.dot ({m},{k})@({k},{n}) x{repeats}",
        role="blas",
        shape=f"({m},{k})@({k},{n})",
        repeats=repeats,
        threads=n_threads if n_threads is not None else "default",
        dtype="float64",
        method="np.dot",
        engine="blas",
        flops=2.0 * m * k * n * repeats,
    )

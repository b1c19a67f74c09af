"""The register-tiled products (forward pass, assembly) against the scalar loops they replace, bit for bit.

:func:`fastgrad._kernels.forward.forward_layers` and
:func:`fastgrad._kernels.row_products.row_products` keep tiles of sums in
vec4 registers (:mod:`fastgrad._kernels.simd`). Each sum must still be the
scalar loop's, term by term in the same order: the twins below are those
loops, written with NumPy row operations (one IEEE operation per element,
so the same bits as a scalar loop). The shapes cover widths that are not
multiples of the tiles, batches that are not multiples of four, inputs
longer than one input block, exact zero inputs (dead relu units) and
non-finite coefficients, on one and two threads.
"""

import numba
import numpy as np
import pytest

import fastgrad
from fastgrad._config import threads_context
from fastgrad._kernels import forward as fw
from fastgrad._kernels.row_products import ROW_TILE, finite_unit_tiles, row_products
from fastgrad._kernels.simd import add4, broadcast4, load4, mul4, store4
from fastgrad._kernels.tiles import TILE_COLUMNS

THREADS = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})


def _layers(net, Z):
    """Split a kernel's (N, U) rows into the layers' blocks."""
    out, start = [], 0
    for width in net.sizes[1:]:
        out.append(Z[:, start:start + width])
        start += width
    return out


FORWARD_CASES = [
    ([3, 1], "identity", 1),
    ([5, 7, 3], "relu", 3),
    ([4, 8, 9], "tanh", 4),
    ([6, 13, 17, 2], "relu", 9),
    ([300, 12, 5], "sigmoid", 6),  # more inputs than one block (INPUT_BLOCK = 256)
    ([520, 16, 8], "relu", 5),
]


@pytest.mark.parametrize("sizes,hidden,N", FORWARD_CASES)
@pytest.mark.parametrize("threads", THREADS)
def test_forward_is_the_scalar_loop_bit_for_bit(sizes, hidden, N, threads):
    rng = np.random.default_rng(len(sizes) * 100 + N)
    net = fastgrad.MLP(sizes, hidden=hidden, output="identity", loss="mse")
    params = [p + 0.3 * rng.normal(size=p.shape) for p in net.init(seed=1)]
    X = rng.normal(size=(N, sizes[0]))
    X[rng.uniform(size=X.shape) < 0.3] = 0.0  # exact zero inputs, as dead relu units give the next layer
    theta = net.flatten(params)
    Z, A = fw.empty_activations(net.layout, N)
    with threads_context(threads):
        fw.forward_batch(theta, net.layout, X, Z, A)
    a = X
    for layer, Zl in enumerate(_layers(net, Z)):
        W, b = params[2 * layer], params[2 * layer + 1]
        for n in range(N):
            z = b.copy()
            for i in range(W.shape[0]):
                if a[n, i] != 0.0:
                    z += a[n, i] * W[i]
            np.testing.assert_array_equal(Zl[n], z, err_msg=f"layer {layer} sample {n}")
        a = _layers(net, A)[layer]
    # any split of the samples gives the same rows (the full engine recomputes one tile of samples at a time)
    Z2, A2 = fw.empty_activations(net.layout, N)
    for lo in range(N):
        fw.forward_layers(theta, net.layout, X, lo, lo + 1, 0, True, Z2, A2)
    np.testing.assert_array_equal(Z, Z2)
    np.testing.assert_array_equal(A, A2)


def test_forward_twin_catches_a_reordered_sum():
    """The comparison above can fail: summing the inputs backwards changes bits on such data."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=300) * 10.0 ** rng.integers(-3, 4, 300)
    w = rng.normal(size=300)
    forward = 0.1
    for i in range(300):
        forward += a[i] * w[i]
    backward = 0.1
    for i in reversed(range(300)):
        backward += a[i] * w[i]
    assert forward != backward


def _products_twin(P, a, E):
    out = np.zeros((P.shape[0], E.shape[1]))
    for r in range(P.shape[0]):
        for n in range(E.shape[0]):
            if a[r, n] != 0.0:
                out[r] += P[r, n] * E[n]
    return out


@pytest.mark.nojit
@pytest.mark.parametrize("B", [1, 7, 8, 13, 24])
@pytest.mark.parametrize("N", [1, 5, 64])
def test_row_products_are_the_scalar_loop_bit_for_bit(B, N):
    rng = np.random.default_rng(B * 1000 + N)
    a = rng.normal(size=(ROW_TILE, N)) * 10.0 ** rng.integers(-4, 5, (ROW_TILE, N))
    a[rng.uniform(size=a.shape) < 0.25] = 0.0
    P = a * a * a
    E = rng.normal(size=(N, B))
    E3 = rng.normal(size=(N, B))
    if B > 3 and N > 1:  # non-finite coefficients only in samples whose every input is zero: the sums stay finite
        a[:, :2] = 0.0
        P[:, :2] = 0.0
        E[0, 2] = np.inf
        E3[1, 3] = np.nan
    finite = finite_unit_tiles(E, E3, E, False)
    for factors, coefficients in ((a, E), (P, E3)):
        out = np.empty((ROW_TILE, B))
        row_products(factors, a, coefficients, finite, out)
        np.testing.assert_array_equal(out, _products_twin(factors, a, coefficients))
    if B > 3 and N > 1:
        assert not finite[0]  # the non-finite units took the scalar way, which skips the zero inputs
        for factors, coefficients in ((a, E), (P, E3)):
            out = np.empty((ROW_TILE, B))
            row_products(factors, a, coefficients, finite, out)
            assert np.isfinite(out).all()


@pytest.mark.nojit
def test_finite_unit_tiles_marks_the_tile_of_each_non_finite_coefficient():
    E1 = np.zeros((3, 2 * TILE_COLUMNS + 3))
    E3 = np.zeros_like(E1)
    E1abs = np.zeros_like(E1)
    E3[2, TILE_COLUMNS + 1] = np.nan
    E1abs[0, 2 * TILE_COLUMNS + 2] = np.inf
    assert finite_unit_tiles(E1, E3, E1abs, False).tolist() == [True, False, True]
    assert finite_unit_tiles(E1, E3, E1abs, True).tolist() == [True, False, False]


@pytest.mark.nojit
def test_vec4_operations_are_one_ieee_operation_per_lane():
    """The four-lane operations against NumPy's elementwise ones (compiled, and as Python under NUMBA_DISABLE_JIT)."""

    @numba.njit
    def ops(x, y, out, i):
        u = load4(x, i)
        v = load4(y, i)
        store4(out, 0, add4(mul4(u, v), broadcast4(x, 0)))
        store4(out, 4, mul4(broadcast4(y, 1), u))

    rng = np.random.default_rng(0)
    x = rng.normal(size=9) * 1e3
    y = rng.normal(size=9) * 1e-3
    out = np.empty(8)
    ops(x, y, out, 3)
    np.testing.assert_array_equal(out[:4], x[3:7] * y[3:7] + x[0])
    np.testing.assert_array_equal(out[4:], y[1] * x[3:7])

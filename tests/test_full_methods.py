"""full_differences: central, Richardson and complex-step differences, and kink flags.

Checked against slow NumPy twins (float64 for central and Richardson, numpy
complex128 for the complex step), against the exact gradient (60-digit
mpmath), against ``central_diff_full`` and ``complex_batch_loss``, for
bitwise reproducibility (threads, chunking, order), for the kink flags, and
for not writing its inputs.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import reference as ref
from exact import DIGITS, exact_loss, mpmath, needs_mpmath
from kernel_twins import central_diff_full, complex_batch_loss

import fastgrad
from fastgrad._kernels import codes
from fastgrad._kernels.activations import cact
from fastgrad._kernels.forward import n_units
from fastgrad._kernels.numgrad import full_differences

CENTRAL, RICHARDSON, COMPLEX = codes.CENTRAL, codes.RICHARDSON, codes.COMPLEX
METHODS = (CENTRAL, RICHARDSON, COMPLEX)
#: Default steps found with these tests' exact gradients (see test_accuracy_against_exact_gradient).
STEP = {CENTRAL: 1e-4, RICHARDSON: 2.0**-11, COMPLEX: 1e-20}

# (sizes, hidden, output, loss): every activation as hidden and output, every loss
CASES = [
    ([3, 4, 2], "sigmoid", "sigmoid", "mse"),
    ([3, 4, 3, 2], "tanh", "identity", "sse"),
    ([3, 4, 2], "relu", "tanh", "half_sse"),
    ([3, 5, 3], "leaky_relu", "softmax", "cross_entropy"),
    ([3, 4, 2], "softplus", "relu", "mse"),
    ([3, 4, 2], "identity", "leaky_relu", "sse"),
    ([3, 4, 2], "tanh", "softplus", "half_sse"),
    ([3, 4, 3], "relu", "sigmoid", "bce"),
]
CASE_IDS = ["-".join([h, o, lo]) for _, h, o, lo in CASES]


# --------------------------------------------------------------------------
# NumPy twins
# --------------------------------------------------------------------------


def make_steps(theta, method, h):
    """Return steps as a caller makes them: exactly representable, or relative for the complex step."""
    if method == COMPLEX:
        return h * np.maximum(1.0, np.abs(theta))
    return (theta + h) - theta


def twin_loss(net, theta, X, Y):
    return ref.loss(net.unflatten(theta), X, Y, net.hidden, net.output, net.loss_name)


def twin_real(net, theta, X, Y, steps, method):
    """Central or Richardson differences, one parameter at a time, with reference.loss."""
    out = np.empty(net.n_params)
    for p in range(net.n_params):
        h = steps[p]

        def E(s, p=p):
            th = theta.copy()
            th[p] = theta[p] + s
            return twin_loss(net, th, X, Y)

        d1 = (E(h) - E(-h)) / (2.0 * h)
        if method == RICHARDSON:
            d2 = (E(2.0 * h) - E(-2.0 * h)) / (4.0 * h)
            d1 = (4.0 * d1 - d2) / 3.0
        out[p] = d1
    return out


def complex_act(name, z):
    """Complex activation, numpy complex arithmetic (relu/leaky_relu: the real part's piece)."""
    x = z.real
    if name == "sigmoid":
        out = np.empty_like(z)
        pos = x >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
        e = np.exp(z[~pos])
        out[~pos] = e / (1.0 + e)
        return out
    if name == "tanh":
        return np.tanh(z)
    if name == "softplus":
        out = np.empty_like(z)
        pos = x > 0
        out[pos] = z[pos] + np.log(1.0 + np.exp(-z[pos]))
        out[~pos] = np.log(1.0 + np.exp(z[~pos]))
        return out
    if name == "relu":
        return np.where(x > 0, z, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, z, ref.LEAKY_SLOPE * z)
    assert name == "identity"
    return z.copy()


def twin_complex_forward(net, theta_c, X):
    """Pre-activations of every layer, complex128."""
    a = X.astype(np.complex128)
    zs = []
    params = net.unflatten(theta_c)
    for layer in range(net.n_layers):
        z = a @ params[2 * layer] + params[2 * layer + 1]
        zs.append(z)
        name = net.output if layer == net.n_layers - 1 else net.hidden
        a = None if name == "softmax" else complex_act(name, z)
    return zs, a


def twin_complex_loss(net, theta_c, X, Y):
    zs, a = twin_complex_forward(net, theta_c, X)
    N = X.shape[0]
    if net.loss_name == "cross_entropy":
        z = zs[-1]
        m = z.real.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
        return np.sum(Y * (lse - z)) / N
    if net.loss_name == "bce":  # softplus(z) - y z, softplus as complex_act's
        z = zs[-1]
        return np.sum(complex_act("softplus", z) - Y * z) / N
    total = np.sum((Y - a) ** 2)  # the analytic square, not |.|^2
    return {"mse": total / N, "sse": total, "half_sse": 0.5 * total}[net.loss_name]


def twin_complex(net, theta, X, Y, steps):
    """Complex-step derivatives Im E(w + i h) / h."""
    out = np.empty(net.n_params)
    for p in range(net.n_params):
        th = theta.astype(np.complex128)
        th[p] += 1j * steps[p]
        out[p] = twin_complex_loss(net, th, X, Y).imag / steps[p]
    return out


def twin(net, theta, X, Y, steps, method):
    if method == COMPLEX:
        return twin_complex(net, theta, X, Y, steps)
    return twin_real(net, theta, X, Y, steps, method)


def kinked_layers(net):
    names = [net.hidden] * (net.n_layers - 1) + [net.output]
    return [l for l, name in enumerate(names) if name in ref.KINKED]


def twin_kinks(net, theta, X, steps, method):
    """1 where a perturbed pass moves a relu/leaky_relu pre-activation across 0 (masks compared)."""
    zb = ref.forward(net.unflatten(theta), X, net.hidden, net.output)[0]
    layers = kinked_layers(net)
    flags = np.zeros(net.n_params, dtype=np.int8)
    for p in range(net.n_params):
        if method == COMPLEX:
            th = theta.astype(np.complex128)
            th[p] += 1j * steps[p]
            zs = twin_complex_forward(net, th, X)[0]
            hit = any(
                np.any(((zs[l].real > 0) != (zb[l] > 0)) | ((zb[l] == 0) & (zs[l].imag != 0))) for l in layers
            )
        else:
            moves = (1, -1) if method == CENTRAL else (1, -1, 2, -2)
            hit = False
            for k in moves:
                th = theta.copy()
                th[p] = theta[p] + k * steps[p]
                zs = ref.forward(net.unflatten(th), X, net.hidden, net.output)[0]
                hit = hit or any(np.any((zs[l] > 0) != (zb[l] > 0)) for l in layers)
        flags[p] = hit
    return flags


# --------------------------------------------------------------------------
# Running the kernel
# --------------------------------------------------------------------------


def run(net, theta, X, Y, steps, method, order=None, bounds=None, Z_base=None):
    P = net.n_params
    order = np.arange(P, dtype=np.int64) if order is None else order
    bounds = np.array([0, order.size], dtype=np.int64) if bounds is None else bounds
    if Z_base is None:
        Z_base = net._forward(theta, X)[0]
    out = np.full(P, np.nan)
    kinks = np.full(P, -1, dtype=np.int8)
    full_differences(theta, net.layout, net.loss_code, X, Y, steps, method, Z_base, order, bounds,
                     n_units(net.layout), out, kinks)
    return out, kinks


def case(rng, sizes, hidden, output, loss, N=5):
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    params, X, Y = ref.random_case(rng, sizes, hidden, output, loss, N=N)
    return net, net.flatten(params), X, Y


def exact_gradient(net, theta, X, Y):
    """dE/dw of every parameter, by mpmath.diff of the 60-digit loss."""
    with mpmath.workdps(DIGITS):
        base = [mpmath.mpf(float(v)) for v in theta]
        grad = []
        for p in range(len(base)):

            def f(t, p=p):
                th = list(base)
                th[p] = t
                return exact_loss(net, th, X, Y)

            grad.append(float(mpmath.diff(f, base[p])))
    return np.array(grad)


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


@pytest.mark.nojit
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sizes,hidden,output,loss", CASES, ids=CASE_IDS)
def test_matches_numpy_twin(rng, sizes, hidden, output, loss, method):
    net, theta, X, Y = case(rng, sizes, hidden, output, loss)
    steps = make_steps(theta, method, STEP[method])
    out, kinks = run(net, theta, X, Y, steps, method)
    expected = twin(net, theta, X, Y, steps, method)
    scale = np.max(np.abs(expected))
    if method == COMPLEX:
        atol = 1e-13 * scale
    else:  # the twin's losses round differently (matmul order): a few ulp(E) / h
        atol = 64 * np.finfo(float).eps * abs(twin_loss(net, theta, X, Y)) / STEP[method]
    np.testing.assert_allclose(out, expected, rtol=0, atol=atol)
    assert not kinks.any()  # random_case keeps every kinked unit 1e-2 from 0


@pytest.mark.nojit
@pytest.mark.parametrize("sizes,hidden,output,loss", CASES, ids=CASE_IDS)
def test_central_is_bitwise_central_diff_full(rng, sizes, hidden, output, loss):
    net, theta, X, Y = case(rng, sizes, hidden, output, loss, N=11)
    eps = 1e-4
    steps = np.full(net.n_params, eps)
    out, _ = run(net, theta, X, Y, steps, CENTRAL)
    expected = np.empty(net.n_params)
    order = np.arange(net.n_params, dtype=np.int64)
    central_diff_full(theta, net.layout, net.loss_code, X, Y, eps, order, np.array([0, net.n_params]),
                      n_units(net.layout), expected)
    assert np.array_equal(out.view(np.int64), expected.view(np.int64))


@pytest.mark.nojit
@pytest.mark.parametrize("sizes,hidden,output,loss", CASES, ids=CASE_IDS)
def test_complex_matches_complex_batch_loss(rng, sizes, hidden, output, loss):
    """The kernel's suffix-only complex pass gives the values of the plain whole pass."""
    net, theta, X, Y = case(rng, sizes, hidden, output, loss, N=11)
    steps = make_steps(theta, COMPLEX, 1e-20)
    out, _ = run(net, theta, X, Y, steps, COMPLEX)
    U = n_units(net.layout)
    Zc = np.empty((X.shape[0], U), dtype=np.complex128)
    Ac = np.empty_like(Zc)
    plain = np.empty(net.n_params)
    for p in range(net.n_params):
        th = theta.astype(np.complex128)
        th[p] += 1j * steps[p]
        plain[p] = complex_batch_loss(th, net.layout, net.loss_code, X, Y, Zc, Ac).imag / steps[p]
    assert np.array_equal(out, plain)
    # and the real part of the plain pass is the real loss
    E = complex_batch_loss(theta.astype(np.complex128), net.layout, net.loss_code, X, Y, Zc, Ac)
    assert E.imag == 0.0 and E.real == net.loss(net.unflatten(theta), X, Y)


SMOOTH = [
    ([3, 4, 2], "sigmoid", "sigmoid", "mse"),
    ([3, 4, 3, 2], "tanh", "identity", "sse"),
    ([3, 4, 3], "softplus", "softmax", "cross_entropy"),
    ([3, 4, 2], "tanh", "tanh", "half_sse"),
    ([3, 4, 3], "softplus", "sigmoid", "bce"),
]


@needs_mpmath
@pytest.mark.parametrize("sizes,hidden,output,loss", SMOOTH, ids=["-".join(c[1:]) for c in SMOOTH])
def test_accuracy_against_exact_gradient(rng, sizes, hidden, output, loss):
    """Errors relative to the largest entry: complex <= 1e-13, Richardson <= 1e-10, central <= 1e-7.

    Measured over 48 random nets (6 kinds, 8 seeds, N = 5): complex step at
    h = 1e-20 max(1, |w|): <= 4.8e-16. Richardson: 7.2e-11 at h = 2^-10,
    4.4e-12 at 2^-11 (~4.9e-4, the best), 6.8e-12 at 2^-12. Central:
    1.7e-8 at 1e-4, 1.6e-10 at 1e-5 (the best).
    """
    net, theta, X, Y = case(rng, sizes, hidden, output, loss)
    exact = exact_gradient(net, theta, X, Y)
    scale = np.max(np.abs(exact))
    errors = {}
    for method, limit in ((COMPLEX, 1e-13), (RICHARDSON, 1e-10), (CENTRAL, 1e-7)):
        out, kinks = run(net, theta, X, Y, make_steps(theta, method, STEP[method]), method)
        errors[method] = np.max(np.abs(out - exact)) / scale
        assert errors[method] <= limit, (method, errors[method])
        assert not kinks.any()
    assert errors[COMPLEX] < errors[RICHARDSON] < errors[CENTRAL]


@pytest.mark.parametrize("method", METHODS)
def test_bitwise_for_threads_chunks_and_order(rng, method):
    net, theta, X, Y = case(rng, [4, 6, 5, 3], "leaky_relu", "sigmoid", "mse", N=11)
    P = net.n_params
    # steps large enough that some perturbations cross kinks: flags must be reproducible too
    steps = make_steps(theta, method, {CENTRAL: 0.3, RICHARDSON: 0.3, COMPLEX: 1e-20}[method])
    order = np.arange(P, dtype=np.int64)
    base_out, base_kinks = run(net, theta, X, Y, steps, method)
    if method != COMPLEX:
        assert base_kinks.any() and not base_kinks.all()
    previous = numba.get_num_threads()
    variants = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            variants.append(run(net, theta, X, Y, steps, method, order, np.array([0, P])))
            variants.append(run(net, theta, X, Y, steps, method, order, np.arange(P + 1)))
            cuts = np.unique(np.concatenate(([0, P], rng.integers(0, P, 7))))
            variants.append(run(net, theta, X, Y, steps, method, order, cuts))
            perm = rng.permutation(P).astype(np.int64)
            variants.append(run(net, theta, X, Y, steps, method, perm, np.array([0, 5, 17, P])))
    finally:
        numba.set_num_threads(previous)
    for out, kinks in variants:
        assert np.array_equal(out.view(np.int64), base_out.view(np.int64))
        assert np.array_equal(kinks, base_kinks)


def test_subset_leaves_other_entries_alone(rng):
    net, theta, X, Y = case(rng, [3, 4, 2], "tanh", "sigmoid", "mse")
    steps = make_steps(theta, RICHARDSON, STEP[RICHARDSON])
    full_out, _ = run(net, theta, X, Y, steps, RICHARDSON)
    subset = np.array([13, 2, 21], dtype=np.int64)
    out, kinks = run(net, theta, X, Y, steps, RICHARDSON, subset, np.array([0, 1, 3]))
    assert np.array_equal(out[subset], full_out[subset])
    rest = np.setdiff1d(np.arange(net.n_params), subset)
    assert np.isnan(out[rest]).all() and (kinks[rest] == -1).all()


def _near_kink_case(rng, dist):
    """Relu net [3, 4, 2] whose unit 1 of sample 0 has pre-activation ``dist``; the rest >= 1e-3 from 0."""
    net = fastgrad.MLP([3, 4, 2], hidden="relu", output="identity", loss="sse")
    for _ in range(1000):
        params, X, Y = ref.random_case(rng, [3, 4, 2], "relu", "identity", "sse", N=5)
        params[1] = rng.normal(size=4)
        X[0] = [0.02, -0.5, 2.0]
        z = X @ params[0] + params[1]
        params[1][1] += dist - z[0, 1]
        theta = net.flatten(params)
        Z = net._forward(theta, X)[0][:, :4]
        others = np.abs(np.delete(Z.ravel(), 1))
        if others.min() > 1e-3:
            return net, theta, X, Y, Z
    raise RuntimeError("no case")


@pytest.mark.parametrize("method", (CENTRAL, RICHARDSON))
def test_kinks_flag_exactly_the_parameters_that_cross(rng, method):
    net, theta, X, Y, Z = _near_kink_case(rng, 1e-9)
    assert 0.5e-9 < Z[0, 1] < 1.5e-9
    steps = np.full(net.n_params, 1e-8)  # exactly representable enough: only the flags are checked here
    out, kinks = run(net, theta, X, Y, steps, method)
    expected = twin_kinks(net, theta, X, steps, method)
    assert np.array_equal(kinks, expected)
    # W1[i, 1] moves z by h |x_i| (up to 2h for Richardson): 2e-8 * 0.02 < 1e-9 < 1e-8 * 0.5
    W1 = lambda i, j: 4 * i + j  # noqa: E731
    assert set(np.flatnonzero(kinks)) == {W1(1, 1), W1(2, 1), 12 + 1}
    # a tiny step that stays on its side flags nothing
    _, kinks = run(net, theta, X, Y, np.full(net.n_params, 1e-11), method)
    assert not kinks.any()


@pytest.mark.parametrize("method", METHODS)
def test_kinks_in_output_layer(rng, method):
    """A relu *output* unit at a kink: the parameters that reach it are flagged.

    Central/Richardson: unit 0 of sample 2 is 1e-9 from 0 and every parameter
    can move it across. Complex step: unit 0 is exactly 0 in every sample
    (its weights and bias are 0) and only its own weights and bias give it
    an imaginary part.
    """
    net = fastgrad.MLP([3, 4, 2], hidden="tanh", output="relu", loss="mse")
    params, X, Y = ref.random_case(rng, [3, 4, 2], "tanh", "relu", "mse", N=4)
    if method == COMPLEX:
        params[2][:, 0] = 0.0
        params[3][0] = 0.0
    else:
        z = ref.forward(params, X, "tanh", "relu")[0][-1]
        params[3][0] += 1e-9 - z[2, 0]
    theta = net.flatten(params)
    steps = make_steps(theta, method, 1e-20) if method == COMPLEX else np.full(net.n_params, 1e-6)
    Z_base = net._forward(theta, X)[0]
    out, kinks = run(net, theta, X, Y, steps, method)
    expected = twin_kinks(net, theta, X, steps, method)
    assert np.array_equal(kinks, expected)
    if method == COMPLEX:
        assert (Z_base[:, 4] == 0.0).all()
        assert set(np.flatnonzero(kinks)) == {16, 18, 20, 22, 24}  # W2[:, 0], b2[0]
        # the kink's left piece, as backprop: relu'(0) = 0
        grad = net._backprop_flat(theta, X, Y)
        np.testing.assert_allclose(out, grad, rtol=0, atol=1e-13 * np.max(np.abs(grad)))
    else:
        assert kinks.sum() >= 5


def test_complex_kink_at_exact_zero(rng):
    """Complex step: flags a pre-activation exactly 0 that gets an imaginary part, and only that."""
    net = fastgrad.MLP([3, 4, 2], hidden="relu", output="identity", loss="sse")
    for _ in range(1000):
        params, X, Y = ref.random_case(rng, [3, 4, 2], "relu", "identity", "sse", N=5)
        params[1] = rng.normal(size=4)
        params[1][1] = 0.0
        X[0] = 0.0  # sample 0, unit 1: 0 + sum of skipped zeros, exactly 0
        zs = ref.forward(params, X, "relu", "identity")[0]
        if np.abs(np.delete(zs[0].ravel(), 1)).min() > 1e-3:
            break
    theta = net.flatten(params)
    steps = make_steps(theta, COMPLEX, 1e-20)
    out, kinks = run(net, theta, X, Y, steps, COMPLEX)
    assert set(np.flatnonzero(kinks)) == {12 + 1}  # b1[1]; W1[:, 1] multiply the zero inputs
    assert np.array_equal(kinks, twin_kinks(net, theta, X, steps, COMPLEX))
    grad = net._backprop_flat(theta, X, Y)
    np.testing.assert_allclose(out, grad, rtol=0, atol=1e-13 * np.max(np.abs(grad)))


@pytest.mark.parametrize("method", METHODS)
def test_no_flags_without_kinks(rng, method):
    net, theta, X, Y = case(rng, [3, 5, 4, 2], "sigmoid", "tanh", "sse")
    _, kinks = run(net, theta, X, Y, make_steps(theta, method, 0.5 if method != COMPLEX else 1e-20), method)
    assert not kinks.any()
    net, theta, X, Y = case(rng, [3, 5, 4, 2], "relu", "leaky_relu", "sse")  # 1e-2 from every kink
    _, kinks = run(net, theta, X, Y, make_steps(theta, method, STEP[method]), method)
    assert not kinks.any()


@pytest.mark.parametrize("method", METHODS)
def test_inputs_not_modified(rng, method):
    net, theta, X, Y = case(rng, [3, 4, 3], "leaky_relu", "softmax", "cross_entropy")
    steps = make_steps(theta, method, 0.3 if method != COMPLEX else 1e-20)
    Z_base = net._forward(theta, X)[0]
    order = rng.permutation(net.n_params).astype(np.int64)
    bounds = np.array([0, 4, 9, net.n_params], dtype=np.int64)
    inputs = [theta, net.layout, X, Y, steps, Z_base, order, bounds]
    copies = [a.copy() for a in inputs]
    run(net, theta, X, Y, steps, method, order, bounds, Z_base)
    for a, c in zip(inputs, copies):
        assert np.array_equal(a.view(np.uint8), c.view(np.uint8))


@needs_mpmath
@pytest.mark.parametrize("name,code", [
    ("sigmoid", codes.SIGMOID), ("tanh", codes.TANH), ("softplus", codes.SOFTPLUS),
])
def test_complex_activations_far_out(name, code):
    """Im act(x + i y) / y is act'(x) to rounding for tiny y, and nothing overflows, for |x| up to 800."""
    d = {"sigmoid": lambda x: mpmath.exp(-abs(x)) / (1 + mpmath.exp(-abs(x))) ** 2,
         "tanh": lambda x: mpmath.sech(x) ** 2,
         "softplus": lambda x: 1 / (1 + mpmath.exp(-x))}[name]
    f = {"sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)), "tanh": mpmath.tanh,
         "softplus": lambda x: mpmath.log1p(mpmath.exp(x))}[name]
    y = 1e-20
    with mpmath.workdps(40):
        for x in (-800.0, -300.0, -40.0, -5.0, -0.7, -1e-12, 0.0, 3e-9, 0.5, 2.0, 19.0, 40.0, 300.0, 800.0):
            re, im = cact(x, y, code)
            want_im = float(d(mpmath.mpf(x)) * y)
            want_re = float(f(mpmath.mpf(x)))
            assert math.isfinite(re) and math.isfinite(im)
            assert abs(im - want_im) <= 1e-15 * abs(want_im) + 1e-320, (x, im, want_im)
            assert abs(re - want_re) <= 1e-15 * abs(want_re) + 1e-320, (x, re, want_re)

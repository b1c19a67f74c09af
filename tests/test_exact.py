"""The incremental engine against the exactly computed central difference (mpmath)."""

import numpy as np
import pytest
from exact import exact_central_difference, needs_mpmath

import fastgrad

CASES = [
    ([4, 5, 3], "sigmoid", "sigmoid", "mse"),
    ([3, 4, 4, 2], "tanh", "identity", "sse"),
    ([3, 5, 4, 3, 3], "softplus", "softmax", "cross_entropy"),
    ([4, 6, 5, 3], "leaky_relu", "tanh", "half_sse"),
    ([4, 5, 4, 3], "sigmoid", "sigmoid", "bce"),
]


@needs_mpmath
@pytest.mark.parametrize("sizes,hidden,output,loss", CASES)
def test_incremental_matches_exact_central_difference(sizes, hidden, output, loss):
    rng = np.random.default_rng(11)
    net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
    params = [p + 0.1 * rng.normal(size=p.shape) for p in net.init(3)]
    X = rng.normal(size=(5, sizes[0]))
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 5)]
    else:
        Y = rng.uniform(size=(5, sizes[-1]))
    theta = net.flatten(params)
    idx = np.linspace(0, net.n_params - 1, 8).astype(int)  # every layer's W and b
    h = 1e-8
    inc = np.concatenate([g.ravel() for g in fastgrad.numerical_gradient(net, params, X, Y, eps=h)])
    full = np.concatenate([g.ravel() for g in fastgrad.numerical_gradient(net, params, X, Y, eps=h, engine="full")])
    scale = np.max(np.abs(inc))
    worst_inc = worst_full = 0.0
    for i in idx:
        exact = exact_central_difference(net, theta, X, Y, int(i), h)
        worst_inc = max(worst_inc, abs(inc[i] - exact) / scale)
        worst_full = max(worst_full, abs(full[i] - exact) / scale)
    assert worst_inc <= 1e-12, worst_inc
    assert worst_inc * 1000 <= worst_full, (worst_inc, worst_full)

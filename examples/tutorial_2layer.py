"""Numerically check the backprop of a 1-hidden-layer sigmoid net (MSE).

The network of the tutorial:

    a = sigmoid(i W1 + b1)          hidden activation
    x = sigmoid(a W2 + b2)          network output
    E = (1/N) sum_n sum_k (y_k - x_k)^2

The tutorial nudges one weight at a time by +-0.0001 and compares
(E+ - E-) / (2 * 0.0001) with back-propagation. We do it by hand for
element (1, 1) of W1, then let fastgrad do it for every weight and bias.

Run:  python examples/tutorial_2layer.py     (exit status 0 = gradients correct)
"""

import sys

import numpy as np

import fastgrad

EPS = 1e-4


def sigmoid(z):
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-z))


def forward(params, i):
    """Hidden activation a and output x for inputs i."""
    W1, b1, W2, b2 = params
    a = sigmoid(i @ W1 + b1)
    x = sigmoid(a @ W2 + b2)
    return a, x


def error(params, i, y):
    """E = (1/N) sum_n sum_k (y_k - x_k)^2."""
    _, x = forward(params, i)
    return np.sum((y - x) ** 2) / len(i)


def backprop(params, i, y):
    """dE/dW1, dE/db1, dE/dW2, dE/db2 by the chain rule."""
    W1, b1, W2, b2 = params
    a, x = forward(params, i)
    dE_dx = 2.0 * (x - y) / len(i)
    delta2 = dE_dx * x * (1.0 - x)  # dE/d(a W2 + b2)
    delta1 = (delta2 @ W2.T) * a * (1.0 - a)  # dE/d(i W1 + b1)
    return [i.T @ delta1, delta1.sum(axis=0), a.T @ delta2, delta2.sum(axis=0)]


def main():
    """Check the backprop; return 0 if it is right, 1 if not."""
    rng = np.random.default_rng(0)
    n_in, n_hidden, n_out, N = 4, 5, 3, 8  # N is the minibatch size
    params = [
        rng.normal(0.0, 0.5, size=(n_in, n_hidden)),
        rng.normal(0.0, 0.5, size=n_hidden),
        rng.normal(0.0, 0.5, size=(n_hidden, n_out)),
        rng.normal(0.0, 0.5, size=n_out),
    ]
    i = rng.standard_normal((N, n_in))
    y = rng.uniform(0.0, 1.0, size=(N, n_out))
    grads = backprop(params, i, y)

    # The tutorial's recipe for one weight: element (1, 1) of W1.
    W1_plus, W1_minus = params[0].copy(), params[0].copy()
    W1_plus[0, 0] += EPS
    W1_minus[0, 0] -= EPS
    E_plus = error([W1_plus] + params[1:], i, y)
    E_minus = error([W1_minus] + params[1:], i, y)
    print(
        f"W1(1,1): backprop {grads[0][0, 0]:.10g}, "
        f"numerical {(E_plus - E_minus) / (2 * EPS):.10g}"
    )

    # Every weight and bias, with fastgrad.
    net = fastgrad.MLP(
        [n_in, n_hidden, n_out], hidden="sigmoid", output="sigmoid", loss="mse"
    )
    result = fastgrad.check(net, params, i, y, grads=grads, eps=EPS)
    print(result)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())

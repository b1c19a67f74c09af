"""Numerically check the gradient of a linear regression, as one GD step uses it.

Five features x1..x5, one output neuron with weights w1..w5, and a bias w0
fed by an extra input x0 that is always 1. With X0 = [1, x1..x5]:

    Yhat = X0 w,   loss = 0.5 sum (Yhat - Y)^2,   dloss/dw = X0^T (Yhat - Y)

We run one gradient-descent step from the initial weights, then compare the
gradient it used with the slope (loss(w + e) - loss(w - e)) / (2 e), e = 1e-4,
of every initial weight, computed by fastgrad.

Run:  python examples/linear_regression.py   (exit status 0 = gradient correct)
"""

import sys

import numpy as np

import fastgrad

EPS = 1e-4
LEARNING_RATE = 0.01


def add_bias_column(X):
    """Prepend the constant input x0 = 1."""
    return np.hstack([np.ones((len(X), 1)), X])  # x0 = 1


def loss(w, X0, Y):
    """0.5 * sum of squared errors."""
    return 0.5 * np.sum((X0 @ w - Y) ** 2)


def gradient(w, X0, Y):
    """X0^T (Yhat - Y), the gradient of the loss."""
    return X0.T @ (X0 @ w - Y)


def main():
    """Check the gradient; return 0 if it is right, 1 if not."""
    rng = np.random.default_rng(1)
    N = 20
    X = rng.standard_normal((N, 5))  # features x1..x5
    X0 = add_bias_column(X)
    true_w = np.array([[0.5], [1.0], [-2.0], [0.3], [0.0], [1.5]])
    Y = X0 @ true_w + 0.1 * rng.standard_normal((N, 1))

    w_init = rng.normal(0.0, 0.1, size=(6, 1))  # INIT: w0 (bias), w1..w5
    grad = gradient(w_init, X0, Y)
    w_next = w_init - LEARNING_RATE * grad  # one gradient-descent step
    print(f"one GD step: loss {loss(w_init, X0, Y):.6g} -> {loss(w_next, X0, Y):.6g}")

    # fastgrad's MLP([5, 1]) computes X W1 + b1: the same model as X0 w, with
    # the bias column's weight w0 as b1 and w1..w5 as the 5x1 matrix W1.
    net = fastgrad.MLP([5, 1], output="identity", loss="half_sse")
    params = [w_init[1:], w_init[0]]  # W1 = w1..w5, b1 = w0
    print("fastgrad.MLP([5, 1]): b1 = w0 (the weight of x0 = 1), W1 = w1..w5")
    slope = fastgrad.numerical_gradient(net, params, X, Y, eps=EPS)
    numerical = np.concatenate([slope[1], slope[0].ravel()])  # back to w0..w5
    print("weight  gradient (X0^T (Yhat - Y))  slope at INIT")
    for k in range(6):
        print(f"w{k}      {grad[k, 0]:<27.10g} {numerical[k]:.10g}")

    result = fastgrad.check(net, params, X, Y, grads=[grad[1:], grad[0]], eps=EPS)
    print(result)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())

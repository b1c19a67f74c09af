"""Draw where a backprop bug sits: the README's picture (docs/check-plot.png).

A hand-written NumPy backprop for a 32-24-16-10 tanh net with one slip
people really make: the loop over the second hidden layer's units stops one
short (``range(H - 1)``), so that unit's column of dW2 and its entry of db2
are never written. ``result.plot()`` shows it as a red stripe in W2 and one
red cell of b2 below it; every other tensor is blue (passed).

Run from the repository root::

    python examples/plot_a_bug.py docs/check-plot.png     # needs matplotlib: pip install "fastgrad[plot]"
"""

from __future__ import annotations

import sys

import numpy as np

import fastgrad

SIZES = [32, 24, 16, 10]


def backprop(params, X, Y):
    """Gradient of the mean squared error (sum over outputs, mean over the batch), with the slip in layer 2."""
    acts = [X]
    for layer, (W, b) in enumerate(zip(params[::2], params[1::2])):
        z = acts[-1] @ W + b
        acts.append(np.tanh(z) if layer < len(SIZES) - 2 else 1 / (1 + np.exp(-z)))
    out = acts[-1]
    delta = 2 * (out - Y) / len(X) * out * (1 - out)
    grads = [np.zeros_like(p) for p in params]
    for layer in reversed(range(len(SIZES) - 1)):
        W = params[2 * layer]
        if layer == 1:  # the slip: the last unit of this layer is skipped
            for j in range(W.shape[1] - 1):
                grads[2 * layer][:, j] = acts[layer].T @ delta[:, j]
                grads[2 * layer + 1][j] = delta[:, j].sum()
        else:
            grads[2 * layer] = acts[layer].T @ delta
            grads[2 * layer + 1] = delta.sum(axis=0)
        if layer:
            delta = (delta @ W.T) * (1 - acts[layer] ** 2)
    return grads


def main(path: str) -> fastgrad.CheckResult:
    """Check the buggy backprop, print the report and draw the picture to ``path``."""
    net = fastgrad.MLP(SIZES, hidden="tanh", output="sigmoid", loss="mse")
    params = net.init(seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(16, SIZES[0])), rng.uniform(size=(16, SIZES[-1]))
    result = fastgrad.check(net, params, X, Y, backprop)
    print(result)
    result.plot(path)
    print(f"\npicture: {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "check-plot.png")

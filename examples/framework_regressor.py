"""A framework-style multi-output regressor (as in scikit-learn's MLPRegressor), checked with no glue.

The user's code keeps the parameters as the framework does: ``coefs_``, a list
of (fan_in, fan_out) weight matrices, and ``intercepts_``, a list of (fan_out,)
vectors; relu hidden layers, an identity output, and the loss

    loss = 1/2 mean over all N x K elements of (y - y_hat)^2 + (alpha / 2N) sum_l ||W_l||^2

fastgrad reads the same parameters, interleaved into [W1, b1, W2, b2, ...]
(a list of the user's own arrays, not copies), and the one line that knows
about fastgrad is the MLP:

    MLP(sizes, hidden="relu", output="identity", loss="mse", reduction="mean_all", scale=0.5, l2=alpha / (2 N))

The targets have K = 3 columns, so the mean over all elements is not the mean
over samples. The slip shown: the output delta ``y_hat - y`` divided by N
only, not by N K. That is the gradient of a loss summed over the outputs, K
times the gradient of the loss above (scikit-learn's own MLPRegressor does
exactly this with multi-output targets: scikit-learn issue #8349). fastgrad
fails it in every tensor.

Run:  python examples/framework_regressor.py   (exit status 0 = the right gradient passes, the slip fails)
"""

import sys

import numpy as np

import fastgrad

SIZES = [5, 8, 6, 3]  # n_features_in_, hidden_layer_sizes=(8, 6), n_outputs_ = K = 3
N = 12
ALPHA = 1e-2


def init_regressor(seed):
    """coefs_ and intercepts_ drawn like the framework's Glorot-uniform init; X (N, D), multi-output Y (N, K)."""
    rng = np.random.default_rng(seed)
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        coefs.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
        intercepts.append(rng.uniform(-bound, bound, fan_out))
    X = rng.standard_normal((N, SIZES[0]))
    Y = rng.standard_normal((N, SIZES[-1]))
    return coefs, intercepts, X, Y


def loss_and_grads(coefs, intercepts, X, Y, alpha=ALPHA, divide_by_outputs=True):
    """The user's forward pass, loss and backprop; ``divide_by_outputs=False`` is the slip (N, not N K)."""
    n_samples, n_outputs = Y.shape
    activations = [X]
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        z = activations[-1] @ W + b
        activations.append(z if i == len(coefs) - 1 else np.maximum(z, 0.0))  # identity output, relu hidden
    # 1/2 mean over every element -> loss="mse" (squared error), reduction="mean_all", scale=0.5
    loss = ((Y - activations[-1]) ** 2).mean() / 2
    # (alpha / 2) sum ||W||^2 / n_samples, weights only -> l2=alpha / (2 N)
    loss += 0.5 * alpha * sum(np.dot(W.ravel(), W.ravel()) for W in coefs) / n_samples

    # d loss / d y_hat = (y_hat - y) / (N K): the 1/K here, the 1/N below with the penalty's
    delta = activations[-1] - Y
    if divide_by_outputs:
        delta = delta / n_outputs
    coef_grads, intercept_grads = [None] * len(coefs), [None] * len(coefs)
    for i in range(len(coefs) - 1, -1, -1):
        coef_grads[i] = (activations[i].T @ delta + alpha * coefs[i]) / n_samples
        intercept_grads[i] = delta.mean(axis=0)
        if i > 0:
            delta = (delta @ coefs[i].T) * (activations[i] > 0.0)  # relu'(0) = 0, as fastgrad takes it
    return loss, coef_grads, intercept_grads


def interleave(weights, biases):
    """[W1, b1, W2, b2, ...]: the same array objects, in the order fastgrad reads them."""
    return [t for pair in zip(weights, biases) for t in pair]


def network(n_samples=N):
    """The one line of fastgrad: the framework's conventions as MLP arguments."""
    return fastgrad.MLP(SIZES, hidden="relu", output="identity", loss="mse", reduction="mean_all", scale=0.5,
                        l2=ALPHA / (2 * n_samples))


def checks(seed=0):
    """(label, net, params, X, Y, grads, expect_pass) for the right gradient and the slip."""
    coefs, intercepts, X, Y = init_regressor(seed)
    _, coef_grads, intercept_grads = loss_and_grads(coefs, intercepts, X, Y)
    _, slip_coefs, slip_intercepts = loss_and_grads(coefs, intercepts, X, Y, divide_by_outputs=False)
    params = interleave(coefs, intercepts)
    return [("framework regressor, right gradient", network(), params, X, Y,
             interleave(coef_grads, intercept_grads), True),
            ("framework regressor, output delta divided by N, not N*K", network(), params, X, Y,
             interleave(slip_coefs, slip_intercepts), False)]


def main(seed=0):
    """Check the right gradient (must pass) and the slip (must fail); return 0 if both verdicts are as expected."""
    coefs, intercepts, X, Y = init_regressor(seed)
    loss = float(loss_and_grads(coefs, intercepts, X, Y)[0])
    theirs = network().loss(interleave(coefs, intercepts), X, Y)
    assert abs(loss - theirs) <= 1e-15 * abs(theirs), (loss, theirs)  # the same function, to rounding
    print(f"user's loss {loss!r}, fastgrad's {theirs!r}")
    ok = True
    for label, net, params, X, Y, grads, expect_pass in checks(seed):
        result = fastgrad.check(net, params, X, Y, grads)
        ok &= result.passed == expect_pass
        print(f"== {label}")
        print(str(result).splitlines()[0] if result.passed else result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

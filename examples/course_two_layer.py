"""A course-style two-layer net (as in Stanford CS231n's assignment), checked with no glue.

The user's code, in the course's style:

    params = {"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}
    h = relu(X W1 + b1),   scores = h W2 + b2
    loss = mean_n[-log softmax(scores_n)[y_n]] + reg (sum W1^2 + sum W2^2)

with integer labels y of shape (N,) and the gradient in a dict keyed like
``params``. fastgrad takes all of it as the user holds it: the dicts, the
labels, the 1-D biases. The only line that knows about fastgrad is the MLP:

    MLP([D, H, C], hidden="relu", output="softmax", loss="cross_entropy", l2=reg)

A classic slip, the penalty's gradient ``reg * W`` where ``reg * sum W^2``
differentiates to ``2 * reg * W``, must fail in W1 and W2 (and only there),
with a hint that names the weight-decay term.

Run:  python examples/course_two_layer.py   (exit status 0 = the right gradient passes, the slip fails)
"""

import sys

import numpy as np

import fastgrad

D, H, C, N = 4, 10, 3, 5  # input size, hidden size, classes, examples (the course's toy model)
REG = 0.05


def init_toy_model(seed):
    """The course's toy problem: small random weights, zero-mean inputs of scale 10, labels 0..C-1."""
    rng = np.random.default_rng(seed)
    params = {"W1": 0.1 * rng.standard_normal((D, H)), "b1": 0.1 * rng.standard_normal(H),
              "W2": 0.1 * rng.standard_normal((H, C)), "b2": 0.1 * rng.standard_normal(C)}
    X = 10.0 * rng.standard_normal((N, D))
    y = rng.integers(0, C, size=N)  # integer class labels, not one-hot
    return params, X, y


def loss_and_grads(params, X, y, reg=REG, reg_grad_factor=2.0):
    """The user's forward pass, loss and backprop; ``reg_grad_factor=1.0`` is the slip (reg W, not 2 reg W)."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    n = X.shape[0]
    h = np.maximum(0.0, X @ W1 + b1)
    scores = h @ W2 + b2
    shifted = scores - scores.max(axis=1, keepdims=True)  # the usual overflow guard
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    # data loss averaged over the N examples -> loss="cross_entropy" (its own reduction is the mean over samples)
    data_loss = -log_probs[np.arange(n), y].mean()
    # reg * sum W^2 on the weights only, not the biases -> l2=reg
    loss = data_loss + reg * (np.sum(W1 * W1) + np.sum(W2 * W2))

    dscores = np.exp(log_probs)
    dscores[np.arange(n), y] -= 1.0
    dscores /= n
    grads = {"W2": h.T @ dscores + reg_grad_factor * reg * W2, "b2": dscores.sum(axis=0)}
    dh = dscores @ W2.T
    dh[h <= 0.0] = 0.0  # relu'(0) = 0, as fastgrad takes it
    grads["W1"] = X.T @ dh + reg_grad_factor * reg * W1
    grads["b1"] = dh.sum(axis=0)
    return loss, grads


def network():
    """The one line of fastgrad: the course's conventions as MLP arguments."""
    return fastgrad.MLP([D, H, C], hidden="relu", output="softmax", loss="cross_entropy", l2=REG)


def checks(seed=0):
    """(label, net, params, X, Y, grads, expect_pass) for the right gradient and the slip."""
    net = network()
    params, X, y = init_toy_model(seed)
    _, grads = loss_and_grads(params, X, y)
    _, slip = loss_and_grads(params, X, y, reg_grad_factor=1.0)
    return [("course two-layer net, right gradient", net, params, X, y, grads, True),
            ("course two-layer net, regularisation gradient reg*W (not 2*reg*W)", net, params, X, y, slip, False)]


def main(seed=0):
    """Check the right gradient (must pass) and the slip (must fail); return 0 if both verdicts are as expected."""
    net = network()
    params, X, y = init_toy_model(seed)
    loss, _ = loss_and_grads(params, X, y)
    theirs = net.loss(params, X, y)
    assert abs(loss - theirs) <= 1e-15 * abs(theirs), (loss, theirs)  # the same function, to rounding
    print(f"user's loss {float(loss)!r}, fastgrad's {theirs!r}")
    ok = True
    for label, net, params, X, y, grads, expect_pass in checks(seed):
        result = fastgrad.check(net, params, X, y, grads)  # the dicts and the labels exactly as the user has them
        ok &= result.passed == expect_pass
        print(f"== {label}")
        print(str(result).splitlines()[0] if result.passed else result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

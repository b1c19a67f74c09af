"""Check the gradient of a regularised cost: mean binary cross-entropy plus an L2 penalty.

A 2-layer logistic network, as in Andrew Ng's course: N examples, K
independent 0/1 labels per example,

    a = sigmoid(X W1 + b1),   p = sigmoid(a W2 + b2)
    J = -(1/N) sum [Y log p + (1 - Y) log(1 - p)] + (lam / 2N) (|W1|^2 + |W2|^2)

(the penalty is on the weights, not the biases). Its gradient is

    dJ/d(a W2 + b2) = (p - Y) / N,   dJ/dW2 = a^T (p - Y) / N + (lam / N) W2,   likewise W1,

and fastgrad checks it against the whole cost J, penalty included.
``gradient(..., unscaled_l2=True)`` adds lam W instead of (lam / N) W, a
slip that must fail in W1 and W2 and leave b1, b2 passing.

Run:  python examples/l2_bce.py   (exit status 0 = right gradient passes, the slip fails in W1 and W2)
"""

import sys

import numpy as np

import fastgrad

N, D, H, K = 10, 4, 5, 3  # examples, inputs, hidden units, outputs
LAM = 0.7  # L2 strength


def sigmoid(z):
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-z))


def make_case(rng):
    """Parameters dict W1 (D, H), b1 (H,), W2 (H, K), b2 (K,); inputs X (N, D); 0/1 labels Y (N, K)."""
    params = {"W1": rng.normal(0.0, 0.5, size=(D, H)), "b1": rng.normal(0.0, 0.5, size=H),
              "W2": rng.normal(0.0, 0.5, size=(H, K)), "b2": rng.normal(0.0, 0.5, size=K)}
    X = rng.standard_normal((N, D))
    Y = (rng.uniform(size=(N, K)) < 0.5).astype(np.float64)
    return params, X, Y


def forward(params, X):
    """Hidden activation a and predicted probabilities p."""
    a = sigmoid(X @ params["W1"] + params["b1"])
    return a, sigmoid(a @ params["W2"] + params["b2"])


def cost(params, X, Y, lam=LAM):
    """Mean binary cross-entropy plus (lam / 2N) times the squared weights."""
    _, p = forward(params, X)
    cross_entropy = -np.sum(Y * np.log(p) + (1.0 - Y) * np.log1p(-p)) / len(X)
    penalty = lam / (2 * len(X)) * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2))
    return cross_entropy + penalty


def gradient(params, X, Y, lam=LAM, unscaled_l2=False):
    """DJ/d(each parameter); ``unscaled_l2=True`` adds lam W where (lam / N) W belongs (bug)."""
    a, p = forward(params, X)
    n = len(X)
    l2_scale = lam if unscaled_l2 else lam / n
    dz2 = (p - Y) / n  # sigmoid and cross-entropy together: the derivatives' p (1 - p) cancel
    dz1 = (dz2 @ params["W2"].T) * a * (1.0 - a)
    return {"W1": X.T @ dz1 + l2_scale * params["W1"], "b1": dz1.sum(axis=0),
            "W2": a.T @ dz2 + l2_scale * params["W2"], "b2": dz2.sum(axis=0)}


def checks(seed=0):
    """The checks main() runs: (label, f, params, grads, args, names of the tensors that must fail)."""
    params, X, Y = make_case(np.random.default_rng(seed))
    return [
        ("BCE + L2, right gradient", cost, params, gradient(params, X, Y), (X, Y), set()),
        ("BCE + L2, penalty gradient lam W (no 1/N)", cost, params, gradient(params, X, Y, unscaled_l2=True), (X, Y),
         {"W1", "W2"}),
    ]


def run(label, f, params, grads, args, must_fail):
    """Check one case, print the report; True if a right gradient passed, or a wrong one failed in exactly must_fail."""
    result = fastgrad.check_function(f, params, grads, args=args)
    failed = {t.name for t in result.tensors if not t.passed}
    expected = failed == must_fail if must_fail else result.passed
    print(f"== {label}: must {'fail in ' + ', '.join(sorted(must_fail)) if must_fail else 'pass'}: "
          f"{'as expected' if expected else 'UNEXPECTED'}")
    print(result)
    return expected


def main():
    """Run every check; return 0 if each right gradient passes and each wrong one fails where expected, else 1."""
    outcomes = [run(*case) for case in checks()]  # all of them, each with its report
    return 0 if all(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

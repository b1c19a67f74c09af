"""A textbook network (in the style of Nielsen's "Neural Networks and Deep Learning"), checked with no glue.

The book's conventions: ``weights[l]`` (fan_out, fan_in), a layer is ``w . a + b``
with ``biases[l]`` columns (fan_out, 1); sigmoid units; the cross-entropy cost
on the sigmoid outputs plus L2 regularisation over the n training pairs:

    C = (1/n) sum_x sum_j -[y_j ln a_j + (1 - y_j) ln(1 - a_j)] + (lambda / 2n) sum_w w^2

Backprop runs one column sample x (d, 1) at a time, accumulates nabla_b and
nabla_w, averages them and adds (lambda / n) w. fastgrad reads the book's
arrays as they are (interleaved [W1, b1, W2, b2, ...]); the one line that
knows about fastgrad is the MLP:

    MLP(sizes, hidden="sigmoid", output="sigmoid", loss="bce", l2=lmbda / (2 n), weight_layout="out_in")

Only the data change form: the (x, y) column pairs become the rows of X (n, d)
and Y (n, k). The slip shown, lambda w for (lambda / n) w, must fail in the
weights only, with a weight-decay hint.

Run:  python examples/textbook_network.py   (exit status 0 = the right gradient passes, the slip fails)
"""

import sys

import numpy as np

import fastgrad

SIZES = [4, 6, 3]
N_TRAIN = 10
LMBDA = 1.0


def sigmoid(z):
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    """Its derivative."""
    return sigmoid(z) * (1 - sigmoid(z))


class Network:
    """The book's network: a list of biases (k, 1) and weights (k, j), one sample at a time."""

    def __init__(self, sizes, seed):
        rng = np.random.default_rng(seed)
        self.sizes = sizes
        self.biases = [rng.standard_normal((k, 1)) for k in sizes[1:]]
        # the book's "default" initialiser: Gaussian weights scaled by 1/sqrt(fan_in)
        self.weights = [rng.standard_normal((k, j)) / np.sqrt(j) for j, k in zip(sizes[:-1], sizes[1:])]

    def feedforward(self, a):
        """The output column for an input column ``a``."""
        for b, w in zip(self.biases, self.weights):
            a = sigmoid(np.dot(w, a) + b)
        return a

    def total_cost(self, data, lmbda):
        """Mean cross-entropy over the pairs plus (lambda / 2n) times the squared weights (not the biases)."""
        cost = 0.0
        for x, y in data:
            a = self.feedforward(x)
            cost += np.sum(-y * np.log(a) - (1 - y) * np.log(1 - a)) / len(data)  # mean over samples: loss="bce"
        return cost + 0.5 * (lmbda / len(data)) * sum(np.linalg.norm(w) ** 2 for w in self.weights)  # l2=lmbda/(2n)

    def backprop(self, x, y):
        """Gradient of one sample's cross-entropy: the sigmoid's derivative cancels, delta = a - y at the output."""
        nabla_b, nabla_w = [None] * len(self.biases), [None] * len(self.weights)
        activations, zs = [x], []
        for b, w in zip(self.biases, self.weights):
            zs.append(np.dot(w, activations[-1]) + b)
            activations.append(sigmoid(zs[-1]))
        delta = activations[-1] - y
        nabla_b[-1], nabla_w[-1] = delta, np.dot(delta, activations[-2].transpose())
        for l in range(2, len(self.sizes)):
            delta = np.dot(self.weights[-l + 1].transpose(), delta) * sigmoid_prime(zs[-l])
            nabla_b[-l], nabla_w[-l] = delta, np.dot(delta, activations[-l - 1].transpose())
        return nabla_b, nabla_w

    def gradient(self, data, lmbda, slip=False):
        """Gradient of total_cost; ``slip=True`` adds lambda w, not (lambda / n) w."""
        n = len(data)
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in data:
            delta_nabla_b, delta_nabla_w = self.backprop(x, y)
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w)]
        decay = lmbda if slip else lmbda / n
        return [nb / n for nb in nabla_b], [nw / n + decay * w for nw, w in zip(nabla_w, self.weights)]


def make_case(seed):
    """A seeded network and n (x, y) pairs: x (d, 1) inputs, y (k, 1) one-hot targets as in the book's data."""
    net = Network(SIZES, seed)
    rng = np.random.default_rng(seed + 1000)
    data = [(rng.standard_normal((SIZES[0], 1)), np.eye(SIZES[-1])[:, [rng.integers(SIZES[-1])]])
            for _ in range(N_TRAIN)]
    return net, data


def as_rows(data):
    """The data's only conversion: the column pairs as the rows of X (n, d) and Y (n, k)."""
    return np.hstack([x for x, _ in data]).T, np.hstack([y for _, y in data]).T


def interleave(weights, biases):
    """[W1, b1, W2, b2, ...]: the same arrays, in the order fastgrad reads them."""
    return [t for pair in zip(weights, biases) for t in pair]


def mlp(n, lmbda=LMBDA):
    """The one line of fastgrad: the book's conventions as MLP arguments."""
    return fastgrad.MLP(SIZES, hidden="sigmoid", output="sigmoid", loss="bce", l2=lmbda / (2 * n),
                        weight_layout="out_in")


def checks(seed=0):
    """(label, net, params, X, Y, grads, expect_pass) for the right gradient and the slip."""
    network, data = make_case(seed)
    X, Y = as_rows(data)
    params = interleave(network.weights, network.biases)
    right_b, right_w = network.gradient(data, LMBDA)
    slip_b, slip_w = network.gradient(data, LMBDA, slip=True)
    return [("textbook network, right gradient", mlp(len(data)), params, X, Y, interleave(right_w, right_b), True),
            ("textbook network, weight decay lambda*w (not lambda/n*w)", mlp(len(data)), params, X, Y,
             interleave(slip_w, slip_b), False)]


def main(seed=0):
    """Check the right gradient (must pass) and the slip (must fail); return 0 if both verdicts are as expected."""
    network, data = make_case(seed)
    X, Y = as_rows(data)
    cost = float(network.total_cost(data, LMBDA))
    theirs = mlp(len(data)).loss(interleave(network.weights, network.biases), X, Y)
    assert abs(cost - theirs) <= 1e-15 * abs(theirs), (cost, theirs)  # the same function, to rounding
    print(f"user's cost {cost!r}, fastgrad's {theirs!r}")
    ok = True
    for label, net, params, X, Y, grads, expect_pass in checks(seed):
        result = fastgrad.check(net, params, X, Y, grads)
        ok &= result.passed == expect_pass
        print(f"== {label}")
        print(str(result).splitlines()[0] if result.passed else result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

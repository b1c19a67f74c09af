"""Check backpropagation through time of an Elman RNN and an LSTM, written by hand.

Both networks read T = 5 steps x_1..x_T (each a batch of N rows) from h_0 = 0
(and c_0 = 0) and predict from the last state, with a squared-error loss:

    RNN:   h_t = tanh(x_t Wx + h_{t-1} Wh + b)
    LSTM:  i = s(x_t Wi + h_{t-1} Ui + bi)      f = s(x_t Wf + h_{t-1} Uf + bf)
           o = s(x_t Wo + h_{t-1} Uo + bo)      g = tanh(x_t Wg + h_{t-1} Ug + bg)
           c_t = f c_{t-1} + i g                h_t = o tanh(c_t)          (s = sigmoid)
    both:  y = h_T Wy + by,   E = sum (y - Y)^2 / (2N)

The backward passes walk the steps in reverse, carrying dE/dh_t (and dE/dc_t).
A gate's pre-activation gradient is its activation's gradient times the
activation's derivative: for the forget gate dE/dz_f = dE/df * f (1 - f).
``lstm_gradient(..., wrong_forget_gate=True)`` forgets that factor in the
forget gate's own weight gradients (it uses dE/df where dE/dz_f belongs, while
the gradient carried back to h_{t-1} stays right), so fastgrad must flag Wf,
Uf and bf and nothing else. (Were the factor also missing from the gradient
carried back to h_{t-1}, the error would spread to every gate's tensors through
the earlier steps; only Wy and by would stay right.)

Run:  python examples/rnn_lstm.py   (exit status 0 = right gradients pass, the wrong one fails in Wf, Uf, bf)
"""

import sys

import numpy as np

import fastgrad

T, N, D, H, K = 5, 3, 3, 4, 2  # steps, batch, inputs, hidden units, outputs
GATES = ("i", "f", "o", "g")


def sigmoid(z):
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-z))


def make_data(rng):
    """Inputs X of shape (T, N, D) and targets Y of shape (N, K)."""
    return rng.standard_normal((T, N, D)), rng.standard_normal((N, K))


def init_rnn(rng):
    """RNN parameters: dict Wx (D, H), Wh (H, H), b (H,), Wy (H, K), by (K,)."""
    shapes = {"Wx": (D, H), "Wh": (H, H), "b": (H,), "Wy": (H, K), "by": (K,)}
    return {name: rng.normal(0.0, 0.5, size=shape) for name, shape in shapes.items()}


def init_lstm(rng):
    """LSTM parameters: per gate W<gate> (D, H), U<gate> (H, H), b<gate> (H,); then Wy (H, K), by (K,)."""
    params = {}
    for gate in GATES:
        params["W" + gate] = rng.normal(0.0, 0.5, size=(D, H))
        params["U" + gate] = rng.normal(0.0, 0.5, size=(H, H))
        params["b" + gate] = rng.normal(0.0, 0.5, size=H)
    params["Wy"] = rng.normal(0.0, 0.5, size=(H, K))
    params["by"] = rng.normal(0.0, 0.5, size=K)
    return params


def squared_error(y, Y):
    """E = sum (y - Y)^2 / (2N)."""
    return np.sum((y - Y) ** 2) / (2 * len(Y))


# ---- Elman RNN ---------------------------------------------------------------------------------------------


def rnn_forward(params, X):
    """Hidden states h_0..h_T (h_0 = 0) and the output y."""
    hs = [np.zeros((X.shape[1], H))]
    for x in X:
        hs.append(np.tanh(x @ params["Wx"] + hs[-1] @ params["Wh"] + params["b"]))
    return hs, hs[-1] @ params["Wy"] + params["by"]


def rnn_loss(params, X, Y):
    """Squared-error loss of the RNN's prediction."""
    return squared_error(rnn_forward(params, X)[1], Y)


def rnn_gradient(params, X, Y):
    """DE/d(each RNN parameter) by backpropagation through time."""
    hs, y = rnn_forward(params, X)
    dy = (y - Y) / len(Y)
    grads = {name: np.zeros_like(p) for name, p in params.items()}
    grads["Wy"], grads["by"] = hs[-1].T @ dy, dy.sum(axis=0)
    dh = dy @ params["Wy"].T
    for t in reversed(range(len(X))):
        dz = dh * (1.0 - hs[t + 1] ** 2)  # through tanh
        grads["Wx"] += X[t].T @ dz
        grads["Wh"] += hs[t].T @ dz
        grads["b"] += dz.sum(axis=0)
        dh = dz @ params["Wh"].T  # to h_{t-1}
    return grads


# ---- LSTM --------------------------------------------------------------------------------------------------


def lstm_step(params, x, h_prev, c_prev):
    """One LSTM step: the gate activations (dict), the cell state c_t and the hidden state h_t."""
    def pre(gate):
        return x @ params["W" + gate] + h_prev @ params["U" + gate] + params["b" + gate]

    acts = {"i": sigmoid(pre("i")), "f": sigmoid(pre("f")), "o": sigmoid(pre("o")), "g": np.tanh(pre("g"))}
    c = acts["f"] * c_prev + acts["i"] * acts["g"]
    return acts, c, acts["o"] * np.tanh(c)


def lstm_forward(params, X):
    """Per step (gate activations, c_t); hidden states h_0..h_T; cell states c_0..c_T; the output y."""
    hs, cs, steps = [np.zeros((X.shape[1], H))], [np.zeros((X.shape[1], H))], []
    for x in X:
        acts, c, h = lstm_step(params, x, hs[-1], cs[-1])
        steps.append(acts)
        hs.append(h)
        cs.append(c)
    return steps, hs, cs, hs[-1] @ params["Wy"] + params["by"]


def lstm_loss(params, X, Y):
    """Squared-error loss of the LSTM's prediction."""
    return squared_error(lstm_forward(params, X)[3], Y)


def lstm_gradient(params, X, Y, wrong_forget_gate=False):
    """DE/d(each LSTM parameter) by backpropagation through time.

    ``wrong_forget_gate=True`` leaves the sigmoid derivative f (1 - f) out of
    the forget gate's weight gradients (dWf, dUf, dbf), the bug this example
    must catch.
    """
    steps, hs, cs, y = lstm_forward(params, X)
    dy = (y - Y) / len(Y)
    grads = {name: np.zeros_like(p) for name, p in params.items()}
    grads["Wy"], grads["by"] = hs[-1].T @ dy, dy.sum(axis=0)
    dh, dc = dy @ params["Wy"].T, np.zeros_like(cs[-1])  # c_T reaches E only through h_T
    for t in reversed(range(len(X))):
        a = steps[t]
        tanh_c = np.tanh(cs[t + 1])
        dc = dc + dh * a["o"] * (1.0 - tanh_c**2)
        d_act = {"i": dc * a["g"], "f": dc * cs[t], "o": dh * tanh_c, "g": dc * a["i"]}  # dE/d(activation)
        d_pre = {  # dE/d(pre-activation): times each activation's derivative
            "i": d_act["i"] * a["i"] * (1.0 - a["i"]),
            "f": d_act["f"] * a["f"] * (1.0 - a["f"]),
            "o": d_act["o"] * a["o"] * (1.0 - a["o"]),
            "g": d_act["g"] * (1.0 - a["g"] ** 2),
        }
        dh = np.zeros_like(dh)
        for gate in GATES:
            dz = d_act["f"] if wrong_forget_gate and gate == "f" else d_pre[gate]
            grads["W" + gate] += X[t].T @ dz
            grads["U" + gate] += hs[t].T @ dz
            grads["b" + gate] += dz.sum(axis=0)
            dh += d_pre[gate] @ params["U" + gate].T  # to h_{t-1}, through every gate
        dc = dc * a["f"]  # to c_{t-1}
    return grads


def checks(seed=0):
    """The checks main() runs: (label, f, params, grads, args, names of the tensors that must fail)."""
    rng = np.random.default_rng(seed)
    X, Y = make_data(rng)
    rnn, lstm = init_rnn(rng), init_lstm(rng)
    return [
        ("Elman RNN, BPTT", rnn_loss, rnn, rnn_gradient(rnn, X, Y), (X, Y), set()),
        ("LSTM, BPTT", lstm_loss, lstm, lstm_gradient(lstm, X, Y), (X, Y), set()),
        ("LSTM, forget gate without its sigmoid'", lstm_loss, lstm,
         lstm_gradient(lstm, X, Y, wrong_forget_gate=True), (X, Y), {"Wf", "Uf", "bf"}),
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

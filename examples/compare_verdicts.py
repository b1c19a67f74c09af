"""What the error-budget verdict catches, beside fixed tolerances.

Runs ``fastgrad.check`` on a few correct and buggy gradients of small
sigmoid/relu nets and prints, for each, the verdict of

* fastgrad's default (per-entry error budget),
* fixed tolerances as ``torch.autograd.gradcheck`` uses them (rtol 1e-3,
  atol 1e-5; the numerical side is fastgrad's, so only the rule differs),
* fixed tolerances at fastgrad's former defaults (rtol 1e-5, atol 1e-8).

"caught" / "passed" for a buggy gradient, "ok" / "FALSE ALARM" for a
correct one. Run from the repository root::

    python examples/compare_verdicts.py
"""

from __future__ import annotations

import numpy as np

import fastgrad

RULES = [("error budget (default)", {}), ("rtol 1e-3, atol 1e-5", {"rtol": 1e-3, "atol": 1e-5}),
         ("rtol 1e-5, atol 1e-8", {"rtol": 1e-5, "atol": 1e-8})]


def _sigmoid_case(dtype=np.float64):
    rng = np.random.default_rng(3)
    net = fastgrad.MLP([5, 6, 3], hidden="sigmoid", output="sigmoid", loss="mse")
    params = [p.astype(dtype) for p in net.init(1)]
    params[1][:] = rng.normal(0, 0.3, 6)
    X = rng.standard_normal((16, 5)).astype(dtype)
    Y = rng.uniform(size=(16, 3)).astype(dtype)
    return net, params, X, Y


def _float32_backprop(params, X, Y):
    """The tutorial's backprop, computed in float32 arithmetic."""
    W1, b1, W2, b2 = params
    a = 1 / (1 + np.exp(-(X @ W1 + b1)))
    x = 1 / (1 + np.exp(-(a @ W2 + b2)))
    N = np.float32(X.shape[0])
    d2 = np.float32(2) * (x - Y) / N * x * (1 - x)
    d1 = (d2 @ W2.T) * a * (1 - a)
    return [X.T @ d1, d1.sum(0), a.T @ d2, d2.sum(0)]


def cases():
    """``(description, correct?, net, params, X, Y, grads)`` for every row."""
    net, params, X, Y = _sigmoid_case()
    good = net.backprop(params, X, Y)
    rows = [("correct float64 backprop", True, net, params, X, Y, good)]

    one = [g.copy() for g in good]
    i = np.unravel_index(np.argmax(np.abs(one[0])), one[0].shape)
    one[0][i] *= 1 + 1e-6
    rows.append(("one entry of W1 off by 1e-6 (relative)", False, net, params, X, Y, one))

    scaled = [g.copy() for g in good]
    scaled[2] = scaled[2] * (1 + 1e-4)
    rows.append(("W2 scaled by 1 + 1e-4", False, net, params, X, Y, scaled))

    small = [g.copy() for g in good]
    small[1] = small[1] + 2e-6 * np.abs(small[1]).max()
    rows.append(("b1 shifted by 2e-6 of its largest entry", False, net, params, X, Y, small))

    net32, p32, X32, Y32 = _sigmoid_case(np.float32)
    g32 = _float32_backprop(p32, X32, Y32)
    rows.append(("correct float32 backprop (float32 arithmetic)", True, net32, p32, X32, Y32, g32))
    bad32 = [g.copy() for g in g32]
    bad32[3] = bad32[3] * np.float32(1.01)
    rows.append(("float32 backprop, b2 off by 1%", False, net32, p32, X32, Y32, bad32))

    # a relu unit whose pre-activation sits 1e-9 from the kink: the +-h steps
    # straddle it, so the central difference is not the derivative there
    rng = np.random.default_rng(7)
    rnet = fastgrad.MLP([3, 4, 2], hidden="relu", output="sigmoid", loss="mse")
    rp = rnet.init(2)
    rX = rng.standard_normal((6, 3))
    rY = rng.uniform(size=(6, 2))
    Z, _ = rnet._forward(rnet.flatten(rp), rX)
    rp[1][1] -= Z[2, 1] - 1e-9
    rows.append(("correct relu backprop, a pre-activation 1e-9 from the kink", True, rnet, rp, rX, rY,
                 rnet.backprop(rp, rX, rY)))
    return rows


def main() -> None:
    """Print the Markdown table."""
    print("| gradient | " + " | ".join(name for name, _ in RULES) + " |")
    print("|---|" + "---|" * len(RULES))
    for text, correct, net, params, X, Y, grads in cases():
        cells = []
        for _, options in RULES:
            result = fastgrad.check(net, params, X, Y, grads, **options)
            if correct:
                cell = "ok" if result.passed else "FALSE ALARM"
            else:
                cell = "caught" if not result.passed else "passed (missed)"
            if result.inconclusive:
                cell += f" ({len(result.inconclusive)} inconclusive)"
            cells.append(cell)
        print(f"| {text} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Accuracy of both engines against the exact central difference, step by step.

For a small sigmoid MSE net (4-5-3, N = 5) and steps h from 1e-2 to 1e-12,
prints the largest error of each engine's numerical gradient against

* the *exact* central difference (E(w + h) - E(w - h)) / 2h at that h,
  computed in 60-digit mpmath from the float64 inputs (what the engine is
  meant to return), and
* the exact gradient (the limit h -> 0, from 60-digit mpmath
  differentiation), i.e. what a gradient check compares against,

both relative to the largest gradient entry. Run from the repository root:

    python bench/accuracy.py
"""

from __future__ import annotations

import os
import sys

import mpmath
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from exact import DIGITS, exact_loss  # noqa: E402

import fastgrad  # noqa: E402

STEPS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-12]


def main() -> None:
    """Print the table."""
    rng = np.random.default_rng(11)
    net = fastgrad.MLP([4, 5, 3], hidden="sigmoid", output="sigmoid", loss="mse")
    params = [p + 0.1 * rng.normal(size=p.shape) for p in net.init(3)]
    X = rng.normal(size=(5, 4))
    Y = rng.uniform(size=(5, 3))
    theta = net.flatten(params)
    with mpmath.workdps(DIGITS):
        base = [mpmath.mpf(float(v)) for v in theta]

        def loss_at(i: int, w: mpmath.mpf) -> mpmath.mpf:
            moved = list(base)
            moved[i] = w
            return exact_loss(net, moved, X, Y)

        gradient = np.array([float(mpmath.diff(lambda w, i=i: loss_at(i, w), base[i])) for i in range(net.n_params)])
        scale = np.max(np.abs(gradient))
        print(f"net {net!r}, N = {X.shape[0]}, P = {net.n_params}; errors relative to max |gradient| = {scale:.3g}")
        print()
        print("| h | incremental vs exact CD | full vs exact CD | incremental vs gradient | full vs gradient |")
        print("|---|---|---|---|---|")
        for h in STEPS:
            hh = mpmath.mpf(h)
            central = np.array(
                [float((loss_at(i, base[i] + hh) - loss_at(i, base[i] - hh)) / (2 * hh)) for i in range(net.n_params)]
            )
            row = [f"{h:.0e}"]
            got = {}
            for engine in ("incremental", "full"):
                got[engine] = np.concatenate(
                    [g.ravel() for g in fastgrad.numerical_gradient(net, params, X, Y, eps=h, engine=engine)]
                )
            for engine in ("incremental", "full"):
                row.append(f"{np.max(np.abs(got[engine] - central)) / scale:.1e}")
            for engine in ("incremental", "full"):
                row.append(f"{np.max(np.abs(got[engine] - gradient)) / scale:.1e}")
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

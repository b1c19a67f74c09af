"""Train a small MLP with SGD and a hand-written backprop, watched by fastgrad.Monitor.

The task is synthetic regression (a fixed random teacher net). From step
``BUG_AT`` on, the backprop's gradient of W2 is scaled by 1.001, the kind of
slip that still trains, only worse. The monitor checks a rotating sample of
every tensor at most every ``EVERY`` steps, within 1% of the training time,
and reports the bug.

Run from the repository root::

    python examples/train_with_monitor.py            # prints overhead, coverage and detection
"""

from __future__ import annotations

import time

import numpy as np

import fastgrad

SIZES = [64, 128, 64, 10]
BATCH = 64
STEPS = 6000
EVERY = 50
BUG_AT = 3000
LR = 0.5


def sigmoid(z):
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-z))


def teacher_forward(params, X):
    """The teacher's outputs (plain NumPy)."""
    a = X
    for W, b in zip(params[::2], params[1::2]):
        a = sigmoid(a @ W + b)
    return a


def backprop(params, X, Y, bug=False):
    """The tutorial's backprop for a sigmoid MLP with E = (1/N) sum (y - x)^2."""
    acts = [X]
    for W, b in zip(params[::2], params[1::2]):
        acts.append(sigmoid(acts[-1] @ W + b))
    x = acts[-1]
    delta = 2.0 * (x - Y) / X.shape[0] * x * (1.0 - x)
    grads = [None] * len(params)
    for layer in reversed(range(len(params) // 2)):
        grads[2 * layer] = acts[layer].T @ delta
        grads[2 * layer + 1] = delta.sum(axis=0)
        if layer > 0:
            a = acts[layer]
            delta = (delta @ params[2 * layer].T) * a * (1.0 - a)
    if bug:
        grads[2] = grads[2] * 1.001
    return grads


def main(budget: float | None = 0.01, every: int = EVERY) -> dict:
    """Train, and return what the monitor saw (``budget=None``: check every ``every`` steps, untimed)."""
    rng = np.random.default_rng(0)
    net = fastgrad.MLP(SIZES, hidden="sigmoid", output="sigmoid", loss="mse")
    teacher = net.init(seed=99)
    params = net.init(seed=0)
    caught = []
    monitor = fastgrad.Monitor(net, every=every, budget=budget, seed=0, on_fail=caught.append)
    started = time.perf_counter()
    for step in range(1, STEPS + 1):
        X = rng.normal(size=(BATCH, SIZES[0]))
        Y = teacher_forward(teacher, X)
        grads = backprop(params, X, Y, bug=step >= BUG_AT)
        monitor.step(params, X, Y, grads)
        params = [p - LR * g for p, g in zip(params, grads)]
    total = time.perf_counter() - started
    first = caught[0] if caught else None
    detected_at = next((r.step for r in monitor.history if not r.passed), None)
    checks_after_bug = sum(1 for r in monitor.history if BUG_AT <= r.step <= (detected_at or STEPS))
    report = {
        "warm_up_seconds": monitor.warm_up_seconds,
        "steps": STEPS,
        "total_seconds": total,
        "checks": len(monitor.history),
        "entries_per_check": [r.n_checked for r in monitor.history[-3:]],
        "overhead": monitor.overhead,
        "coverage": monitor.coverage,  # fraction of the entries checked at least once
        "budget_warnings": len(monitor.notes),  # 1 when the budget could not pay for a check in EVERY x 10 steps
        "bug_at": BUG_AT,
        "detected_at": detected_at,
        "checking_steps_to_detect": checks_after_bug,
        "false_alarms_before_bug": sum(1 for r in monitor.history if r.step < BUG_AT and not r.passed),
        "failing_tensors": sorted({f.tensor for f in first.failures}) if first else [],
    }
    print(f"{STEPS} SGD steps of {net!r}, batch {BATCH}: {total:.2f} s")
    print(f"monitor: {report['checks']} checks, overhead {100 * report['overhead']:.2f}% of training time "
          f"(budget {budget}), last checks {report['entries_per_check']} entries; "
          f"one-time warm-up before training {monitor.warm_up_seconds:.2f} s")
    print(f"coverage: {100 * monitor.coverage:.1f}% of the {net.n_params:,} entries checked at least once "
          f"({monitor.checks_done} checks in {monitor.steps} steps)")
    print(f"bug injected at step {BUG_AT} (dW2 x 1.001): reported at step {detected_at}, "
          f"after {checks_after_bug} checking step(s), in {report['failing_tensors']}")
    return report


if __name__ == "__main__":
    main()

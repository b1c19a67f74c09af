"""Shared fixtures.

Seeds: every randomized test takes the ``seed`` fixture (or ``rng``, built
from it). By default it is the single seed 0. CI can widen it, on the model
of scikit-learn's ``global_random_seed``, with the environment variable
``FASTGRAD_TESTS_SEED``:

* ``FASTGRAD_TESTS_SEED=7``      one seed
* ``FASTGRAD_TESTS_SEED=0-9``    an inclusive range
* ``FASTGRAD_TESTS_SEED=1,5,42`` a list
* ``FASTGRAD_TESTS_SEED=all``    seeds 0-99
"""

from __future__ import annotations

import os

# Small launches run the serial twins of the parallel kernels by default (fastgrad._threading.PARALLEL_MIN_SIZE);
# the suite runs the parallel kernels themselves, so that its thread-count comparisons on small nets compare
# parallel runs. tests/test_serial_twins.py checks that the twins give the same bits. Set before fastgrad is
# imported (reference imports it); subprocesses inherit it.
os.environ.setdefault("FASTGRAD_PARALLEL_MIN_SIZE", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import reference as ref  # noqa: E402


def _parse_seeds(text: str | None) -> list[int]:
    if text is None or not text.strip():
        return [0]
    text = text.strip().lower()
    if text == "all":
        return list(range(100))
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (int(s) for s in part.split("-", 1))
            seeds.extend(range(lo, hi + 1))
        else:
            seeds.append(int(part))
    return seeds


SEEDS = _parse_seeds(os.environ.get("FASTGRAD_TESTS_SEED"))


@pytest.fixture(params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def seed(request) -> int:
    """Random seed for one test run (see the module docstring)."""
    return request.param


@pytest.fixture
def rng(seed) -> np.random.Generator:
    """Return a fresh generator per test, built from ``seed``."""
    return np.random.default_rng(seed)


@pytest.fixture
def make_case(rng):
    """Return a factory ``make_case(sizes, hidden, output, loss, N=4)``.

    Returns ``(net, params, X, Y)`` with a fresh ``fastgrad.MLP`` and random,
    kink-free float64 data from ``reference.random_case``.
    """
    import fastgrad

    def _make(sizes, hidden="sigmoid", output="sigmoid", loss="mse", N=4, **kw):
        net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
        params, X, Y = ref.random_case(rng, sizes, hidden, output, loss, N=N, **kw)
        return net, params, X, Y

    return _make


class FakeClock:
    """Monitor's clock, advanced only by the test: training steps and checks take exactly what they are told."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def monitor_clock(monkeypatch):
    """A :class:`FakeClock` as fastgrad.Monitor's clock, on which every check costs 10 ms; the test adds the steps."""
    import fastgrad

    clock = FakeClock()
    real_check = fastgrad.monitor.check

    def check_costing_10ms(*args, **kwargs):
        result = real_check(*args, **kwargs)
        clock.now += 0.010
        return result

    monkeypatch.setattr(fastgrad.monitor, "_clock", clock)
    monkeypatch.setattr(fastgrad.monitor, "check", check_costing_10ms)
    return clock

"""A check too big for the memory is refused up front, naming the estimate (issue 16, "big networks").

The memory available is monkeypatched (nothing large is allocated): the
issue's 4096-8192-8192-10 net (100.8 M parameters) against 2 GB.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastgrad
from fastgrad import _validate, compute

GB = 10**9


@pytest.fixture
def available(monkeypatch):
    def _set(nbytes):
        monkeypatch.setattr(_validate, "available_memory", lambda: nbytes)
        monkeypatch.setattr(_validate, "MEMORY_FLOOR", 0)

    return _set


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if a check gets as far as computing (the refusal must come before any allocation)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the check started computing")

    monkeypatch.setattr(compute, "compute", refuse)
    monkeypatch.setattr(fastgrad.checking, "compute", refuse)


@pytest.mark.parametrize("entry, parts", [
    ("check", ["100,761,610 parameters", "2.4 GB for a check", "24 bytes per parameter",
               "peaks near 3.5 GB (35 per parameter)", "2.0 GB of memory available"]),
    ("numerical_gradient", ["1.6 GB for numerical_gradient", "16 bytes per parameter",
                            "peaks near 1.7 GB (17 per parameter)", "1.5 GB of memory available"]),
])
def test_100m_net_too_big_is_refused_naming_needed_and_available(entry, parts, available, no_compute):
    net = fastgrad.MLP([4096, 8192, 8192, 10])  # (a layout; its 806 MB of parameters are never built)
    available(2 * GB if entry == "check" else 1.5 * GB)
    X = np.zeros((32, 4096))
    with pytest.raises(ValueError) as info:
        getattr(fastgrad, entry)(net, None, X, np.zeros((32, 10)))
    for part in parts:
        assert part in str(info.value), str(info.value)


def test_a_check_that_fits_is_not_refused(available):
    net = fastgrad.MLP([20, 30, 3])
    params = net.init(seed=0)
    available(net.n_params * 24 + 10**6)  # the bound fits (the peak's figure is quoted, not refused at)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((4, 20)), rng.uniform(size=(4, 3))
    assert fastgrad.check(net, params, X, Y).passed

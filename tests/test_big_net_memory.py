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


@pytest.mark.parametrize("entry, kwargs, parts", [
    ("check", {}, ["100,761,610 parameters", "3.6 GB for a check", "36 bytes per parameter, its measured peak",
                   "2.0 GB of memory available"]),
    ("check", {"method": "directional"}, ["7.3 GB for a directional check", "72 bytes per parameter",
                                          "2.0 GB of memory available"]),
    ("numerical_gradient", {}, ["1.7 GB for numerical_gradient", "17 bytes per parameter",
                                "1.5 GB of memory available"]),
])
def test_100m_net_too_big_is_refused_naming_needed_and_available(entry, kwargs, parts, available, no_compute):
    net = fastgrad.MLP([4096, 8192, 8192, 10])  # (a layout; its 806 MB of parameters are never built)
    available(2 * GB if entry == "check" else 1.5 * GB)
    X = np.zeros((32, 4096))
    with pytest.raises(ValueError) as info:
        getattr(fastgrad, entry)(net, None, X, np.zeros((32, 10)), **kwargs)
    for part in parts:
        assert part in str(info.value), str(info.value)


def test_the_refusal_is_at_the_measured_peak_not_below_it(available, no_compute):
    """Between the three P-vectors (24 B) and the measured peak (36 B) a check would start and be killed."""
    net = fastgrad.MLP([4096, 8192, 8192, 10])
    available(30 * net.n_params)
    with pytest.raises(ValueError, match="36 bytes per parameter"):
        fastgrad.check(net, None, np.zeros((32, 4096)), np.zeros((32, 10)))


def test_a_check_that_fits_is_not_refused(available):
    net = fastgrad.MLP([20, 30, 3])
    params = net.init(seed=0)
    available(net.n_params * 36 + 10**6)  # the peak fits
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((4, 20)), rng.uniform(size=(4, 3))
    assert fastgrad.check(net, params, X, Y).passed

"""bench/big_net.py on a tiny net, so that the big-net measurement script does not rot.

Its functions run in this process (no subprocesses, no timing asserted):
every operation's row, the slices' masks, the extrapolation and the report.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import fastgrad

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = (64, 128, 128, 10)


@pytest.fixture(scope="module")
def big_net():
    spec = importlib.util.spec_from_file_location("big_net", os.path.join(HERE, "..", "bench", "big_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unit_mask_takes_every_parameter_of_the_units(big_net):
    net = fastgrad.MLP(list(SIZES))
    mask = big_net.unit_mask(net, 1, 3)
    assert mask.sum() == 3 * (128 + 1)
    W = np.zeros((128, 128), dtype=bool)
    W[:, :3] = True  # unit j's weights: column j of the (fan_in, fan_out) flat order
    lo, b_lo = net.offsets[2], net.offsets[3]
    assert np.array_equal(mask[lo:b_lo].reshape(128, 128), W)
    assert mask[b_lo:b_lo + 3].all() and not mask[b_lo + 3:].any()


def test_every_operation_and_the_report(big_net, monkeypatch):
    # its warm-up compiles the parallel kernels (minutes on a cold cache); a tiny net runs the serial twins
    monkeypatch.setattr(big_net, "warm", lambda: None)
    rows = []
    for op in big_net.OPERATIONS + ("check_full",):
        rows += big_net.run_one(op, SIZES, 4, 2)
    by_op = {r["op"]: r for r in rows}
    assert set(by_op) == set(big_net.OPERATIONS) | {"check_full"}
    P = fastgrad.MLP(list(SIZES)).n_params
    assert all(r["n_params"] == P and r["seconds"] >= 0 and r["traced_bytes"] > 0 for r in rows)
    assert all(r["passed"] for r in rows if r["op"].startswith(("check", "full")))
    assert by_op["check_full"]["checked"] == P
    slices = [r for r in rows if r["op"] == "full_slices"]
    assert [r["layer"] for r in slices] == [0, 1, 2]
    estimate = big_net.full_estimate(fastgrad.MLP(list(SIZES)), 4, by_op["check_fixed"], slices)
    assert estimate["seconds"] >= by_op["check_fixed"]["seconds"]
    text = big_net.render(SIZES, 4, rows, estimate)
    assert "64-128-128-10, N = 4" in text and "Estimate of the full check" in text
    assert text.count("\n| `") == len(rows)

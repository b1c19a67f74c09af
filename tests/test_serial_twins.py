"""Small launches run the serial twins of the parallel kernels: they must give the parallel kernels' bits.

``fastgrad._threading.PARALLEL_MIN_SIZE`` (elements) and ``PARALLEL_MIN_WORK`` (flops) decide which one runs;
the rest of the suite forces the parallel kernels (conftest). Here both run on the same inputs, every engine
and method, and every per-entry array must agree bit for bit: the numerical values, the sizes of their terms,
the truncation estimates, the kink flags and the statuses. The slow test does it in a fresh process with an
empty cache: a parallel kernel compiled fresh once wrote a truncation of 0 for every entry (a variable assigned
only inside a branch of a prange body) while its serial twin was right.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastgrad
from fastgrad import _threading, engines

ROOT = Path(__file__).resolve().parent.parent

CASES = [([5, 7, 6, 4], "sigmoid", "tanh", "mse"), ([4, 6, 3], "relu", "softmax", "cross_entropy"),
         ([3, 5, 5, 2], "elu", "identity", "half_sse"), ([4, 5, 3], "tanh", "sigmoid", "bce")]
PAIRS = [("incremental", "central"), ("incremental", "richardson"), ("incremental", "complex"),
         ("full", "central"), ("full", "complex"), ("unit", "central")]


def _details(serial: bool) -> dict[str, np.ndarray]:
    size, work = _threading.PARALLEL_MIN_SIZE, _threading.PARALLEL_MIN_WORK
    _threading.PARALLEL_MIN_SIZE, _threading.PARALLEL_MIN_WORK = (10**12, 1e30) if serial else (0, 0.0)
    try:
        out = {}
        for c, (sizes, hidden, output, loss) in enumerate(CASES):
            net = fastgrad.MLP(sizes, hidden=hidden, output=output, loss=loss)
            rng = np.random.default_rng(c)
            params = net.init(c)
            X = rng.normal(size=(9, sizes[0])) * 3.0
            Y = np.eye(sizes[-1])[rng.integers(sizes[-1], size=9)] if loss == "cross_entropy" else rng.uniform(
                size=(9, sizes[-1]))
            theta = net.flatten(params)
            Z, A = net._forward(theta, X)
            for engine, method in PAIRS:
                for eps in (1e-3, 0.3):  # 0.3: steps beyond the series' range take the direct path
                    d = engines.numerical_details(net, theta, X, Y, eps, engine, method, None, Z=Z, A=A)
                    for name in ("values", "absum", "trunc", "kink", "status"):
                        out[f"{c}-{engine}-{method}-{eps}-{name}"] = np.asarray(getattr(d, name))
        return out
    finally:
        _threading.PARALLEL_MIN_SIZE, _threading.PARALLEL_MIN_WORK = size, work


def _assert_same(serial: dict[str, np.ndarray], parallel: dict[str, np.ndarray]) -> None:
    assert serial.keys() == parallel.keys()
    for key in serial:
        a, b = serial[key], parallel[key]
        assert a.shape == b.shape and a.tobytes() == b.tobytes(), key


def test_serial_twins_give_the_parallel_kernels_bits():
    _assert_same(_details(serial=True), _details(serial=False))


def test_the_comparison_can_fail():
    # the check above compares bytes: one ulp in one entry is a difference
    serial = _details(serial=True)
    parallel = {k: v.copy() for k, v in serial.items()}
    key = next(k for k in parallel if k.endswith("-trunc") and parallel[k].size)
    parallel[key][0] = np.nextafter(parallel[key][0], np.inf)
    with pytest.raises(AssertionError, match="trunc"):
        _assert_same(serial, parallel)


CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
import numpy as np
import test_serial_twins as t
serial, parallel = t._details(serial=True), t._details(serial=False)
bad = [k for k in serial if serial[k].tobytes() != parallel[k].tobytes()]
print(json.dumps({{"bad": bad, "n": len(serial)}}))
"""


@pytest.mark.slow
def test_freshly_compiled_parallel_kernels_give_the_serial_twins_bits(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "FASTGRAD_PARALLEL_MIN_SIZE")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)  # empty: every kernel compiles in this process
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", CHILD.format(tests=str(ROOT / "tests"))], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n"] > 0 and result["bad"] == [], result

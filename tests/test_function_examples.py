"""The check_function examples: examples/rnn_lstm.py, layers.py, l2_bce.py, jitted_loss.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastgrad

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# check_function judges the rounding of f from |f| (fastgrad.loss_engine: LOSS_ROUNDING_ULPS, KINK_NOISE_ULPS). The
# layer checks' f = sum(out * dout) is linear in some parameters and much smaller than its terms (batchnorm at seed
# 0: f = 0.27, terms summing to 13.8 in absolute value), so rounding is taken for kinks in gamma and beta.


def load_example(name):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def failing(result):
    return {t.name for t in result.tensors if not t.passed}


def check_all(module, seed):
    """Label -> check_function's result, for every check of module.checks(seed)."""
    return {label: fastgrad.check_function(f, params, grads, args=args)
            for label, f, params, grads, args, _ in module.checks(seed)}


def test_rnn_and_lstm(seed):
    results = check_all(load_example("rnn_lstm.py"), seed)
    assert results["Elman RNN, BPTT"].passed, results["Elman RNN, BPTT"]
    assert results["LSTM, BPTT"].passed, results["LSTM, BPTT"]
    assert failing(results["LSTM, forget gate without its sigmoid'"]) == {"Wf", "Uf", "bf"}


def test_l2_bce(seed):
    results = check_all(load_example("l2_bce.py"), seed)
    assert results["BCE + L2, right gradient"].passed, results["BCE + L2, right gradient"]
    assert failing(results["BCE + L2, penalty gradient lam W (no 1/N)"]) == {"W1", "W2"}


LAYER_BUGS = {  # the wrong backward's label -> the one tensor that must fail
    "affine, bug averaged_db": {"b"},
    "ReLU, bug no_mask": {"x"},
    "conv 3x3, bug transposed_dw": {"w"},
    "max pool 2x2, bug top_left": {"x"},
    "batchnorm, bug no_mean_term": {"x"},
    "softmax loss, bug unscaled_dx": {"x"},
}
RIGHT_LAYERS = ["affine", "ReLU", "conv 3x3", "max pool 2x2", "softmax loss",
                "batchnorm"]


@pytest.fixture(scope="module")
def layer_results():
    """The script's own checks (seed 0), each run once."""
    return check_all(load_example("layers.py"), 0)


@pytest.mark.parametrize("label", RIGHT_LAYERS)
def test_right_layer_backward_passes(label, layer_results):
    assert layer_results[label].passed, layer_results[label]


@pytest.mark.parametrize("label, buggy", LAYER_BUGS.items())
def test_layer_bug_fails_in_its_tensor(label, buggy, layer_results):
    assert failing(layer_results[label]) == buggy


def test_layer_verdicts_name_exactly_the_buggy_tensors(seed):
    """At any seed, no right tensor fails and every bug is caught where it is (inconclusive entries aside)."""
    results = check_all(load_example("layers.py"), seed)
    assert {label: failing(r) for label, r in results.items() if failing(r)} == LAYER_BUGS


@pytest.mark.slow  # compiles check_function's parallel kernel for this loss
def test_jitted_and_numpy_losses_agree(seed):
    module = load_example("jitted_loss.py")
    params, X, Y = module.make_case(np.random.default_rng(seed))
    grads = module.gradient(params, X, Y)
    jitted = fastgrad.check_function(module.softmax_loss, params, grads, args=(X, Y))
    plain = fastgrad.check_function(module.softmax_loss_numpy, params, grads, args=(X, Y))
    assert jitted.passed, jitted
    assert plain.passed, plain
    assert [t.name for t in jitted.tensors] == [t.name for t in plain.tensors] == ["p0", "p1"]
    for a, b in zip(jitted.numerical, plain.numerical):  # the losses round differently (loops vs BLAS)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    wrong = module.gradient(params, X, Y, db_without_1_over_n=True)
    assert failing(fastgrad.check_function(module.softmax_loss, params, wrong, args=(X, Y))) == {"p1"}


@pytest.mark.parametrize("name", [
    "rnn_lstm.py",
    "layers.py",
    "l2_bce.py",
    pytest.param("jitted_loss.py", marks=pytest.mark.slow),  # compiles check_function's kernel for its loss
])
def test_example_script_exits_0(name, tmp_path):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # this checkout's fastgrad
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stdout + done.stderr

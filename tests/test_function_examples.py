"""The check_function examples: examples/rnn_lstm.py, layers.py, l2_bce.py, jitted_loss.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def named_tensors(params):
    """(name, array) pairs as check_function names them: dict keys, p0, p1, ... or x."""
    if isinstance(params, dict):
        return list(params.items())
    if isinstance(params, (list, tuple)):
        return [(f"p{k}", p) for k, p in enumerate(params)]
    return [("x", params)]


def check(f, params, grads, args=(), eps=1e-6, rtol=1e-4, atol=1e-8):
    """A slow central-difference stand-in for fastgrad.check_function (until it lands on main)."""
    copies = [(name, np.array(p, dtype=np.float64)) for name, p in named_tensors(params)]
    if isinstance(params, dict):
        structure = dict(copies)
    elif isinstance(params, (list, tuple)):
        structure = type(params)(p for _, p in copies)
    else:
        structure = copies[0][1]
    tensors, numerical = [], []
    for (name, p), (_, g) in zip(copies, named_tensors(grads)):
        slope = np.empty_like(p)
        for index in np.ndindex(p.shape):
            saved = p[index]
            p[index] = saved + eps
            up = f(structure, *args)
            p[index] = saved - eps
            down = f(structure, *args)
            p[index] = saved
            slope[index] = (up - down) / (2 * eps)
        wrong = np.abs(g - slope) > atol + rtol * np.abs(slope)
        tensors.append(SimpleNamespace(name=name, passed=not wrong.any(), n_failed=int(wrong.sum())))
        numerical.append(slope)
    return SimpleNamespace(passed=all(t.passed for t in tensors), tensors=tensors, numerical=numerical)


def failing(result):
    return {t.name for t in result.tensors if not t.passed}


def run_checks(module, seed):
    """Label -> set of failing tensor names, for every check of module.checks(seed)."""
    return {label: failing(check(f, params, grads, args))
            for label, f, params, grads, args, _ in module.checks(seed)}


def test_rnn_and_lstm(seed):
    failed = run_checks(load_example("rnn_lstm.py"), seed)
    assert failed == {
        "Elman RNN, BPTT": set(),
        "LSTM, BPTT": set(),
        "LSTM, forget gate without its sigmoid'": {"Wf", "Uf", "bf"},
    }


def test_layers(seed):
    failed = run_checks(load_example("layers.py"), seed)
    assert failed == {
        "affine": set(),
        "affine, bug averaged_db": {"b"},
        "ReLU": set(),
        "ReLU, bug no_mask": {"x"},
        "conv 3x3": set(),
        "conv 3x3, bug transposed_dw": {"w"},
        "max pool 2x2": set(),
        "max pool 2x2, bug top_left": {"x"},
        "batchnorm": set(),
        "batchnorm, bug no_mean_term": {"x"},
        "softmax loss": set(),
        "softmax loss, bug unscaled_dx": {"x"},
    }


def test_l2_bce(seed):
    failed = run_checks(load_example("l2_bce.py"), seed)
    assert failed == {
        "BCE + L2, right gradient": set(),
        "BCE + L2, penalty gradient lam W (no 1/N)": {"W1", "W2"},
    }


def test_jitted_and_numpy_losses_agree(seed):
    module = load_example("jitted_loss.py")
    params, X, Y = module.make_case(np.random.default_rng(seed))
    grads = module.gradient(params, X, Y)
    jitted = check(module.softmax_loss, params, grads, args=(X, Y))
    plain = check(module.softmax_loss_numpy, params, grads, args=(X, Y))
    assert jitted.passed and plain.passed
    for a, b in zip(jitted.numerical, plain.numerical):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    wrong = module.gradient(params, X, Y, db_without_1_over_n=True)
    assert failing(check(module.softmax_loss, params, wrong, args=(X, Y))) == {"p1"}


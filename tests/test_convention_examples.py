"""The convention examples (issue 15): a user's own backprop in a well-known codebase's style, no glue but the MLP.

Each example's ``main()`` runs as a script (exit 0); ``checks(seed)`` over
several seeds: the right gradient passes, the slip fails in exactly the
tensors it touches (the weights for an L2 slip, every tensor for a reduction
slip) with a hint, and fastgrad leaves every array of the user's untouched.
``main(seed)`` in-process asserts the user's loss equals ``net.loss`` to
rounding at each seed.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastgrad

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEEDS = [0, 1, 2, 3, 4, 5]

#: example -> (the tensors its slip must fail in, a word each failing tensor's hint must contain)
CASES = {
    "textbook_network.py": ({"W1", "W2"}, "weight-decay"),
    "course_two_layer.py": ({"W1", "W2"}, "weight-decay"),
    "framework_regressor.py": ({"W1", "b1", "W2", "b2", "W3", "b3"}, "factor K = 3"),
}
PARAMS = list(CASES)


def load(name):
    spec = importlib.util.spec_from_file_location(f"convention_example_{name.removesuffix('.py')}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def arrays(tree):
    """Every array of a params/grads structure (list or dict) with its position, for comparing snapshots."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    return {key: value for key, value in items}


@pytest.mark.parametrize("name", PARAMS)
def test_example_script_exits_0(name, tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("fastgrad check PASSED") == 1
    assert done.stdout.count("fastgrad check FAILED") == 1
    assert "hints:" in done.stdout


@pytest.mark.parametrize("name", PARAMS)
@pytest.mark.parametrize("seed", SEEDS)
def test_main_at_each_seed(name, seed, capsys):
    # main asserts the user's loss equals net.loss(...) to 1e-15 relative, and both verdicts
    assert load(name).main(seed) == 0, capsys.readouterr().out


@pytest.mark.parametrize("name", PARAMS)
@pytest.mark.parametrize("seed", SEEDS)
def test_checks_verdicts_tensors_and_hints(name, seed):
    must_fail, hint_word = CASES[name]
    cases = load(name).checks(seed)
    assert [expect for *_, expect in cases] == [True, False]
    for label, net, params, X, Y, grads, expect_pass in cases:
        assert isinstance(net, fastgrad.MLP)
        before = copy.deepcopy((params, X, Y, grads))
        result = fastgrad.check(net, params, X, Y, grads)
        # fastgrad wrote into none of the user's arrays
        for mine, kept in zip((params, X, Y, grads), before):
            if isinstance(mine, np.ndarray):
                mine, kept = {0: mine}, {0: kept}
            mine, kept = arrays(mine), arrays(kept)
            assert mine.keys() == kept.keys()
            for key in mine:
                assert mine[key].shape == kept[key].shape and mine[key].dtype == kept[key].dtype, (label, key)
                assert np.array_equal(mine[key], kept[key]), (label, key)
        if expect_pass:
            assert result.passed, f"{label} (seed {seed}): a right gradient failed\n{result}"
            continue
        assert not result.passed
        failed = {t.name for t in result.tensors if not t.passed}
        assert failed == must_fail, f"{label} (seed {seed})\n{result}"
        for t in result.tensors:
            if t.name in must_fail and (hint_word is not None or t.name.startswith("b")):
                assert t.hint, f"{label} (seed {seed}): no hint for {t.name}\n{result}"
            if hint_word is not None and t.name in must_fail:
                assert hint_word in t.hint, t.hint
        assert "hints:" in str(result)


def test_course_example_takes_dicts_and_integer_labels():
    label, net, params, X, y, grads, _ = load("course_two_layer.py").checks(0)[0]
    assert isinstance(params, dict) and isinstance(grads, dict)
    assert y.ndim == 1 and np.issubdtype(y.dtype, np.integer)
    assert params["b1"].ndim == 1
    assert isinstance(fastgrad.numerical_gradient(net, params, X, y), dict)


def test_framework_example_hint_names_the_factor_k():
    *_, (label, net, params, X, Y, grads, _) = load("framework_regressor.py").checks(0)
    K = Y.shape[1]
    assert K >= 2  # else the mean over all elements is the mean over samples and the slip is no slip
    result = fastgrad.check(net, params, X, Y, grads)
    for name in ("b1", "b2", "b3"):
        assert f"factor K = {K}" in result.tensor(name).hint
    for name in ("W1", "W2", "W3"):  # the data term's factor, once the L2 term (right) is taken out of both sides
        assert f"factor K = {K}" in result.tensor(name).hint and "less the L2 term" in result.tensor(name).hint


def test_framework_example_passes_the_users_own_arrays():
    module = load("framework_regressor.py")
    coefs, intercepts, X, Y = module.init_regressor(0)
    params = module.interleave(coefs, intercepts)
    assert all(p is q for p, q in zip(params[0::2], coefs)) and all(p is q for p, q in zip(params[1::2], intercepts))


def test_textbook_example_keeps_the_books_shapes():
    module = load("textbook_network.py")
    label, net, params, X, Y, grads, _ = module.checks(0)[0]
    assert [p.shape for p in params] == [(6, 4), (6, 1), (3, 6), (3, 1)]  # (out, in) weights, column biases
    numerical = fastgrad.numerical_gradient(net, params, X, Y)
    assert [g.shape for g in numerical] == [p.shape for p in params]

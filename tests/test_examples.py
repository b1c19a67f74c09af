"""The tutorial examples and ``fastgrad demo``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastgrad
from fastgrad import cli, demo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, cwd):
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        name.removesuffix(".py"), EXAMPLES / name
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, tensors",
    [
        ("tutorial_2layer.py", ["W1", "b1", "W2", "b2"]),
        ("linear_regression.py", ["W1", "b1"]),
    ],
)
def test_example_script_passes(name, tensors, tmp_path):
    done = run_example(name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASSED" in done.stdout
    for tensor in tensors:
        assert f"\n{tensor} " in done.stdout  # a row of the report's table


def test_linear_regression_example_prints_every_weight(tmp_path):
    done = run_example("linear_regression.py", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for k in range(6):
        assert f"\nw{k} " in done.stdout


def test_tutorial_backprop_matches_fastgrad(rng):
    module = load_example("tutorial_2layer.py")
    net = fastgrad.MLP([4, 5, 3], hidden="sigmoid", output="sigmoid", loss="mse")
    params = [rng.normal(0.0, 0.5, size=s) for s in net.param_shapes]
    X, Y = rng.standard_normal((8, 4)), rng.uniform(size=(8, 3))
    for mine, theirs in zip(module.backprop(params, X, Y), net.backprop(params, X, Y)):
        assert mine.shape == theirs.shape
        assert abs(mine - theirs).max() <= 1e-12 * max(1.0, abs(theirs).max())
    assert module.error(params, X, Y) == pytest.approx(
        net.loss(params, X, Y), rel=1e-12
    )


def test_tutorial_example_exits_1_on_a_wrong_gradient(monkeypatch, capsys):
    module = load_example("tutorial_2layer.py")
    right = module.backprop

    def wrong(params, i, y):
        grads = right(params, i, y)
        grads[1][2] *= 1.5
        return grads

    monkeypatch.setattr(module, "backprop", wrong)
    assert module.main() == 1
    assert "b1(2,)" in capsys.readouterr().out


def test_demo_passes(capsys):
    code = cli.main(["demo"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("fastgrad check PASSED") == 3
    assert "FAILED" not in out
    assert "b1 = w0" in out  # the bias-column mapping is explained
    assert "\nW3 " in out  # the 3-layer net's report


def test_demo_exits_1_when_a_check_fails(monkeypatch, capsys):
    right = demo.tutorial_backprop

    def wrong(params, X, Y):
        grads = right(params, X, Y)
        grads[2][0, 0] += 1e-2
        return grads

    monkeypatch.setattr(demo, "tutorial_backprop", wrong)
    # the big net is covered by test_demo_passes; keep this one fast without JIT
    monkeypatch.setattr(demo, "random_network_case", demo.linear_regression_case)
    code = cli.main(["demo"])
    out = capsys.readouterr().out
    assert code == 1
    assert "W2(0, 0)" in out


def test_torch_custom_function_example(tmp_path):
    pytest.importorskip("torch")
    done = run_example("torch_custom_function.py", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    wrong, fixed = done.stdout.split("fixed:")
    assert "FAILED" in wrong and "\nW2 " in wrong and "1/N" in wrong  # the wrong tensor and the factor's hint
    assert "PASSED" in fixed and "FAILED" not in fixed


def test_torch_custom_function_example_without_torch(tmp_path):
    # sitecustomize runs first: torch hidden as if not installed
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    done = subprocess.run([sys.executable, str(EXAMPLES / "torch_custom_function.py")], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(tmp_path), str(EXAMPLES.parent), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == 'this example needs PyTorch: pip install "fastgrad[torch]"'

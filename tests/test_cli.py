"""The ``fastgrad`` command line: exit codes, error lines, files, JSON, progress."""

from __future__ import annotations

import importlib.metadata
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import fastgrad
from fastgrad import cli

SIZES = [20, 8, 3]
SIZES_ARG = ",".join(map(str, SIZES))


def without_compile_notice(err):
    """``err`` without the once-per-process "compiling fastgrad kernels" line (tests/test_compile_notice.py's).

    Which CLI test compiles first (and so gets the notice) depends on the order and on the cache.
    """
    return "".join(line for line in err.splitlines(keepends=True) if not line.startswith("fastgrad: compiling"))


def run(argv, capsys):
    """``main(argv)`` in-process; return (exit code, stdout, stderr without the compile notice)."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, without_compile_notice(captured.err)


def assert_one_line_error(err):
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastgrad: error: ")
    assert len(lines[0]) > len("fastgrad: error: ")


def _strict_json(path):
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    with open(path, encoding="utf-8") as fh:
        return json.load(fh, parse_constant=no_constants)


def save_tensors(path, net, tensors):
    np.savez(path, **dict(zip(net.tensor_names, tensors)))
    return path


@pytest.fixture
def case(tmp_path, rng):
    """Save a 20-8-3 sigmoid MSE net as params.npz and data.npz (N=5)."""
    net = fastgrad.MLP(SIZES)
    params = [rng.normal(0.0, 0.5, size=shape) for shape in net.param_shapes]
    X = rng.standard_normal((5, SIZES[0]))
    Y = rng.uniform(0.0, 1.0, size=(5, SIZES[-1]))
    save_tensors(tmp_path / "params.npz", net, params)
    np.savez(tmp_path / "data.npz", X=X, Y=Y)
    return net, params, X, Y


# --------------------------------------------------------------- passing checks


def test_random_check_passes_and_writes_json(tmp_path, capsys, seed):
    out_json = tmp_path / "result.json"
    code, out, err = run(
        [
            "check",
            "--sizes",
            SIZES_ARG,
            "--batch",
            4,
            "--seed",
            seed,
            "--json",
            out_json,
        ],
        capsys,
    )
    assert code == 0, out + err
    assert err == ""  # not a TTY: no progress display
    net = fastgrad.MLP(SIZES)
    for name in net.tensor_names:
        assert name in out
    doc = _strict_json(out_json)
    assert {"fastgrad_version", "net", "inputs", "wall_seconds", "result"} <= doc.keys()
    assert doc["net"]["sizes"] == SIZES
    assert doc["net"]["n_params"] == net.n_params
    result = doc["result"]
    assert {
        "passed",
        "max_rel_error",
        "n_params",
        "n_failed",
        "rtol",
        "atol",
        "eps",
        "tensors",
        "failures",
    } <= result.keys()
    assert result["passed"] is True
    assert result["n_failed"] == 0 and result["failures"] == []
    assert result["n_params"] == net.n_params
    assert [t["name"] for t in result["tensors"]] == list(net.tensor_names)
    assert [t["shape"] for t in result["tensors"]] == [
        list(s) for s in net.param_shapes
    ]
    assert result["max_rel_error"] <= result["rtol"]


def test_json_options_reach_check(tmp_path, capsys):
    out_json = tmp_path / "r.json"
    code, out, err = run(
        [
            "check",
            "--sizes",
            "5,4,2",
            "--batch",
            3,
            "--eps",
            "1e-5",
            "--rtol",
            "1e-4",
            "--atol",
            "1e-9",
            "--threads",
            1,
            "--json",
            out_json,
        ],
        capsys,
    )
    assert code == 0, out + err
    result = _strict_json(out_json)["result"]
    assert (result["eps"], result["rtol"], result["atol"]) == (1e-5, 1e-4, 1e-9)


@pytest.mark.parametrize("engine,default_eps", [("incremental", 1e-8), ("full", 1e-4)])
def test_engine_option_reaches_check(tmp_path, capsys, engine, default_eps):
    out_json = tmp_path / "r.json"
    code, out, err = run(
        ["check", "--sizes", "5,4,2", "--batch", 3, "--engine", engine, "--json", out_json], capsys
    )
    assert code == 0, out + err
    doc = _strict_json(out_json)
    assert doc["result"]["engine"] == engine
    assert doc["inputs"]["engine"] == engine
    assert doc["result"]["eps"] == default_eps


def test_unknown_engine_is_a_usage_error(capsys):
    code, out, err = run(["check", "--sizes", "5,4,2", "--engine", "fast"], capsys)
    assert code == 2
    assert "--engine" in err


def test_json_to_stdout_is_valid(capsys):
    code, out, err = run(
        ["check", "--sizes", "5,4,2", "--batch", 3, "--json", "-"], capsys
    )
    assert code == 0
    doc = json.loads(out)  # stdout is the JSON alone, for a pipe into jq; the report is on stderr
    assert doc["result"]["passed"] is True
    assert "PASSED" in err


def test_cross_entropy_defaults_to_softmax_with_one_hot_targets(tmp_path, capsys):
    out_json = tmp_path / "r.json"
    code, out, err = run(
        [
            "check",
            "--sizes",
            "6,4,3",
            "--loss",
            "cross_entropy",
            "--batch",
            5,
            "--json",
            out_json,
        ],
        capsys,
    )
    assert code == 0, out + err
    doc = _strict_json(out_json)
    assert doc["net"]["output"] == "softmax"
    # one-hot rows: loss = -(1/N) sum log p_true > 0 and finite
    assert doc["result"]["loss"] > 0


def test_given_params_and_data_sizes_inferred(tmp_path, capsys, case):
    net, params, X, Y = case
    out_json = tmp_path / "r.json"
    code, out, err = run(
        [
            "check",
            "--params",
            tmp_path / "params.npz",
            "--data",
            tmp_path / "data.npz",
            "--json",
            out_json,
        ],
        capsys,
    )
    assert code == 0, out + err
    doc = _strict_json(out_json)
    assert doc["net"]["sizes"] == SIZES
    assert doc["result"]["n_samples"] == X.shape[0]
    assert doc["result"]["loss"] == pytest.approx(net.loss(params, X, Y), rel=1e-12)


def test_deeper_sizes_inferred_from_params(tmp_path, capsys, rng):
    net = fastgrad.MLP([6, 5, 4, 2], hidden="tanh")
    save_tensors(tmp_path / "p.npz", net, net.init(seed=3))
    out_json = tmp_path / "r.json"
    code, out, err = run(
        [
            "check",
            "--params",
            tmp_path / "p.npz",
            "--hidden",
            "tanh",
            "--batch",
            3,
            "--json",
            out_json,
        ],
        capsys,
    )
    assert code == 0, out + err
    assert _strict_json(out_json)["net"]["sizes"] == [6, 5, 4, 2]


def test_correct_user_grads_pass(tmp_path, capsys, case):
    net, params, X, Y = case
    save_tensors(tmp_path / "grads.npz", net, net.backprop(params, X, Y))
    code, out, err = run(
        [
            "check",
            "--params",
            tmp_path / "params.npz",
            "--data",
            tmp_path / "data.npz",
            "--grads",
            tmp_path / "grads.npz",
        ],
        capsys,
    )
    assert code == 0, out + err
    assert "PASSED" in out


# --------------------------------------------------------------- failing check


def test_one_wrong_grad_entry_fails_at_that_entry(tmp_path, capsys, case):
    net, params, X, Y = case
    grads = net.backprop(params, X, Y)
    grads[2][3, 1] += 1e-3 + 0.1 * abs(grads[2][3, 1])
    save_tensors(tmp_path / "grads.npz", net, grads)
    out_json = tmp_path / "r.json"
    code, out, err = run(
        [
            "check",
            "--params",
            tmp_path / "params.npz",
            "--data",
            tmp_path / "data.npz",
            "--grads",
            tmp_path / "grads.npz",
            "--json",
            out_json,
        ],
        capsys,
    )
    assert code == 1, out + err
    assert err == ""
    assert "FAILED" in out and "W2(3, 1)" in out
    result = _strict_json(out_json)["result"]
    assert result["passed"] is False and result["n_failed"] == 1
    assert [(f["tensor"], f["index"]) for f in result["failures"]] == [("W2", [3, 1])]
    assert result["failures"][0]["analytic"] == grads[2][3, 1]


# ------------------------------------------------------------ bad usage / input


def _bad_files(tmp_path, case):
    net, params, X, Y = case
    save_tensors(tmp_path / "missing_b2.npz", net, params[:3])
    np.savez(
        tmp_path / "extra.npz", **dict(zip(net.tensor_names, params)), W9=params[0]
    )
    np.savez(tmp_path / "object.npz", X=np.array([1.0, "a", None], dtype=object), Y=Y)
    X_nan = X.copy()
    X_nan[2, 4] = np.nan
    np.savez(tmp_path / "nan.npz", X=X_nan, Y=Y)
    np.savez(tmp_path / "no_y.npz", X=X)
    np.save(tmp_path / "plain.npy", X)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip archive")


P, D = "params.npz", "data.npz"
BAD = {
    "sizes-not-int": (["check", "--sizes", "20,x,3"], "--sizes"),
    "sizes-one-layer": (["check", "--sizes", "20"], "sizes"),
    "sizes-zero": (["check", "--sizes", "20,0,3"], "sizes"),
    "no-sizes-no-params": (["check"], "--sizes"),
    "unknown-hidden": (["check", "--sizes", SIZES_ARG, "--hidden", "swish"], "hidden"),
    "unknown-loss": (["check", "--sizes", SIZES_ARG, "--loss", "hinge"], "loss"),
    "softmax-mse": (["check", "--sizes", SIZES_ARG, "--output", "softmax"], "softmax"),
    "eps-zero": (["check", "--sizes", SIZES_ARG, "--batch", 2, "--eps", 0], "eps"),
    "eps-not-number": (["check", "--sizes", SIZES_ARG, "--eps", "small"], "--eps"),
    "threads-zero": (
        ["check", "--sizes", SIZES_ARG, "--batch", 2, "--threads", 0],
        "threads",
    ),
    "batch-zero": (["check", "--sizes", SIZES_ARG, "--batch", 0], "--batch"),
    "missing-file": (["check", "--params", "nonexistent.npz"], "nonexistent.npz"),
    "missing-key": (["check", "--params", "missing_b2.npz"], "'b2'"),
    "extra-key": (["check", "--params", P, "--data", D, "--grads", "extra.npz"], "W9"),
    "data-missing-y": (["check", "--params", P, "--data", "no_y.npz"], "'Y'"),
    "object-array": (["check", "--params", P, "--data", "object.npz"], "allow_pickle"),
    "nan-in-data": (["check", "--params", P, "--data", "nan.npz"], "(2, 4)"),
    "npy-not-npz": (["check", "--params", "plain.npy"], "npz"),
    "not-a-zip": (["check", "--params", "garbage.npz"], "garbage.npz"),
    "wrong-x-width": (["check", "--sizes", "4,3", "--data", D], "X"),
    "batch-with-data": (["check", "--params", P, "--data", D, "--batch", 3], "--batch"),
    "no-command": ([], "required"),
    "unknown-command": (["frobnicate"], "frobnicate"),
}


@pytest.mark.parametrize("argv, mentions", BAD.values(), ids=BAD.keys())
def test_bad_usage_exits_2_with_one_line(
    argv, mentions, tmp_path, capsys, monkeypatch, case
):
    _bad_files(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert code == 2, out + err
    assert_one_line_error(err)
    assert mentions in err


def test_help_exits_0(capsys):
    code, out, err = run(["check", "--help"], capsys)
    assert code == 0
    assert "--sizes" in out and "--grads" in out and err == ""


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fastgrad, "check", interrupted)
    code, _, err = run(["check", "--sizes", "5,4,2", "--batch", 2], capsys)
    assert code == 130
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["fastgrad: interrupted"]


class ClosedPipe(io.StringIO):
    """A stdout whose reader has gone away."""

    def write(self, text):
        """Fail as a write to a closed pipe does."""
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_stdout_exits_141_quietly(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = cli.main(["check", "--sizes", "5,4,2", "--batch", "2"])
    assert code == 141
    assert without_compile_notice(capsys.readouterr().err) == ""


def test_unexpected_error_exits_3_with_traceback(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(fastgrad, "check", broken)
    code, _, err = run(["check", "--sizes", "5,4,2", "--batch", 2], capsys)
    assert code == 3
    assert "Traceback" in err  # a bug: keep what is needed to report it
    assert err.splitlines()[-1].startswith("fastgrad: error: internal error")
    assert "kernel exploded" in err


# ---------------------------------------------------------------------- progress


class FakeTTY(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self):
        """Claim to be a terminal."""
        return True


def test_progress_shown_on_a_tty(monkeypatch, capsys):
    fake = FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    code, out, _ = run(["check", "--sizes", "5,4,2", "--batch", 3], capsys)
    assert code == 0, out
    n_params = fastgrad.MLP([5, 4, 2]).n_params
    shown = fake.getvalue()
    assert shown.startswith("\r")
    assert f"{n_params}/{n_params} parameters (100.0%)" in shown
    assert shown.endswith("\n")


# -------------------------------------------------------- the console entry point


def test_module_entry_point_in_subprocess():
    ok = subprocess.run(
        [sys.executable, "-m", "fastgrad", "check", "--sizes", "5,4,2", "--batch", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASSED" in ok.stdout and "W2" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "fastgrad", "check", "--sizes", "5,x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert_one_line_error(bad.stderr)


def test_console_script_is_declared():
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="fastgrad")
    assert entry.load() is cli.main


def test_a_step_too_small_to_resolve_anything_exits_inconclusive_not_0(tmp_path, capsys, case):
    # issue 12 item 1: `--engine full --eps 1e-15 --grads zeros.npz` exited 0
    net, params, X, Y = case
    save_tensors(tmp_path / "zeros.npz", net, [np.zeros_like(g) for g in net.backprop(params, X, Y)])
    argv = ["check", "--params", tmp_path / "params.npz", "--data", tmp_path / "data.npz",
            "--grads", tmp_path / "zeros.npz", "--engine", "full"]
    code, out, err = run(argv + ["--eps", "1e-15"], capsys)
    assert code == cli.EXIT_INCONCLUSIVE == 4, out + err
    assert "INCONCLUSIVE" in out
    code, out, err = run(argv + ["--eps", "1e-10"], capsys)  # a step that resolves the values: a plain FAIL
    assert code == cli.EXIT_FAIL, out + err


def test_a_file_that_is_not_an_npz_is_named_as_such_without_pickle_advice(tmp_path, capsys):
    bad = tmp_path / "data.npz"
    bad.write_text("X,Y\n1,2\n")
    code, out, err = run(["check", "--sizes", "1,1", "--data", bad], capsys)
    assert code == 2 and "not an .npz archive" in err and "pickle" not in err
    assert_one_line_error(err)


# --------------------------------------------------------------- issue 15's conventions


def test_conventions_and_out_in_layout_from_the_command_line(tmp_path, capsys):
    """--weight-layout out_in (sizes inferred from (out, in) weights), --l2, --reduction, --loss bce."""
    net = fastgrad.MLP([3, 4, 2], loss="bce", reduction="sum", l2=0.05, weight_layout="out_in")
    params = net.init(1)
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(6, 3)), rng.random((6, 2))
    np.savez(tmp_path / "params.npz", **dict(zip(net.tensor_names, params)))
    np.savez(tmp_path / "data.npz", X=X, Y=Y)
    grads = net.backprop(params, X, Y)
    np.savez(tmp_path / "grads.npz", **dict(zip(net.tensor_names, grads)))
    base = ["check", "--params", tmp_path / "params.npz", "--data", tmp_path / "data.npz", "--loss", "bce",
            "--reduction", "sum", "--l2", "0.05", "--weight-layout", "out_in", "--grads", tmp_path / "grads.npz"]
    code, out, err = run(base, capsys)
    assert code == 0, out + err
    assert "l2=0.05" in out and "weight_layout='out_in'" in out
    grads[2] = grads[2] - 0.1 * params[2]  # W2 (out, in) without its L2 term
    np.savez(tmp_path / "grads.npz", **dict(zip(net.tensor_names, grads)))
    code, out, err = run(base, capsys)
    assert code == 1, out + err
    assert "weight-decay" in out and "W2" in out
    code, out, err = run(base[:-2] + ["--weight-layout", "in_out"], capsys)  # (2, 4) read as (in, out): 4 outputs
    assert code == 2 and "pass --weight-layout out_in" in err

"""Hostile inputs (issue 12, items 5 and 12-16, and holes found near them).

Every bad input gets an exception (or, on the command line, exit status 2
and one line) that names the argument, and the size and memory where that
is what is wrong; never a Numba traceback, an OverflowError, a bare
MemoryError or "internal error ... please report it". Each test here failed
on the code before these fixes.
"""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest

import fastgrad
from fastgrad import _validate, cli

SIZES = [3, 4, 2]
N = 5
GB = 10**9


@pytest.fixture
def case(rng):
    net = fastgrad.MLP(SIZES, hidden="tanh", output="sigmoid", loss="mse")
    params = [rng.normal(0.0, 0.5, size=s) for s in net.param_shapes]
    X = rng.standard_normal((N, SIZES[0]))
    Y = rng.uniform(0.0, 1.0, (N, SIZES[-1]))
    return net, params, X, Y


@pytest.fixture
def memory(monkeypatch):
    """``memory(nbytes)``: make fastgrad see ``nbytes`` of available memory."""

    def _set(nbytes):
        # raising=False: the code before the fix had no such function (the test must fail there, not error)
        monkeypatch.setattr(_validate, "available_memory", lambda: nbytes, raising=False)
        monkeypatch.setattr(_validate, "MEMORY_FLOOR", 0, raising=False)

    return _set


def fragments(*parts):
    """Return a ``match=`` regex requiring every fragment literally, in any order."""
    return "(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in parts)


# ------------------------------------------------------------------ item 5: init biases


def _old_init_weights(net, seed):
    """Draw the weights MLP.init drew when biases were zero (the same rng stream, weights first)."""
    rng = np.random.default_rng(seed)
    out = []
    for layer, (fan_in, fan_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:])):
        act = net.output if layer == net.n_layers - 1 else net.hidden
        if act in ("relu", "leaky_relu"):
            out.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out)))
        else:
            r = np.sqrt(6.0 / (fan_in + fan_out))
            out.append(rng.uniform(-r, r, size=(fan_in, fan_out)))
    return out


@pytest.mark.parametrize("hidden", ["sigmoid", "relu"])
@pytest.mark.parametrize("seed_value", [0, 7])
def test_init_biases_small_nonzero_seeded_and_weights_unchanged(hidden, seed_value):
    net = fastgrad.MLP([6, 40, 30, 3], hidden=hidden, output="identity", loss="mse")
    params = net.init(seed=seed_value)
    biases = params[1::2]
    for b in biases:
        assert b.dtype == np.float64
        assert np.all(np.abs(b) >= 0.01) and np.all(np.abs(b) <= 0.1)
    signs = np.sign(np.concatenate(biases))
    assert (signs > 0).sum() > 10 and (signs < 0).sum() > 10
    again = net.init(seed=seed_value)
    assert all(np.array_equal(a, b) for a, b in zip(params, again))
    other = net.init(seed=seed_value + 1)
    assert all(not np.array_equal(a, b) for a, b in zip(biases, other[1::2]))
    # the weights a seed gives are what they were (tests and examples built on them still hold)
    for W, old in zip(params[0::2], _old_init_weights(net, seed_value)):
        assert np.array_equal(W, old)


@pytest.mark.parametrize("lam", [1e-2, 1e-4])
def test_bias_l2_bug_is_caught_at_default_init(lam, rng):
    """An L2 term wrongly applied to the bias gradient (a real course-solution bug) fails a default check."""
    net = fastgrad.MLP([5, 7, 3], hidden="sigmoid", output="sigmoid", loss="mse")
    params = net.init()
    X = rng.standard_normal((16, 5))
    Y = rng.uniform(0.0, 1.0, (16, 3))

    grads = net.backprop(params, X, Y)
    wrong = [g + lam * p if i % 2 else g for i, (g, p) in enumerate(zip(grads, params))]  # L2 on the biases too

    result = fastgrad.check(net, params, X, Y, wrong)
    assert not result.passed
    assert {t.name for t in result.tensors if not t.passed} == {"b1", "b2"}


# --------------------------------------------------------------- item 12: X / Y None


@pytest.mark.parametrize("entry", ["check", "numerical_gradient"])
@pytest.mark.parametrize("missing", ["X", "Y"])
def test_none_data_is_named(case, entry, missing):
    net, params, X, Y = case
    args = {"X": X, "Y": Y, missing: None}
    with pytest.raises((TypeError, ValueError), match=fragments(missing, "None")):
        getattr(fastgrad, entry)(net, params, args["X"], args["Y"])


@pytest.mark.parametrize("method", ["loss", "backprop"])
def test_none_targets_named_by_the_net(case, method):
    net, params, X, _ = case
    with pytest.raises((TypeError, ValueError), match=fragments("Y", "None")):
        getattr(net, method)(params, X, None)


def test_none_data_in_monitor_step_is_named(case):
    net, params, X, Y = case
    mon = fastgrad.Monitor(net, every=1, budget=None, warm_up=False)
    with pytest.raises((TypeError, ValueError), match=fragments("Y", "None")):
        mon.step(params, X, None, net.backprop(params, X, Y))


def test_monitor_step_without_grads_is_refused(case):
    """grads=None would silently check net.backprop instead of the user's gradient."""
    net, params, X, Y = case
    mon = fastgrad.Monitor(net, every=1, budget=None, warm_up=False)
    with pytest.raises(TypeError, match=fragments("grads", "None")):
        mon.step(params, X, Y, None)


# --------------------------------------------------------------- item 14: huge sizes

HUGE_SIZES = {
    "1e10x1e10": ([10**10, 10**10], None, ["sizes", "sizes[0]", "sizes[1]", "EB"]),
    "int64-overflow-product": ([3037000500, 3037000500], None, ["sizes[0]", "EB"]),
    "past-int64": ([2**62, 4], None, ["sizes[0]", "EB"]),
    "past-uint64": ([4, 2**70], None, ["sizes[0]", "EB"]),
    "deep-middle-layer": ([3, 10**5, 10**5, 2], 2 * GB, ["sizes[1]", "sizes[2]", "80.0 GB", "2.0 GB"]),
    "beyond-memory": ([50_000, 50_000], 4 * GB, ["sizes[0]", "20.0 GB", "4.0 GB of memory available"]),
}


@pytest.mark.parametrize("sizes, available, parts", HUGE_SIZES.values(), ids=HUGE_SIZES.keys())
def test_huge_sizes_raise_value_error_with_the_estimate(sizes, available, parts, memory):
    if available is not None:
        memory(available)
    with pytest.raises(ValueError, match=fragments("sizes", *parts)):
        fastgrad.MLP(sizes)


def test_available_memory_is_a_positive_figure():
    available = _validate.available_memory()
    assert available is None or available > 0


def test_sizes_that_fit_are_still_accepted(memory):
    memory(1 * GB)
    net = fastgrad.MLP([1000, 1000, 10])  # 8 MB of parameters
    assert net.n_params == 1000 * 1000 + 1000 + 1000 * 10 + 10


# -------------------------------------------------- sweep: a batch too large for memory


@pytest.mark.parametrize("entry", ["check", "numerical_gradient"])
def test_batch_too_large_for_memory_is_refused_before_allocating(case, entry):
    net, params, _, _ = case
    rows = 10**12  # broadcast views: no memory behind them, but a check would need 8 TB and more
    X = np.broadcast_to(np.float64(0.5), (rows, SIZES[0]))
    Y = np.broadcast_to(np.float64(0.5), (rows, SIZES[-1]))
    with pytest.raises(ValueError, match=fragments("X", f"{rows:,} rows", "TB")):
        getattr(fastgrad, entry)(net, params, X, Y)


# ------------------------------------------------------------- item 15: Monitor options

BAD_MONITOR = {
    "safety-negative": (dict(safety=-1), ValueError, "safety"),
    "safety-nan": (dict(safety=float("nan")), ValueError, "safety"),
    "safety-str": (dict(safety="10"), TypeError, "safety"),
    "engine-bogus": (dict(engine="bogus"), ValueError, "engine"),
    "method-bogus": (dict(method="bogus"), ValueError, "method"),
    "method-directional": (dict(method="directional"), ValueError, "method"),
    "unit-with-richardson": (dict(engine="unit", method="richardson"), ValueError, "engine='unit'"),
    "threads-zero": (dict(threads=0), ValueError, "threads"),
    "threads-huge": (dict(threads=10**6), ValueError, "threads"),
    "threads-str": (dict(threads="2"), TypeError, "threads"),
    "threads-float": (dict(threads=1.0), TypeError, "threads"),
    "warm_up-str": (dict(warm_up="no"), TypeError, "warm_up"),
    "every-bool": (dict(every=True), TypeError, "every"),
    "every-float": (dict(every=10.0), TypeError, "every"),
    "every-str": (dict(every="10"), TypeError, "every"),
    "every-np-zero": (dict(every=np.int64(0)), ValueError, "every"),
    "units-np-negative": (dict(units=np.int32(-1)), ValueError, "units"),
    "units-bool": (dict(units=np.True_), TypeError, "units"),
    "on_fail-array": (dict(on_fail=np.array(["warn", "raise"])), ValueError, "on_fail"),
    "seed-negative": (dict(seed=-1), ValueError, "seed"),
    "seed-str": (dict(seed="abc"), TypeError, "seed"),
}


@pytest.mark.parametrize("kwargs, exc, name", BAD_MONITOR.values(), ids=BAD_MONITOR.keys())
def test_monitor_validates_every_option_at_construction(case, kwargs, exc, name):
    net, *_ = case
    options = dict(warm_up=False)
    options.update(kwargs)
    with pytest.raises(exc, match=re.escape(name)):
        fastgrad.Monitor(net, **options)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(every=np.int64(3)),
        dict(every=np.uint8(3), units=np.int16(2)),
        dict(every=3, safety=np.float64(20), threads=np.int64(1), seed=np.int64(5)),
        dict(every=3, threads=None, seed=None, warm_up=np.True_),
    ],
    ids=["every-int64", "uint8-int16", "numpy-scalars", "none-and-np-bool"],
)
def test_monitor_accepts_any_integral_and_real_type(case, kwargs):
    net, params, X, Y = case
    options = dict(budget=None, warm_up=False)
    options.update(kwargs)
    mon = fastgrad.Monitor(net, **options)
    grads = net.backprop(params, X, Y)
    results = [mon.step(params, X, Y, grads) for _ in range(6)]
    assert [r is not None for r in results] == [False, False, True, False, False, True]
    assert all(r.passed for r in results if r is not None)
    assert type(mon.every) is int


def test_monitor_accepts_numpy_budget(case):
    net, *_ = case
    assert fastgrad.Monitor(net, budget=np.float32(0.5), warm_up=False).budget == 0.5


# -------------------------------------------------------------------- item 16: seeds

BAD_SEEDS = {
    "negative": (-1, ValueError),
    "np-negative": (np.int64(-5), ValueError),
    "str": ("abc", TypeError),
    "float": (1.5, TypeError),
    "integral-float": (np.float64(1.0), TypeError),
    "bool": (True, TypeError),
    "negative-in-list": ([1, -2], ValueError),
    "float-in-list": ([1, 2.5], TypeError),
    "2-d-array": (np.zeros((2, 2), dtype=np.int64), ValueError),
    "empty-list": ([], ValueError),
}


def _seed_entries(net, params, X, Y):
    return {
        "init": lambda s: net.init(seed=s),
        "check": lambda s: fastgrad.check(net, params, X, Y, seed=s),
        "check-sample": lambda s: fastgrad.check(net, params, X, Y, sample=2, seed=s),
        "check-directional": lambda s: fastgrad.check(net, params, X, Y, method="directional", seed=s),
        "numerical_gradient-sample": lambda s: fastgrad.numerical_gradient(net, params, X, Y, sample=2, seed=s),
        "Monitor": lambda s: fastgrad.Monitor(net, seed=s, warm_up=False),
    }


SEED_ENTRIES = ["init", "check", "check-sample", "check-directional", "numerical_gradient-sample", "Monitor"]


@pytest.mark.parametrize("entry", SEED_ENTRIES)
@pytest.mark.parametrize("bad, exc", BAD_SEEDS.values(), ids=BAD_SEEDS.keys())
def test_bad_seed_is_named(case, entry, bad, exc):
    net, params, X, Y = case
    with pytest.raises(exc, match=r"\bseed\b"):
        _seed_entries(net, params, X, Y)[entry](bad)


GOOD_SEEDS = {
    "none": lambda: None,
    "zero": lambda: 0,
    "np-int": lambda: np.int64(3),
    "big": lambda: 2**70,
    "list": lambda: [1, 2],
    "array": lambda: np.array([3, 4], dtype=np.uint32),
    "generator": lambda: np.random.default_rng(1),
    "seed-sequence": lambda: np.random.SeedSequence(1),
}


@pytest.mark.parametrize("entry", SEED_ENTRIES)
@pytest.mark.parametrize("make_seed", GOOD_SEEDS.values(), ids=GOOD_SEEDS.keys())
def test_good_seeds_still_accepted(case, entry, make_seed):
    net, params, X, Y = case
    _seed_entries(net, params, X, Y)[entry](make_seed())


def test_numpy_int_seed_same_as_python_int(case):
    net, params, X, Y = case
    assert all(np.array_equal(a, b) for a, b in zip(net.init(np.int64(3)), net.init(3)))
    one = fastgrad.check(net, params, X, Y, sample=2, seed=np.uint16(4))
    two = fastgrad.check(net, params, X, Y, sample=2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(one.checked, two.checked))


# ------------------------------------------------------------------- sweep: entries mask


@pytest.mark.parametrize(
    "entries",
    [np.full(26, 2.0), np.ones(26, dtype=np.int64), "abc"],
    ids=["float-mask", "int-mask", "str"],
)
def test_entries_mask_must_be_bool(case, entries):
    net, params, X, Y = case
    assert net.n_params == 26
    with pytest.raises(TypeError, match=fragments("entries", "bool")):
        fastgrad.check(net, params, X, Y, entries=entries)


# -------------------------------------------------------------- item 13: the command line


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err, *parts):
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastgrad: error: ")
    for part in parts:
        assert part in lines[0], (part, lines[0])


def _npy_member(shape, descr="<f8", data=b""):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def _write_npz(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name + ".npy", blob)
    return path


CLI_TOO_LARGE = {
    "sizes-1e5": (["--sizes", "100000,100000"], 16 * GB, ["sizes", "80.0 GB", "16.0 GB"]),
    "sizes-int64-overflow": (["--sizes", "99999999999999999999,2"], None, ["sizes[0]", "EB"]),
    "sizes-product-overflow": (["--sizes", "3037000500,3037000500"], None, ["sizes[0]", "EB"]),
    # one copy of the parameters (722 kB) fits, the check (4.6 MB at its measured peak) does not
    "sizes-check-memory": (["--sizes", "300,300"], 2_000_000, ["--sizes 300,300", "4.6 MB", "2.0 MB"]),
    # the same check with --engine full peaks at about twice that: 72 bytes a parameter, not 36
    "sizes-full-engine-memory": (["--sizes", "300,300", "--engine", "full"], 6_000_000,
                                 ["--sizes 300,300", "7.8 MB", "6.0 MB"]),
    "batch-1e9": (["--sizes", "4,3", "--batch", "1e9"], None, ["--batch", "1,000,000,000 rows", "GB"]),
    "batch-1e9-int": (["--sizes", "4,3", "--batch", "1000000000"], 16 * GB, ["--batch", "104.0 GB", "16.0 GB"]),
    "batch-1e20": (["--sizes", "4,3", "--batch", str(10**20)], None, ["--batch", "EB"]),
}


@pytest.mark.parametrize("args, available, parts", CLI_TOO_LARGE.values(), ids=CLI_TOO_LARGE.keys())
def test_cli_too_large_exits_2_with_one_line(args, available, parts, capsys, memory):
    if available is not None:
        memory(available)
    code, out, err = run(["check", *args], capsys)
    assert code == 2, out + err
    assert_one_line_error(err, *parts)


def test_cli_npz_header_claiming_1e10_float64_is_refused_unloaded(tmp_path, capsys):
    path = _write_npz(tmp_path / "huge.npz", {"W1": _npy_member((10**10,)), "b1": _npy_member((3,))})
    code, out, err = run(["check", "--sizes", "4,3", "--params", path], capsys)
    assert code == 2, out + err
    assert_one_line_error(err, "'W1'", "(10000000000,)", "80.0 GB", "truncated")


def test_cli_npz_data_header_claiming_huge_x_is_refused(tmp_path, capsys):
    path = _write_npz(tmp_path / "d.npz", {"X": _npy_member((10**10, 4)), "Y": _npy_member((10**10, 3))})
    code, out, err = run(["check", "--sizes", "4,3", "--data", path], capsys)
    assert code == 2, out + err
    assert_one_line_error(err, "'X'", "320.0 GB")


@pytest.mark.parametrize(
    "shape, descr, parts",
    [
        ((-5, 3), "<f8", ["'W1'", "negative"]),
        ((4, 3), "|O", ["'W1'", "allow_pickle=False"]),
        ((2**40, 2**40), "<f8", ["'W1'", "EB"]),
    ],
    ids=["negative-dim", "object-dtype", "product-past-int64"],
)
def test_cli_forged_npz_headers(tmp_path, capsys, shape, descr, parts):
    path = _write_npz(tmp_path / "p.npz", {"W1": _npy_member(shape, descr), "b1": _npy_member((3,))})
    code, out, err = run(["check", "--sizes", "4,3", "--params", path], capsys)
    assert code == 2, out + err
    assert_one_line_error(err, *parts)


def test_cli_npz_member_larger_than_memory_is_refused_before_loading(tmp_path, capsys, memory, rng):
    X = rng.standard_normal((2000, 4))  # 64 kB of real data
    np.savez(tmp_path / "d.npz", X=X, Y=rng.uniform(size=(2000, 3)))
    memory(50_000)
    code, out, err = run(["check", "--sizes", "4,3", "--data", tmp_path / "d.npz"], capsys)
    assert code == 2, out + err
    assert_one_line_error(err, "'X'", "64.0 kB", "50.0 kB")


def test_cli_data_rows_too_large_for_the_check(tmp_path, capsys, memory, rng):
    np.savez(tmp_path / "d.npz", X=rng.standard_normal((3000, 4)), Y=rng.uniform(size=(3000, 3)))
    memory(300_000)  # each array fits, the check (data + activations) does not
    code, out, err = run(["check", "--sizes", "4,3", "--data", tmp_path / "d.npz"], capsys)
    assert code == 2, out + err
    assert_one_line_error(err, "--data", "3,000 rows", "300.0 kB")


def test_cli_exponent_batch_and_sizes_accepted(capsys):
    code, out, err = run(["check", "--sizes", "4,1e1,3", "--batch", "1e1"], capsys)
    assert code == 0, out + err
    assert "MLP 4-10-3" in out and "N=10" in out


def test_cli_memory_error_is_bad_input_not_internal(monkeypatch, capsys):
    def oom(*args, **kwargs):
        raise MemoryError("Unable to allocate 74.5 GiB")

    monkeypatch.setattr(fastgrad, "check", oom)
    code, out, err = run(["check", "--sizes", "4,3", "--batch", "2"], capsys)
    assert code == 2, out + err
    assert_one_line_error(err, "out of memory", "74.5 GiB")


@pytest.mark.parametrize("missing", ["X", "Y"])
def test_a_missing_array_is_a_value_error_naming_it(missing):
    # issue 12 item 12 asks for a ValueError naming Y; it stays a TypeError too for earlier callers
    net = fastgrad.MLP([3, 4, 2])
    params = net.init(seed=0)
    X, Y = np.ones((2, 3)), np.ones((2, 2))
    args = dict(X=X, Y=Y)
    args[missing] = None
    for call in (fastgrad.check, fastgrad.numerical_gradient):
        with pytest.raises(ValueError, match=missing) as info:
            call(net, params, args["X"], args["Y"])
        assert isinstance(info.value, TypeError)


def test_an_overflowing_forward_pass_names_the_sizes_that_overflowed_it():
    net = fastgrad.MLP([2, 3, 1], hidden="identity", output="identity", loss="sse")
    params = net.init(seed=0)
    with pytest.raises(ValueError, match=r"forward pass overflows \(largest \|X\| 1e\+200") as info:
        fastgrad.check(net, params, np.ones((2, 2)) * 1e200, np.ones((2, 1)))
    assert str(info.value).startswith("params, X, Y:")

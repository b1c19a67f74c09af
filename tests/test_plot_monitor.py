"""Monitor.plot(): the worst budget ratio crosses the fail line at the step a bug came in (issue 17)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import reference as ref

import fastgrad

pytest.importorskip("matplotlib")

BUG_AT = 23  # the training step from which dW2 is 1.001 times too large


@pytest.fixture
def trained(monitor_clock):
    """A Monitor over 40 steps of 1 ms training, checks of 10 ms (fake clock), a bug from step BUG_AT on."""
    clock = monitor_clock
    rng = np.random.default_rng(4)
    sizes = [7, 9, 6, 3]
    net = fastgrad.MLP(sizes, hidden="tanh", output="sigmoid", loss="mse")
    params = ref.random_params(rng, sizes)
    X, Y = rng.standard_normal((10, 7)), rng.uniform(size=(10, 3))
    # every=1 with min_every=1: a check on every step, forced when the budget (0.5) has not saved up for it
    mon = fastgrad.Monitor(net, every=1, min_every=1, budget=0.5, seed=0, warm_up=False, on_fail=None)
    for step in range(1, 41):
        clock.now += 0.001
        grads = net.backprop(params, X, Y)
        if step >= BUG_AT:
            grads[4] = grads[4] * 1.001  # W3's gradient
        mon.step(params, X, Y, grads)
        params = [p - 0.05 * g for p, g in zip(params, grads)]
    return mon


def panel(fig, name):
    (ax,) = [ax for ax in fig.axes if ax.get_label() == name]
    return ax


def line(ax, label):
    (found,) = [ln for ln in ax.lines if ln.get_label() == label or ln.get_label().startswith(label)]
    return found


def test_worst_ratio_crosses_the_fail_line_at_the_bug(trained):
    mon = trained
    fig = mon.plot()
    ax = panel(fig, "worst budget ratio")
    assert ax.get_yscale() == "log"
    ratio = line(ax, "worst budget ratio of the check")
    steps, values = ratio.get_xdata(), ratio.get_ydata()
    assert list(steps) == [r.step for r in mon.history] == list(range(1, 41))
    fail = line(ax, "fail line")
    assert list(fail.get_ydata()) == [mon.safety, mon.safety]
    above = values > mon.safety
    assert not above[steps < BUG_AT].any() and above[steps >= BUG_AT].all()  # the crossing is at the bug's step
    assert np.allclose(values, np.maximum([r.max_budget_ratio for r in mon.history], 1e-6))
    failed = line(ax, "failed")
    assert list(failed.get_xdata()) == list(range(BUG_AT, 41))


def test_overhead_and_coverage_panels_show_the_records(trained):
    mon = trained
    fig = mon.plot()
    overhead = panel(fig, "overhead")
    drawn = line(overhead, "checking time / training time").get_ydata()
    expected = np.array([r.time_fraction for r in mon.history]) * 100
    expected[~np.isfinite(expected)] = np.nan
    assert np.allclose(drawn, expected, equal_nan=True)
    assert list(line(overhead, "budget").get_ydata()) == [50.0, 50.0]
    coverage = panel(fig, "coverage")
    drawn = line(coverage, "entries checked at least once").get_ydata()
    assert np.allclose(drawn, [100 * r.coverage for r in mon.history])
    assert np.all(np.diff(drawn) >= 0) and drawn[-1] == 100 * mon.coverage == 100.0
    assert "40 checks in 40 steps" in fig.get_suptitle() and f"{40 - BUG_AT + 1} failed" in fig.get_suptitle()


def test_monitor_plot_saves_and_without_history_says_so(tmp_path):
    net = fastgrad.MLP([3, 4, 2])
    mon = fastgrad.Monitor(net, every=10, warm_up=False)
    fig = mon.plot(tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes().startswith(b"\x89PNG")
    assert any("no check yet" in t.get_text() for t in panel(fig, "worst budget ratio").texts)
    with pytest.raises(OSError, match="no-such-dir"):
        mon.plot(tmp_path / "no-such-dir" / "m.png")


def test_monitor_plot_without_matplotlib_names_the_extra(monkeypatch):
    net = fastgrad.MLP([3, 4, 2])
    mon = fastgrad.Monitor(net, every=10, warm_up=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"Monitor\.plot\(\) needs matplotlib.*fastgrad\[plot\]"):
        mon.plot()

"""result.plot(): the picture puts the failing region where the bug is (issue 17).

Each mutation-suite bug is checked, drawn, and read back from the figure:
the heatmap's data (``ax.images[0].get_array()``, one cell per entry or per
block) and, for the dropped column, the rendered pixels. A cell fails when
its value is above the fail line (log10 of ``safety``): the colour scale is
split there, blue below and red above.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_mutations as tm

import fastgrad
from fastgrad import picture_grid
from fastgrad._kernels.verdict import FAILED, KINK, PASSED, UNCHECKED
from fastgrad.picture_grid import CHECKED, FAILING, INCONCLUSIVE, JUDGED

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------ helpers


def mutation(mutation_id):
    (m,) = [m for m in tm.MUTATIONS if m.id == mutation_id]
    net, params, X, Y, grads = tm._grads(m)
    return net, params, X, Y, grads, fastgrad.check(net, params, X, Y, grads)


def panel(fig, name):
    (ax,) = [ax for ax in fig.axes if ax.get_label() == name]
    return ax


def cells(fig, name):
    """The panel's heatmap data: a masked array of log10 values, one per cell."""
    return panel(fig, name).images[0].get_array()


def failing_cells(fig, name, result):
    """Cells drawn above the fail line (red)."""
    data = cells(fig, name)
    return np.asarray((data > np.log10(result.safety)).filled(False))


def render(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)


def is_red(rgb):
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r > 110) & (r - np.maximum(g, b) > 60)


def is_blue(rgb):
    return rgb[..., 2] > rgb[..., 0] + 10


def pixel_of(fig_pixels, ax, row, col):
    """(y, x) of the pixel at the centre of entry (row, col) of ``ax``'s panel."""
    x, y = ax.transData.transform((col, row))
    return int(round(fig_pixels.shape[0] - y)), int(round(x))


# -------------------------------------------------------------------------------- the mutations' bugs


def test_dropped_column_is_a_stripe_at_that_column_in_data_and_pixels():
    net, params, X, Y, grads, result = mutation("loop-skips-last-unit")  # for j in range(H - 1)
    fig = result.plot()
    for name, column in (("W1", 4), ("W2", 2)):
        failing = failing_cells(fig, name, result)
        expected = np.zeros(result.tensor(name).shape, dtype=bool)
        expected[:, column] = True
        assert np.array_equal(failing, expected), (name, failing)
        # the outline is one rectangle around the stripe
        segments = np.concatenate(panel(fig, name).collections[0].get_segments())
        assert segments[:, 0].min() == column - 0.5 and segments[:, 0].max() == column + 0.5
    for name, entry in (("b1", 4), ("b2", 2)):  # biases: one row, the unit's cell
        assert np.array_equal(np.flatnonzero(failing_cells(fig, name, result)[0]), [entry])
    # the stripe is visible: in the rendered pixels, red fills column 4 of W1 and nothing else is red
    pixels = render(fig)
    ax = panel(fig, "W1")
    for row in range(4):
        for col in range(5):
            rgb = pixels[pixel_of(pixels, ax, row, col)]
            assert is_red(rgb) == (col == 4) and is_blue(rgb) == (col != 4), (row, col, rgb)
    left, _ = ax.transData.transform((3.5, 0))
    right, _ = ax.transData.transform((4.5, 0))
    box = ax.get_window_extent()
    top, bottom = pixels.shape[0] - int(box.y1) + 4, pixels.shape[0] - int(box.y0) - 4
    red = is_red(pixels[top:bottom, int(box.x0) + 4:int(box.x1) - 4])
    columns = np.arange(int(box.x0) + 4, int(box.x1) - 4)
    inside = (columns > left + 3) & (columns < right - 3)
    assert red[:, inside].mean() > 0.95  # the stripe, filled
    assert red[:, (columns < left - 3)].mean() == 0.0  # and nothing to its left


def test_transposed_gradient_is_a_mirror_image_failing_off_the_diagonal():
    net, params, X, Y, grads, result = mutation("dW-transposed")  # square layers: delta.T @ a_prev
    fig = result.plot()
    off_diagonal = ~np.eye(5, dtype=bool)
    for name in ("W1", "W2"):
        assert np.array_equal(failing_cells(fig, name, result), off_diagonal), name  # the symmetric part passes
        assert "transposed" in panel(fig, name).get_title(loc="left")
    for name in ("b1", "b2"):
        assert not failing_cells(fig, name, result).any()
        assert panel(fig, name).get_title(loc="left").startswith(f"{name} (5): passed")


def test_factor_2_fails_the_whole_of_every_tensor():
    net, params, X, Y, grads, result = mutation("squared-loss-2-dropped")  # d(y - a)^2/da taken as (a - y)
    fig = result.plot()
    for name in net.tensor_names:
        assert failing_cells(fig, name, result).all(), name
        title = panel(fig, name).get_title(loc="left")
        assert f"FAILED {result.tensor(name).size} of {result.tensor(name).size}" in title and "factor 1/2" in title


@pytest.mark.parametrize("t", range(4), ids=["W1", "b1", "W2", "b2"])
def test_one_wrong_entry_is_exactly_its_cell(t):
    net, params, X, Y = tm.case("sigmoid-mse")
    grads = tm.backprop_for("sigmoid-mse")(params, X, Y)
    index = tm._worst_entry(grads, t)
    result = fastgrad.check(net, params, X, Y, tm._nudge_largest_entry(t, 1e-6)(grads))
    fig = result.plot()
    name = net.tensor_names[t]
    for other in net.tensor_names:
        failing = failing_cells(fig, other, result)
        if other != name:
            assert not failing.any(), other
        elif failing.shape[0] == 1 and len(index) == 1:  # a bias: one row
            assert np.array_equal(np.flatnonzero(failing[0]), [index[0]])
        else:
            assert [tuple(map(int, i)) for i in np.argwhere(failing)] == [index]


def test_one_wrong_entry_of_a_large_tensor_is_the_block_that_holds_it():
    net = fastgrad.MLP([600, 520, 3])
    params = net.init(seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((4, 600)), rng.uniform(size=(4, 3))
    grads = net.backprop(params, X, Y)
    grads[0][437, 301] *= 1 + 1e-3
    result = fastgrad.check(net, params, X, Y, grads)
    assert [(f.tensor, f.index) for f in result.failures] == [("W1", (437, 301))]
    fig = result.plot()
    ax = panel(fig, "W1")
    data = ax.images[0].get_array()
    assert data.shape == (200, 174)  # blocks of 3 x 3 entries: at most 256 cells a side
    assert [tuple(map(int, i)) for i in np.argwhere(failing_cells(fig, "W1", result))] == [(437 // 3, 301 // 3)]
    assert "3 x 3 block" in ax.get_xlabel()
    (ring,) = [line for line in ax.lines if line.get_label() == "failing cells"]  # small cells: ringed too
    assert np.allclose(ring.get_xydata(), [[301, 436]])  # the centre of the block (rows 435-437, columns 300-302)
    assert ax.get_xlim() == (-0.5, 519.5) and ax.get_ylim() == (599.5, -0.5)  # axes in entry indices


def test_wrong_activation_derivative_fails_the_units_it_touches():
    # leaky_relu'(z) taken as 0 below 0: wrong exactly in the units some sample drives below 0. Units 0, 3
    # and 7 get a bias of +8, so that no sample does; the others have both signs.
    rng = np.random.default_rng(3)
    sizes = [6, 10, 2]
    net = fastgrad.MLP(sizes, hidden="leaky_relu", output="identity", loss="half_sse")
    W1, W2 = rng.normal(0, 0.5, size=(6, 10)), rng.normal(0, 0.5, size=(10, 2))
    b1, b2 = np.zeros(10), rng.normal(0, 0.1, size=2)
    b1[[0, 3, 7]] = 8.0
    X, Y = rng.standard_normal((12, 6)), rng.standard_normal((12, 2))
    params = [W1, b1, W2, b2]
    z = X @ W1 + b1
    assert np.abs(z).min() > 0.01  # no step crosses the kink
    touched = (z < 0).any(axis=0)
    assert 3 <= touched.sum() <= 7 and not touched[[0, 3, 7]].any()
    grads = tm.my_backprop(params, X, Y, hidden="leaky_relu", output="identity", loss="half_sse",
                           bug="leaky_slope_forgotten")
    result = fastgrad.check(net, params, X, Y, grads)
    assert result.inconclusive == []
    fig = result.plot()
    assert np.array_equal(failing_cells(fig, "W1", result).any(axis=0), touched)  # the touched units' columns
    assert not failing_cells(fig, "W1", result)[:, ~touched].any()
    assert np.array_equal(failing_cells(fig, "b1", result)[0], touched)
    assert not failing_cells(fig, "W2", result).any() and not failing_cells(fig, "b2", result).any()
    # the mutation suite's own case (tanh' taken of z): the hidden layer everywhere, the output layer nowhere
    net, params, X, Y, grads, result = mutation("tanh-prime-of-z")
    fig = result.plot()
    assert failing_cells(fig, "W1", result).all() and failing_cells(fig, "b1", result).all()
    assert not failing_cells(fig, "W2", result).any() and not failing_cells(fig, "b2", result).any()


# ----------------------------------------------------------------------------------- the reduction


def test_block_maxima_keep_one_failing_entry_of_a_3000_x_3000_tensor():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1e-3, size=(3000, 3000))  # ratios of a right gradient
    status = np.zeros((3000, 3000), dtype=np.uint8)
    values[1234, 2999], status[1234, 2999] = 5e8, FAILED
    before = values.copy()
    grid = picture_grid.tensor_grid("W", (3000, 3000), values, status)
    assert grid.block == (12, 12) and grid.log10_max.shape == (250, 250)
    failing = (grid.flags & FAILING) != 0
    assert [tuple(map(int, i)) for i in np.argwhere(failing)] == [(1234 // 12, 2999 // 12)]
    assert grid.log10_max[102, 249] == pytest.approx(np.log10(5e8))  # the maximum, not a mean of 144 entries
    assert np.nanmax(np.delete(grid.log10_max.ravel(), 102 * 250 + 249)) < -3
    assert grid.n_failed == 1 and grid.verdict == "failed" and grid.title == "W (3000 x 3000): FAILED 1 of 9,000,000"
    assert np.array_equal(values, before)  # nothing written into the caller's arrays


def test_block_reduce_is_the_maximum_and_or_of_every_block():
    rng = np.random.default_rng(1)
    values = rng.standard_normal((37, 53))  # 37 x 53 does not divide into 4 x 6 blocks: padded
    codes = rng.integers(0, UNCHECKED + 1, size=(37, 53)).astype(np.uint8)
    block = (4, 6)
    top = picture_grid.block_reduce(values, block, -np.inf, np.maximum)
    assert top.shape == (10, 9)
    for i in range(10):
        for j in range(9):
            assert top[i, j] == values[4 * i:4 * i + 4, 6 * j:6 * j + 6].max()
    grid = picture_grid.tensor_grid("x", (37, 53), np.abs(values), codes, max_cells=10)
    assert grid.block == block
    for i in range(10):
        for j in range(9):
            entries = codes[4 * i:4 * i + 4, 6 * j:6 * j + 6]
            flags = grid.flags[i, j]
            assert bool(flags & FAILING) == (entries == FAILED).any()
            assert bool(flags & JUDGED) == (entries <= FAILED).any()
            assert bool(flags & INCONCLUSIVE) == ((entries >= KINK) & (entries < UNCHECKED)).any()
            assert bool(flags & CHECKED) == (entries != UNCHECKED).any()
            judged = np.abs(values[4 * i:4 * i + 4, 6 * j:6 * j + 6])[entries <= FAILED]
            if judged.size:
                assert grid.log10_max[i, j] == np.log10(judged.max())
            else:
                assert np.isnan(grid.log10_max[i, j])
    with pytest.raises(ValueError, match="unknown entry verdict code 9"):
        picture_grid.tensor_grid("x", (2, 2), np.zeros((2, 2)), np.full((2, 2), 9, dtype=np.uint8))


@pytest.mark.parametrize("shape, view", [((7,), (1, 7)), ((7, 1), (1, 7)), ((1, 7), (1, 7)), ((), (1, 1)),
                                         ((3, 4), (3, 4)), ((2, 3, 4, 5), (2, 60))])
def test_biases_are_one_row_and_more_axes_are_flattened(shape, view):
    assert picture_grid.view_2d(shape) == view


def test_sampled_and_inconclusive_entries_have_their_own_colours():
    net = fastgrad.MLP([5, 30, 3], hidden="relu")
    params = net.init(seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((6, 5)), rng.uniform(size=(6, 3))
    params[1][:4] = -(X @ params[0])[0, :4]  # units 0-3 sit on their kink for sample 0: inconclusive entries
    result = fastgrad.check(net, params, X, Y, sample=4, seed=0)
    assert result.inconclusive and result.n_checked < result.n_params
    fig = result.plot()
    ax = panel(fig, "W1")
    status_layer = ax.images[1].get_array()
    checked, status = result.checked[0], result.entry_status[0]
    grey = np.all(np.isclose(status_layer, (0.8, 0.8, 0.8, 1.0)), axis=-1)
    violet = np.all(np.isclose(status_layer, (0.58, 0.26, 0.86, 1.0)), axis=-1)
    assert np.array_equal(grey, ~checked)
    assert np.array_equal(violet, (status >= KINK) & (status < UNCHECKED))
    assert violet.any()
    assert np.array_equal(ax.images[0].get_array().mask, ~((status == PASSED) | (status == FAILED)))
    assert "sampled" in ax.get_title(loc="left")


# ---------------------------------------------------------------------------------------- options


def test_rel_error_and_the_tolerance_verdict():
    net, params, X, Y, grads, result = mutation("one-entry-1e-6-W1")
    fig = result.plot(what="rel_error")
    data = cells(fig, "W1")
    expected = np.clip(np.log10(np.where(result.rel_error[0] > 0, result.rel_error[0], 1e-300)), -16, 0.5)
    assert np.allclose(data, expected)
    assert "relative error" in fig.axes[-1].get_xlabel()  # the colour bar
    judged_by_tolerance = fastgrad.check(net, params, X, Y, grads, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="what='budget_ratio' needs error budgets.*use what='rel_error'"):
        judged_by_tolerance.plot()
    fig = judged_by_tolerance.plot(what="rel_error")
    failing = np.asarray((cells(fig, "W1") > np.log10(1e-9)).filled(False))
    assert np.array_equal(failing, judged_by_tolerance.failed[0])
    for bad in ("ratio", None, 3):
        with pytest.raises(ValueError, match=r"what must be one of 'budget_ratio', 'rel_error', got"):
            result.plot(what=bad)


def test_path_saves_in_the_format_of_its_suffix_and_errors_name_it(tmp_path):
    net, params, X, Y, grads, result = mutation("one-entry-1e-6-W1")
    before = [a.copy() for a in result.analytic + result.numerical + result.budget]
    fig = result.plot(tmp_path / "r.png")
    assert type(fig).__name__ == "Figure" and type(fig.canvas).__name__ == "FigureCanvasAgg"
    assert (tmp_path / "r.png").read_bytes().startswith(PNG_MAGIC)
    result.plot(str(tmp_path / "r.svg"))
    assert b"<svg" in (tmp_path / "r.svg").read_bytes()[:500]
    with pytest.raises(OSError, match="no-such-dir"):
        result.plot(tmp_path / "no-such-dir" / "r.png")
    with pytest.raises(ValueError, match=r"r\.xyz.*not supported"):
        result.plot(tmp_path / "r.xyz")
    after = result.analytic + result.numerical + result.budget
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # the result's arrays untouched


def test_pictures_in_json_draw_the_same_grids():
    net, params, X, Y, grads, result = mutation("loop-skips-last-unit")
    assert "pictures" not in result.to_dict()  # the default keeps its keys
    text = json.dumps(result.to_dict(pictures=True), allow_nan=False)
    back = picture_grid.grids_from_dict(json.loads(text))
    direct = picture_grid.result_grids(result)
    assert back.what == "budget_ratio" and back.fail_line == 1.0 and back.headline == direct.headline
    for a, b in zip(back.tensors, direct.tensors):
        assert (a.name, a.shape, a.block, a.verdict, a.n_failed, a.hint) == (b.name, b.shape, b.block, b.verdict,
                                                                             b.n_failed, b.hint)
        assert np.array_equal(a.flags, b.flags)
        assert np.allclose(a.log10_max, b.log10_max, atol=0.02, equal_nan=True)  # float16 in JSON


def test_importing_fastgrad_imports_no_matplotlib_and_plotting_no_pyplot():
    code = ("import sys, numpy as np, fastgrad\n"
            "assert not [m for m in sys.modules if m.startswith('matplotlib')], 'matplotlib at import'\n"
            "net = fastgrad.MLP([3, 4, 2]); p = net.init(seed=0); X = np.ones((2, 3)); Y = np.zeros((2, 2))\n"
            "for _ in range(3): fastgrad.check(net, p, X, Y).plot()\n"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_without_matplotlib_plot_raises_naming_the_extra(monkeypatch):
    net, params, X, Y, grads, result = mutation("one-entry-1e-6-W1")
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'result\.plot\(\) needs matplotlib.*fastgrad\[plot\]'):
        result.plot()
    with pytest.raises(ImportError, match=r"fastgrad\[plot\]"):
        result.plot(what="bad")  # the missing dependency first


def test_readme_picture_example_draws_the_stripe(tmp_path, capsys):
    import importlib.util

    example = Path(__file__).resolve().parent.parent / "examples" / "plot_a_bug.py"
    spec = importlib.util.spec_from_file_location("plot_a_bug", example)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(str(tmp_path / "check-plot.png"))
    assert (tmp_path / "check-plot.png").read_bytes().startswith(PNG_MAGIC)
    assert {t.name for t in result.tensors if not t.passed} == {"W2", "b2"}
    fig = result.plot()
    expected = np.zeros((24, 16), dtype=bool)
    expected[:, 15] = True
    assert np.array_equal(failing_cells(fig, "W2", result), expected)
    assert "only column 15 of W2" in capsys.readouterr().out


def test_paths_that_are_not_a_picture_file_are_refused_naming_path(tmp_path):
    """A fresh user's findings: plot(42) raised AttributeError, plot("") wrote '.png', plot("noext") 'noext.png'."""
    net = fastgrad.MLP([4, 3, 2])
    params = net.init(seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((5, 4)), rng.uniform(size=(5, 2))
    result = fastgrad.check(net, params, X, Y)
    with pytest.raises(TypeError, match="path must be a file name"):
        result.plot(42)
    for bad in ("", str(tmp_path), str(tmp_path) + "/", str(tmp_path / "noext"), str(tmp_path / ".png")):
        with pytest.raises(ValueError, match="path"):
            result.plot(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written in their place
    result.plot(tmp_path / "ok.png")
    assert (tmp_path / "ok.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_directional_result_says_projection_not_sampled():
    net = fastgrad.MLP([6, 5, 3])
    params = net.init(seed=0)
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((7, 6)), rng.uniform(size=(7, 3))
    result = fastgrad.check(net, params, X, Y, method="directional", seed=0)
    titles = [ax.get_title(loc="left") for ax in result.plot().axes if ax.get_title(loc="left")]
    assert titles and not any("sampled" in t for t in titles)
    assert any("the rest by projection" in t for t in titles)
    sampled = fastgrad.check(net, params, X, Y, sample=2, seed=0)
    assert any("sampled" in ax.get_title(loc="left") for ax in sampled.plot().axes)

"""``result.plot()``: where in each tensor the mismatch sits, one heatmap per tensor (matplotlib).

The pattern says which line of a backprop is wrong: a dropped column is a
stripe, a transposed tensor a mirror image, a wrong activation derivative a
smear over the units it touches, a missing 1/N a uniform field. Each panel
shows one tensor's grid (:mod:`fastgrad.picture_grid`: block maxima, so a
single failing entry is never averaged away):

* colour: log10 of each entry's ``|a - n| / budget`` (or its relative
  error), blue up to the fail line (``safety`` x the budget) and red beyond
  it, with a jump in colour at the line so that the side is never in doubt;
* failing cells outlined in black; inconclusive cells violet; cells with no
  checked entry (a sampled check) grey;
* the title: the tensor, its verdict and its hint.

matplotlib is imported here only, when a picture is drawn; figures are made
outside pyplot (:mod:`fastgrad._matplotlib`), so nothing accumulates.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _matplotlib
from .picture_grid import CHECKED, FAILING, INCONCLUSIVE, JUDGED, ResultGrids, TensorGrid, result_grids

if TYPE_CHECKING:
    from .result import CheckResult

#: Colours of the cells that carry no value.
UNCHECKED_COLOUR = (0.80, 0.80, 0.80, 1.0)
INCONCLUSIVE_COLOUR = (0.58, 0.26, 0.86, 1.0)
OUTLINE_COLOUR = "black"
#: Decades shown below the fail line, and at least and at most above it: the scale ends at the worst value
#: drawn, within these limits (values beyond are drawn at the ends), so that the failing entries' own
#: differences (a smear's gradient, a mirror image's two halves) keep their shades.
DECADES_BELOW, DECADES_ABOVE = 4.0, (2.0, 16.0)
#: Relative errors without a fail line (the budget verdict judged them): this range of log10.
REL_ERROR_RANGE = (-16.0, 0.5)
WIDTH = 8.0  # inches
#: Panels of more than 40 cells a side with at most this many failing cells also ring each of them: seen
#: however small the cells.
RINGED_CELLS = 20


@dataclass(frozen=True)
class ColourScale:
    """How a panel's log10 values become colours: the colour map, its normalisation and the range drawn."""

    cmap: Any
    norm: Any
    low: float
    high: float
    fail_line: float | None
    label: str


def colour_scale(grids: ResultGrids) -> ColourScale:
    """The colour scale of ``grids``: two halves meeting at the fail line, or one ramp without one."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap, Normalize, TwoSlopeNorm

    quantity = "|a - n| / budget" if grids.what == "budget_ratio" else "relative error"
    fail = grids.fail_line
    if fail is None:
        low, high = REL_ERROR_RANGE
        cmap = colormaps["YlOrRd"].resampled(256)
        norm: Any = Normalize(vmin=low, vmax=high)
        label = f"{quantity}, log10 scale (failing entries outlined)"
    else:
        low = fail - DECADES_BELOW
        if grids.what == "budget_ratio":
            worst = max((float(np.nanmax(g.log10_max)) for g in grids.tensors if np.isfinite(g.log10_max).any()),
                        default=fail)
            high = float(np.clip(np.ceil(worst), fail + DECADES_ABOVE[0], fail + DECADES_ABOVE[1]))
        else:  # a relative error is at most 2 (or inf, non-finite values: inconclusive)
            high = max(fail + 1.0, 0.5)
        # blue up to the fail line, red beyond: a visible jump at the line, whichever shades the cells have
        below = colormaps["Blues"](np.linspace(0.12, 0.62, 128))
        above = colormaps["Reds"](np.linspace(0.5, 0.95, 128))
        cmap = ListedColormap(np.vstack([below, above]), name="fastgrad_fail_line")
        norm = TwoSlopeNorm(vcenter=fail, vmin=low, vmax=high)
        line = f"{10 ** fail:g} x" if grids.what == "budget_ratio" else f"rtol {10 ** fail:g}"
        label = f"{quantity}, log10 scale: fails right of the black line ({line})"
    cmap = cmap.with_extremes(bad=(0.0, 0.0, 0.0, 0.0))  # masked cells: the status layer below shows through
    return ColourScale(cmap, norm, low, high, fail, label)


def outline_segments(failing: np.ndarray, block: tuple[int, int], rows: int, cols: int) -> np.ndarray:
    """Line segments (n, 2, 2) in entry coordinates around the failing cells: the boundary of their union.

    Each boundary between a failing cell and a non-failing one (or the
    edge) is a unit segment; collinear neighbours are merged into runs, so
    a failing stripe is four lines, not four per cell.
    """
    br, bc = block
    cr, cc = failing.shape
    x_edge = np.minimum(np.arange(cc + 1) * bc, cols) - 0.5  # cell boundaries, clipped to the tensor
    y_edge = np.minimum(np.arange(cr + 1) * br, rows) - 0.5
    padded = np.pad(failing, 1)
    horizontal = padded[1:, 1:-1] != padded[:-1, 1:-1]  # (cr + 1, cc): above row boundary k
    vertical = padded[1:-1, 1:] != padded[1:-1, :-1]  # (cr, cc + 1): left of column boundary k
    segments = []
    for along_rows, edges in ((True, horizontal), (False, vertical.T)):
        steps = np.diff(np.pad(edges.astype(np.int8), ((0, 0), (1, 1))), axis=1)
        starts, ends = np.argwhere(steps == 1), np.argwhere(steps == -1)  # row-major: runs pair up in order
        line, first, last = starts[:, 0], starts[:, 1], ends[:, 1]
        if along_rows:  # y fixed at a row boundary, x from the run's first cell to its last
            a, b = np.column_stack([x_edge[first], y_edge[line]]), np.column_stack([x_edge[last], y_edge[line]])
        else:
            a, b = np.column_stack([x_edge[line], y_edge[first]]), np.column_stack([x_edge[line], y_edge[last]])
        segments.append(np.stack([a, b], axis=1))
    return np.concatenate(segments)


def draw_tensor(ax: Any, grid: TensorGrid, scale: ColourScale) -> Any:
    """Draw one tensor's panel on ``ax``; return the heatmap's image (``ax.images[0]``).

    ``ax.images[0].get_array()`` is the masked grid of log10 values drawn
    (clipped to the scale; masked where the cell has no judged entry, or
    has an inconclusive one and no failing one: a failing cell is drawn by
    its value, then an inconclusive one violet, then a passing one by its
    value); ``ax.images[1]`` the status layer (grey, violet);
    ``ax.collections[0]`` the failing cells' outline.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import MaxNLocator

    flags = grid.flags
    failing = (flags & FAILING) != 0
    inconclusive_only = ((flags & INCONCLUSIVE) != 0) & ~failing
    hidden = ((flags & JUDGED) == 0) | inconclusive_only
    with np.errstate(invalid="ignore"):  # (NaN cells are masked)
        values = np.clip(grid.log10_max, scale.low, scale.high)
    shown = np.ma.masked_array(values, mask=hidden | np.isnan(values))
    br, bc = grid.block
    cr, cc = flags.shape
    extent = (-0.5, cc * bc - 0.5, cr * br - 0.5, -0.5)  # axes in entry coordinates: ticks are indices
    image = ax.imshow(shown, cmap=scale.cmap, norm=scale.norm, extent=extent, interpolation="nearest",
                      aspect="auto")
    status = np.zeros((cr, cc, 4))
    status[(flags & CHECKED) == 0] = UNCHECKED_COLOUR
    status[inconclusive_only] = INCONCLUSIVE_COLOUR
    ax.imshow(status, extent=extent, interpolation="nearest", aspect="auto")
    segments = outline_segments(failing, grid.block, grid.rows, grid.cols)
    width = 1.2 if len(segments) < 5000 else 0.5  # (thousands of failing islands: thin lines, not a black panel)
    ax.add_collection(LineCollection(list(segments), colors=OUTLINE_COLOUR, linewidths=width))
    small_cells = max(cr, cc) > 40
    if small_cells and 0 < np.count_nonzero(failing) <= RINGED_CELLS:  # a few failing cells, small: ring them too
        rows_at, cols_at = np.nonzero(failing)
        x = (cols_at * bc + np.minimum((cols_at + 1) * bc, grid.cols)) / 2 - 0.5  # the cells' centres
        y = (rows_at * br + np.minimum((rows_at + 1) * br, grid.rows)) / 2 - 0.5
        ax.plot(x, y, linestyle="none", marker="o", markersize=13, markerfacecolor="none",
                markeredgecolor=OUTLINE_COLOUR, markeredgewidth=1.5, label="failing cells")
    ax.set_xlim(-0.5, grid.cols - 0.5)
    ax.set_ylim(grid.rows - 0.5, -0.5)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    if grid.rows == 1:
        ax.set_yticks([])
        ax.set_xlabel("entry", fontsize=8)
    else:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        many_axes = len(grid.shape) > 2
        ax.set_xlabel("axes 1.. flattened" if many_axes else "column", fontsize=8)
        ax.set_ylabel("axis 0" if many_axes else "row", fontsize=8)
    if grid.block != (1, 1):
        ax.set_xlabel(ax.get_xlabel() + f"  (each cell: the worst of a {br} x {bc} block of entries)", fontsize=8)
    ax.tick_params(labelsize=7)
    title = grid.title
    if grid.hint:
        title += "\n" + textwrap.fill(grid.hint, 110)
    ax.set_title(title, fontsize=9, loc="left", color="darkred" if grid.verdict == "failed" else "black")
    ax.set_label(grid.name)
    return image


def _bar_ticks(scale: ColourScale) -> tuple[list[float], list[str]]:
    """About four ticks on each side of the fail line (each half of the bar has its own decades), or eight."""
    if scale.fail_line is None:
        step = max(1, int(np.ceil((scale.high - scale.low) / 8)))
        ticks = [float(t) for t in range(int(np.ceil(scale.low)), int(np.floor(scale.high)) + 1) if t % step == 0]
    else:
        fail = scale.fail_line
        below = max(1, int(np.ceil((fail - scale.low) / 4)))
        above = max(1, int(np.ceil((scale.high - fail) / 4)))
        ticks = sorted([fail - k * below for k in range(1, 20) if fail - k * below >= scale.low - 1e-9] + [fail]
                       + [fail + k * above for k in range(1, 20) if fail + k * above <= scale.high + 1e-9])
    return ticks, [f"1e{int(t)}" if t == int(t) else f"{10 ** t:.3g}" for t in ticks]


def _panel_height(grid: TensorGrid, n_panels: int) -> float:
    """Inches of a panel's heatmap: one-row tensors a strip, 2-D ones after their shape, lower when there are many."""
    if grid.rows == 1:
        return 0.35
    cr, cc = grid.flags.shape
    return float(np.clip(0.9 * WIDTH * cr / cc, 1.0, 2.4 if n_panels <= 8 else 1.4))


def _colour_key(fig: Any, mappable: Any, axes: Any, scale: ColourScale, cax: Any = None) -> None:
    """The colour bar (with the fail line) and the legend of the valueless cells: below ``axes``, or in ``cax``."""
    from matplotlib.patches import Patch

    if cax is None:
        bar = fig.colorbar(mappable, ax=axes, location="bottom", shrink=0.7, aspect=45, pad=0.02)
    else:
        bar = fig.colorbar(mappable, cax=cax, orientation="horizontal")
    bar.set_label(scale.label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    ticks, labels = _bar_ticks(scale)
    bar.set_ticks(ticks, labels=labels)
    if scale.fail_line is not None:
        bar.ax.axvline(scale.fail_line, color=OUTLINE_COLOUR, linewidth=2.5)
    fig.legend(handles=[Patch(facecolor="none", edgecolor=OUTLINE_COLOUR, linewidth=1.2, label="failing (outlined)"),
                        Patch(facecolor=INCONCLUSIVE_COLOUR, label="inconclusive"),
                        Patch(facecolor=UNCHECKED_COLOUR, label="not checked")],
               loc="outside lower center", ncols=3, fontsize=8, frameon=False)


def colour_key_figure(grids: ResultGrids, purpose: str = "report --html") -> Any:
    """A figure of the colour key alone (the HTML report shows it once, above the per-tensor pictures)."""
    from matplotlib.cm import ScalarMappable

    scale = colour_scale(grids)
    fig = _matplotlib.new_figure(purpose, WIDTH, 1.0)
    cax = fig.subplots(1, 3, gridspec_kw={"width_ratios": [0.15, 0.7, 0.15]})  # the bar in the middle 70 %
    for ax in cax[::2]:
        ax.set_axis_off()
    _colour_key(fig, ScalarMappable(norm=scale.norm, cmap=scale.cmap), None, scale, cax=cax[1])
    return fig


def figure_of_grids(grids: ResultGrids, tensors: Sequence[TensorGrid] | None = None, *,
                    purpose: str = "result.plot()", headline: bool = True, key: bool = True) -> Any:
    """A figure with one panel per tensor of ``grids`` (or of ``tensors``), stacked, and the colour key below.

    ``headline`` adds the check's verdict above; ``key=False`` leaves the
    colour key out (the HTML report draws it once for all pictures).
    """
    tensors = list(grids.tensors if tensors is None else tensors)
    heights = [_panel_height(g, len(tensors)) for g in tensors]
    titles = sum(0.45 + (0.17 * textwrap.fill(g.hint, 110).count("\n") + 0.17 if g.hint else 0) for g in tensors)
    extra = (0.7 if headline else 0.0) + (1.1 if key else 0.1)
    fig = _matplotlib.new_figure(purpose, WIDTH, sum(heights) + titles + extra)
    scale = colour_scale(grids)
    axes = fig.subplots(len(tensors), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    images = [draw_tensor(ax, grid, scale) for ax, grid in zip(axes, tensors)]
    if key and images:
        _colour_key(fig, images[-1], list(axes), scale)
    if headline:
        model = "\n" + textwrap.shorten(grids.model, 105) if grids.model else ""
        fig.suptitle(textwrap.fill(grids.headline, 105) + model, fontsize=9)
    return fig


def plot_result(result: CheckResult, path: Any = None, *, what: str = "budget_ratio") -> Any:
    """Draw ``result`` (see :meth:`fastgrad.CheckResult.plot`); save it to ``path`` when given; return the Figure."""
    _matplotlib.require_matplotlib("result.plot()")  # before any work, and even for a bad `what`
    grids = result_grids(result, what)
    fig = figure_of_grids(grids)
    if path is not None:
        _matplotlib.save_figure(fig, path)
    return fig

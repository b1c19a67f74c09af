"""The ``--plot`` figure: full-check time against P, log-log, one line per series.

matplotlib is an optional dependency (the ``fastgrad[plot]`` extra): it is
imported only when a plot is drawn, and :func:`require_matplotlib` refuses
``--plot`` before anything is timed when it is missing (the refusal and the
figure are :mod:`fastgrad._matplotlib`'s, shared with every picture fastgrad draws).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import _matplotlib
from .measure import Row
from .options import BenchUsageError
from .report import growth_exponents, row_order


def require_matplotlib() -> None:
    """Raise :class:`BenchUsageError` naming the ``plot`` extra when matplotlib cannot be imported.

    Raises
    ------
    BenchUsageError
        When ``import matplotlib`` fails.
    """
    try:
        _matplotlib.require_matplotlib("--plot")
    except ImportError as exc:
        raise BenchUsageError(str(exc)) from None


def write_plot(path: str, rows: Sequence[Row], title: str) -> None:
    """Draw the log-log plot of full-check time against P, one line per series, growth exponents in the legend.

    Parameters
    ----------
    path : str
        The PNG file written.
    rows : sequence of Row
        The run's rows; those extrapolated from a subset get hollow markers.
    title : str
        The figure's title.
    """
    slopes = growth_exponents(rows)
    series: dict[str, list[Row]] = {}
    for r in rows:
        series.setdefault(r.series, []).append(r)
    fig = _matplotlib.new_figure("--plot", 10, 6.5, layout=None)  # (tight_layout below)
    ax = fig.add_subplot(1, 1, 1)
    markers = "osD^v<>pPX*h"
    colors = [f"C{i}" for i in range(10)] + ["black", "grey"]
    for i, (name, pts) in enumerate(sorted(series.items(), key=lambda kv: (row_order(kv[1][0])[2:], kv[0]))):
        pts = sorted(pts, key=lambda r: r.n_params)
        x = [r.n_params for r in pts]
        y = [r.seconds for r in pts]
        peer = pts[0].kind == "peer"
        slope = slopes.get(name)
        label = name + (f"  (slope {slope:.2f})" if slope is not None else "")
        color = colors[i % len(colors)]
        ax.plot(x, y, linestyle="--" if peer else "-", marker=markers[i % len(markers)], color=color, label=label)
        hollow = [(r.n_params, r.seconds) for r in pts if r.subset is not None]
        if hollow:
            ax.plot(*zip(*hollow), linestyle="none", marker=markers[i % len(markers)], markersize=9,
                    markerfacecolor="white", markeredgecolor=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters P")
    ax.set_ylabel("time of the full per-parameter check, s")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", title_fontsize=7,
              title="solid: fastgrad, dashed: peers; hollow markers: extrapolated from a subset")
    fig.tight_layout()
    fig.savefig(path, dpi=110)

"""matplotlib, the optional dependency of every picture fastgrad draws (the ``fastgrad[plot]`` extra).

One owner for the refusal when it is missing and for a figure that never
touches pyplot's global state: ``result.plot()``, ``Monitor.plot()``, the
HTML report and ``fastgrad bench --plot`` all come here. ``import fastgrad``
imports none of this module's dependencies; they are imported when a
picture is drawn.
"""

from __future__ import annotations

import os
from typing import Any

#: How to get matplotlib, in every message that asks for it.
INSTALL_HINT = 'pip install "fastgrad[plot]" (from a checkout: pip install -e ".[plot]"; or pip install matplotlib)'


def require_matplotlib(purpose: str) -> None:
    """Raise ImportError naming the ``fastgrad[plot]`` extra when matplotlib cannot be imported.

    Parameters
    ----------
    purpose : str
        What needs it, the start of the message: ``"result.plot()"``, ``"--plot"`` ...

    Raises
    ------
    ImportError
        When ``import matplotlib`` fails.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(f"{purpose} needs matplotlib, which is not installed: {INSTALL_HINT}") from None


def new_figure(purpose: str, width: float, height: float, *, layout: Any = "constrained") -> Any:
    """A :class:`matplotlib.figure.Figure` on an Agg canvas, outside pyplot (nothing accumulates in a long loop).

    Agg needs no display; ``savefig`` still writes any format its suffix
    names (PNG, SVG, PDF ...). ``layout`` is matplotlib's layout engine
    (None: none, for a caller that lays out itself). Raises ImportError naming the extra when
    matplotlib is missing (see :func:`require_matplotlib`).
    """
    require_matplotlib(purpose)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: Any, *, dpi: int = 100) -> None:
    """Write ``fig`` to ``path`` in the format its suffix names.

    A path that is not a file name is a TypeError; a folder, or a name
    without a suffix (matplotlib would write another file, ``name.png``),
    a ValueError; an unwritable path an OSError, an unknown suffix a
    ValueError; each naming the path.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file name (str or os.PathLike) or None, got {type(path).__name__}")
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not name or name.endswith(os.sep) or os.path.isdir(name):
        raise ValueError(f"path {name!r}: names a folder, not a file (say e.g. {os.path.join(name, 'check.png')!r})")
    stem, suffix = os.path.splitext(os.path.basename(name))
    if not suffix or not stem:  # matplotlib would write 'name.png' (or '.png'), not the file asked for
        raise ValueError(f"path {name!r}: needs a file name with a suffix naming the format (.png, .svg, .pdf ...)")
    try:
        fig.savefig(name, dpi=dpi)
    except OSError as exc:
        raise OSError(f"path {str(path)!r}: cannot write the picture: {exc.strerror or exc}") from exc
    except ValueError as exc:  # matplotlib: "Format 'xyz' is not supported (supported formats: ...)"
        raise ValueError(f"path {str(path)!r}: {exc}") from None

"""The command line's written outputs: ``fastgrad check --json/--plot`` and ``fastgrad report RESULT.json --html``.

Apart from :mod:`fastgrad.cli` (which registers these options and calls
these functions) so that each module stays a few hundred lines. Every
refusal is a :class:`~fastgrad.cli_input.UsageError` (one line, exit 2),
made before the check when it can be: a missing directory, an unknown
picture format, no matplotlib for ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import IO, Any

import fastgrad
from fastgrad.cli_input import UsageError

#: Exit status of ``fastgrad report`` when the page was written.
EXIT_WRITTEN = 0


def add_arguments(subcommands: Any, check: argparse.ArgumentParser) -> None:
    """Add ``--plot`` to ``fastgrad check`` and the ``report`` subcommand."""
    check.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw where in each tensor the mismatch sits (one heatmap per tensor, result.plot()) to FILE, "
        "in the format its suffix names (png, svg, pdf ...); needs matplotlib: pip install 'fastgrad[plot]'",
    )
    report = subcommands.add_parser(
        "report",
        help="write a check's JSON (fastgrad check --json) as a self-contained HTML page",
        description="Write one self-contained HTML page (inline CSS, pictures embedded; no network needed) "
        "from the JSON of fastgrad check --json: the verdict, a summary table per tensor, each tensor's "
        "picture and the worst failing entries. Without matplotlib the page has no pictures, and says so.",
    )
    report.add_argument("json", metavar="RESULT.json", help="the JSON written by fastgrad check --json")
    report.add_argument("--html", metavar="FILE.html", required=True, help="the page to write ('-' for stdout)")


def _require_folder(option: str, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path!r}: no such directory {folder!r}")


def vet_outputs(args: argparse.Namespace) -> None:
    """Refuse, before a check runs, the ``--json``/``--plot`` files that could not be written."""
    if args.json not in (None, "-"):
        _require_folder("--json", args.json)
    if args.plot is None:
        return
    from . import _matplotlib

    try:
        _matplotlib.require_matplotlib("--plot")
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = os.path.splitext(args.plot)[1].lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if not suffix or not os.path.splitext(os.path.basename(args.plot))[0]:
        raise UsageError(f"--plot {args.plot!r}: needs a file name with a suffix naming the format (.png, .svg ...)")
    if suffix not in formats:
        raise UsageError(f"--plot {args.plot!r}: unknown picture format {suffix!r}; "
                         f"one of {', '.join(sorted(formats))}")
    _require_folder("--plot", args.plot)


def write_outputs(args: argparse.Namespace, net: fastgrad.MLP, result: fastgrad.CheckResult, seconds: float,
                  out: IO[str]) -> None:
    """Write what ``--json`` and ``--plot`` asked for, after the check."""
    if args.json is not None:
        _write_json(args, net, result, seconds, out)
    if args.plot is not None:
        try:
            result.plot(args.plot, what="budget_ratio" if result.verdict == "budget" else "rel_error")
        except (OSError, ValueError) as exc:
            raise UsageError(f"--plot {args.plot!r}: {exc}") from None


def _write_json(args: argparse.Namespace, net: fastgrad.MLP, result: fastgrad.CheckResult, seconds: float,
                out: IO[str]) -> None:
    document = {
        "fastgrad_version": fastgrad.__version__,
        "net": {
            "sizes": list(net.sizes),
            "hidden": net.hidden,
            "output": net.output,
            "loss": net.loss_name,
            "n_params": net.n_params,
        },
        "inputs": {
            "params": args.params,
            "data": args.data,
            "grads": args.grads,
            "seed": args.seed,
            "engine": args.engine,
            "method": args.method,
            "threads": args.threads,
        },
        "wall_seconds": seconds,
        # the pictures' grids (at most 256 x 256 cells a tensor) for `fastgrad report --html`
        "result": result.to_dict(pictures=True),
    }
    text = json.dumps(document, indent=2, allow_nan=False)
    if args.json == "-":
        print(text, file=out)
        return
    try:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        raise UsageError(f"--json {args.json!r}: cannot write: {exc}") from None


def cmd_report(args: argparse.Namespace, out: IO[str]) -> int:
    """Run ``fastgrad report``; return the exit status (0 when the page was written)."""
    from .html_report import ReportInputError, build_page, load_document

    try:
        document = load_document(args.json)
        page, note = build_page(document, source=os.path.basename(args.json))
    except ReportInputError as exc:
        raise UsageError(str(exc)) from None
    if args.html == "-":
        out.write(page)
    else:
        _require_folder("--html", args.html)
        try:
            with open(args.html, "w", encoding="utf-8") as fh:
                fh.write(page)
        except OSError as exc:
            raise UsageError(f"--html {args.html!r}: cannot write: {exc}") from None
        print(f"wrote {args.html} ({len(page.encode('utf-8')) / 1e3:,.0f} kB)", file=out)
    if note:
        print(f"fastgrad: note: {note}", file=sys.stderr)
    return EXIT_WRITTEN

"""``fastgrad bench`` from options to exit status: the header, the sweep, the table, the JSON and the plot."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import IO, Any

from .options import BenchUsageError, resolve_options
from .peers import peer_module
from .plot import require_matplotlib, write_plot
from .report import LEGEND, compute_speedups, failure_lines, footer_lines, json_document, table_lines, write_json
from .sweep import sweep


def run(args: argparse.Namespace, argv: Sequence[str] | None, out: IO[str], progress: Any = None) -> int:
    """Run ``fastgrad bench``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (see :func:`fastgrad.bench.add_arguments`).
    argv : sequence of str or None
        The command-line arguments, recorded in the JSON (``sys.argv[1:]`` when None).
    out : file
        Where the table and messages go.
    progress : callable, optional
        A progress display, called as ``progress(done, total)`` with a ``label`` attribute.

    Returns
    -------
    int
        0 when every timed result was checked correct, 1 otherwise.

    Raises
    ------
    BenchUsageError
        For bad options (before anything is timed), or an output file that cannot be written.
    """
    opts = resolve_options(args)
    if opts.plot is not None:
        require_matplotlib()
    started = time.perf_counter()
    print(f"fastgrad bench: sigmoid MSE nets, N={opts.batch}; fastgrad {', '.join(opts.engines)} × "
          f"{', '.join(opts.methods)} on {','.join(map(str, opts.threads))} thread(s); peers on "
          f"{opts.peer_threads} thread(s){' (quick preset)' if opts.quick else ''}", file=out, flush=True)
    modules = {}
    for peer in opts.peers:
        module, reason = peer_module(peer)
        if module is None:
            print(reason, file=out, flush=True)
        else:
            modules[peer] = module

    result = sweep(opts, modules, out, progress)
    rows = result.rows
    compute_speedups(rows)
    wall = time.perf_counter() - started
    for line in table_lines(rows):
        print(line, file=out)
    print(file=out)
    for line in footer_lines(rows, result.models, result.first_calls):
        print(line, file=out)
    print(LEGEND, file=out)
    print(f"wall time {wall:.1f} s", file=out)

    document = json_document(opts, argv, list(modules), rows, result.models, result.first_calls,
                             result.peer_errors, wall)
    if opts.json is not None:
        write_json(opts.json, document, out)
    if opts.plot is not None:
        title = (f"fastgrad bench: full per-parameter check, sigmoid MSE, N={opts.batch}, "
                 f"{document['machine']['cpu']}, {document['machine']['cores']} cores")
        try:
            write_plot(opts.plot, rows, title)
        except OSError as exc:
            raise BenchUsageError(f"--plot {opts.plot!r}: cannot write: {exc}") from None
    failures = failure_lines(rows)
    for line in failures:
        print(line, file=out)
    return 1 if failures else 0

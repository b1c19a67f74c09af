"""Command line: ``fastgrad demo``, ``fastgrad check``, ``fastgrad report`` and ``fastgrad bench``.

Exit status: 0 when every check passes, 1 when a check fails, 2 for bad usage
or bad input, including input too large for the memory available (one
``fastgrad: error: ...`` line on stderr), 3 for an
unexpected internal error (with its traceback), 4 when a check is
inconclusive (it cannot vouch for the gradient), 130 when interrupted and 141
when stdout is closed early.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import IO, NoReturn

import fastgrad
from fastgrad import _compile_notice, _validate, cli_report
from fastgrad.cli_input import (
    UsageError,
    _check_memory,
    _count,
    _read_members,
    _sizes,
    add_convention_arguments,
    convention_kwargs,
    data_members,
    infer_sizes,
    random_data,
    tensor_members,
)

PROG = "fastgrad"
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL, EXIT_INCONCLUSIVE = 0, 1, 2, 3, 4
EXIT_INTERRUPT, EXIT_BROKEN_PIPE = 130, 141  # 128 + SIGINT, 128 + SIGPIPE


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _Progress:
    """``progress(done, total)`` callback drawing one updating line on a TTY."""

    def __init__(self, stream: IO[str], label: str, interval: float = 0.1) -> None:
        self.stream = stream
        self.label = label
        self.interval = interval
        self._start = time.perf_counter()
        self._last = -1.0
        self._open = False

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        finished = done >= total
        if not finished and now - self._last < self.interval:
            return
        self._last = now
        pct = 100.0 * done / total if total > 0 else 100.0
        self._open = True  # before writing: a Ctrl-C during the write still gets its newline
        self.stream.write(
            f"\r{self.label}: {done}/{total} parameters ({pct:5.1f}%), "
            f"{now - self._start:.1f} s"
        )
        if finished:
            self.stream.write("\n")
            self._start = time.perf_counter()  # the demo reuses the display
        self._open = not finished
        self.stream.flush()

    def close(self) -> None:
        """End a line left open by an interrupted check."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def _progress_for(label: str) -> _Progress | None:
    stream = sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return _Progress(stream, label)
    return None


# ---------------------------------------------------------------- argument parsing


def build_parser() -> argparse.ArgumentParser:
    """Return the ``fastgrad`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description="Numerically check neural-network gradients (central differences).",
        epilog="Exit status: 0 pass, 1 check failed, 2 bad usage or input, "
        "3 internal error, 130 interrupted.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {fastgrad.__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sub.add_parser(
        "demo",
        help="check the tutorial nets and a larger random net",
        description="Check the tutorial 1-hidden-layer sigmoid MSE net against its "
        "hand-written backprop, the linear regression gradient X^T (Yhat - Y) of "
        "one gradient-descent step, and net.backprop of a 64-32-16-10 tanh net.",
    )

    chk = sub.add_parser(
        "check",
        help="check net.backprop (or given gradients) for an MLP",
        description="Check the gradient of an MLP: net.backprop by default, or the "
        "gradients in --grads. Parameters are random (net.init(seed)) unless "
        "--params is given; data are random (X standard normal, Y uniform in "
        "[0, 1) or one-hot rows for cross_entropy) unless --data is given.",
    )
    chk.add_argument(
        "--sizes",
        type=_sizes,
        metavar="D,H1,...,K",
        help="layer sizes, e.g. 784,128,10 (inferred from --params when omitted)",
    )
    chk.add_argument(
        "--hidden",
        default="sigmoid",
        help="hidden activation: sigmoid, tanh, relu, leaky_relu, softplus, elu, gelu, silu, identity "
        "(default: sigmoid)",
    )
    chk.add_argument(
        "--output",
        default=None,
        help="output activation, or softmax with cross_entropy "
        "(default: softmax for cross_entropy, else sigmoid)",
    )
    chk.add_argument(
        "--loss",
        default="mse",
        help="mse, sse, half_sse, cross_entropy or bce (default: mse)",
    )
    add_convention_arguments(chk)
    chk.add_argument(
        "--batch",
        type=_count,
        default=None,
        metavar="N",
        help="rows of random data (default: 64; not with --data)",
    )
    chk.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of random parameters and data (default: 0)",
    )
    chk.add_argument(
        "--eps",
        type=float,
        default=None,
        help="central-difference step (default: 1e-8 with the incremental engine, 1e-4 with the full one)",
    )
    chk.add_argument(
        "--engine",
        choices=["incremental", "full", "unit"],
        default="incremental",
        help="incremental (default): recompute only what each perturbation changes; "
        "full: two full forward passes per parameter (the tutorial's loop, compiled); "
        "unit: numerical per-unit deltas assembled through dz/dW = a",
    )
    chk.add_argument(
        "--method",
        choices=["central", "richardson", "complex"],
        default="central",
        help="difference formula (default: central)",
    )
    chk.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="judge with a fixed relative tolerance instead of each entry's error budget "
        "(default: the budget; with only --atol given, 1e-5)",
    )
    chk.add_argument(
        "--atol",
        type=float,
        default=None,
        help="fixed absolute tolerance (default: the budget; with only --rtol given, 1e-8)",
    )
    chk.add_argument(
        "--safety",
        type=float,
        default=10.0,
        help="budget verdict: an entry fails above this many times its error budget (default: 10)",
    )
    chk.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="T",
        help="Numba threads for the check (default: all)",
    )
    chk.add_argument(
        "--params",
        metavar="FILE.npz",
        help="parameters to check, keys W1, b1, W2, b2, ...",
    )
    chk.add_argument("--data", metavar="FILE.npz", help="data, keys X and Y")
    chk.add_argument(
        "--grads",
        metavar="FILE.npz",
        help="gradients to check instead of net.backprop, keys W1, b1, ...",
    )
    chk.add_argument(
        "--json",
        metavar="FILE",
        help="also write the result as JSON to FILE ('-' for stdout), with each tensor's picture grid",
    )
    cli_report.add_arguments(sub, chk)  # check --plot, and the report subcommand

    from . import bench

    bench.add_arguments(
        sub.add_parser(
            "bench",
            help="time full checks as the net grows, beside the naive loop, torch, scipy and jax",
            description="Scaling sweep of full per-parameter checks (784-H-10 sigmoid MSE nets by "
            "default): fastgrad's engines and methods on each thread count, beside the peers (naive "
            "NumPy loop, torch.autograd.gradcheck, its fast_mode, scipy approx_fprime, jax check_grads). "
            "Peers too slow for the whole check are timed on a subset and extrapolated linearly. Every "
            "timed result is checked against backprop; a wrong one exits with status 1.",
        )
    )
    return parser


# ------------------------------------------------------------------------ commands


@contextlib.contextmanager
def _input_errors() -> Iterator[None]:
    """Re-raise fastgrad's input errors (ValueError, TypeError) as UsageError."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from exc


def _print_result(result: fastgrad.CheckResult, seconds: float, out: IO[str]) -> None:
    print(str(result), file=out)
    print(
        f"time: {seconds:.3f} s for {result.n_params} parameters (includes Numba "
        "compilation when the kernels are not cached yet)",
        file=out,
    )


def cmd_check(args: argparse.Namespace, out: IO[str]) -> int:
    """Run ``fastgrad check``; return the exit status."""
    if args.data is not None and args.batch is not None:
        raise UsageError("--batch cannot be used with --data (the batch is X's rows)")
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch must be a positive integer, got {args.batch}")
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {args.seed}")
    # headers first: sizes and memory are known before any array is allocated
    param_members = tensor_members(args.params, "params") if args.params else None
    if args.sizes is not None:
        sizes = args.sizes
    elif param_members is not None:
        sizes = infer_sizes(param_members, args.weight_layout)
    else:
        raise UsageError("--sizes is required unless --params is given")
    output = args.output
    if output is None:
        output = "softmax" if args.loss == "cross_entropy" else "sigmoid"
    with _input_errors():
        net = fastgrad.MLP(sizes, hidden=args.hidden, output=output, loss=args.loss, **convention_kwargs(args))
    data_header = data_members(args.data) if args.data is not None else None
    grad_members = tensor_members(args.grads, "grads") if args.grads else None
    if data_header is not None:
        X_header = data_header[0]
        n_rows = X_header.shape[0] if X_header.ndim else 1
        rows_from = f"--data {args.data}"
    else:
        n_rows = args.batch or 64
        rows_from = "--batch" if args.batch is not None else "the default batch"
    _check_memory(net, n_rows, rows_from, param_members is not None, 1 if grad_members is not None else 0,
                  doubled=args.engine == "full")
    cli_report.vet_outputs(args)  # --json's and --plot's files, before a check that may be long
    if param_members is not None:
        params = _read_members(args.params, "params", param_members)
    else:
        params = net.init(seed=args.seed)
    if data_header is not None:
        X, Y = _read_members(args.data, "data", data_header)
    else:
        X, Y = random_data(net.sizes, net.loss_name, n_rows, args.seed)
    grads = _read_members(args.grads, "grads", grad_members) if grad_members is not None else None

    what = f"gradients from {args.grads}" if grads is not None else "net.backprop"
    shape = "-".join(str(s) for s in net.sizes)
    shown_rows = X.shape[0] if X.ndim else "?"
    print(
        f"MLP {shape} (hidden={net.hidden}, output={net.output}, "
        f"loss={net.loss_name}), {net.n_params} parameters, N={shown_rows}; "
        f"checking {what}",
        file=sys.stderr if args.json == "-" else out,  # with --json -, stdout is the JSON alone
        flush=True,  # seen before a long check, even through a pipe
    )
    progress = _progress_for("checking")
    start = time.perf_counter()
    try:
        with _input_errors():
            result = fastgrad.check(
                net,
                params,
                X,
                Y,
                grads,
                eps=args.eps,
                engine=args.engine,
                method=args.method,
                safety=args.safety,
                rtol=args.rtol,
                atol=args.atol,
                threads=args.threads,
                progress=progress,
            )
    finally:
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - start
    _print_result(result, seconds, sys.stderr if args.json == "-" else out)
    cli_report.write_outputs(args, net, result, seconds, out)
    if result.passed:
        return EXIT_PASS
    return EXIT_INCONCLUSIVE if result.status == "inconclusive" else EXIT_FAIL


def cmd_demo(args: argparse.Namespace, out: IO[str]) -> int:
    """Run ``fastgrad demo``; return the exit status."""
    from .demo import run_demo

    progress = _progress_for("checking")
    try:
        cases = run_demo(progress)
    finally:
        if progress is not None:
            progress.close()
    for number, case in enumerate(cases, start=1):
        print(f"== {number}. {case.title} ==", file=out)
        print(case.description, file=out)
        _print_result(case.result, case.seconds, out)
        print(file=out)
    failed = [case.title for case in cases if not case.result.passed]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=out)
        return EXIT_FAIL
    print(f"all {len(cases)} demo checks passed", file=out)
    return EXIT_PASS


def _run_bench(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Run ``fastgrad bench`` (see :mod:`fastgrad.bench`); return the exit status."""
    from . import bench

    progress = _progress_for("bench")
    try:
        return bench.run(args, argv, sys.stdout, progress)
    except bench.BenchUsageError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if progress is not None:
            progress.close()


def _error(message: str) -> None:
    # One line, whatever the message contains.
    line = " ".join(str(message).split())
    print(f"{PROG}: error: {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastgrad`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns
    -------
    int
        0 if every check passed, 1 if one failed, 2 for bad usage or input,
        3 for an internal error, 4 if the check was inconclusive (it cannot
        vouch for the gradient: e.g. a step too small to resolve it), 130 if
        interrupted, 141 if stdout was closed.
    """
    out = sys.stdout
    try:
        args = build_parser().parse_args(argv)
        # demo, check and bench all compile on a fresh install: say so on stderr (stdout may be --json -)
        with _compile_notice.on_stderr():
            if args.command == "demo":
                return cmd_demo(args, out)
            if args.command == "bench":
                return _run_bench(args, argv)
            if args.command == "report":
                return cli_report.cmd_report(args, out)
            return cmd_check(args, out)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except MemoryError as exc:
        # what the estimates before allocating did not foresee: still the
        # input's size against this machine, not a bug
        available = _validate.available_memory()
        left = "" if available is None else f" ({_validate.format_bytes(available)} available now)"
        _error(f"out of memory{left}: {exc or 'an allocation failed'}; try a smaller net, --batch or data")
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPT
    except BrokenPipeError:
        # stdout closed early (``fastgrad demo | head``): stop quietly, as
        # a command killed by SIGPIPE would, and keep Python from complaining
        # again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor
            pass
        finally:
            os.close(devnull)
        return EXIT_BROKEN_PIPE
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else EXIT_PASS
    except Exception as exc:  # noqa: BLE001 - a bug: keep the traceback for the report
        traceback.print_exc()
        _error(f"internal error ({type(exc).__name__}): {exc}; please report it")
        return EXIT_INTERNAL

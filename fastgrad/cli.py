"""Command line: ``fastgrad demo``, ``fastgrad check`` and ``fastgrad bench``.

Exit status: 0 when every check passes, 1 when a check fails, 2 for bad usage
or bad input, including input too large for the memory available (one
``fastgrad: error: ...`` line on stderr), 3 for an
unexpected internal error (with its traceback), 130 when interrupted and 141
when stdout is closed early.
"""

from __future__ import annotations

import argparse
import contextlib
import decimal
import json
import math
import os
import sys
import time
import traceback
import zipfile
from collections.abc import Iterator, Sequence
from typing import IO, NoReturn

import numpy as np

import fastgrad
from fastgrad import _validate

PROG = "fastgrad"
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL, EXIT_INCONCLUSIVE = 0, 1, 2, 3, 4
EXIT_INTERRUPT, EXIT_BROKEN_PIPE = 130, 141  # 128 + SIGINT, 128 + SIGPIPE


class UsageError(Exception):
    """Bad command line or bad input file; reported as one line, exit status 2."""


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


def _sizes(text: str) -> list[int]:
    try:
        return [_count(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 784,128,10, got {text[:80]!r}"
        ) from None


def _count(text: str) -> int:
    """Parse a whole number, also in exponent notation (``1e4``); the size checks come later."""
    try:
        value = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"expected a whole number such as 64 or 1e4, got {text!r}")
    if abs(value.adjusted()) > 4300:  # int() of a longer number is refused by Python itself
        raise argparse.ArgumentTypeError(f"expected a whole number such as 64 or 1e4, got {text[:20]!r}...")
    return int(value)


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
        help="hidden activation: sigmoid, tanh, relu, leaky_relu, "
        "softplus, identity (default: sigmoid)",
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
        help="mse, sse, half_sse or cross_entropy (default: mse)",
    )
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
        help="also write the result as JSON to FILE ('-' for stdout)",
    )

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


# ---------------------------------------------------------------------- npz input


class _Member:
    """One array of an .npz archive, known from its .npy header only (nothing loaded)."""

    def __init__(self, key: str, member: str, shape: tuple[int, ...], dtype: np.dtype, nbytes: int) -> None:
        self.key = key
        self.member = member
        self.shape = shape
        self.ndim = len(shape)
        self.dtype = dtype
        self.nbytes = nbytes


def _open_npz(path: str, role: str) -> np.lib.npyio.NpzFile:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise UsageError(f"{role} file {path!r}: cannot read: {exc}") from None
    if magic[:2] != b"PK":  # not a zip: np.load would blame pickled data and suggest allow_pickle=True
        raise UsageError(f"{role} file {path!r}: not an .npz archive (np.savez writes one)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{role} file {path!r}: cannot read: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UsageError(f"{role} file {path!r}: not an .npz archive")
    return archive


def _member(archive: np.lib.npyio.NpzFile, key: str, path: str, role: str) -> _Member:
    """Read and vet the .npy header of ``key``: its shape, dtype and size, without loading the array.

    Refused: a missing key, a member that is not an .npy array, an object
    dtype (it would need pickle), a header claiming more data than the
    member holds (a truncated or forged file), and an array larger than
    the memory available. Sizes are Python ints: a forged header cannot
    overflow them.
    """
    if key not in archive.files:
        found = ", ".join(archive.files) or "none"
        raise UsageError(f"{role} file {path!r}: missing key {key!r} (found: {found})")
    where = f"{role} file {path!r}: key {key!r}"
    names = archive.zip.namelist()
    member = key + ".npy" if key + ".npy" in names else key
    try:
        info = archive.zip.getinfo(member)
        with archive.zip.open(member) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
            else:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not read (only 1.0 and 2.0)")
            header_bytes = fp.tell()
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{where}: not a readable .npy array: {exc}") from None
    if dtype.hasobject:
        raise UsageError(
            f"{where}: dtype {dtype} holds Python objects, which only pickle can load; "
            "fastgrad reads numeric arrays only (allow_pickle=False)"
        )
    if any(d < 0 for d in shape):
        raise UsageError(f"{where}: the header's shape {shape} has a negative dimension")
    nbytes = math.prod(shape) * dtype.itemsize
    held = info.file_size - header_bytes
    if nbytes > held:
        raise UsageError(
            f"{where}: the header claims shape {shape} {dtype} ({_validate.format_bytes(nbytes)}) but the "
            f"member holds {_validate.format_bytes(max(held, 0))} of data: the file is truncated or corrupt"
        )
    short = _validate.memory_shortfall(nbytes)
    if short is not None:
        raise UsageError(f"{where}: shape {shape} {dtype} is {_validate.format_bytes(nbytes)}, {short}")
    return _Member(key, member, tuple(int(d) for d in shape), dtype, nbytes)


def _read_member(archive: np.lib.npyio.NpzFile, member: _Member, path: str, role: str) -> np.ndarray:
    """Load an array vetted by :func:`_member` (never with pickle)."""
    try:
        with archive.zip.open(member.member) as fp:
            return np.asarray(np.lib.format.read_array(fp, allow_pickle=False))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{role} file {path!r}: key {member.key!r}: {exc}") from None


def tensor_members(path: str, role: str) -> list[_Member]:
    """Read the headers of ``W1, b1, W2, b2, ...`` in an .npz file, in layer order (nothing loaded).

    Raises
    ------
    UsageError
        If the file cannot be read, a key is missing, there are extra keys,
        or a member is not a loadable numeric array (see :func:`_member`).
    """
    with _open_npz(path, role) as archive:
        n_layers = 0
        while f"W{n_layers + 1}" in archive.files:
            n_layers += 1
        names = [
            f"{p}{layer}"
            for layer in range(1, max(n_layers, 1) + 1)
            for p in ("W", "b")
        ]
        members = [_member(archive, name, path, role) for name in names]
        extra = sorted(set(archive.files) - set(names))
        if extra:
            raise UsageError(
                f"{role} file {path!r}: unexpected key(s) {', '.join(extra)} "
                f"(expected {', '.join(names)})"
            )
    return members


def _read_members(path: str, role: str, members: list[_Member]) -> list[np.ndarray]:
    with _open_npz(path, role) as archive:
        return [_read_member(archive, m, path, role) for m in members]


def load_tensors(path: str, role: str) -> list[np.ndarray]:
    """Read ``W1, b1, W2, b2, ...`` from an .npz file, in layer order.

    Parameters
    ----------
    path : str
        The .npz file; read without pickle, each member's header vetted
        before its array is allocated (:func:`tensor_members`).
    role : str
        ``"params"`` or ``"grads"``, used in error messages.

    Returns
    -------
    list of ndarray
        ``[W1, b1, ..., WL, bL]``.

    Raises
    ------
    UsageError
        If the file cannot be read, a key is missing, there are extra keys,
        or a member is not a loadable numeric array that fits in memory.
    """
    return _read_members(path, role, tensor_members(path, role))


def data_members(path: str) -> list[_Member]:
    """Read the headers of ``X`` and ``Y`` in an .npz file (nothing loaded)."""
    with _open_npz(path, "data") as archive:
        return [_member(archive, key, path, "data") for key in ("X", "Y")]


def load_data(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``X`` and ``Y`` from an .npz file (no pickle; headers vetted first)."""
    X, Y = _read_members(path, "data", data_members(path))
    return X, Y


def infer_sizes(params: Sequence[np.ndarray | _Member]) -> list[int]:
    """Return ``[D, H1, ..., K]`` from the weight shapes ``W_l (fan_in, fan_out)``."""
    weights = params[0::2]
    for layer, W in enumerate(weights, start=1):
        if W.ndim != 2:
            raise UsageError(
                f"params: tensor 'W{layer}' has shape {W.shape}, expected 2-D "
                "(fan_in, fan_out); pass --sizes"
            )
    return [int(weights[0].shape[0])] + [int(W.shape[1]) for W in weights]


def _check_memory(
    net: fastgrad.MLP, n_rows: int, rows_from: str, params_in_file: bool, n_grads: int
) -> None:
    """Refuse (``UsageError``) a check whose memory, at the least, exceeds what is available.

    Counted in Python ints before anything is allocated: the parameters
    and the gradients to check (8 bytes each), the data (8 bytes per row
    and column), and what the check itself allocates at the least
    (:func:`fastgrad._validate.work_memory`).
    """
    P = net.n_params
    units = sum(net.sizes[1:])
    data = 8 * n_rows * (net.sizes[0] + net.sizes[-1])
    inputs = 8 * P * (1 + n_grads)
    work = _validate.work_memory(P, units, n_rows, _validate.CHECK_BYTES_PER_PARAM)
    need = inputs + data + work
    short = _validate.memory_shortfall(need)
    if short is None:
        return
    per_row = data + _validate.ACTIVATION_BYTES * n_rows * units
    fmt = _validate.format_bytes
    if per_row >= need - per_row:
        culprit = f"{rows_from} ({n_rows:,} rows)"
    else:
        culprit = "--params" if params_in_file else "--sizes " + ",".join(map(str, net.sizes))
        culprit += f" ({P:,} parameters)"
    raise UsageError(
        f"{culprit} too large: the check needs at least {fmt(need)} of memory "
        f"({fmt(need - per_row)} for the parameters, {fmt(per_row)} for {n_rows:,} rows of data and "
        f"activations), {short}"
    )


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


def _random_data(
    sizes: Sequence[int], loss: str, batch: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0]))
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1], dtype=np.float64)[rng.integers(0, sizes[-1], size=batch)]
    else:
        Y = rng.uniform(0.0, 1.0, size=(batch, sizes[-1]))
    return X, Y


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
        sizes = infer_sizes(param_members)
    else:
        raise UsageError("--sizes is required unless --params is given")
    output = args.output
    if output is None:
        output = "softmax" if args.loss == "cross_entropy" else "sigmoid"
    with _input_errors():
        net = fastgrad.MLP(sizes, hidden=args.hidden, output=output, loss=args.loss)
    data_header = data_members(args.data) if args.data is not None else None
    grad_members = tensor_members(args.grads, "grads") if args.grads else None
    if data_header is not None:
        X_header = data_header[0]
        n_rows = X_header.shape[0] if X_header.ndim else 1
        rows_from = f"--data {args.data}"
    else:
        n_rows = args.batch or 64
        rows_from = "--batch" if args.batch is not None else "the default batch"
    _check_memory(net, n_rows, rows_from, param_members is not None, 1 if grad_members is not None else 0)
    if args.json not in (None, "-"):
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise UsageError(f"--json {args.json!r}: no such directory {folder!r}")
    if param_members is not None:
        params = _read_members(args.params, "params", param_members)
    else:
        params = net.init(seed=args.seed)
    if data_header is not None:
        X, Y = _read_members(args.data, "data", data_header)
    else:
        X, Y = _random_data(net.sizes, net.loss_name, n_rows, args.seed)
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
    if args.json is not None:
        _write_json(args, net, result, seconds, out)
    if result.passed:
        return EXIT_PASS
    return EXIT_INCONCLUSIVE if result.status == "inconclusive" else EXIT_FAIL


def _write_json(
    args: argparse.Namespace,
    net: fastgrad.MLP,
    result: fastgrad.CheckResult,
    seconds: float,
    out: IO[str],
) -> None:
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
        "result": result.to_dict(),
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
        if args.command == "demo":
            return cmd_demo(args, out)
        if args.command == "bench":
            return _run_bench(args, argv)
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

"""What ``fastgrad bench`` measures: the sweep's constants, its presets and its command-line options."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba

from ..model import MLP

#: Input and output widths of the sweep's 1-hidden-layer nets (MNIST-like).
INPUT, OUTPUT = 784, 10
#: Hidden widths: P = 795 H + 10, about 1.6e3, 4.8e3, 1e4, 3.2e4, 1e5, 3.2e5, 1e6.
DEFAULT_HIDDEN = (2, 6, 13, 40, 126, 400, 1258)
#: ``--quick``: P from about 1.6e3 to 3.2e5.
QUICK_HIDDEN = (2, 6, 13, 40, 126, 400)
METHODS = ("central", "richardson", "complex")
ENGINE_NAMES = ("incremental", "full")
PEERS = ("naive", "torch", "torch-fast", "scipy", "jax")
#: The peers' step (the tutorial's), where the peer takes one.
PEER_EPS = 1e-4


class BenchUsageError(ValueError):
    """Bad options for ``fastgrad bench`` (exit status 2)."""


@dataclass(frozen=True)
class Preset:
    """Default option values: the full sweep or ``--quick``."""

    sizes: tuple[tuple[int, ...], ...]
    methods: tuple[str, ...]
    engines: tuple[str, ...]
    peers: tuple[str, ...]
    repeats: int
    budget: float  # seconds per subset measurement of a peer (and of the full engine)


FULL_PRESET = Preset(
    sizes=tuple((INPUT, h, OUTPUT) for h in DEFAULT_HIDDEN),
    methods=("central",),
    engines=ENGINE_NAMES,
    peers=PEERS,
    repeats=5,
    budget=1.0,
)
QUICK_PRESET = Preset(
    sizes=tuple((INPUT, h, OUTPUT) for h in QUICK_HIDDEN),
    methods=("central",),
    engines=ENGINE_NAMES,
    peers=PEERS,
    repeats=5,
    budget=0.12,
)


def parse_sizes(text: str) -> tuple[tuple[int, ...], ...]:
    """Parse ``--sizes``: hidden widths (``2,13,126``) and/or layer sizes (``784-256-256-10``).

    Parameters
    ----------
    text : str
        Comma-separated items; a single number H stands for the net ``784-H-10``.

    Returns
    -------
    tuple of tuple of int
        The layer sizes of every net, in the order given.

    Raises
    ------
    argparse.ArgumentTypeError
        When an item is not a positive integer or a dash-separated list of them.
    """
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError("expected hidden widths such as 2,13,126 or sizes such as 784-128-10")
    out = []
    for item in items:
        try:
            parts = [int(p) for p in item.split("-")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected hidden widths such as 2,13,126 or layer sizes such as 784-128-10, got {item!r}"
            ) from None
        if any(p < 1 for p in parts):
            raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {item!r}")
        out.append((INPUT, parts[0], OUTPUT) if len(parts) == 1 else tuple(parts))
    return tuple(out)


def _name_list(names: Sequence[str], what: str, allow_none: bool = False) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if allow_none and items == ["none"]:
            return ()
        if items == ["all"]:
            return tuple(names)
        bad = [item for item in items if item not in names]
        if bad or not items:
            extra = ", 'all'" + (" or 'none'" if allow_none else "")
            raise argparse.ArgumentTypeError(
                f"{what}: expected a comma-separated list of {', '.join(names)}{extra}, got {text!r}"
            )
        return tuple(dict.fromkeys(items))

    return parse


def _thread_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(dict.fromkeys(int(item) for item in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected thread counts such as 1,2, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"thread counts must be positive, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fastgrad bench`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``bench`` subcommand's parser.
    """
    parser.add_argument(
        "--sizes", type=parse_sizes, default=None, metavar="H,...|D-H-...-K",
        help="hidden widths H of 784-H-10 nets and/or full layer sizes such as 784-256-256-256-10 "
        f"(default: {','.join(map(str, DEFAULT_HIDDEN))}; --quick: {','.join(map(str, QUICK_HIDDEN))})",
    )
    parser.add_argument("--batch", type=int, default=64, metavar="N", help="batch size N (default: 64)")
    parser.add_argument(
        "--methods", type=_name_list(METHODS, "--methods"), default=None, metavar="M,...",
        help="fastgrad's difference methods: central, richardson, complex (default: central)",
    )
    parser.add_argument(
        "--engines", type=_name_list(ENGINE_NAMES, "--engines"), default=None, metavar="E,...",
        help="fastgrad's engines: incremental, full (default: both; full is timed on a subset when slow)",
    )
    parser.add_argument(
        "--peers", type=_name_list(PEERS, "--peers", allow_none=True), default=None, metavar="P,...",
        help="peers: naive, torch, torch-fast, scipy, jax, or none (default: all; "
        "each skipped with a message when not installed)",
    )
    parser.add_argument(
        "--threads", type=_thread_list, default=None, metavar="T,...",
        help="fastgrad thread counts, e.g. 1,2 (default: 1 and all); the peers run with the smallest",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="a short preset (under a minute on 2 cores): P from about 1.6e3 to 3.2e5, peers on small subsets",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, metavar="R",
        help="warm calls per measurement, median reported (default: 5; fewer for a peer past its time budget)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of parameters and data (default: 0)")
    parser.add_argument("--json", metavar="FILE", help="write machine info, the command line and every row as JSON")
    parser.add_argument(
        "--plot", metavar="FILE.png",
        help="log-log plot of time against P with fitted growth exponents (needs matplotlib: "
        'pip install -e ".[plot]")',
    )


@dataclass
class Options:
    """Resolved options of one sweep."""

    sizes: tuple[tuple[int, ...], ...]
    batch: int
    methods: tuple[str, ...]
    engines: tuple[str, ...]
    peers: tuple[str, ...]
    threads: tuple[int, ...]
    repeats: int
    budget: float
    seed: int
    quick: bool
    json: str | None
    plot: str | None

    @property
    def peer_threads(self) -> int:
        """Threads of the peers and of the NumPy forward pass (the unit): the smallest tested."""
        return min(self.threads)


def resolve_options(args: argparse.Namespace) -> Options:
    """Fill ``args`` from the preset and validate them.

    Whether matplotlib is installed for ``--plot`` is checked apart, by
    :func:`fastgrad.bench.plot.require_matplotlib`.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``fastgrad bench`` options (see :func:`add_arguments`).

    Returns
    -------
    Options
        Every option with its value, the preset's where none was given.

    Raises
    ------
    BenchUsageError
        On bad values (too many threads, a non-positive batch, a net MLP refuses, a missing output folder).
    """
    preset = QUICK_PRESET if args.quick else FULL_PRESET
    max_threads = numba.config.NUMBA_NUM_THREADS
    threads = args.threads if args.threads is not None else tuple(dict.fromkeys((1, max_threads)))
    bad = [t for t in threads if t > max_threads]
    if bad:
        raise BenchUsageError(f"--threads: at most {max_threads} (NUMBA_NUM_THREADS) here, got {bad[0]}")
    if args.batch < 1:
        raise BenchUsageError(f"--batch must be a positive integer, got {args.batch}")
    repeats = args.repeats if args.repeats is not None else preset.repeats
    if repeats < 1:
        raise BenchUsageError(f"--repeats must be a positive integer, got {repeats}")
    if args.seed < 0:
        raise BenchUsageError(f"--seed must be a non-negative integer, got {args.seed}")
    opts = Options(
        sizes=args.sizes if args.sizes is not None else preset.sizes,
        batch=args.batch,
        methods=args.methods if args.methods is not None else preset.methods,
        engines=args.engines if args.engines is not None else preset.engines,
        peers=args.peers if args.peers is not None else preset.peers,
        threads=tuple(threads),
        repeats=repeats,
        budget=preset.budget,
        seed=args.seed,
        quick=bool(args.quick),
        json=args.json,
        plot=args.plot,
    )
    for sizes in opts.sizes:
        try:
            MLP(sizes)
        except (TypeError, ValueError) as exc:
            raise BenchUsageError(f"--sizes: {exc}") from None
    for flag, path in (("--json", opts.json), ("--plot", opts.plot)):
        if path not in (None, "-"):
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise BenchUsageError(f"{flag} {path!r}: no such directory {folder!r}")
    if opts.plot == "-":
        raise BenchUsageError("--plot needs a file name (FILE.png)")
    return opts

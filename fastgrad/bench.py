"""``fastgrad bench``: a scaling sweep of full per-parameter checks, beside the peers.

For every network of the sweep (by default 784-H-10 sigmoid MSE nets with
growing H, batch N = 64) it times fastgrad's full numerical gradient (every
parameter) for each engine, method and thread count, and the peers a user
would otherwise reach for:

- ``naive``: the tutorial's loop, perturb one entry and run two full NumPy
  forward passes of the batch (central difference, eps 1e-4);
- ``torch``: ``torch.autograd.gradcheck`` (``fast_mode=False``: per-parameter
  central differences, eps 1e-4);
- ``torch-fast``: ``torch.autograd.gradcheck(fast_mode=True)``: one random
  projection of the gradient, **not** a per-parameter check;
- ``scipy``: ``scipy.optimize.approx_fprime``: per-parameter forward
  differences, eps 1e-4;
- ``jax``: ``jax.test_util.check_grads``: random projections only.

A peer that is not installed is skipped with a one-line message. Peers
whose cost is two forward passes per parameter (and fastgrad's ``full``
engine) are timed on a subset of parameters drawn from every tensor when
the whole check would not fit in the time budget, and extrapolated
linearly; the row says "extrapolated from k params".

Every timed result is checked against ``net.backprop`` (max |numerical -
backprop| relative to the largest gradient entry, within a tolerance suited
to the method and engine; gradcheck/check_grads must return success), so a
fast wrong answer cannot look good: a failed check makes the command exit 1.

Compilation is measured apart from the steady state: the first call of
each engine and method (Numba compiles or loads its cache) against the
median of a few warm calls.

The cost model (docs/guide.md, "Cost model"): the incremental engine's work is one
forward pass plus :func:`fastgrad.engines.unit_cost` summed over all units
(the per-unit series and the per-parameter assembly).
:func:`predict_incremental_seconds` turns that into seconds with a rate
measured in the same run on a calibration net, and the table shows
predicted beside measured.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numba
import numpy as np

import fastgrad

from . import engines
from ._config import threads_context
from ._kernels.numgrad import differences_cost
from .checking import default_eps
from .model import MLP

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
#: Sizes below this many parameters are left out of the growth exponent (fixed costs dominate them).
SLOPE_MIN_PARAMS = 1e3
#: Calibration nets of the cost model (neither is in the default sweeps): the rate and the fixed cost of a
#: call come from the times of these two (a straight line through them, in the model's work).
CALIBRATION_SMALL = (784, 1, 10)
CALIBRATION_NET = (784, 64, 10)
#: The net on which compilation (the first call in the process) is measured.
CALIBRATION_TINY = (2, 1, 1)

#: Max |numerical - backprop| / max |backprop| allowed, per (engine, method) of fastgrad.
FASTGRAD_RTOL = {
    ("incremental", "central"): 1e-9,  # exact central difference at h = 1e-8 (docs/guide.md, "Engines and accuracy")
    ("incremental", "richardson"): 1e-9,
    ("incremental", "complex"): 1e-9,
    ("full", "central"): 1e-6,  # h = 1e-4: truncation ~1e-9, cancellation ~1e-12 / |g|
    ("full", "richardson"): 1e-6,
    ("full", "complex"): 1e-9,
}
#: The same, for the peers that return per-parameter values.
PEER_RTOL = {"naive": 1e-6, "scipy": 1e-2}  # scipy: forward differences, truncation ~ h |E''| / 2

#: Cost of one parameter, in NumPy forward passes of the batch (used to size the subsets).
_PASSES_PER_PARAM = {"naive": 2.0, "torch": 4.0, "scipy": 1.0, "full": 2.0}

PEER_LABELS = {
    "naive": "naive NumPy loop",
    "torch": "torch.autograd.gradcheck",
    "torch-fast": "torch gradcheck fast_mode (projection only)",
    "scipy": "scipy approx_fprime (forward diff.)",
    "jax": "jax check_grads (projection only)",
}
#: Peers that check a random projection of the gradient, not every parameter.
PROJECTION_ONLY = ("torch-fast", "jax")


class BenchUsageError(ValueError):
    """Bad options for ``fastgrad bench`` (exit status 2)."""


# ---------------------------------------------------------------- options


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
    """Parse ``--sizes``: hidden widths (``2,13,126``) and/or layer sizes (``784-256-256-10``)."""
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
    """Add the ``fastgrad bench`` options to ``parser``."""
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
    """Fill ``args`` from the preset and validate; :class:`BenchUsageError` on bad values."""
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
    if opts.plot is not None:
        require_matplotlib()
    return opts


def require_matplotlib() -> None:
    """Raise :class:`BenchUsageError` naming the extra when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BenchUsageError(
            '--plot needs matplotlib, which is not installed: pip install -e ".[plot]" (or pip install matplotlib)'
        ) from None


# ----------------------------------------------------- nets, data, the naive loop


def make_case(sizes: Sequence[int], n_samples: int, seed: int = 0) -> tuple[MLP, list[np.ndarray], np.ndarray,
                                                                            np.ndarray]:
    """Return a sigmoid MSE net, its parameters (non-zero biases) and a batch, reproducibly."""
    net = MLP(list(sizes), hidden="sigmoid", output="sigmoid", loss="mse")
    params = net.init(seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in params[1::2]:  # non-zero biases exercise the bias path
        p[:] = rng.normal(0.0, 0.1, size=p.shape)
    X = rng.normal(size=(n_samples, net.sizes[0]))
    Y = rng.uniform(size=(n_samples, net.sizes[-1]))
    return net, params, X, Y


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def numpy_loss(params: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray) -> float:
    """Compute the tutorial's forward pass and MSE loss in plain NumPy (BLAS products), sigmoid layers."""
    a = X
    for layer in range(len(params) // 2):
        a = _sigmoid(a @ params[2 * layer] + params[2 * layer + 1])
    return float(np.sum((Y - a) ** 2) / X.shape[0])


def naive_numerical(net: MLP, params: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray, eps: float,
                    flat_indices: np.ndarray) -> np.ndarray:
    """Run the tutorial's loop: perturb one entry, two full forward passes, restore."""
    work = [p.copy() for p in params]
    out = np.empty(len(flat_indices))
    for k, flat in enumerate(flat_indices):
        name, index = net.locate(int(flat))
        tensor = work[net.tensor_names.index(name)]
        saved = tensor[index]
        tensor[index] = saved + eps
        e_plus = numpy_loss(work, X, Y)
        tensor[index] = saved - eps
        e_minus = numpy_loss(work, X, Y)
        tensor[index] = saved
        out[k] = (e_plus - e_minus) / (2 * eps)
    return out


def spread_indices(net: MLP, count: int, seed: int = 0, min_per_tensor: int = 4) -> np.ndarray:
    """About ``count`` random flat indices from every tensor, proportionally to its size (all when count >= P)."""
    if count >= net.n_params:
        return np.arange(net.n_params, dtype=np.int64)
    rng = np.random.default_rng(seed)
    parts = []
    for lo, hi in zip(net.offsets[:-1].tolist(), net.offsets[1:].tolist()):
        size = hi - lo
        k = min(size, max(min_per_tensor, int(round(count * size / net.n_params))))
        parts.append(lo + rng.choice(size, size=k, replace=False))
    return np.sort(np.concatenate(parts)).astype(np.int64)


def forward_seconds(params: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray, repeats: int = 20) -> float:
    """Best time of one NumPy forward pass + loss of the batch (the unit of "forward-pass equivalents")."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        numpy_loss(params, X, Y)
        times.append(time.perf_counter() - t)
    return float(np.min(times))


# ------------------------------------------------------------- thread limits

_OPENBLAS_NAMES = (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"), ("openblas", ""))


def openblas_thread_functions() -> tuple[Any, Any] | None:
    """(get, set) thread functions of the OpenBLAS NumPy loaded (via /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in _OPENBLAS_NAMES:
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                put.argtypes = [ctypes.c_int]
                return get, put
    return None


def blas_threads() -> int | None:
    """Threads NumPy's BLAS uses now (OpenBLAS only), or None when unknown."""
    funcs = openblas_thread_functions()
    return int(funcs[0]()) if funcs else None


@contextlib.contextmanager
def peer_threads(n: int, torch: Any = None) -> Iterator[None]:
    """Limit OpenBLAS (when NumPy uses it) and torch to ``n`` threads in the body."""
    funcs = openblas_thread_functions()
    previous_blas = int(funcs[0]()) if funcs else None
    previous_torch = torch.get_num_threads() if torch is not None else None
    if funcs:
        funcs[1](int(n))
    if torch is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if funcs and previous_blas is not None:
            funcs[1](previous_blas)
        if torch is not None:
            torch.set_num_threads(previous_torch)


# ------------------------------------------------------------------ machine info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(opts: Options) -> dict[str, Any]:
    """Return what decides the speed: cpu, cores, versions, threads."""
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "fastgrad_version": fastgrad.__version__,
        "numba_version": numba.__version__,
        "numpy_version": np.__version__,
        "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
        "threads_tested": list(opts.threads),
        "peer_threads": opts.peer_threads,
        "blas_threads_default": blas_threads(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    for name in ("torch", "scipy", "jax"):
        module = sys.modules.get(name)
        if module is not None:
            info[f"{name}_version"] = getattr(module, "__version__", "?")
    try:
        info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        info["numba_threading_layer"] = None
    return info


# ------------------------------------------------------------------ measurements


@dataclass
class Case:
    """One network of the sweep, with everything its rows share."""

    net: MLP
    params: list[np.ndarray]
    X: np.ndarray
    Y: np.ndarray
    theta: np.ndarray
    analytic: np.ndarray  # net.backprop, flat
    scale: float  # max |analytic|: errors are relative to it
    forward_s: float  # one NumPy forward pass of the batch

    @property
    def label(self) -> str:
        """The net's sizes, e.g. ``784-128-10``."""
        return "-".join(map(str, self.net.sizes))

    def rel_error(self, values: np.ndarray, idx: np.ndarray | None = None) -> float:
        """Return max |values - backprop| / max |backprop| (inf for NaN or inf values)."""
        ref = self.analytic if idx is None else self.analytic[idx]
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.shape != ref.shape or not np.all(np.isfinite(values)):
            return math.inf
        return float(np.max(np.abs(values - ref), initial=0.0) / max(self.scale, 1e-300))


@dataclass
class Row:
    """One timed result: a fastgrad engine/method/thread count, or a peer, on one net."""

    net: str
    sizes: list[int]
    n_params: int
    batch: int
    kind: str  # "fastgrad" or "peer"
    what: str
    engine: str | None
    method: str | None
    peer: str | None
    threads: int
    eps: float | None
    seconds: float  # the full check (extrapolated for a subset)
    measured_seconds: float  # median of the warm calls (of the subset when extrapolated)
    first_call_seconds: float
    warm_calls: int
    subset: int | None  # parameters timed, when extrapolated
    forward_pass_seconds: float
    max_rel_error: float | None
    tolerance: float | None
    passed: bool
    projection_only: bool = False
    check: str = ""  # how correctness was checked
    speedups: dict[str, float] = field(default_factory=dict)
    cost_model_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def params_per_second(self) -> float:
        """Parameters checked per second (full check)."""
        return self.n_params / self.seconds if self.seconds > 0 else math.inf

    @property
    def forward_equivalents(self) -> float:
        """Full-check time in NumPy forward passes of the batch."""
        return self.seconds / self.forward_pass_seconds if self.forward_pass_seconds > 0 else math.inf

    @property
    def series(self) -> str:
        """The line this row belongs to in the plot and the growth exponents."""
        family = "" if len(self.sizes) == 3 and self.sizes[0] == INPUT and self.sizes[2] == OUTPUT \
            else f", depth {len(self.sizes) - 1}"
        if self.kind == "fastgrad":
            return f"fastgrad {self.engine} {self.method}, {self.threads} thr{family}"
        return f"{self.what}{family}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become None)."""
        d = {k: _finite_or_none(v) for k, v in self.__dict__.items() if k not in ("speedups", "notes")}
        d["speedups"] = {k: _finite_or_none(v) for k, v in self.speedups.items()}
        d["notes"] = list(self.notes)
        d["params_per_second"] = _finite_or_none(self.params_per_second)
        d["forward_pass_equivalents"] = _finite_or_none(self.forward_equivalents)
        d["extrapolated"] = self.subset is not None
        return d


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Timing:
    """First call and warm calls of one measurement, and the worst correctness result seen."""

    first: float
    warm: list[float]
    worst_error: float
    ok: bool

    @property
    def median(self) -> float:
        """Median of the warm calls (the first call when there was none)."""
        return float(statistics.median(self.warm)) if self.warm else self.first


def time_calls(fn: Callable[[], Any], check: Callable[[Any], tuple[float | None, bool]], repeats: int,
               budget: float) -> Timing:
    """Time a first call, then up to ``repeats`` warm calls (at least one; stop past ``budget`` s).

    Every call's result goes through ``check``, which returns ``(error or
    None, passed)``, after the last call: checking in between would evict
    the caches the next call finds warm.
    """
    results = []

    def one() -> float:
        t = time.perf_counter()
        results.append(fn())
        return time.perf_counter() - t

    first = one()
    warm: list[float] = []
    while len(warm) < repeats and (not warm or sum(warm) < budget):
        warm.append(one())
    worst, ok = 0.0, True
    for result in results:
        err, passed = check(result)
        if err is not None:
            worst = max(worst, err)
        ok = ok and passed
    return Timing(first, warm, worst, ok)


def _subset_size(case: Case, passes_per_param: float, budget: float) -> int:
    """Parameters a per-parameter peer can do in ``budget`` seconds (all of them when it fits)."""
    per_param = passes_per_param * case.forward_s
    return int(max(16, min(case.net.n_params, budget / max(per_param, 1e-9))))


def _full_engine_floor(case: Case, method: str, threads: int) -> int:
    """Parameters enough for the full engine to give each of ``threads`` threads a chunk.

    The full engine splits its work into chunks that each start with a
    forward pass of the batch, and does not split work worth less than
    ``FULL_CHUNK_PASSES`` forward passes per chunk (see
    :func:`fastgrad.engines._full`). A smaller subset would run as one
    serial chunk: its time, extrapolated to every parameter, would misstate
    the thread scaling of a whole check.
    """
    per_param, per_chunk = differences_cost(case.net.layout, case.X.shape[0], engines.METHOD_CODES[method])
    return int(math.ceil(engines.FULL_CHUNK_PASSES * per_chunk * threads / max(float(np.mean(per_param)), 1.0)))


def _tolerance_check(case: Case, tol: float, idx: np.ndarray | None = None) -> Callable[[Any], tuple[float, bool]]:
    def check(values: Any) -> tuple[float, bool]:
        if isinstance(values, list):
            values = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values]) if values \
                else np.empty(0)
        err = case.rel_error(values, idx)
        return err, err <= tol

    return check


def _fastgrad_row(case: Case, engine: str, method: str, threads: int, opts: Options) -> Row:
    """Time fastgrad's numerical gradient of every parameter (a subset for a slow full engine)."""
    net, P = case.net, case.net.n_params
    tol = FASTGRAD_RTOL[(engine, method)]
    eps = default_eps(engine, method)
    idx = None
    if engine == "full":
        k = _subset_size(case, _PASSES_PER_PARAM["full"] * (2.0 if method == "richardson" else 1.0), opts.budget)
        k = max(k, _full_engine_floor(case, method, max(opts.threads)))  # the same subset for every thread count
        if k < P:
            idx = spread_indices(net, k, seed=opts.seed)
    if idx is None:
        def fn() -> Any:
            return fastgrad.numerical_gradient(net, case.params, case.X, case.Y, method=method, engine=engine,
                                               threads=threads)
        check = _tolerance_check(case, tol)
    else:
        def fn() -> Any:
            with threads_context(threads):
                details = engines.numerical_details(net, case.theta, case.X, case.Y, eps, engine, method,
                                                    indices=idx, scaled=True, budget=False)
            return details.values[idx]
        check = _tolerance_check(case, tol, idx)
    timing = time_calls(fn, check, opts.repeats, opts.budget)
    scale = P / len(idx) if idx is not None else 1.0
    row = Row(
        net=case.label, sizes=list(net.sizes), n_params=P, batch=case.X.shape[0], kind="fastgrad",
        what=f"fastgrad {engine} {method}", engine=engine, method=method, peer=None, threads=threads,
        eps=eps, seconds=timing.median * scale, measured_seconds=timing.median, first_call_seconds=timing.first,
        warm_calls=len(timing.warm), subset=None if idx is None else int(len(idx)),
        forward_pass_seconds=case.forward_s, max_rel_error=timing.worst_error, tolerance=tol, passed=timing.ok,
        check=f"max |numerical - backprop| / max |backprop| <= {tol:g}",
    )
    return row


# -------------------------------------------------------------------- the peers


def peer_module(peer: str) -> tuple[Any, str | None]:
    """Import what a peer needs: (module, None), or (None, one-line reason it is skipped)."""
    name = {"naive": None, "torch": "torch", "torch-fast": "torch", "scipy": "scipy", "jax": "jax"}[peer]
    if name is None:
        return np, None
    hint = {
        "torch": "pip install torch==2.13.0 (the CPU build)",
        "scipy": 'pip install scipy, or pip install -e ".[bench]"',
        "jax": 'pip install "jax[cpu]"',
    }[name]
    try:
        module = __import__(name)
        if name == "scipy":
            import scipy.optimize  # noqa: F401
        if name == "jax":
            module.config.update("jax_enable_x64", True)
            import jax.test_util  # noqa: F401
    except ImportError:
        return None, f"{peer}: skipped ({name} is not installed; {hint})"
    except Exception as exc:  # noqa: BLE001 - a broken install: skip the peer, say why
        return None, f"{peer}: skipped ({name} cannot be used: {type(exc).__name__}: {exc})"
    return module, None


def _torch_loss(torch: Any, case: Case, idx: np.ndarray | None) -> tuple[Callable[[Any], Any], Any]:
    """Return the net's MSE loss in torch, as a function of the parameters at ``idx`` (all when None)."""
    net = case.net
    theta = torch.tensor(case.theta)
    Xt, Yt = torch.tensor(case.X), torch.tensor(case.Y)
    bounds = list(zip(net.offsets[:-1].tolist(), net.offsets[1:].tolist(), net.param_shapes))
    where = None if idx is None else torch.tensor(idx, dtype=torch.int64)

    def loss(x: Any) -> Any:
        full = x if where is None else theta.index_put((where,), x)  # out of place: differentiable in x
        a = Xt
        for layer in range(net.n_layers):
            lo_w, hi_w, shape_w = bounds[2 * layer]
            lo_b, hi_b, shape_b = bounds[2 * layer + 1]
            a = torch.sigmoid(a @ full[lo_w:hi_w].reshape(shape_w) + full[lo_b:hi_b])
        return ((Yt - a) ** 2).sum() / Xt.shape[0]

    x0 = (theta if where is None else theta[where]).clone().requires_grad_(True)
    return loss, x0


def _same_function(case: Case, value: float, grad: np.ndarray, idx: np.ndarray | None) -> str | None:
    """Check a peer's loss and autodiff gradient against fastgrad's: None, or what differs."""
    loss = case.net.loss(case.params, case.X, case.Y)
    if abs(value - loss) > 1e-12 * abs(loss):
        return f"its loss {value!r} differs from fastgrad's {loss!r}"
    err = case.rel_error(grad, idx)
    if not err <= 1e-10:
        return f"its autodiff gradient differs from backprop by {err:.2g} (relative)"
    return None


def _peer_row(case: Case, peer: str, module: Any, opts: Options) -> Row:
    """Time one peer on this net (a subset when its full check would exceed the budget)."""
    net, P = case.net, case.net.n_params
    idx: np.ndarray | None = None
    if peer in _PASSES_PER_PARAM:
        k = _subset_size(case, _PASSES_PER_PARAM[peer], opts.budget)
        idx = spread_indices(net, k, seed=opts.seed)
        warm_idx = idx[:2]
    tol = PEER_RTOL.get(peer)
    problem = None
    torch = module if peer in ("torch", "torch-fast") else None

    if peer == "naive":
        def make(ix: np.ndarray) -> Callable[[], Any]:
            return lambda: naive_numerical(net, case.params, case.X, case.Y, PEER_EPS, ix)
        check = _tolerance_check(case, tol, idx)
        how = f"max |numerical - backprop| / max |backprop| <= {tol:g}"
    elif peer == "scipy":
        from scipy.optimize import approx_fprime

        def make(ix: np.ndarray) -> Callable[[], Any]:
            work = case.theta.copy()
            views = net.unflatten(work)

            def f(x: np.ndarray) -> float:
                work[ix] = x
                return numpy_loss(views, case.X, case.Y)

            return lambda: approx_fprime(case.theta[ix].copy(), f, PEER_EPS)
        check = _tolerance_check(case, tol, idx)
        how = f"max |numerical - backprop| / max |backprop| <= {tol:g} (forward differences)"
    elif peer in ("torch", "torch-fast"):
        fast = peer == "torch-fast"
        loss, x0 = _torch_loss(torch, case, None if fast else idx)
        value = loss(x0)
        (grad,) = torch.autograd.grad(value, x0)
        problem = _same_function(case, float(value.detach()), grad.numpy(), None if fast else idx)

        def make(ix: np.ndarray | None) -> Callable[[], Any]:
            if fast:
                return lambda: torch.autograd.gradcheck(loss, (x0,), eps=PEER_EPS, atol=1e-5, rtol=1e-3,
                                                        fast_mode=True, raise_exception=False)
            lw, xw = _torch_loss(torch, case, ix)
            return lambda: torch.autograd.gradcheck(lw, (xw,), eps=PEER_EPS, atol=1e-5, rtol=1e-3,
                                                    fast_mode=False, raise_exception=False)

        def check(ok: Any) -> tuple[None, bool]:
            return None, bool(ok)
        how = "gradcheck returned True (rtol 1e-3, atol 1e-5); its loss and autograd gradient match fastgrad's"
    elif peer == "jax":
        import jax
        import jax.numpy as jnp
        from jax.test_util import check_grads

        bounds = list(zip(net.offsets[:-1].tolist(), net.offsets[1:].tolist(), net.param_shapes))
        Xj, Yj = jnp.asarray(case.X), jnp.asarray(case.Y)

        def jloss(th: Any) -> Any:
            a = Xj
            for layer in range(net.n_layers):
                lo_w, hi_w, shape_w = bounds[2 * layer]
                lo_b, hi_b, _ = bounds[2 * layer + 1]
                a = jax.nn.sigmoid(a @ th[lo_w:hi_w].reshape(shape_w) + th[lo_b:hi_b])
            return jnp.sum((Yj - a) ** 2) / Xj.shape[0]

        th0 = jnp.asarray(case.theta)
        problem = _same_function(case, float(jloss(th0)), np.asarray(jax.grad(jloss)(th0)), None)

        def make(ix: np.ndarray | None) -> Callable[[], Any]:
            def run() -> bool:
                try:
                    check_grads(jloss, (th0,), order=1, modes=("rev",), eps=PEER_EPS, atol=1e-5, rtol=1e-3)
                except AssertionError:
                    return False
                return True
            return run

        def check(ok: Any) -> tuple[None, bool]:
            return None, bool(ok)
        how = "check_grads passed (rtol 1e-3, atol 1e-5); its loss and jax.grad match fastgrad's"
    else:  # pragma: no cover - parse_peers rejects it
        raise ValueError(peer)

    with peer_threads(opts.peer_threads, torch):
        if idx is not None:
            warm = time_calls(make(warm_idx), lambda _: (None, True), 0, 0.0)  # first use (imports, caches)
            timing = time_calls(make(idx), check, max(1, opts.repeats - 1), opts.budget)
            first = warm.first
        else:
            timing = time_calls(make(None), check, opts.repeats, opts.budget)
            first = timing.first
    extrapolated = idx is not None and len(idx) < P
    scale = P / len(idx) if extrapolated else 1.0
    row = Row(
        net=case.label, sizes=list(net.sizes), n_params=P, batch=case.X.shape[0], kind="peer",
        what=PEER_LABELS[peer], engine=None, method="forward" if peer == "scipy" else "central", peer=peer,
        threads=opts.peer_threads, eps=PEER_EPS, seconds=timing.median * scale, measured_seconds=timing.median,
        first_call_seconds=first, warm_calls=len(timing.warm), subset=int(len(idx)) if extrapolated else None,
        forward_pass_seconds=case.forward_s, max_rel_error=timing.worst_error if tol is not None else None,
        tolerance=tol, passed=timing.ok and problem is None, projection_only=peer in PROJECTION_ONLY, check=how,
    )
    if peer in PROJECTION_ONLY:
        row.notes.append("random projection only, not per parameter")
    if problem is not None:
        row.notes.append(f"{peer}: {problem}")
    return row


# ------------------------------------------------------------------ cost model


def incremental_work(net: MLP, n_samples: int) -> dict[str, float]:
    """Floating-point work of the incremental engine's full check, by the cost model of docs/guide.md.

    ``forward``: one forward pass (2 flops per multiply-add); ``units``:
    :func:`fastgrad.engines.unit_cost` summed over every unit, which holds
    the per-unit series and the per-parameter assembly (``assembly``, 6
    flops per parameter and sample, reported apart for reference).
    """
    sizes = net.sizes
    forward = 2.0 * n_samples * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    units = sum(float(engines.unit_cost(net, layer, n_samples)) * sizes[layer + 1] for layer in range(net.n_layers))
    assembly = 6.0 * n_samples * net.n_params
    return {"forward": forward, "units": units, "assembly": assembly, "total": forward + units}


@dataclass
class CostModel:
    """Seconds = fixed + work / rate, both measured in this run at one thread count."""

    threads: int
    fixed_seconds: float  # the cost of a call that is not in the model's work (Python, validation, copies)
    rate: float  # flops per second by the model's count
    calibration: str  # the two nets it was measured on

    def predict(self, net: MLP, n_samples: int) -> float:
        """Predicted seconds of the incremental central check of ``net``."""
        return self.fixed_seconds + incremental_work(net, n_samples)["total"] / self.rate


def calibrate_cost_model(threads: int, n_samples: int, repeats: int, seed: int = 0) -> CostModel | None:
    """Measure the rate and fixed cost of the incremental central check on two calibration nets.

    ``t = fixed + work / rate`` through the medians of 784-1-10 and
    784-64-10 (``work`` by :func:`incremental_work`); None when the model
    cannot be evaluated or the times do not grow with the work.
    """
    try:
        points = []
        for sizes in (CALIBRATION_SMALL, CALIBRATION_NET):
            net, params, X, Y = make_case(sizes, n_samples, seed)
            timing = time_calls(
                lambda: fastgrad.numerical_gradient(net, params, X, Y, threads=threads),  # noqa: B023
                lambda _: (None, True), max(5, repeats), 0.5)
            points.append((incremental_work(net, n_samples)["total"], timing.median))
    except (TypeError, ValueError, AttributeError):  # the cost model's signature changed
        return None
    (w0, t0), (w1, t1) = points
    if not (t1 > t0 and w1 > w0):
        return None
    rate = (w1 - w0) / (t1 - t0)
    label = " and ".join("-".join(map(str, s)) for s in (CALIBRATION_SMALL, CALIBRATION_NET))
    return CostModel(threads, max(0.0, t0 - w0 / rate), rate, label)


def measure_first_calls(opts: Options) -> list[dict[str, Any]]:
    """Compilation apart from the steady state: per engine and method, the first call vs warm calls.

    On the tiny calibration net, before anything else of fastgrad's has run
    in this process: the first call compiles the kernels (or loads them from
    Numba's on-disk cache); the warm median is what a call costs afterwards.
    """
    out = []
    net, params, X, Y = make_case(CALIBRATION_TINY, opts.batch, opts.seed)
    for engine in opts.engines:
        for method in opts.methods:
            timing = time_calls(
                lambda e=engine, m=method: fastgrad.numerical_gradient(net, params, X, Y, engine=e, method=m,
                                                                       threads=opts.threads[0]),
                lambda _: (None, True), max(3, opts.repeats), 0.5)
            out.append({"engine": engine, "method": method, "net": "-".join(map(str, CALIBRATION_TINY)),
                        "threads": opts.threads[0], "first_call_seconds": timing.first,
                        "warm_median_seconds": timing.median,
                        "compile_or_cache_load_seconds": max(0.0, timing.first - timing.median)})
    return out


def predict_incremental_seconds(net: MLP, n_samples: int, model: CostModel) -> float:
    """Predicted seconds of the incremental engine's full central check (see :class:`CostModel`)."""
    return model.predict(net, n_samples)


# ------------------------------------------------------------------- reporting


def fit_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of log t against log P, for (P, t) points; None with fewer than 2 sizes."""
    pts = [(math.log(p), math.log(t)) for p, t in points if p > 0 and t > 0 and math.isfinite(t)]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def growth_exponents(rows: Sequence[Row]) -> dict[str, float]:
    """Per series, the slope of log time against log P (sizes with P >= 1e3 when there are 2 of them)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        series.setdefault(r.series, []).append((float(r.n_params), r.seconds))
    out = {}
    for name, pts in series.items():
        big = [p for p in pts if p[0] >= SLOPE_MIN_PARAMS]
        slope = fit_slope(big if len({p for p, _ in big}) >= 2 else pts)
        if slope is not None:
            out[name] = slope
    return out


def _seconds(t: float) -> str:
    if not math.isfinite(t):
        return "inf"
    if t >= 1000:
        return f"{t:,.0f}"
    return f"{t:.3g}"


def _times(x: float) -> str:
    if not math.isfinite(x):
        return ""
    return f"{x:,.0f}×" if x >= 10 else f"{x:.2g}×"


def _rate(x: float) -> str:
    if not math.isfinite(x):
        return ""
    return f"{x:.3g}" if x < 1e3 else f"{x:.2e}".replace("e+0", "e").replace("e+", "e")


def _format_table(head: list[str], body: list[list[str]], left: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    return [line(head), line(["-" * w for w in widths])] + [line(r) for r in body]


def compute_speedups(rows: Sequence[Row]) -> None:
    """For every fastgrad row: each peer's full-check time at the same net over this row's time."""
    peers = [r for r in rows if r.kind == "peer"]
    for r in rows:
        if r.kind != "fastgrad":
            continue
        for p in peers:
            if p.net == r.net and r.seconds > 0:
                r.speedups[p.peer] = p.seconds / r.seconds


def _row_order(r: Row) -> tuple[Any, ...]:
    if r.kind == "fastgrad":
        what = (0, ENGINE_NAMES.index(r.engine), METHODS.index(r.method))
    else:
        what = (1, PEERS.index(r.peer), 0)
    return (r.n_params, r.net, what, r.threads)


def table_lines(rows: Sequence[Row]) -> list[str]:
    """Return the table: one line per row, sorted by P, fastgrad first."""
    peer_names = [p for p in PEERS if any(r.peer == p for r in rows)]
    has_model = any(r.cost_model_seconds is not None for r in rows)
    head = ["P", "net", "what", "thr", "time s", "params/s", "fwd-pass eq."]
    head += [f"vs {p}" for p in peer_names]
    head += ["model s"] if has_model else []
    head += ["max err", "notes"]
    body = []
    for r in sorted(rows, key=_row_order):
        cells = [f"{r.n_params:,}", r.net, r.what, str(r.threads), _seconds(r.seconds), _rate(r.params_per_second),
                 _rate(r.forward_equivalents)]
        cells += [_times(r.speedups[p]) if p in r.speedups else "" for p in peer_names]
        if has_model:
            cells.append(_seconds(r.cost_model_seconds) if r.cost_model_seconds is not None else "")
        if r.max_rel_error is not None:
            cells.append(f"{r.max_rel_error:.1e}")
        else:
            cells.append("passed" if r.passed else "FAILED")
        notes = []
        if r.subset is not None:
            notes.append(f"extrapolated from {r.subset:,} params ({_seconds(r.measured_seconds)} s)")
        if not r.passed:
            tol = f" > tol {r.tolerance:g}" if r.tolerance is not None and r.max_rel_error is not None else ""
            notes.append(f"CHECK FAILED{tol}")
        notes += r.notes
        cells.append("; ".join(notes))
        body.append(cells)
    left = {1, 2, len(head) - 1}
    return _format_table(head, body, left)


def footer_lines(rows: Sequence[Row], models: dict[int, CostModel], first_calls: Sequence[dict[str, Any]]) -> list[str]:
    """Growth exponents, thread speedups, compile times and the cost model's predictions."""
    lines = []
    steps = {f"{r.engine} {r.method} {r.eps:g}·max(1,|w|)" for r in rows if r.kind == "fastgrad"}
    if steps:
        peers = " (peers: eps " + f"{PEER_EPS:g})" if any(r.kind == "peer" for r in rows) else ""
        lines.append("steps: fastgrad defaults, " + ", ".join(sorted(steps)) + peers)
    slopes = growth_exponents(rows)
    if slopes:
        lines.append("growth exponent (least-squares slope of log time vs log P): "
                     + "; ".join(f"{name} {s:.2f}" for name, s in slopes.items()))
    by_key: dict[str, dict[tuple[int, str], dict[int, Row]]] = {}
    for r in rows:
        if r.kind == "fastgrad":
            by_key.setdefault(r.what, {}).setdefault((r.n_params, r.net), {})[r.threads] = r
    speed = []
    for what, nets in by_key.items():
        both = [(key, per) for key, per in nets.items() if 1 in per and max(per) > 1]
        if both:
            (_, net), per = max(both, key=lambda item: item[0])  # the largest net timed both ways
            many = max(per)
            speed.append(f"{what} {many} thr vs 1 at {net}: {per[1].seconds / per[many].seconds:.2f}×")
    if speed:
        lines.append("threads: " + "; ".join(speed))
    if first_calls:
        lines.append(f"compilation (first call in this process, {first_calls[0]['net']} net, includes Numba's "
                     "compilation or on-disk cache load) vs warm median: " + "; ".join(
                         f"{c['engine']} {c['method']} {_seconds(c['first_call_seconds'])} s vs "
                         f"{c['warm_median_seconds'] * 1e3:.2g} ms" for c in first_calls))
    for threads, model in sorted(models.items()):
        preds = [r for r in rows if r.cost_model_seconds is not None and r.threads == threads]
        if not preds:
            continue
        big = max(preds, key=lambda r: r.n_params)
        ratios = [r.seconds / r.cost_model_seconds for r in preds]
        lines.append(
            f"cost model (incremental central, {threads} thr; {model.rate / 1e9:.3g} GFLOP/s by the model's count "
            f"and {model.fixed_seconds * 1e3:.2g} ms per call, both from {model.calibration}): "
            f"predicted {_seconds(big.cost_model_seconds)} s, "
            f"measured {_seconds(big.seconds)} s for {big.net}; measured/predicted "
            f"{min(ratios):.2g}..{max(ratios):.2g} over {len(preds)} sizes")
    return lines


def write_plot(path: str, rows: Sequence[Row], title: str) -> None:
    """Log-log plot of full-check time against P, one line per series, growth exponents in the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    slopes = growth_exponents(rows)
    series: dict[str, list[Row]] = {}
    for r in rows:
        series.setdefault(r.series, []).append(r)
    fig = Figure(figsize=(10, 6.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    markers = "osD^v<>pPX*h"
    colors = [f"C{i}" for i in range(10)] + ["black", "grey"]
    for i, (name, pts) in enumerate(sorted(series.items(), key=lambda kv: (_row_order(kv[1][0])[2:], kv[0]))):
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


# ------------------------------------------------------------------------ driver


def command_line(argv: Sequence[str] | None) -> str:
    """Return the command as typed (``fastgrad bench ...``)."""
    return shlex.join(["fastgrad", *(argv if argv is not None else sys.argv[1:])])


def run(args: argparse.Namespace, argv: Sequence[str] | None, out: IO[str], progress: Any = None) -> int:
    """Run ``fastgrad bench``: 0 when every timed result was checked correct, 1 otherwise.

    Raises :class:`BenchUsageError` for bad options (before anything is timed).
    """
    opts = resolve_options(args)
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

    cases = [tuple(s) for s in opts.sizes]
    fastgrad_steps = [(e, m, t) for e in opts.engines for m in opts.methods for t in opts.threads]
    total = sum(MLP(s).n_params for s in cases) * (len(fastgrad_steps) + len(modules))
    done = 0

    if progress is not None:
        progress.label = f"bench {'compile':<18} {'first calls':<26}"
        progress(0, total)
    first_calls = measure_first_calls(opts)
    models: dict[int, CostModel] = {}
    if numba.config.DISABLE_JIT:
        print("NUMBA_DISABLE_JIT is set: the kernels run as plain Python, so these times say nothing about "
              "fastgrad's speed (cost model skipped)", file=out, flush=True)
    elif "incremental" in opts.engines and "central" in opts.methods:
        for t in opts.threads:
            model = calibrate_cost_model(t, opts.batch, opts.repeats, opts.seed)
            if model is not None:
                models[t] = model

    rows: list[Row] = []
    peer_errors: list[str] = []
    built: list[Case] = []
    for sizes in cases:
        net, params, X, Y = make_case(sizes, opts.batch, opts.seed)
        theta = net.flatten(params)
        analytic = np.concatenate([g.ravel() for g in net.backprop(params, X, Y)])
        with peer_threads(1):  # a first estimate, to size the full engine's subsets
            fwd = forward_seconds(params, X, Y, repeats=3)
        built.append(Case(net, params, X, Y, theta, analytic, float(np.max(np.abs(analytic))), fwd))

    def advance(case: Case, label: str) -> None:
        if progress is not None:
            progress.label = f"bench {case.label:<18} {label:<26}"
            progress(done, total)

    # Phase 1: fastgrad, every net. Phase 2: the NumPy unit and the peers, every net. Kept apart
    # because a multi-threaded BLAS (or torch) keeps its threads spinning for a while after each call,
    # which slows the Numba threads that run next on a 2-core machine by up to 20x.
    for case in built:
        for engine, method, t in fastgrad_steps:
            advance(case, f"{engine} {method} {t} thr")
            row = _fastgrad_row(case, engine, method, t, opts)
            if engine == "incremental" and method == "central" and t in models:
                row.cost_model_seconds = predict_incremental_seconds(case.net, opts.batch, models[t])
            rows.append(row)
            done += case.net.n_params
    for case in built:
        advance(case, "one NumPy forward pass")
        with peer_threads(opts.peer_threads):
            case.forward_s = forward_seconds(case.params, case.X, case.Y,
                                             repeats=7 if case.net.n_params > 5e5 else 20)
        for row in rows:
            if row.net == case.label:
                row.forward_pass_seconds = case.forward_s
        for peer, module in modules.items():
            advance(case, peer)
            try:
                rows.append(_peer_row(case, peer, module, opts))
            except Exception as exc:  # noqa: BLE001 - a third-party peer that breaks is skipped, and said so
                if peer == "naive":
                    raise
                message = f"{peer}: skipped on {case.label} ({type(exc).__name__}: {' '.join(str(exc).split())})"
                print(message, file=out, flush=True)
                peer_errors.append(message)
            done += case.net.n_params
    if progress is not None:
        progress(total, total)

    compute_speedups(rows)
    wall = time.perf_counter() - started
    for line in table_lines(rows):
        print(line, file=out)
    print(file=out)
    for line in footer_lines(rows, models, first_calls):
        print(line, file=out)
    print("time: full per-parameter check (peers and slow engines timed on a subset, extrapolated linearly); "
          "fwd-pass eq.: time / one NumPy forward pass of the batch; vs X: X's time / this row's time; "
          "max err: max |numerical - backprop| / max |backprop|", file=out)
    failed = [r for r in rows if not r.passed]
    print(f"wall time {wall:.1f} s", file=out)

    document = {
        "fastgrad_version": fastgrad.__version__,
        "command": command_line(argv),
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "options": {
            "sizes": [list(s) for s in opts.sizes], "batch": opts.batch, "methods": list(opts.methods),
            "engines": list(opts.engines), "peers": list(opts.peers), "peers_run": list(modules),
            "threads": list(opts.threads), "peer_threads": opts.peer_threads, "repeats": opts.repeats,
            "subset_budget_seconds": opts.budget, "seed": opts.seed, "quick": opts.quick, "peer_eps": PEER_EPS,
        },
        "machine": machine_info(opts),
        "wall_seconds": wall,
        "passed": not failed,
        "growth_exponents": growth_exponents(rows),
        "first_calls": first_calls,
        "peer_errors": peer_errors,
        "cost_model": {
            str(t): {"fixed_seconds": m.fixed_seconds, "flops_per_second": m.rate, "calibration_nets": m.calibration}
            for t, m in models.items()
        },
        "rows": [r.to_dict() for r in rows],
    }
    if opts.json is not None:
        text = json.dumps(document, indent=2, allow_nan=False)
        if opts.json == "-":
            print(text, file=out)
        else:
            try:
                with open(opts.json, "w", encoding="utf-8") as fh:
                    fh.write(text + "\n")
            except OSError as exc:
                raise BenchUsageError(f"--json {opts.json!r}: cannot write: {exc}") from None
    if opts.plot is not None:
        title = (f"fastgrad bench: full per-parameter check, sigmoid MSE, N={opts.batch}, "
                 f"{document['machine']['cpu']}, {document['machine']['cores']} cores")
        try:
            write_plot(opts.plot, rows, title)
        except OSError as exc:
            raise BenchUsageError(f"--plot {opts.plot!r}: cannot write: {exc}") from None
    if failed:
        print(f"fastgrad bench FAILED: {len(failed)} of {len(rows)} timed results are wrong "
              "(a time is meaningless when the answer is wrong):", file=out)
        for r in failed:
            detail = f"max rel error {r.max_rel_error:.3g} > tolerance {r.tolerance:g}" \
                if r.max_rel_error is not None and r.tolerance is not None else r.check
            print(f"  {r.what}, {r.threads} thr, {r.net}: {detail}" + (f" ({'; '.join(r.notes)})" if r.notes else ""),
                  file=out)
        return 1
    return 0

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

The modules:

- :mod:`.options`: constants, presets and the command-line options;
- :mod:`.cases`: the nets and data, the NumPy forward pass, parameter subsets;
- :mod:`.machine`: machine info and the peers' thread limits (OpenBLAS, torch);
- :mod:`.measure`: timing a call, checking its results, the table's row;
- :mod:`.peers` and one module per peer (:mod:`.peer_naive`, :mod:`.peer_torch`,
  :mod:`.peer_scipy`, :mod:`.peer_jax`);
- :mod:`.cost_model`: the incremental engine's cost model, calibrated in the run;
- :mod:`.sweep`: fastgrad's rows, compilation times, the loop over the nets;
- :mod:`.report`: growth exponents, the text table, the JSON document;
- :mod:`.plot`: the ``--plot`` figure (matplotlib, imported only then);
- :mod:`.runner`: :func:`run`, from options to exit status.

``import fastgrad`` does not import this package; the command line imports
it when the ``bench`` subcommand is parsed.
"""

from __future__ import annotations

from .cases import Case, forward_seconds, make_case, numpy_loss, spread_indices
from .cost_model import CostModel, calibrate_cost_model, forward_flops, incremental_work, predict_incremental_seconds
from .machine import blas_threads, machine_info, openblas_thread_functions, peer_threads
from .measure import Row, Timing, time_calls
from .options import (
    DEFAULT_HIDDEN,
    ENGINE_NAMES,
    FULL_PRESET,
    METHODS,
    PEER_EPS,
    PEERS,
    QUICK_HIDDEN,
    QUICK_PRESET,
    BenchUsageError,
    Options,
    Preset,
    add_arguments,
    parse_sizes,
    resolve_options,
)
from .peer_naive import naive_numerical
from .peer_torch import torch_loss
from .peers import PEER_LABELS, PROJECTION_ONLY, peer_module
from .plot import require_matplotlib, write_plot
from .report import SLOPE_MIN_PARAMS, fit_slope, footer_lines, growth_exponents, table_lines
from .runner import run
from .sweep import FASTGRAD_RTOL, measure_first_calls

__all__ = [
    "DEFAULT_HIDDEN", "ENGINE_NAMES", "FASTGRAD_RTOL", "FULL_PRESET", "METHODS", "PEERS", "PEER_EPS", "PEER_LABELS",
    "PROJECTION_ONLY", "QUICK_HIDDEN", "QUICK_PRESET", "SLOPE_MIN_PARAMS",
    "BenchUsageError", "Case", "CostModel", "Options", "Preset", "Row", "Timing",
    "add_arguments", "blas_threads", "calibrate_cost_model", "fit_slope", "footer_lines", "forward_flops",
    "forward_seconds", "growth_exponents", "incremental_work", "machine_info", "make_case", "measure_first_calls",
    "naive_numerical", "numpy_loss", "openblas_thread_functions", "parse_sizes", "peer_module", "peer_threads",
    "predict_incremental_seconds", "require_matplotlib", "resolve_options", "run", "spread_indices", "table_lines",
    "time_calls", "torch_loss", "write_plot",
]

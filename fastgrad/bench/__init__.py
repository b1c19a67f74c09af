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
- :mod:`.phases`: the default engine's full check run phase by phase, each timed;
- :mod:`.rates`: the machine's rates (np.dot, memory bandwidth, L1 loop, launch), measured in the run;
- :mod:`.cost_model`: each phase's counted flops and bytes over those rates: predicted vs measured;
- :mod:`.sweep`: fastgrad's rows, compilation times, the loop over the nets;
- :mod:`.report`: growth exponents, the text table, the JSON document;
- :mod:`.plot`: the ``--plot`` figure (matplotlib, imported only then);
- :mod:`.runner`: :func:`run`, from options to exit status.

``import fastgrad`` does not import this package; the command line imports
it when the ``bench`` subcommand is parsed.
"""

from __future__ import annotations

from .cases import Case, forward_seconds, make_case, numpy_loss, spread_indices
from .cost_model import (
    Prediction,
    Work,
    comparison,
    forward_flops,
    measure_and_predict,
    phase_work,
    predict,
    total_flops,
)
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
from .phases import PHASES, incremental_calls, time_phases
from .plot import require_matplotlib, write_plot
from .rates import MachineRates, dot_shapes, measure_rates, median_rates
from .report import SLOPE_MIN_PARAMS, fit_slope, footer_lines, growth_exponents, phase_lines, table_lines
from .runner import run
from .sweep import FASTGRAD_RTOL, measure_first_calls

__all__ = [
    "DEFAULT_HIDDEN", "ENGINE_NAMES", "FASTGRAD_RTOL", "FULL_PRESET", "METHODS", "PEERS", "PEER_EPS", "PEER_LABELS",
    "PHASES", "PROJECTION_ONLY", "QUICK_HIDDEN", "QUICK_PRESET", "SLOPE_MIN_PARAMS",
    "BenchUsageError", "Case", "MachineRates", "Options", "Prediction", "Preset", "Row", "Timing", "Work",
    "add_arguments", "blas_threads", "comparison", "dot_shapes", "fit_slope", "footer_lines", "forward_flops",
    "forward_seconds", "growth_exponents", "incremental_calls", "machine_info", "make_case", "measure_and_predict",
    "measure_first_calls", "measure_rates", "median_rates", "naive_numerical", "numpy_loss",
    "openblas_thread_functions", "parse_sizes", "peer_module", "peer_threads", "phase_lines", "phase_work",
    "predict", "require_matplotlib", "resolve_options", "run", "spread_indices", "table_lines", "time_calls",
    "time_phases", "torch_loss", "total_flops", "write_plot",
]

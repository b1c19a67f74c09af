"""fastgrad: fast, precise numerical gradient checks for neural networks.

Examples
--------
>>> import numpy as np, fastgrad
>>> net = fastgrad.MLP([4, 5, 3], hidden="sigmoid", output="sigmoid", loss="mse")
>>> params = net.init(seed=0)
>>> rng = np.random.default_rng(0)
>>> X, Y = rng.normal(size=(8, 4)), rng.uniform(size=(8, 3))
>>> fastgrad.check(net, params, X, Y).passed
True

fastgrad chooses Numba's threading layer at import (TBB where it loads, else
workqueue; an explicit ``NUMBA_THREADING_LAYER`` is respected) and guards the
layers that are not fork- or thread-safe, so that checks can run in several
threads at once and in ``multiprocessing`` workers of any start method:
:func:`threading_layer` tells which layer runs (see :mod:`fastgrad._threading`).
"""

from ._threading import threading_layer  # first: the layer is chosen before any kernel exists
from .checking import check, numerical_gradient
from .entries import relative_error
from .function import check_function
from .model import MLP
from .monitor import GradientCheckWarning, Monitor, MonitorBudgetWarning, MonitorRecord
from .result import CheckResult, Failure, GradientCheckError, Inconclusive, TensorSummary
from .torch_bridge import from_torch, torch_grads  # (torch itself is imported by the functions, when called)

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Monitor",
    "MonitorRecord",
    "MonitorBudgetWarning",
    "GradientCheckWarning",
    "CheckResult",
    "Failure",
    "GradientCheckError",
    "Inconclusive",
    "TensorSummary",
    "check",
    "check_function",
    "from_torch",
    "numerical_gradient",
    "relative_error",
    "threading_layer",
    "torch_grads",
    "__version__",
]

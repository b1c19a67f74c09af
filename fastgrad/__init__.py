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
"""

from .check import check, numerical_gradient, relative_error
from .model import MLP
from .monitor import GradientCheckWarning, Monitor, MonitorRecord
from .result import CheckResult, Failure, GradientCheckError, Inconclusive, TensorSummary

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Monitor",
    "MonitorRecord",
    "GradientCheckWarning",
    "CheckResult",
    "Failure",
    "GradientCheckError",
    "Inconclusive",
    "TensorSummary",
    "check",
    "numerical_gradient",
    "relative_error",
    "__version__",
]

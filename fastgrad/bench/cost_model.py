"""The incremental engine's cost model (docs/guide.md, "Cost model"), in flops and, once calibrated, in seconds.

The engine's work is one forward pass plus :func:`fastgrad.engines.unit_cost`
summed over all units (the per-unit series and the per-parameter assembly).
:func:`calibrate_cost_model` measures a rate and a fixed cost per call on two
calibration nets in the same run, and :func:`predict_incremental_seconds`
turns the work of any net into seconds, shown beside the measured time.
"""

from __future__ import annotations

from dataclasses import dataclass

import fastgrad

from .. import engines
from ..model import MLP
from .cases import make_case
from .measure import time_calls

#: Calibration nets of the cost model (neither is in the default sweeps): the rate and the fixed cost of a
#: call come from the times of these two (a straight line through them, in the model's work).
CALIBRATION_SMALL = (784, 1, 10)
CALIBRATION_NET = (784, 64, 10)


def forward_flops(net: MLP, n_samples: int) -> float:
    """Floating-point operations of one forward pass's matrix products (2 per multiply-add).

    Parameters
    ----------
    net : MLP
        The net.
    n_samples : int
        Batch size N.

    Returns
    -------
    float
        ``2 N sum(sizes[l] * sizes[l + 1])``.
    """
    sizes = net.sizes
    return 2.0 * n_samples * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def incremental_work(net: MLP, n_samples: int) -> dict[str, float]:
    """Floating-point work of the incremental engine's full check, by the cost model of docs/guide.md.

    Parameters
    ----------
    net : MLP
        The net.
    n_samples : int
        Batch size N.

    Returns
    -------
    dict
        ``forward``: one forward pass (:func:`forward_flops`); ``units``:
        :func:`fastgrad.engines.unit_cost` summed over every unit, which holds
        the per-unit series and the per-parameter assembly (``assembly``, 6
        flops per parameter and sample, reported apart for reference);
        ``total``: forward + units.
    """
    sizes = net.sizes
    forward = forward_flops(net, n_samples)
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
        """Predicted seconds of the incremental central check of ``net`` on ``n_samples`` samples."""
        return self.fixed_seconds + incremental_work(net, n_samples)["total"] / self.rate


def calibrate_cost_model(threads: int, n_samples: int, repeats: int, seed: int = 0) -> CostModel | None:
    """Measure the rate and fixed cost of the incremental central check on two calibration nets.

    ``t = fixed + work / rate`` through the medians of 784-1-10 and
    784-64-10 (``work`` by :func:`incremental_work`).

    Parameters
    ----------
    threads : int
        Numba threads of the calls.
    n_samples : int
        Batch size N.
    repeats : int
        Warm calls per net (at least 5).
    seed : int, optional
        Seed of the nets and data.

    Returns
    -------
    CostModel or None
        None when the times do not grow with the work (a busy machine).
    """
    points = []
    for sizes in (CALIBRATION_SMALL, CALIBRATION_NET):
        net, params, X, Y = make_case(sizes, n_samples, seed)
        timing = time_calls(
            lambda: fastgrad.numerical_gradient(net, params, X, Y, threads=threads),  # noqa: B023
            lambda _: (None, True), max(5, repeats), 0.5)
        points.append((incremental_work(net, n_samples)["total"], timing.median))
    (w0, t0), (w1, t1) = points
    if not (t1 > t0 and w1 > w0):
        return None
    rate = (w1 - w0) / (t1 - t0)
    label = " and ".join("-".join(map(str, s)) for s in (CALIBRATION_SMALL, CALIBRATION_NET))
    return CostModel(threads, max(0.0, t0 - w0 / rate), rate, label)


def predict_incremental_seconds(net: MLP, n_samples: int, model: CostModel) -> float:
    """Predicted seconds of the incremental engine's full central check (see :class:`CostModel`).

    Parameters
    ----------
    net : MLP
        The net.
    n_samples : int
        Batch size N.
    model : CostModel
        A calibrated model.

    Returns
    -------
    float
        Seconds.
    """
    return model.predict(net, n_samples)

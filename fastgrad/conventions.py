"""An MLP loss's conventions around its data term: the reduction, a constant scale, and an L2 penalty on the weights.

The kernels compute each loss as its module defines it (mse, cross_entropy
and bce: mean over the N samples, summed over the outputs; sse and
half_sse: sums). A user's convention differs from that by a constant factor
``r`` (the reduction and ``scale``) and by ``c sum_l ||W_l||^2``:

    E = r E_kernel + c sum ||W||^2,    dE/dw = r dE_kernel/dw + 2 c w (weights; biases get no L2 term)

Both are applied here, around the kernels, and that is exact, not an
approximation: every difference formula fastgrad has (central, Richardson,
the complex step, a projection) is linear in the loss, so ``r`` commutes
with it, and each of them differentiates the quadratic ``c w^2`` exactly:
``(c (w+h)^2 - c (w-h)^2) / 2h = 2 c w`` whatever ``h``. So the kernels stay
one per loss, and the whole convention costs one multiply-add per entry
(nothing at all for the defaults).

The error budget follows the same two steps: every term of the data term's
budget scales with ``r``; the L2 term adds its own rounding (fastgrad's
``2 c w`` and the user's, whatever order they computed ``lambda / 2n * 2 * W``
in) as roundoffs of ``|2 c w|``, with the same counts as the data term's, so
that residues of the user's own L2 arithmetic never fail a check, while a
missing, doubled or misplaced L2 term (an error of ``|2 c w|`` itself) does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._kernels import losses
from ._kernels.codes import FAN_IN, FAN_OUT, W_OFF

#: ``reduction=``: None (the loss's own), a sum, a mean over samples, a mean over all N x K elements.
REDUCTIONS = (None, "sum", "mean", "mean_all")


def _divisor(reduction: str, n_samples: int, n_outputs: int) -> int:
    """What a reduction divides the sum of the elements' terms by."""
    if reduction == "sum":
        return 1
    if reduction == "mean":
        return n_samples
    if reduction == "mean_all":
        return n_samples * n_outputs
    raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")


@dataclass(frozen=True)
class Conventions:
    """A loss's reduction, scale and L2 coefficient, and what they do to values, gradients and budgets.

    Attributes
    ----------
    loss : str
        The loss's name; its own reduction is ``losses.OWN_REDUCTION[loss]``.
    reduction : str or None
        None keeps the loss's own.
    scale : float
        A constant factor on the data term.
    l2 : float
        ``c`` of ``c sum ||W||^2``.
    """

    loss: str
    reduction: str | None = None
    scale: float = 1.0
    l2: float = 0.0

    @property
    def plain(self) -> bool:
        """Whether the loss is the kernels' own (then nothing here changes a single bit)."""
        own = losses.OWN_REDUCTION[self.loss]
        return self.reduction in (None, own) and self.scale == 1.0 and self.l2 == 0.0

    def factor(self, n_samples: int, n_outputs: int) -> float:
        """``r``: the user's data term over the kernels' (1.0 exactly when they agree)."""
        own = losses.OWN_REDUCTION[self.loss]
        reduction = own if self.reduction is None else self.reduction
        if reduction == own:
            return self.scale
        # a ratio of two exact integers, rounded once (mse summed: exactly N)
        ratio = _divisor(own, n_samples, n_outputs) / _divisor(reduction, n_samples, n_outputs)
        return self.scale * ratio

    # ---------------------------------------------------------------- values
    def loss_value(self, data: float, theta: np.ndarray, layout: np.ndarray, n_samples: int, n_outputs: int) -> float:
        """``r E_kernel + c sum ||W||^2``."""
        value = self.factor(n_samples, n_outputs) * data
        if self.l2 != 0.0:
            value += self.l2 * math.fsum(_dot(w, w) for w in _weights(theta, layout))
        return value

    def gradient_into(self, grad: np.ndarray, theta: np.ndarray, layout: np.ndarray, n_samples: int,
                      n_outputs: int) -> None:
        """``grad = r grad + 2 c W`` in place (the analytic gradient, or numerical values: NaN stays NaN)."""
        r = self.factor(n_samples, n_outputs)
        if r != 1.0:
            grad *= r
        if self.l2 != 0.0:
            for lo, hi in _weight_ranges(layout):
                grad[lo:hi] += (2.0 * self.l2) * theta[lo:hi]

    def budget_into(self, budget: np.ndarray, theta: np.ndarray, layout: np.ndarray, n_samples: int,
                    n_outputs: int, user_u: float) -> None:
        """Scale a data term's per-entry error budget by ``r`` and add the L2 term's rounding, in place.

        ``r`` multiplies every term of the budget (truncation, both sides'
        rounding: each is a size of the data term's arithmetic); multiplying
        the value by ``r`` rounds once more, within the budget's own
        rounding counts. The L2 term's rounding: fastgrad's ``2 c w`` and
        the user's, ``(4 (L + 2) u + u_user (L + 4)) |2 c w|`` (the data
        term's counts, ``L`` layers), more than the three or four roundings
        any way of writing ``lambda / (2 n) * 2 * W`` and adding it makes.
        """
        r = self.factor(n_samples, n_outputs)
        if r != 1.0:
            budget *= abs(r)
        if self.l2 != 0.0:
            L = layout.shape[0]
            per = (4.0 * (L + 2) * 2.0**-53 + user_u * (L + 4)) * abs(2.0 * self.l2)
            for lo, hi in _weight_ranges(layout):
                budget[lo:hi] += per * np.abs(theta[lo:hi])

    def abs_into(self, absum: np.ndarray, theta: np.ndarray, layout: np.ndarray, n_samples: int,
                 n_outputs: int) -> None:
        """Term sizes of the whole loss's derivatives from the data term's: ``|r| absum + |2 c w|``, in place."""
        r = self.factor(n_samples, n_outputs)
        if r != 1.0:
            absum *= abs(r)
        if self.l2 != 0.0:
            for lo, hi in _weight_ranges(layout):
                absum[lo:hi] += abs(2.0 * self.l2) * np.abs(theta[lo:hi])

    def projection(self, data: float, v: np.ndarray, theta: np.ndarray, layout: np.ndarray, n_samples: int,
                   n_outputs: int) -> float:
        """The whole loss's directional derivative along ``v`` from the data term's: ``r data + 2 c W . v``."""
        value = self.factor(n_samples, n_outputs) * data
        if self.l2 != 0.0:
            value += 2.0 * self.l2 * math.fsum(_dot(theta[lo:hi], v[lo:hi]) for lo, hi in _weight_ranges(layout))
        return value

    def describe(self) -> str:
        """The non-default conventions as ``MLP(...)`` keyword arguments (for a repr)."""
        parts = []
        if self.reduction is not None:
            parts.append(f"reduction={self.reduction!r}")
        if self.scale != 1.0:
            parts.append(f"scale={self.scale!r}")
        if self.l2 != 0.0:
            parts.append(f"l2={self.l2!r}")
        return ", ".join(parts)


def _weight_ranges(layout: np.ndarray) -> list[tuple[int, int]]:
    """Flat ranges of the weight matrices (not the biases)."""
    return [(int(row[W_OFF]), int(row[W_OFF] + row[FAN_IN] * row[FAN_OUT])) for row in layout]


def _weights(theta: np.ndarray, layout: np.ndarray) -> list[np.ndarray]:
    return [theta[lo:hi] for lo, hi in _weight_ranges(layout)]


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` of two 1-D float64 vectors, without BLAS.

    ``np.dot`` hands a vector this long to OpenBLAS's threaded ``ddot``,
    whose threads spin-wait for a core: on a machine whose cores are busy
    (Numba's threads have just left them, or another process holds one) one
    ``np.dot`` of a 784 x 128 weight took 4 to 8 ms instead of 13 us,
    measured on the project's 2-core machine, which made ``l2=`` cost 2.2x
    the plain loss's check (bench/bench_conventions.py). ``einsum`` without
    ``optimize`` is NumPy's own single-threaded loop (about 45 us here), as
    accurate as ``ddot`` (a running sum, several accumulators).
    """
    return float(np.einsum("i,i->", a, b))

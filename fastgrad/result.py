"""Result objects of :func:`fastgrad.check` (data only; rendering is in ``report``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class GradientCheckError(AssertionError):
    """Raised by :meth:`CheckResult.raise_if_failed` when a check failed."""


@dataclass(frozen=True)
class Failure:
    """One gradient entry outside tolerance."""

    tensor: str
    index: tuple[int, ...]
    analytic: float
    numerical: float
    abs_error: float
    rel_error: float


@dataclass(frozen=True)
class TensorSummary:
    """Summary of one parameter tensor (``"W1"``, ``"b1"`` ...)."""

    name: str
    shape: tuple[int, ...]
    passed: bool
    n_failed: int
    max_rel_error: float
    worst_index: tuple[int, ...]
    worst_analytic: float
    worst_numerical: float

    @property
    def size(self) -> int:
        """Number of entries of the tensor."""
        return int(np.prod(self.shape))


@dataclass
class CheckResult:
    """What :func:`fastgrad.check` found.

    Attributes
    ----------
    passed : bool
        True when no entry's relative error exceeds ``rtol``.
    max_rel_error : float
        Largest relative error over all entries.
    tensors : list of TensorSummary
        One summary per parameter tensor, in parameter order.
    failures : list of Failure
        The failing entries, worst first.
    analytic, numerical : list of ndarray
        The gradient checked and fastgrad's numerical gradient, shaped like
        the parameters (copies; the caller's arrays are never kept).
    rtol, atol, eps : float
        Tolerances and step used.
    method : str
        Difference method.
    loss : float
        The loss at the checked parameters.
    n_samples : int
        Batch size N.
    seconds : float
        Wall time of the numerical gradient and the comparison.
    model : str
        ``repr`` of the network.
    engine : str
        Engine that computed the numerical gradient.
    """

    passed: bool
    max_rel_error: float
    tensors: list[TensorSummary]
    analytic: list[np.ndarray] = field(repr=False)
    numerical: list[np.ndarray] = field(repr=False)
    rel_error: list[np.ndarray] = field(repr=False)
    rtol: float = 0.0
    atol: float = 0.0
    eps: float = 0.0
    method: str = "central"
    loss: float = float("nan")
    n_samples: int = 0
    seconds: float = 0.0
    model: str = ""
    engine: str = "incremental"

    @property
    def n_params(self) -> int:
        """Number of checked entries."""
        return sum(t.size for t in self.tensors)

    @property
    def n_failed(self) -> int:
        """Number of failing entries."""
        return sum(t.n_failed for t in self.tensors)

    @property
    def failures(self) -> list[Failure]:
        """The failing entries, worst (largest relative error) first."""
        return self.worst_failures(None)

    def worst_failures(self, limit: int | None) -> list[Failure]:
        """The ``limit`` worst failing entries (all when ``limit`` is None)."""
        found = []
        for t, a, n, r in zip(self.tensors, self.analytic, self.numerical, self.rel_error):
            if t.n_failed:
                flat = np.flatnonzero(r.ravel() > self.rtol)
                found += [(float(r.flat[i]), t.name, i, a, n) for i in flat]
        # worst first; ties keep parameter order (sort is stable)
        found.sort(key=lambda item: -item[0])
        if limit is not None:
            found = found[:limit]
        out = []
        for rel, name, i, a, n in found:
            index = tuple(int(k) for k in np.unravel_index(i, a.shape))
            av, nv = float(a.flat[i]), float(n.flat[i])
            out.append(Failure(name, index, av, nv, abs(av - nv), rel))
        return out

    def tensor(self, name: str) -> TensorSummary:
        """The summary of the tensor called ``name``."""
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(f"no tensor named {name!r}; tensors are {[t.name for t in self.tensors]}")

    def raise_if_failed(self) -> None:
        """Raise :class:`GradientCheckError` with the report if the check failed."""
        if not self.passed:
            raise GradientCheckError(str(self))

    def __str__(self) -> str:
        from .report import format_result

        return format_result(self)

    def to_dict(self, max_failures: int | None = 100) -> dict[str, Any]:
        """JSON-serialisable summary (at most ``max_failures`` failures listed)."""
        from .report import result_to_dict

        return result_to_dict(self, max_failures)

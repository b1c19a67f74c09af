"""The model protocol: what :func:`fastgrad.check` needs to know about a model.

A *model* describes a loss ``E(params; X, Y)`` and the structure of its
parameters: their names and shapes, how the user's parameter list maps to
one flat float64 vector and back, the loss at a flat point and its analytic
gradient (the model's backprop). Its ``kind`` names its row in the engine
capability table (:mod:`fastgrad.capabilities`), which says which engines
and methods serve it: the incremental and unit engines, the full engine's
compiled kernels and ``method="directional"`` need an :class:`fastgrad.MLP`
(kind ``"mlp"``); a model known only through its loss and gradient
(kind ``"function"``, :func:`fastgrad.check_function`'s) is checked by
the full engine, evaluating its loss at every perturbed point, or along
projections (``method="directional"``).

:class:`Model` is a :class:`typing.Protocol`: a class satisfies it by
having its members. :class:`ModelBase` adds the optional hooks' defaults
(advice, Monitor's rotation, warm-up); :class:`fastgrad.MLP` derives
from it. What a kind of model can be checked with is the table's:
:func:`fastgrad.capabilities.supported`.
"""

from __future__ import annotations

from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from .sampling import EntryRotation


@runtime_checkable
class Model(Protocol):
    """What a model gives fastgrad: names, shapes, flatten/unflatten, loss, backprop, kind.

    Attributes
    ----------
    kind : str
        Its row in the capability table (:data:`fastgrad.capabilities.KINDS`).
    tensor_names : tuple of str
        One name per parameter tensor, in the order of the user's list.
    param_shapes : list of tuple of int
        The shape of every tensor.
    offsets : ndarray of int64, shape (T + 1,)
        Where each tensor starts in the flat vector (``offsets[-1]`` is ``n_params``).
    n_params : int
        Number of scalar parameters ``P``.

    Notes
    -----
    Optional hooks, with :class:`ModelBase`'s defaults when absent:
    ``depth`` (chained stages of the gradient's arithmetic, an MLP's
    layers: it scales the allowance for the checked gradient's own
    rounding), ``advice(params)``, ``rotation(seed)``, ``warm_up_case()``
    and ``tensors(values, argument)`` (the tensors of a params or gradient
    structure, in order: a list's items by default).
    """

    kind: str
    tensor_names: tuple[str, ...]
    param_shapes: list[tuple[int, ...]]
    offsets: np.ndarray
    n_params: int

    def flatten(self, params: Any, argument: str = "params") -> np.ndarray:
        """Validate ``params`` (or a gradient list, named ``argument`` in errors); return a new flat float64 copy."""
        ...

    def unflatten(self, theta: np.ndarray) -> list[np.ndarray]:
        """Split a flat vector into arrays shaped like the parameters (views of ``theta``)."""
        ...

    def locate(self, flat_index: int) -> tuple[str, tuple[int, ...]]:
        """Return ``(tensor name, index)`` of a flat parameter index."""
        ...

    def batch(self, X: Any, Y: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate the batch ``X`` and targets ``Y``; return float64 copies."""
        ...

    def loss_at(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:
        """Return the loss at the flat point ``theta`` on a validated batch (``theta`` is not modified)."""
        ...

    def gradient_at(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Return the model's analytic gradient (its backprop) at ``theta``: a new flat float64 vector (P,)."""
        ...


class ModelBase:
    """Defaults of a model's optional hooks.

    A model class may derive from this (``MLP`` does) to have the hooks
    :func:`fastgrad.check` and :class:`fastgrad.Monitor` call; a class that
    only satisfies :class:`Model` structurally gets the same defaults
    through the module functions below.
    """

    kind: str
    n_params: int

    @property
    def depth(self) -> int:
        """One stage: a model that does not say how its gradient is computed."""
        return 1

    def advice(self, params: Any) -> list[str]:
        """Advice (never a failure) about the point being checked; none by default."""
        return []

    def rotation(self, seed: Any) -> Any:
        """Return the rotating sampler :class:`fastgrad.Monitor` draws its checks' entries from.

        By default, single entries in a seeded random order (see
        :class:`fastgrad.sampling.EntryRotation`).
        """
        return EntryRotation(self.n_params, seed)

    def tensors(self, values: Any, argument: str = "params") -> list[Any]:
        """The tensors of ``values`` (params or a gradient, as the user gives them), in the model's order."""
        if isinstance(values, np.ndarray) or not isinstance(values, (list, tuple)):
            raise TypeError(f"{argument} must be a list of arrays [{', '.join(getattr(self, 'tensor_names', ()))}], "
                            f"got {type(values).__name__}")
        return list(values)

    def validate(self, values: Any, argument: str = "grads") -> None:
        """Check ``values``' structure, dtypes, shapes and entries like :meth:`flatten`, copying nothing."""
        from . import _validate  # (it imports this module)

        # (a model that does not derive from this class gets these as hooks, bound to it: hook() for its tensors)
        _validate.tensor_list(hook(cast(Model, self), "tensors")(values, argument), getattr(self, "tensor_names", ()),
                              getattr(self, "param_shapes", ()), argument, copy=False, finite=True)

    def shaped_like(self, arrays: list[Any], like: Any) -> Any:
        """Arrays shaped like the parameters, in the structure of ``like`` (by default: as they are)."""
        return arrays

    def warm_up_case(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray] | None:
        """Return a tiny ``(params, X, Y, entries)`` whose check loads the kernels, or None (nothing compiles)."""
        return None


#: Every member :class:`Model` asks for.
_MEMBERS = tuple(sorted({n for n in vars(Model) if not n.startswith("_")} | set(Model.__annotations__)))
#: Per class that passed: the members its instances must carry themselves (not class attributes).
_INSTANCE_MEMBERS: dict[type, tuple[str, ...]] = {}


def is_model(obj: Any) -> bool:
    """Whether ``obj`` satisfies :class:`Model` (has every member; signatures are not inspected).

    The same test as ``isinstance(obj, Model)``, which costs 14 us a call (every check makes several):
    a class seen once is remembered with the members its instances must have themselves.
    """
    rest = _INSTANCE_MEMBERS.get(type(obj))
    if rest is not None:
        return all(hasattr(obj, name) for name in rest)
    if not isinstance(obj, Model):
        return False
    _INSTANCE_MEMBERS[type(obj)] = tuple(n for n in _MEMBERS if not hasattr(type(obj), n))
    return True


def require_model(obj: Any, argument: str = "net") -> Model:
    """Return ``obj`` when it is a model; else ``TypeError`` naming ``argument`` and what is expected."""
    if not is_model(obj):
        raise TypeError(f"{argument} must be a fastgrad.MLP (or a model implementing fastgrad.protocol.Model), "
                        f"got {type(obj).__name__}")
    return obj


def hook(model: Model, name: str) -> Any:
    """``model``'s optional hook ``name``, or :class:`ModelBase`'s.

    The hooks: depth, advice, rotation, warm_up_case, tensors, validate, shaped_like.
    """
    found = getattr(model, name, None)
    if found is not None:
        return found
    return getattr(ModelBase, name).__get__(model)

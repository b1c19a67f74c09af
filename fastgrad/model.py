"""The network description: :class:`MLP`, and the flat-vector layout behind it."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _validate
from ._kernels import activations, codes, losses
from ._kernels.activations import leaky_relu
from ._kernels.backprop import backprop_batch
from ._kernels.forward import empty_activations, forward_batch, n_units
from ._kernels.loss import loss_from_activations
from ._scratch import take
from .capabilities import MLP_KIND, supported
from .conventions import REDUCTIONS, Conventions
from .mlp_params import WEIGHT_LAYOUTS, ParamFormat
from .protocol import ModelBase

#: Activations allowed in every layer: one module each in :mod:`fastgrad._kernels.activations`.
ACTIVATIONS = dict(activations.HIDDEN)
OUTPUT_ONLY = dict(activations.OUTPUT_ONLY)
#: Magnitude range of the biases :meth:`MLP.init` draws (each with a random sign).
BIAS_MIN, BIAS_MAX = 0.01, 0.1
#: Loss names: one module each in :mod:`fastgrad._kernels.losses`.
LOSSES = dict(losses.CODES)


class MLP(ModelBase):
    """A fully connected network: sizes, activations and loss; no weights.

    The first implementation of the model protocol
    (:class:`fastgrad.protocol.Model`, kind ``"mlp"``): every engine and
    method serves it (:mod:`fastgrad.capabilities`).

    Layer ``l`` computes ``a_l = act(a_{l-1} @ W_l + b_l)`` with ``W_l`` of
    shape (fan_in, fan_out) and ``b_l`` of shape (fan_out,); ``a_0 = X`` has
    one row per sample. Parameters are the list ``[W1, b1, W2, b2, ...]``,
    or a dict with those keys.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``[D, H1, ..., K]``, at least two (``[D, K]`` is a
        linear or logistic regression).
    hidden : str, default "sigmoid"
        Activation of hidden layers: "sigmoid", "tanh", "relu",
        "leaky_relu" (slope 0.01), "softplus", "elu" (alpha 1) or "identity".
    output : str, default "sigmoid"
        Activation of the last layer: any of the above, or "softmax"
        (only with ``loss="cross_entropy"``).
    loss : str, default "mse"
        "mse": ``E = (1/N) sum_n sum_k (y_nk - x_nk)^2`` (mean over the batch,
        sum over outputs); "sse": ``sum_n sum_k (y - x)^2``; "half_sse":
        ``0.5 sum_n sum_k (y - x)^2``; "cross_entropy":
        ``-(1/N) sum_n sum_k y_nk log p_nk`` with a softmax output (``Y`` may
        be integer class labels of shape (N,)); "bce": binary cross-entropy
        on sigmoid outputs, ``(1/N) sum_n sum_k softplus(z_nk) - y_nk z_nk``
        from the logits (multi-label targets allowed).
    reduction : {None, "sum", "mean", "mean_all"}, default None
        None keeps the loss's own (above); "sum" over samples and outputs,
        "mean" over the N samples (summed over outputs), "mean_all" over all
        N x K elements (most frameworks' default).
    scale : float, default 1.0
        A constant factor on the data term (0.5 for the "1/2 ||y - x||^2"
        conventions).
    l2 : float, default 0.0
        Adds ``l2 * sum_l ||W_l||^2`` (weights only, not biases) to the loss;
        every convention (lambda/2, lambda, lambda/2N) is a choice of it.
    leaky_slope : float, default 0.01
        The slope of "leaky_relu" below 0.
    weight_layout : {"in_out", "out_in"}, default "in_out"
        "out_in": weights given (and gradients returned) as (fan_out,
        fan_in), as PyTorch's ``nn.Linear`` stores them. In either layout a
        bias may be (k,), (k, 1) or (1, k); results come back in the shape
        given.

    Examples
    --------
    >>> net = MLP([4, 5, 3])
    >>> params = net.init(seed=0)
    >>> [p.shape for p in params]
    [(4, 5), (5,), (5, 3), (3,)]
    """

    def __init__(
        self,
        sizes: Sequence[int],
        hidden: str = "sigmoid",
        output: str = "sigmoid",
        loss: str = "mse",
        reduction: str | None = None,
        scale: float = 1.0,
        l2: float = 0.0,
        leaky_slope: float = leaky_relu.SLOPE,
        weight_layout: str = "in_out",
    ) -> None:
        self.sizes = _check_sizes(sizes)
        self.hidden = _validate.choice(hidden, list(ACTIVATIONS), "hidden")
        self.output = _validate.choice(output, list(ACTIVATIONS) + list(OUTPUT_ONLY), "output")
        self.loss_name = _validate.choice(loss, list(LOSSES), "loss")
        required = losses.OUTPUTS[self.loss_name]  # e.g. cross_entropy's softmax
        if required is not None and self.output != required:
            raise ValueError(f"loss={self.loss_name!r} needs output={required!r} (got output={self.output!r})")
        if required is None and self.output in OUTPUT_ONLY:
            owners = [name for name, out in losses.OUTPUTS.items() if out == self.output]
            raise ValueError(f"output={self.output!r} goes only with loss={' or '.join(map(repr, owners))} "
                             f"(got loss={self.loss_name!r})")
        if reduction is not None:
            _validate.choice(reduction, [r for r in REDUCTIONS if r is not None], "reduction")
        self.conventions = Conventions(self.loss_name, reduction, _finite(scale, "scale", nonzero=True),
                                       _finite(l2, "l2", nonnegative=True))
        self.leaky_slope = _finite(leaky_slope, "leaky_slope")
        self.weight_layout = _validate.choice(weight_layout, list(WEIGHT_LAYOUTS), "weight_layout")
        self.n_layers = len(self.sizes) - 1
        self.tensor_names = tuple(
            f"{kind}{l + 1}" for l in range(self.n_layers) for kind in ("W", "b")
        )
        #: Each tensor's shape in the flat vector the kernels read: ``(fan_in, fan_out)``, ``(fan_out,)``.
        self.flat_shapes: list[tuple[int, ...]] = [
            shape
            for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:])
            for shape in ((fan_in, fan_out), (fan_out,))
        ]
        self.format = ParamFormat(self.tensor_names, self.flat_shapes, self.weight_layout)
        #: Each tensor's shape as given and returned (weights (fan_out, fan_in) with ``weight_layout="out_in"``).
        self.param_shapes: list[tuple[int, ...]] = list(self.format.shapes)
        codes_by_name = {**ACTIVATIONS, **OUTPUT_ONLY}
        slope_code = leaky_relu.encode(self.leaky_slope)  # ValueError unless a positive normal float

        def code(name: str) -> int:
            return slope_code if name == "leaky_relu" else codes_by_name[name]

        self.layout = _build_layout(self.sizes, code(self.hidden), code(self.output))
        self.loss_code = LOSSES[self.loss_name]
        self.offsets = np.cumsum([0] + [int(np.prod(s)) for s in self.flat_shapes])
        self.n_params = int(self.offsets[-1])

    #: Its row in the capability table.
    kind = MLP_KIND

    @property
    def depth(self) -> int:
        """Layers the gradient's arithmetic chains through (scales the checked gradient's rounding allowance)."""
        return self.n_layers

    def capabilities(self) -> dict[str, tuple[str, ...]]:
        """Return the methods each engine serves for an MLP (every one: see :mod:`fastgrad.capabilities`)."""
        return supported(self.kind)

    def __repr__(self) -> str:
        hidden = f"hidden={self.hidden!r}, " if self.n_layers > 1 else ""
        extra = [self.conventions.describe()]
        if self.leaky_slope != leaky_relu.SLOPE:
            extra.append(f"leaky_slope={self.leaky_slope!r}")
        if self.weight_layout != "in_out":
            extra.append(f"weight_layout={self.weight_layout!r}")
        more = "".join(f", {e}" for e in extra if e)
        return f"MLP({list(self.sizes)}, {hidden}output={self.output!r}, loss={self.loss_name!r}{more})"

    # ------------------------------------------------------------------ params
    def init(self, seed: int | None = 0) -> list[np.ndarray]:
        """Return a fresh random parameter list ``[W1, b1, ...]`` (float64, in the net's ``weight_layout``).

        Weights are Glorot-uniform, ``U(-r, r)`` with
        ``r = sqrt(6 / (fan_in + fan_out))``, for layers with saturating or
        linear activations, and He-normal, ``N(0, 2 / fan_in)``, for relu and
        leaky_relu. Biases are small but never zero: a random sign times
        ``U(BIAS_MIN, BIAS_MAX)`` (0.01 to 0.1), so that a check at these
        parameters also sees gradient errors proportional to a bias (an L2
        term wrongly applied to the biases, say), which zero biases hide.
        The weights are drawn first, exactly as when biases were zero, so a
        seed gives the same weights as before.

        Parameters
        ----------
        seed : int, sequence of int, numpy.random.Generator or None, default 0
            Seed of ``numpy.random.default_rng`` (a non-negative int, or
            None for fresh entropy); the same seed gives the same parameters.
        """
        _validate.seed(seed)
        rng = np.random.default_rng(seed)
        weights = []
        for l, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            act = self.output if l == self.n_layers - 1 else self.hidden
            if act in ("relu", "leaky_relu"):
                W = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
            else:
                r = np.sqrt(6.0 / (fan_in + fan_out))
                W = rng.uniform(-r, r, size=(fan_in, fan_out))
            weights.append(W.astype(np.float64))
        params = []
        for W in weights:
            fan_out = W.shape[1]
            b = rng.uniform(BIAS_MIN, BIAS_MAX, size=fan_out) * np.where(rng.random(fan_out) < 0.5, -1.0, 1.0)
            # (out, in) layout: the same numbers, transposed (a seed gives the same net in either layout)
            params += [np.ascontiguousarray(W.T) if self.format.transposed else W, b.astype(np.float64)]
        return params

    def flatten(self, params: Any, argument: str = "params", keep: bool = False) -> np.ndarray:
        """Validate ``params`` (a list or a dict: :mod:`fastgrad.mlp_params`); return one new flat float64 vector.

        ``keep``: in kept scratch instead (:mod:`fastgrad._scratch`), for a caller that lets it go nowhere.
        """
        # a copy: the caller's arrays are read, never returned
        return self.format.flat_copy(params, argument, keep_as="inputs.theta" if keep else None)

    def unflatten(self, theta: np.ndarray) -> list[np.ndarray]:
        """Split a flat vector into arrays shaped like the parameters (``param_shapes``).

        The arrays are views of ``theta``: pass a vector nobody else holds
        (every caller passes one it has just computed).
        """
        return self.format.unflatten(theta, self.offsets)

    def locate(self, flat_index: int) -> tuple[str, tuple[int, ...]]:
        """Return ``(tensor name, index)`` of a flat parameter index (the index in ``param_shapes``)."""
        t = int(np.searchsorted(self.offsets, flat_index, side="right")) - 1
        return self.tensor_names[t], self.format.user_index(t, int(flat_index - self.offsets[t]))

    def batch(self, X: Any, Y: Any | None = None, keep: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate ``X`` (N, D) and ``Y`` (N, K), or class labels (N,) for cross_entropy; return float64 copies.

        ``keep``: in kept scratch (:mod:`fastgrad._scratch`), for a caller that lets them go nowhere.
        """
        if Y is not None and self.loss_name == "cross_entropy":
            Y = _validate.class_labels(Y, self.sizes[-1])
        return _validate.batch(X, Y, self.sizes[0], self.sizes[-1], keep=keep)

    # ------------------------------------------------------- the user's side
    def tensors(self, values: Any, argument: str = "params") -> list[Any]:
        """The tensors of ``values`` (a list, or a dict keyed ``"W1"``, ``"b1"``, ...), in the model's order."""
        return self.format.tensors(values, argument)

    def validate(self, values: Any, argument: str = "grads") -> None:
        """Check ``values``' structure, dtypes, shapes and entries (what :meth:`flatten` checks), copying nothing."""
        self.format.validate(values, argument)

    def shaped_like(self, arrays: list[np.ndarray], like: Any) -> Any:
        """``arrays`` with each bias in the shape ``like`` gave it, and as a dict when ``like`` is one."""
        return self.format.shaped_like(arrays, like)

    # --------------------------------------------------------------- compute
    def _forward(self, theta: np.ndarray, X: np.ndarray, keep: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Pre-activations and activations (``keep``: in kept scratch, :mod:`fastgrad._scratch`)."""
        if keep:
            shape = (X.shape[0], n_units(self.layout))
            Z, A = take("forward.Z", shape), take("forward.A", shape)
        else:
            Z, A = empty_activations(self.layout, X.shape[0])
        forward_batch(theta, self.layout, X, Z, A)
        return Z, A

    def forward(self, params: Any, X: Any) -> np.ndarray:
        """Network outputs, shape (N, K), float64."""
        theta = self.flatten(params)
        Xa, _ = self.batch(X)
        _, A = self._forward(theta, Xa)
        return A[:, -self.sizes[-1]:].copy()

    def loss(self, params: Any, X: Any, Y: Any) -> float:
        """The loss ``E`` of the batch (see the class docstring)."""
        _validate.required(Y, "Y", "an array of targets of shape (N, K), one row per sample")
        theta = self.flatten(params)
        Xa, Ya = self.batch(X, Y)
        assert Ya is not None  # (required above)
        return self.loss_at(theta, Xa, Ya)

    def _backprop_flat(
        self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray, Z: np.ndarray | None = None, A: np.ndarray | None = None
    ) -> np.ndarray:
        """Flat gradient; ``Z``/``A`` may pass a forward pass made at ``theta``."""
        if Z is None or A is None:
            Z, A = self._forward(theta, X)
        D = np.empty_like(Z)
        grad = np.empty(self.n_params, dtype=np.float64)
        backprop_batch(theta, self.layout, self.loss_code, X, Y, Z, A, D, grad)
        if not self.conventions.plain:
            self.conventions.gradient_into(grad, theta, self.layout, X.shape[0], self.sizes[-1])
        return grad

    def loss_at(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:
        """Return the loss at the flat point ``theta`` on a validated batch (the protocol's loss)."""
        Z, A = self._forward(theta, X)
        return self.total_loss(float(loss_from_activations(Z, A, Y, self.layout, self.loss_code)), theta, X.shape[0])

    def total_loss(self, data: float, theta: np.ndarray, n_samples: int) -> float:
        """The loss from the kernels' data term: with the reduction, scale and L2 term (:mod:`fastgrad.conventions`)."""
        if self.conventions.plain:
            return data
        return self.conventions.loss_value(data, theta, self.layout, n_samples, self.sizes[-1])

    def gradient_at(self, theta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Return the flat analytic gradient at ``theta`` on a validated batch (the protocol's backprop)."""
        return self._backprop_flat(theta, X, Y)

    def backprop(self, params: Any, X: Any, Y: Any) -> list[np.ndarray]:
        """Gradient of the loss: a list of float64 arrays shaped like params."""
        _validate.required(Y, "Y", "an array of targets of shape (N, K), one row per sample")
        theta = self.flatten(params)
        Xa, Ya = self.batch(X, Y)
        assert Ya is not None  # (required above)
        return self.shaped_like(self.unflatten(self._backprop_flat(theta, Xa, Ya)), params)


    # ------------------------------------------------------- protocol hooks
    def advice(self, params: Any) -> list[str]:
        """Advise (never fail) when every bias is exactly zero: bias gradients are then checked at a special point."""
        biases = [np.asarray(p) for name, p in zip(self.tensor_names, self.tensors(params)) if name.startswith("b")]
        if biases and all(b.size and not np.any(b) for b in biases):
            return ["every bias is exactly 0: a gradient code whose own forward pass leaves a bias out matches "
                    "exactly there; check again at nonzero biases too (MLP.init gives small random ones)"]
        return []

    def rotation(self, seed: Any) -> Any:
        """:class:`fastgrad.Monitor`'s sampler: whole units (a unit's parameters share their cost)."""
        from .sampling import RotatingSampler  # (sampling imports this module)

        return RotatingSampler(self, seed)

    def warm_up_case(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """Two samples and one unit per layer: a check this small only loads (or compiles) the kernels."""
        rng = np.random.default_rng(0)
        X = rng.normal(size=(2, self.sizes[0]))
        Y = np.full((2, self.sizes[-1]), 1.0 / self.sizes[-1])
        return self.init(0), X, Y, self.rotation(0).next(1)


def _finite(value: Any, argument: str, nonzero: bool = False, nonnegative: bool = False) -> float:
    """A finite real scalar argument as a float (``TypeError``/``ValueError`` naming it)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{argument} must be a real number, got {type(value).__name__}")
    x = float(value)
    if not np.isfinite(x) or (nonzero and x == 0.0) or (nonnegative and x < 0.0):
        need = "nonzero and finite" if nonzero else ">= 0 and finite" if nonnegative else "finite"
        raise ValueError(f"{argument} must be {need}, got {value!r}")
    return x


def _check_sizes(sizes: Any) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (Sequence, np.ndarray)):
        raise TypeError(f"sizes must be a sequence of ints like [784, 128, 10], got {sizes!r}")
    out = []
    for i, s in enumerate(sizes):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (numbers.Integral, np.integer)):
            raise TypeError(f"sizes[{i}] must be an int, got {s!r}")
        if s < 1:
            raise ValueError(f"sizes[{i}] must be >= 1, got {s}")
        out.append(int(s))
    if len(out) < 2:
        raise ValueError(f"sizes needs at least an input and an output width, got {list(sizes)}")
    _check_size_memory(out)
    return tuple(out)


def _check_size_memory(sizes: list[int]) -> None:
    """Raise ``ValueError`` when one float64 copy of the parameters cannot be held.

    Counted in Python ints (no overflow), before anything is allocated:
    past :data:`fastgrad._validate.MAX_BYTES` or the memory available, the
    net could not even be initialised, and its int64 layout would overflow.
    """
    layers = [fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    n_params = sum(layers)
    nbytes = 8 * n_params
    short = _validate.memory_shortfall(nbytes)
    if short is None:
        return
    big = max(range(len(layers)), key=layers.__getitem__)
    shown = f" {sizes}" if len(sizes) <= 8 else ""
    raise ValueError(
        f"sizes{shown}: the net would have {n_params:,} parameters, {_validate.format_bytes(nbytes)} as float64 "
        f"(8 bytes each), {short}; the largest layer, sizes[{big}] x sizes[{big + 1}] = "
        f"{sizes[big]} x {sizes[big + 1]}, has {layers[big]:,} of them"
    )


def _build_layout(sizes: tuple[int, ...], hidden_code: int, output_code: int) -> np.ndarray:
    layout = np.zeros((len(sizes) - 1, codes.N_COLS), dtype=np.int64)
    offset = 0
    units = 0
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layout[l, codes.FAN_IN] = fan_in
        layout[l, codes.FAN_OUT] = fan_out
        layout[l, codes.W_OFF] = offset
        layout[l, codes.B_OFF] = offset + fan_in * fan_out
        layout[l, codes.U_OFF] = units
        layout[l, codes.ACT] = output_code if l == len(sizes) - 2 else hidden_code
        offset += fan_in * fan_out + fan_out
        units += fan_out
    return layout

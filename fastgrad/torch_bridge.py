"""PyTorch models as fastgrad MLPs: :func:`from_torch` and :func:`torch_grads`.

PyTorch is optional: it is imported inside the functions, so ``import fastgrad`` never loads it, and without it
they raise an ``ImportError`` that says ``pip install "fastgrad[torch]"``.

What converts, and the decisions behind it:

* An ``nn.Sequential`` (nested ones are flattened in order, as ``print(model)`` numbers them: "2.0") or a single
  ``nn.Linear``. ``nn.Identity`` modules are dropped (they compute nothing). Every other module is an
  ``nn.Linear`` or one of :data:`ACTIVATIONS`, at most one activation after each Linear; no activation between
  two Linears is the identity.
* Subclasses of ``nn.Linear`` (a layer whose ``forward`` calls a custom ``autograd.Function``) are taken to
  compute ``x @ W.T + b``: their forward is not inspected, and the check tests their backward against that
  function, which is the point of checking them. A Linear without a bias is refused: fastgrad's MLP always has
  biases, and a zero bias stood in for it would be checked as a parameter torch does not have.
* Every hidden layer has one activation (the MLP has one ``hidden``); the module after the last Linear, or none,
  gives ``output``.
* ``nn.Softplus`` (beta 1) is exact below its ``threshold`` and returns ``x`` above it. The gap,
  ``log1p(exp(-x))`` in the value and ``exp(-x)`` in the derivative, is below the rounding of the model's dtype
  when ``threshold >= -log(u)`` (u = its unit roundoff: 16.6 for float32, so torch's default 20 is exact there;
  36.7 for float64). Below that, a check would flag the gap wherever a pre-activation exceeds the threshold, a
  difference of function rather than a gradient bug: :func:`from_torch` refuses such a model, and the message
  says how to raise the threshold (with ``threshold=40`` torch's float64 Softplus is log(1 + exp(x)) to rounding
  everywhere; its values move by less than exp(-20) = 2e-9, where x lies between 20 and 40).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .model import MLP

__all__ = ["ACTIVATIONS", "FASTGRAD_LOSSES", "TORCH_LOSSES", "from_torch", "torch_grads"]

INSTALL_HINT = 'PyTorch is not installed: pip install "fastgrad[torch]" (or install torch itself)'
#: torch activation modules that convert, and the fastgrad activation each becomes.
ACTIVATIONS = {
    "Sigmoid": "sigmoid", "Tanh": "tanh", "ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu",
    "GELU": "gelu", "SiLU": "silu", "Softplus": "softplus", "Identity": "identity", "Softmax": "softmax",
}
#: fastgrad loss names ``loss`` may be instead of a torch loss module.
FASTGRAD_LOSSES = ("mse", "sse", "half_sse", "cross_entropy", "bce")
#: torch loss modules, and the fastgrad (loss, reduction) of their reduction "mean" and "sum".
TORCH_LOSSES = {
    # MSELoss's mean is over all N K elements; fastgrad's "mse" sums over the K outputs.
    "MSELoss": {"mean": ("mse", "mean_all"), "sum": ("sse", "sum")},
    # mean over the N samples of -sum_k y log softmax(z): the class-index and the probability targets alike.
    "CrossEntropyLoss": {"mean": ("cross_entropy", "mean"), "sum": ("cross_entropy", "sum")},
    "BCEWithLogitsLoss": {"mean": ("bce", "mean_all"), "sum": ("bce", "sum")},
}


def _torch() -> Any:
    """The torch module, or the ImportError users should see."""
    try:
        import torch
    except ImportError as exc:  # also sys.modules["torch"] = None, which is how the tests hide it
        raise ImportError(INSTALL_HINT) from exc
    return torch


def _describe(path: str, module: Any) -> str:
    return f"layer {path} ({type(module).__name__})"


def _flatten(module: Any, nn: Any) -> list[tuple[str, Any]]:
    """``(path, module)`` of every leaf of ``module`` in forward order; nested Sequentials are opened."""
    if isinstance(module, nn.Linear):
        return [("0", module)]
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"from_torch takes an nn.Sequential of nn.Linear layers and activations (or one nn.Linear), "
                        f"got {type(module).__name__}: fastgrad cannot see inside a custom forward()")
    leaves: list[tuple[str, Any]] = []

    def walk(seq: Any, prefix: str) -> None:
        for name, child in seq.named_children():
            path = f"{prefix}{name}"
            if isinstance(child, nn.Sequential):
                walk(child, path + ".")
            elif not isinstance(child, nn.Identity):
                leaves.append((path, child))

    walk(module, "")
    return leaves


def _linears(leaves: list[tuple[str, Any]], nn: Any) -> list[tuple[str, Any]]:
    """The Linear layers among ``leaves``, each with weights and a bias, or ValueError naming the one without."""
    out = []
    for path, m in leaves:
        if not isinstance(m, nn.Linear):
            continue
        if nn.parameter.is_lazy(m.weight):
            raise ValueError(f"{_describe(path, m)} is not initialised yet: run one forward pass first")
        if m.bias is None:
            raise ValueError(f"{_describe(path, m)} has no bias (bias=False): fastgrad's MLP always has biases, "
                             f"and a zero bias in its place would be checked as a parameter the model does not have")
        out.append((path, m))
    if not out:
        raise ValueError("the model has no nn.Linear layer")
    return out


def _activation(path: str, m: Any, nn: Any, torch: Any, dtype: Any) -> tuple[str, float | None] | None:
    """``(fastgrad name, leaky slope)`` of an activation module, None for a module that is no activation."""
    kind = next((name for name in ACTIVATIONS if isinstance(m, getattr(nn, name))), None)
    if kind is None:
        return None
    where = _describe(path, m)
    if kind == "LeakyReLU":
        if float(m.negative_slope) == 0.0:  # max(x, 0): a relu (the MLP's leaky_slope is positive)
            return "relu", None
        return "leaky_relu", float(m.negative_slope)
    if kind == "ELU" and float(m.alpha) != 1.0:
        raise ValueError(f"{where} has alpha={m.alpha}: fastgrad's elu has alpha 1")
    if kind == "GELU" and m.approximate != "none":
        raise ValueError(f"{where} has approximate={m.approximate!r}: fastgrad's gelu is the exact x Phi(x) "
                         f"(erf), which the tanh approximation differs from by far more than rounding; use "
                         f"nn.GELU() (approximate='none')")
    if kind == "Softplus":
        if float(m.beta) != 1.0:
            raise ValueError(f"{where} has beta={m.beta}: fastgrad's softplus is log(1 + exp(x)), beta 1")
        # Above the threshold torch returns x: off by log1p(exp(-x)) < exp(-threshold), and its derivative by
        # exp(-x). Harmless when that is below the unit roundoff u of the model's dtype; otherwise fastgrad's
        # budget (rounding of that dtype) would call it a gradient error: see the module docstring.
        u = float(torch.finfo(dtype).eps) / 2.0
        if float(m.threshold) < -math.log(u):
            raise ValueError(
                f"{where} has threshold={m.threshold}: above it torch's Softplus returns x, which differs from "
                f"log(1 + exp(x)) by up to {math.exp(-float(m.threshold)):.1e} in value and derivative, more than "
                f"{dtype}'s rounding, so a check would fail wherever a pre-activation exceeds it; set the "
                f"module's threshold to {math.ceil(-math.log(u)) + 3} or more (then it is log(1 + exp(x)) to "
                f"{dtype}'s rounding everywhere) and compute the gradients again")
    if kind == "Softmax" and m.dim not in (None, 1, -1):
        raise ValueError(f"{where} has dim={m.dim}: the MLP's softmax is over the outputs of each sample (dim 1)")
    return ACTIVATIONS[kind], None


def _loss(loss: Any, nn: Any) -> tuple[str, str | None, bool]:
    """``(fastgrad loss, reduction, from logits)``; the last: torch's loss module applies softmax/sigmoid itself."""
    if isinstance(loss, str):
        if loss not in FASTGRAD_LOSSES:
            raise ValueError(f"loss={loss!r}: give one of {', '.join(FASTGRAD_LOSSES)} or a torch loss module "
                             f"({', '.join('nn.' + name for name in TORCH_LOSSES)})")
        return loss, None, False
    kind = next((name for name in TORCH_LOSSES if isinstance(loss, getattr(nn, name))), None)
    if kind is None:
        raise ValueError(f"loss: {type(loss).__name__} is not supported; give one of "
                         f"{', '.join('nn.' + name for name in TORCH_LOSSES)} or a fastgrad loss name "
                         f"({', '.join(FASTGRAD_LOSSES)})")
    if loss.reduction not in ("mean", "sum"):
        raise ValueError(f"{kind}(reduction={loss.reduction!r}) gives a loss per element; fastgrad checks the "
                         f"gradient of one number: use reduction 'mean' or 'sum'")
    if kind == "CrossEntropyLoss":
        if loss.weight is not None:
            raise ValueError("CrossEntropyLoss(weight=...): class weights are not expressible in fastgrad's MLP")
        if float(loss.label_smoothing) != 0.0:
            raise ValueError(f"CrossEntropyLoss(label_smoothing={loss.label_smoothing}): fastgrad's cross-entropy "
                             f"has no label smoothing (mix the smoothing into probability targets Y instead)")
    if kind == "BCEWithLogitsLoss" and (loss.weight is not None or loss.pos_weight is not None):
        raise ValueError("BCEWithLogitsLoss(weight=... or pos_weight=...): not expressible in fastgrad's MLP")
    name, reduction = TORCH_LOSSES[kind][loss.reduction]
    return name, reduction, kind != "MSELoss"


def _output(last: tuple[str, Any, str] | None, loss_name: str, from_logits: bool, loss: Any) -> str:
    """The MLP's ``output`` from the module after the last Linear (None: none) and the loss."""
    act = None if last is None else last[2]
    where = "the last nn.Linear" if last is None else _describe(last[0], last[1])
    wanted = {"cross_entropy": ("softmax", "nn.Softmax"), "bce": ("sigmoid", "nn.Sigmoid")}.get(loss_name)
    if wanted is None:  # a squared error: the model's own output
        if act == "softmax":
            raise ValueError(f"the model ends in {where}: fastgrad pairs a softmax output with "
                             f"loss='cross_entropy' only")
        return act or "identity"
    if act is None:  # logits: nn.CrossEntropyLoss / BCEWithLogitsLoss (or F.*_with_logits) apply the rest
        return wanted[0]
    if act == wanted[0] and not from_logits:  # probabilities, with the loss computed on them by name
        return act
    taker = type(loss).__name__ if from_logits else f"loss={loss_name!r}"
    raise ValueError(f"{taker} takes the logits of the last nn.Linear (or, by name, {wanted[1]} probabilities), "
                     f"but the model ends in {where}" + (f": {wanted[0]} would be applied twice"
                                                         if act == wanted[0] else ""))


def _model_dtype(linears: list[tuple[str, Any]], torch: Any) -> Any:
    """The finest floating dtype of the Linear weights (a mixed model is judged by its most precise part)."""
    dtypes = {m.weight.dtype for _, m in linears}
    return min(dtypes, key=lambda dt: torch.finfo(dt).eps if dt.is_floating_point else math.inf)


def _to_numpy(tensor: Any, dtype: Any = None) -> np.ndarray:
    t = tensor.detach().cpu()
    if dtype is not None:
        t = t.to(dtype)
    return np.array(t.numpy(), copy=True)  # a copy: never a view of torch's storage


def from_torch(module: Any, loss: Any = "mse", reduction: str | None = None, *, scale: float = 1.0,
               l2: float = 0.0) -> tuple[MLP, list[np.ndarray]]:
    """Convert a PyTorch MLP into a fastgrad :class:`~fastgrad.MLP` and its parameters.

    Parameters
    ----------
    module : torch.nn.Sequential or torch.nn.Linear
        ``nn.Linear`` layers, each followed by at most one of nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU,
        nn.ELU (alpha 1), nn.GELU (exact), nn.SiLU, nn.Softplus (beta 1; see the module docstring for its
        threshold), nn.Identity, and after the last Linear also nn.Softmax (with a cross-entropy loss by name).
        All hidden layers share one activation. Nested Sequentials are flattened; nn.Identity is dropped.
    loss : str or torch loss module, default "mse"
        A fastgrad loss name ("mse", "sse", "half_sse", "cross_entropy", "bce") or an instance of
        nn.MSELoss (mean: ``("mse", "mean_all")``, sum: ``("sse", "sum")``), nn.CrossEntropyLoss (mean:
        ``("cross_entropy", "mean")``; the model ends in a Linear, whose logits become a softmax output) or
        nn.BCEWithLogitsLoss (mean: ``("bce", "mean_all")``; a sigmoid output). By name, "cross_entropy" and
        "bce" take a model ending in a Linear (logits) or in nn.Softmax / nn.Sigmoid (probabilities).
    reduction : str, optional
        Overrides the reduction: "sum", "mean" (over samples) or "mean_all" (over all N K elements); None: the
        torch module's, or the fastgrad loss's own.
    scale, l2 : float
        Passed to :class:`~fastgrad.MLP`: a factor on the data term, and ``l2 * sum ||W||^2`` added.

    Returns
    -------
    net : MLP
        With ``weight_layout="out_in"``: weights are (fan_out, fan_in), as ``nn.Linear.weight``.
    params : list of ndarray
        ``[W1, b1, W2, b2, ...]``, float64 copies of the Linear layers' weights and biases.

    Examples
    --------
    >>> net, params = fastgrad.from_torch(model, nn.CrossEntropyLoss())          # doctest: +SKIP
    >>> nn.CrossEntropyLoss()(model(torch.from_numpy(X)), torch.from_numpy(y)).backward()  # doctest: +SKIP
    >>> fastgrad.check(net, params, X, y, fastgrad.torch_grads(model))            # doctest: +SKIP
    """
    torch = _torch()
    nn = torch.nn
    leaves = _flatten(module, nn)
    linears = _linears(leaves, nn)
    dtype = _model_dtype(linears, torch)
    loss_name, mapped, from_logits = _loss(loss, nn)
    after: list[tuple[str, Any, str] | None] = []  # the activation after each Linear
    slopes: dict[str, float] = {}
    for path, m in leaves:
        if isinstance(m, nn.Linear):
            after.append(None)
            continue
        act = _activation(path, m, nn, torch, dtype)
        if act is None:
            raise ValueError(f"{_describe(path, m)} is not supported: from_torch converts nn.Linear layers and the "
                             f"activations {', '.join('nn.' + name for name in ACTIVATIONS)}")
        if not after:
            raise ValueError(f"{_describe(path, m)} comes before the first nn.Linear: the MLP starts with a Linear")
        if after[-1] is not None:
            raise ValueError(f"{_describe(after[-1][0], after[-1][1])} and {_describe(path, m)} follow one "
                             f"nn.Linear: the MLP has one activation per layer")
        after[-1] = (path, m, act[0])
        if act[1] is not None:
            slopes[path] = act[1]
    sizes = [int(linears[0][1].in_features)]
    for (path, m), (prev_path, prev) in zip(linears[1:], linears[:-1]):
        if m.in_features != prev.out_features:
            raise ValueError(f"{_describe(path, m)} takes {m.in_features} inputs but {_describe(prev_path, prev)} "
                             f"gives {prev.out_features}")
    sizes += [int(m.out_features) for _, m in linears]
    hidden = {("identity" if a is None else a[2]) for a in after[:-1]}
    if len(hidden) > 1:
        listed = ", ".join(f"{linears[i][0]} -> " + ("none (identity)" if a is None else _describe(a[0], a[1]))
                           for i, a in enumerate(after[:-1]))
        raise ValueError(f"the hidden layers have different activations ({listed}): fastgrad's MLP has one hidden "
                         f"activation")
    if "softmax" in hidden:
        raise ValueError("nn.Softmax between Linear layers: the MLP has softmax only as its output")
    if len(set(slopes.values())) > 1:
        raise ValueError(f"LeakyReLU slopes differ ({', '.join(f'layer {p}: {s}' for p, s in slopes.items())}): "
                         f"the MLP has one leaky_slope")
    if loss_name == "cross_entropy" and isinstance(loss, nn.CrossEntropyLoss) and 0 <= loss.ignore_index < sizes[-1]:
        raise ValueError(f"CrossEntropyLoss(ignore_index={loss.ignore_index}) is a class of this {sizes[-1]}-output "
                         f"model: torch drops the samples labelled so from the loss and from its mean's count, "
                         f"which fastgrad's MLP cannot express")
    output = _output(after[-1], loss_name, from_logits, loss)
    options: dict[str, Any] = {"reduction": reduction if reduction is not None else mapped,
                               "scale": scale, "l2": l2, "weight_layout": "out_in"}
    if slopes:
        options["leaky_slope"] = next(iter(slopes.values()))
    net = MLP(sizes, hidden=next(iter(hidden)) if hidden else "sigmoid", output=output, loss=loss_name, **options)
    params = [_to_numpy(t, torch.float64) for _, m in linears for t in (m.weight, m.bias)]
    return net, params


def torch_grads(module: Any) -> list[np.ndarray]:
    """The ``.grad`` of every Linear layer's weight and bias, ``[dW1, db1, ...]``, in :func:`from_torch`'s layout.

    NumPy copies in the gradients' own dtype: a float32 model's float32 gradients tell :func:`fastgrad.check`
    to allow float32's rounding. Call it after ``loss.backward()``.
    """
    torch = _torch()
    nn = torch.nn
    grads = []
    for path, m in _linears(_flatten(module, nn), nn):
        for label, p in (("weight", m.weight), ("bias", m.bias)):
            if p.grad is None:
                raise ValueError(f"{_describe(path, m)}.{label}.grad is None: call loss.backward() first (and keep "
                                 f"requires_grad on the parameters)")
            if p.grad.dtype == torch.bfloat16:  # NumPy has no bfloat16, and float32's budget would be too tight
                raise TypeError(f"{_describe(path, m)}.{label}.grad is bfloat16: compute the gradients in float32 "
                                f"or float64")
            grads.append(_to_numpy(p.grad))
    return grads

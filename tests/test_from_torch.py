"""fastgrad.from_torch / torch_grads (fastgrad/torch_bridge.py) against torch's own loss and autograd.

Every test but the two at the top needs torch and is skipped without it (CI has no torch); those two run
everywhere: importing fastgrad never imports torch, and a missing torch gives the install hint.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fastgrad

try:
    import torch
    from torch import nn
except ImportError:
    torch = nn = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def test_import_fastgrad_does_not_import_torch():
    code = "import sys, fastgrad; fastgrad.from_torch; assert sys.modules.get('torch') is None, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_missing_torch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError, as when not installed
    for call in (lambda: fastgrad.from_torch(object()), lambda: fastgrad.torch_grads(object())):
        with pytest.raises(ImportError, match=r'pip install "fastgrad\[torch\]"'):
            call()


# ------------------------------------------------------------------ helpers (torch needed from here on)
def as_torch(a, dtype=None):
    t = torch.from_numpy(np.asarray(a))
    return t.to(dtype) if dtype is not None and t.is_floating_point() else t


def torch_loss_and_grads(model, loss_fn, X, Y):
    """The loss value torch computes and its gradients [dW1, db1, ...] at (X, Y), in the model's dtype."""
    dtype = next(model.parameters()).dtype
    model.zero_grad()
    loss = loss_fn(model(as_torch(X, dtype)), as_torch(Y, dtype))
    loss.backward()
    return loss.item(), fastgrad.torch_grads(model)


def assert_matches_torch(model, loss_fn, X, Y, loss=None, **options):
    """The loss of fastgrad equals torch's, its analytic gradient equals autograd's, and check passes on autograd's."""
    net, params = fastgrad.from_torch(model, loss_fn if loss is None else loss, **options)
    value, grads = torch_loss_and_grads(model, loss_fn, X, Y)
    assert net.loss(params, X, Y) == pytest.approx(value, rel=1e-12, abs=1e-300)
    for mine, theirs in zip(net.backprop(params, X, Y), grads):
        assert mine.shape == theirs.shape
        assert np.abs(mine - theirs).max() <= 1e-11 * max(1.0, np.abs(theirs).max())
    result = fastgrad.check(net, params, X, Y, grads)
    assert result.passed, result
    return net, params


def needs_mlp(name):
    """Skip while fastgrad's MLP lacks an activation or loss (gelu, silu and bce come from their own branches)."""
    if name not in fastgrad.model.ACTIVATIONS and name not in fastgrad.model.LOSSES:
        pytest.skip(f"fastgrad.MLP has no {name!r} on this branch yet")


def data(seed, n=9, d=4, k=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, k)), rng


def mlp(act, out=None, dtype=None, sizes=(4, 6, 5, 3)):
    """Linear layers of ``sizes`` with a fresh ``act()`` after each hidden one and ``out()`` (if any) at the end."""
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 and act is not None:
            layers.append(act())
    if out is not None:
        layers.append(out())
    return nn.Sequential(*layers).to(dtype or torch.float64)


# ---------------------------------------------------------------------------------------- activations
ACTIVATIONS = {  # fastgrad name -> the torch module (a class name, or a factory for non-default settings)
    "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU", "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": "ELU",
    "gelu": "GELU", "silu": "SiLU", "softplus": lambda: nn.Softplus(threshold=40.0), "identity": "Identity",
}


@needs_torch
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_hidden_and_output(name, seed):
    needs_mlp(name)
    act = ACTIVATIONS[name]
    act = getattr(nn, act) if isinstance(act, str) else act
    X, Y, _ = data(seed)
    net, _ = assert_matches_torch(mlp(act, out=act), nn.MSELoss(), X, Y)
    assert (net.hidden, net.output, net.loss_name) == (name, name, "mse")
    if name == "leaky_relu":
        assert net.leaky_slope == 0.2


@needs_torch
def test_no_activation_between_linears_is_identity_and_layout_is_torchs(seed):
    X, Y, _ = data(seed)
    model = mlp(None)
    net, params = assert_matches_torch(model, nn.MSELoss(reduction="sum"), X, Y)
    assert net.hidden == "identity" and net.output == "identity"
    assert [p.shape for p in params] == [(6, 4), (6,), (5, 6), (5,), (3, 5), (3,)]  # nn.Linear's (out, in)
    assert all(p.dtype == np.float64 for p in params)
    params[0][0, 0] += 1.0  # copies: torch's weights stay as they were
    assert model[0].weight.detach()[0, 0].item() != params[0][0, 0]


@needs_torch
def test_nested_sequentials_identity_modules_and_a_bare_linear(seed):
    X, Y, _ = data(seed)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 6), nn.Tanh()), nn.Identity(),
                          nn.Sequential(nn.Sequential(nn.Linear(6, 3)), nn.Identity())).double()
    net, _ = assert_matches_torch(model, nn.MSELoss(), X, Y)
    assert (net.sizes, net.hidden, net.output) == ((4, 6, 3), "tanh", "identity")
    net, _ = assert_matches_torch(nn.Linear(4, 3).double(), nn.MSELoss(), X, Y)
    assert net.sizes == (4, 3)


# --------------------------------------------------------------------------------------------- losses
def logits_model(out=None):
    return mlp(nn.Tanh, out=out)


def labels(rng, n=9, k=3):
    return rng.integers(0, k, size=n)


@needs_torch
@pytest.mark.parametrize("reduction, expected", [("mean", ("mse", "mean_all")), ("sum", ("sse", "sum"))])
def test_mse_loss_module(reduction, expected, seed):
    X, Y, _ = data(seed)
    net, _ = assert_matches_torch(logits_model(nn.Sigmoid), nn.MSELoss(reduction=reduction), X, Y)
    assert (net.loss_name, net.conventions.reduction, net.output) == (*expected, "sigmoid")


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_cross_entropy_loss_module(reduction, targets, seed):
    X, _, rng = data(seed)
    Y = labels(rng) if targets == "labels" else rng.dirichlet(np.ones(3), size=9)
    net, _ = assert_matches_torch(logits_model(), nn.CrossEntropyLoss(reduction=reduction), X, Y)
    assert (net.loss_name, net.conventions.reduction, net.output) == ("cross_entropy", reduction, "softmax")


@needs_torch
@pytest.mark.parametrize("reduction, expected", [("mean", "mean_all"), ("sum", "sum")])
def test_bce_with_logits_loss_module(reduction, expected, seed):
    needs_mlp("bce")
    X, _, rng = data(seed)
    Y = (rng.uniform(size=(9, 3)) < 0.5).astype(np.float64)
    net, _ = assert_matches_torch(logits_model(), nn.BCEWithLogitsLoss(reduction=reduction), X, Y)
    assert (net.loss_name, net.conventions.reduction, net.output) == ("bce", expected, "sigmoid")


def by_name_cases():
    if torch is None:
        return []
    F = torch.nn.functional
    return [  # (fastgrad loss name, the model's last module, torch's computation of that loss)
        ("mse", None, lambda out, y: ((out - y) ** 2).sum() / len(y)),
        ("sse", nn.Tanh, lambda out, y: ((out - y) ** 2).sum()),
        ("half_sse", None, lambda out, y: 0.5 * ((out - y) ** 2).sum()),
        ("cross_entropy", None, lambda out, y: F.cross_entropy(out, y, reduction="sum") / len(y)),
        ("cross_entropy", lambda: nn.Softmax(dim=1), lambda p, y: -(y * torch.log(p)).sum() / len(y)),
        ("bce", None, lambda out, y: F.binary_cross_entropy_with_logits(out, y, reduction="sum") / len(y)),
        ("bce", nn.Sigmoid, lambda p, y: F.binary_cross_entropy(p, y, reduction="sum") / len(y)),
    ]


@needs_torch
@pytest.mark.parametrize("case", range(7))
def test_fastgrad_loss_names(case, seed):
    name, out, torch_loss = by_name_cases()[case]
    needs_mlp(name)
    X, Y, rng = data(seed)
    if name == "cross_entropy":
        Y = rng.dirichlet(np.ones(3), size=9) if out else labels(rng)
    elif name == "bce":
        Y = rng.uniform(size=(9, 3))
    net, _ = assert_matches_torch(logits_model(out), torch_loss, X, Y, loss=name)
    assert net.loss_name == name


@needs_torch
def test_explicit_reduction_scale_and_l2(seed):
    X, Y, _ = data(seed)
    model = logits_model()
    c, s = 0.3, 2.5
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]

    def penalised(out, y):  # torch's loss by hand: the sum reduction asked for explicitly, scaled, plus c sum ||W||^2
        return s * nn.MSELoss(reduction="sum")(out, y) + c * sum((W ** 2).sum() for W in weights)

    net, _ = assert_matches_torch(model, penalised, X, Y, loss=nn.MSELoss(), reduction="sum", scale=s, l2=c)
    assert net.conventions.reduction == "sum"


# -------------------------------------------------------------------- wrong backwards, float64 and float32
def buggy_linear_class(factor):
    """An nn.Linear whose custom Function's backward multiplies grad_weight by ``factor`` (1: right)."""

    class LinearFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias):
            ctx.save_for_backward(x, weight)
            return x @ weight.T + bias

        @staticmethod
        def backward(ctx, grad_out):
            x, weight = ctx.saved_tensors
            return grad_out @ weight, factor * (grad_out.T @ x), grad_out.sum(dim=0)

    class CustomLinear(nn.Linear):
        def forward(self, x):
            return LinearFunction.apply(x, self.weight, self.bias)

    return CustomLinear


def custom_model(factor, where, dtype):
    """Linear(4, 6) Tanh Linear(6, 5) Tanh Linear(5, 3); layer ``where`` (0, 1, 2) is the custom one."""
    torch.manual_seed(0)
    sizes = [(4, 6), (6, 5), (5, 3)]
    layers = []
    for i, (a, b) in enumerate(sizes):
        layers.append(buggy_linear_class(factor)(a, b) if i == where else nn.Linear(a, b))
        if i < 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers).to(dtype)


@needs_torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("where", [0, 2])
def test_wrong_custom_backward_fails_in_its_weight_only(where, dtype, seed):
    dtype = getattr(torch, dtype)
    X, _, rng = data(seed)
    X, Y = X.astype(np.dtype(str(dtype).removeprefix("torch."))), labels(rng)  # the data torch sees
    for factor, failing in ((1.0, set()), (1.02, {f"W{where + 1}"})):
        model = custom_model(factor, where, dtype)
        net, params = fastgrad.from_torch(model, nn.CrossEntropyLoss())
        _, grads = torch_loss_and_grads(model, nn.CrossEntropyLoss(), X, Y)
        assert all(g.dtype == np.dtype(str(dtype).removeprefix("torch.")) for g in grads)
        result = fastgrad.check(net, params, X, Y, grads)
        assert {t.name for t in result.tensors if not t.passed} == failing, result


@needs_torch
def test_float32_model_passes_on_float32_data(seed):
    X, Y, _ = data(seed)
    model = mlp(nn.ELU, out=nn.Sigmoid, dtype=torch.float32)
    net, params = fastgrad.from_torch(model, nn.MSELoss())
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    value, grads = torch_loss_and_grads(model, nn.MSELoss(), X32, Y32)
    assert all(g.dtype == np.float32 for g in grads) and all(p.dtype == np.float64 for p in params)
    assert net.loss(params, X32, Y32) == pytest.approx(value, rel=1e-5)
    result = fastgrad.check(net, params, X32, Y32, grads)
    assert result.passed, result


# ------------------------------------------------------------------------------------------- softplus
def softplus_model(threshold, dtype):
    """A softplus net whose hidden pre-activations lie in (20, 23): past torch's default threshold."""
    model = nn.Sequential(nn.Linear(4, 6), nn.Softplus(threshold=threshold), nn.Linear(6, 3)).to(dtype)
    torch.manual_seed(0)
    with torch.no_grad():
        model[0].weight.uniform_(-0.2, 0.2)
        model[0].bias.fill_(21.5)
    return model


@needs_torch
def test_softplus_threshold_refused_in_float64_and_why(seed):
    X, Y, _ = data(seed)
    with pytest.raises(ValueError, match=r"layer 1 \(Softplus\) has threshold=20.*threshold to 40"):
        fastgrad.from_torch(softplus_model(20.0, torch.float64), nn.MSELoss())
    # Not over-cautious: torch's float64 gradients with threshold 20, checked against the exact softplus, fail.
    model = softplus_model(20.0, torch.float64)
    _, grads = torch_loss_and_grads(model, nn.MSELoss(), X, Y)
    model[1].threshold = 40.0
    net, params = fastgrad.from_torch(model, nn.MSELoss())
    assert not fastgrad.check(net, params, X, Y, grads).passed
    # ... and threshold 40 in float64, or torch's default 20 in float32, agree with it to rounding.
    assert_matches_torch(softplus_model(40.0, torch.float64), nn.MSELoss(), X, Y)
    model = softplus_model(20.0, torch.float32)
    net, params = fastgrad.from_torch(model, nn.MSELoss())
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    _, grads = torch_loss_and_grads(model, nn.MSELoss(), X32, Y32)
    result = fastgrad.check(net, params, X32, Y32, grads)
    assert result.passed, result


# --------------------------------------------------------------------------------------------- errors
def error_cases():
    if torch is None:
        return []
    L = nn.Linear
    return [  # (model, loss, exception, message pattern)
        (nn.Sequential(L(4, 6), nn.Conv1d(1, 1, 3), L(6, 3)), "mse", ValueError, r"layer 1 \(Conv1d\) is not supp"),
        (nn.Sequential(L(4, 6), nn.ReLU(), nn.Dropout(0.5), L(6, 3)), "mse", ValueError, r"layer 2 \(Dropout\)"),
        (nn.Sequential(L(4, 6), nn.BatchNorm1d(6), L(6, 3)), "mse", ValueError, r"layer 1 \(BatchNorm1d\)"),
        (nn.Sequential(L(4, 6), nn.ReLU(), L(6, 5), nn.Tanh(), L(5, 3)), "mse", ValueError,
         r"different activations \(0 -> layer 1 \(ReLU\), 2 -> layer 3 \(Tanh\)\)"),
        (nn.Sequential(L(4, 6), nn.ReLU(), L(6, 5), L(5, 3)), "mse", ValueError, r"2 -> none \(identity\)"),
        (nn.Sequential(L(4, 6), nn.GELU(approximate="tanh"), L(6, 3)), "mse", ValueError,
         r"layer 1 \(GELU\) has approximate='tanh'"),
        (nn.Sequential(L(4, 6), nn.Tanh(), L(6, 3, bias=False)), "mse", ValueError, r"layer 2 \(Linear\) has no bias"),
        (nn.Sequential(L(4, 6), nn.ELU(alpha=2.0), L(6, 3)), "mse", ValueError, r"alpha=2.0"),
        (nn.Sequential(L(4, 6), nn.Softplus(beta=2.0, threshold=40), L(6, 3)), "mse", ValueError, r"beta=2.0"),
        (nn.Sequential(L(4, 6), nn.LeakyReLU(0.1), L(6, 3), nn.LeakyReLU(0.2)), "mse", ValueError,
         r"LeakyReLU slopes differ"),
        (nn.Sequential(L(4, 6), nn.Tanh(), nn.Tanh(), L(6, 3)), "mse", ValueError, r"one activation per layer"),
        (nn.Sequential(nn.Tanh(), L(4, 3)), "mse", ValueError, r"before the first nn.Linear"),
        (nn.Sequential(L(4, 6), nn.Tanh(), L(5, 3)), "mse", ValueError, r"takes 5 inputs but layer 0"),
        (nn.Sequential(L(4, 6), nn.Softmax(dim=1), L(6, 3)), "mse", ValueError, r"softmax only as its output"),
        (nn.Sequential(nn.Dropout()), "mse", ValueError, r"no nn.Linear"),
        (nn.Sequential(L(4, 3), nn.Sigmoid()), nn.CrossEntropyLoss(), ValueError, r"ends in layer 1 \(Sigmoid\)"),
        (nn.Sequential(L(4, 3), nn.Softmax(dim=1)), nn.CrossEntropyLoss(), ValueError, r"softmax would be applied"),
        (nn.Sequential(L(4, 3), nn.Sigmoid()), nn.BCEWithLogitsLoss(), ValueError, r"sigmoid would be applied"),
        (nn.Sequential(L(4, 3), nn.Softmax(dim=1)), "mse", ValueError, r"loss='cross_entropy' only"),
        (nn.Sequential(L(4, 3), nn.Tanh()), "cross_entropy", ValueError, r"ends in layer 1 \(Tanh\)"),
        (L(4, 3), nn.CrossEntropyLoss(weight=torch.ones(3)), ValueError, r"class weights"),
        (L(4, 3), nn.CrossEntropyLoss(label_smoothing=0.1), ValueError, r"label_smoothing=0.1"),
        (L(4, 3), nn.CrossEntropyLoss(ignore_index=0), ValueError, r"ignore_index=0\) is a class"),
        (L(4, 3), nn.BCEWithLogitsLoss(pos_weight=torch.ones(3)), ValueError, r"pos_weight"),
        (L(4, 3), nn.MSELoss(reduction="none"), ValueError, r"reduction='none'"),
        (L(4, 3), nn.L1Loss(), ValueError, r"L1Loss is not supported"),
        (L(4, 3), "hinge", ValueError, r"loss='hinge'"),
        (nn.ModuleList([L(4, 3)]), "mse", TypeError, r"got ModuleList"),
    ]


@needs_torch
@pytest.mark.parametrize("case", range(28))
def test_conversion_errors_name_the_layer(case):
    model, loss, error, pattern = error_cases()[case]
    with pytest.raises(error, match=pattern):
        fastgrad.from_torch(model, loss)


@needs_torch
def test_error_cases_are_all_run():
    assert len(error_cases()) == 28


@needs_torch
def test_default_ignore_index_and_torch_grads_before_backward():
    net, _ = fastgrad.from_torch(nn.Linear(4, 3).double(), nn.CrossEntropyLoss())  # ignore_index=-100: no class
    assert net.output == "softmax"
    with pytest.raises(ValueError, match=r"layer 0 \(Linear\).weight.grad is None: call loss.backward\(\) first"):
        fastgrad.torch_grads(nn.Linear(4, 3))

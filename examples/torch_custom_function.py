"""Check a PyTorch model whose last layer is a custom ``torch.autograd.Function`` with a wrong backward.

The model is ``Linear(4, 8) -> Tanh -> MyLinear(8, 3)`` in float64 with ``nn.CrossEntropyLoss``;
``MyLinear`` computes ``x @ W.T + b`` through ``LinearFunction``, whose hand-written backward has a bug
when ``MyLinear.bug`` is set: it averages the weight gradient over the batch (``/ N``), as if the loss
were not already a mean. torch's ``loss.backward()`` trusts the backward it is given; fastgrad computes
the gradient of the same function numerically (:func:`fastgrad.from_torch` reads the architecture and
the weights, :func:`fastgrad.torch_grads` the ``.grad`` of each layer) and names the wrong tensor, W2,
with the factor. With the bug fixed, the check passes.

Run:  python examples/torch_custom_function.py   (exit status 0 = the bug fails in W2 only, the fix passes)
"""

import sys

import numpy as np

import fastgrad

try:
    import torch
    from torch import nn
except ImportError:
    print('this example needs PyTorch: pip install "fastgrad[torch]"')
    sys.exit(0)

N, D, H, K = 8, 4, 8, 3  # samples, inputs, hidden units, classes


class LinearFunction(torch.autograd.Function):
    """``y = x @ W.T + b`` with a hand-written backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, bug):
        """Save what the backward needs."""
        ctx.save_for_backward(x, weight)
        ctx.bug = bug
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, grad_out):
        """dL/dx, dL/dW, dL/db from dL/dy (and None for ``bug``)."""
        x, weight = ctx.saved_tensors
        grad_weight = grad_out.T @ x
        if ctx.bug:
            grad_weight = grad_weight / x.shape[0]  # the bug: grad_out already carries the mean's 1/N
        return grad_out @ weight, grad_weight, grad_out.sum(dim=0), None


class MyLinear(nn.Linear):
    """An ``nn.Linear`` whose forward goes through :class:`LinearFunction` (from_torch reads it as a Linear)."""

    bug = False

    def forward(self, x):
        """The affine map, through the custom Function."""
        return LinearFunction.apply(x, self.weight, self.bias, self.bug)


def torch_gradients(model, loss_fn, X, y):
    """The gradients torch computes for the loss at (X, y), as NumPy arrays ``[dW1, db1, dW2, db2]``."""
    model.zero_grad()
    loss_fn(model(torch.from_numpy(X)), torch.from_numpy(y)).backward()
    return fastgrad.torch_grads(model)


def main():
    """Check the backward with the bug, then without; return 0 if the first fails in W2 only and the second passes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, H), nn.Tanh(), MyLinear(H, K)).double()
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((N, D)), rng.integers(0, K, size=N)
    net, params = fastgrad.from_torch(model, loss_fn)  # MLP([4, 8, 3], "tanh", "softmax", "cross_entropy")
    print(net)
    outcomes = []
    for bug in (True, False):
        model[-1].bug = bug
        result = fastgrad.check(net, params, X, y, torch_gradients(model, loss_fn, X, y))
        failed = {t.name for t in result.tensors if not t.passed}
        outcomes.append(failed == {"W2"} if bug else result.passed)
        print(f"\n== LinearFunction.backward {'with the bug (grad_weight / N)' if bug else 'fixed'}:")
        print(result)
    return 0 if all(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Check the backward pass of single layers, one layer at a time (as in CS231n's assignments).

Each layer has ``<layer>_forward(x, w, b) -> (out, cache)`` (or ``(x)`` for
parameter-free layers) and ``<layer>_backward(dout, cache) -> (dx, dw, db)``.
A backward pass is the gradient of a scalar: for a fixed random ``dout``,

    f(x, w, b) = sum(forward(x, w, b) * dout),   df/dx, df/dw, df/db = backward(dout, cache),

so fastgrad checks dx, dw and db at once with params = dict(x=x, w=w, b=b).
The softmax loss is a scalar already: f(x) = -mean_n log softmax(x_n)[y_n].

Layers: affine, ReLU (inputs kept at |x| > 0.1, away from its kink), 2-D
convolution (naive loops, stride 1, padding 1), 2x2 max pooling (distinct
inputs: no ties), batch normalisation (training mode) and the softmax loss.
Each backward takes a flag that plants a typical bug in one of its outputs;
fastgrad must flag that tensor and pass the others.

Run:  python examples/layers.py   (exit status 0 = right backward passes pass, each bug fails in its tensor)
"""

import sys

import numpy as np

import fastgrad

BN_EPS = 1e-5  # batch normalisation's variance floor


def affine_forward(x, w, b):
    """Out = x w + b, each x[n] flattened: x (N, d_1, ..., d_k), w (D, M), b (M,)."""
    return x.reshape(len(x), -1) @ w + b, (x, w)


def affine_backward(dout, cache, averaged_db=False):
    """Dx, dw, db; ``averaged_db=True`` averages db over the batch instead of summing it (bug)."""
    x, w = cache
    db = dout.mean(axis=0) if averaged_db else dout.sum(axis=0)
    return (dout @ w.T).reshape(x.shape), x.reshape(len(x), -1).T @ dout, db


def relu_forward(x):
    """Out = max(x, 0)."""
    return np.maximum(x, 0.0), x


def relu_backward(dout, cache, no_mask=False):
    """Dx; ``no_mask=True`` passes dout through where x < 0 too (bug)."""
    return dout if no_mask else dout * (cache > 0)


def conv_forward(x, w, b):
    """Out[n, f] = sum_c x_padded[n, c] (cross-correlated with) w[f, c] + b[f]; stride 1, padding 1.

    x (N, C, H, W), w (F, C, HH, WW) with HH = WW = 3, b (F,); out (N, F, H, W).
    """
    x_pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    out = np.empty((N, F, H, W))
    for n in range(N):
        for f in range(F):
            for i in range(H):
                for j in range(W):
                    out[n, f, i, j] = np.sum(x_pad[n, :, i:i + HH, j:j + WW] * w[f]) + b[f]
    return out, (x_pad, w)


def conv_backward(dout, cache, transposed_dw=False):
    """Dx, dw, db; ``transposed_dw=True`` returns each 3x3 kernel's gradient transposed (bug)."""
    x_pad, w = cache
    N, F, H, W = dout.shape
    HH, WW = w.shape[2:]
    dx_pad, dw = np.zeros_like(x_pad), np.zeros_like(w)
    for n in range(N):
        for f in range(F):
            for i in range(H):
                for j in range(W):
                    dx_pad[n, :, i:i + HH, j:j + WW] += w[f] * dout[n, f, i, j]
                    dw[f] += x_pad[n, :, i:i + HH, j:j + WW] * dout[n, f, i, j]
    if transposed_dw:
        dw = dw.transpose(0, 1, 3, 2)
    return dx_pad[:, :, 1:-1, 1:-1], dw, dout.sum(axis=(0, 2, 3))


def max_pool_forward(x):
    """2x2 max pooling, stride 2: x (N, C, H, W) with even H, W; out (N, C, H/2, W/2)."""
    N, C, H, W = x.shape
    windows = x.reshape(N, C, H // 2, 2, W // 2, 2)
    return windows.max(axis=(3, 5)), x


def max_pool_backward(dout, cache, top_left=False):
    """Dx: dout goes to each window's maximum; ``top_left=True`` sends it to the window's first entry (bug)."""
    x = cache
    N, C, H, W = x.shape
    windows = x.reshape(N, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, H // 2, W // 2, 4)
    winner = np.zeros_like(windows)
    if top_left:
        winner[..., 0] = 1.0
    else:
        np.put_along_axis(winner, windows.argmax(axis=-1)[..., None], 1.0, axis=-1)
    dx = winner * dout[..., None]
    return dx.reshape(N, C, H // 2, W // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(x.shape)


def batchnorm_forward(x, gamma, beta):
    """Training-mode batch normalisation: out = gamma (x - mean) / sqrt(var + eps) + beta, per column of x (N, D)."""
    inv_std = 1.0 / np.sqrt(x.var(axis=0) + BN_EPS)
    x_hat = (x - x.mean(axis=0)) * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std)


def batchnorm_backward(dout, cache, no_mean_term=False):
    """Dx, dgamma, dbeta; ``no_mean_term=True`` leaves out the batch mean's share of dx (bug)."""
    x_hat, gamma, inv_std = cache
    N = len(dout)
    dx_hat = dout * gamma
    mean_term = 0.0 if no_mean_term else dx_hat.sum(axis=0)  # the mean depends on every row
    dx = inv_std / N * (N * dx_hat - mean_term - x_hat * np.sum(dx_hat * x_hat, axis=0))
    return dx, np.sum(dout * x_hat, axis=0), dout.sum(axis=0)


def softmax_loss(x, y, unscaled_dx=False):
    """Mean cross-entropy of scores x (N, C) for labels y (N,), and dx; ``unscaled_dx=True`` drops dx's 1/N (bug)."""
    shifted = x - x.max(axis=1, keepdims=True)  # exp cannot overflow
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = len(x)
    dx = np.exp(log_p)
    dx[np.arange(N), y] -= 1.0
    return -log_p[np.arange(N), y].mean(), dx if unscaled_dx else dx / N


def projected(forward):
    """F(params, dout) = sum(forward(**params)[0] * dout), whose gradient backward(dout, cache) returns."""
    def f(params, dout):
        return float(np.sum(forward(**params)[0] * dout))

    f.__name__ = f.__qualname__ = f"sum({forward.__name__} * dout)"  # the report's name for f
    return f


def softmax_f(params, y):
    """The softmax loss as a function of dict(x=scores)."""
    return softmax_loss(params["x"], y)[0]


def layer_check(forward, backward, params, rng, **bug):
    """(f, params, grads, args) checking backward(dout, cache, **bug) at params, with a random dout."""
    out, cache = forward(**params)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache, **bug)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return projected(forward), params, dict(zip(params, grads)), (dout,)


def distinct(rng, shape, gap=0.1):
    """Values that differ by at least ``gap``: max pooling has no ties within a step's reach."""
    return rng.permutation(np.prod(shape)).reshape(shape) * gap - 1.0


def away_from_zero(rng, shape, margin=0.1):
    """Values with |x| > margin: ReLU's kink at 0 is out of a step's reach."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(2 * margin, 1.0, size=shape)


def checks(seed=0):
    """The checks main() runs: (label, f, params, grads, args, names of the tensors that must fail)."""
    rng = np.random.default_rng(seed)
    affine = dict(x=rng.standard_normal((3, 2, 3)), w=rng.standard_normal((6, 4)), b=rng.standard_normal(4))
    relu = dict(x=away_from_zero(rng, (4, 5)))
    conv = dict(x=rng.standard_normal((2, 2, 5, 5)), w=rng.standard_normal((3, 2, 3, 3)), b=rng.standard_normal(3))
    pool = dict(x=distinct(rng, (2, 2, 4, 4)))
    bn = dict(x=rng.normal(2.0, 3.0, size=(4, 5)), gamma=rng.normal(1.0, 0.3, size=5), beta=rng.standard_normal(5))

    rows = []
    for label, forward, backward, params, bug, buggy_tensor in [
        ("affine", affine_forward, affine_backward, affine, "averaged_db", "b"),
        ("ReLU", relu_forward, relu_backward, relu, "no_mask", "x"),
        ("conv 3x3", conv_forward, conv_backward, conv, "transposed_dw", "w"),
        ("max pool 2x2", max_pool_forward, max_pool_backward, pool, "top_left", "x"),
        ("batchnorm", batchnorm_forward, batchnorm_backward, bn, "no_mean_term", "x"),
    ]:
        dout_seed = rng.integers(2**32)  # the right and the buggy backward see the same dout
        right = layer_check(forward, backward, params, np.random.default_rng(dout_seed))
        buggy = layer_check(forward, backward, params, np.random.default_rng(dout_seed), **{bug: True})
        rows += [(label, *right, set()), (f"{label}, bug {bug}", *buggy, {buggy_tensor})]
    scores, labels = rng.standard_normal((4, 5)), rng.integers(0, 5, size=4)
    for bug, label, must_fail in [(False, "softmax loss", set()), (True, "softmax loss, bug unscaled_dx", {"x"})]:
        dx = softmax_loss(scores, labels, unscaled_dx=bug)[1]
        rows.append((label, softmax_f, dict(x=scores), dict(x=dx), (labels,), must_fail))
    return rows


def run(label, f, params, grads, args, must_fail):
    """Check one case, print the report; True if a right gradient passed, or a wrong one failed in exactly must_fail."""
    result = fastgrad.check_function(f, params, grads, args=args)
    failed = {t.name for t in result.tensors if not t.passed}
    expected = failed == must_fail if must_fail else result.passed
    print(f"== {label}: must {'fail in ' + ', '.join(sorted(must_fail)) if must_fail else 'pass'}: "
          f"{'as expected' if expected else 'UNEXPECTED'}")
    print(result)
    return expected


def main():
    """Run every check; return 0 if each right gradient passes and each wrong one fails where expected, else 1."""
    outcomes = [run(*case) for case in checks()]  # all of them, each with its report
    return 0 if all(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

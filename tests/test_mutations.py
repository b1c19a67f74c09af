"""Mutation suite: hand-written backprops with the mistakes people really make.

Every case below is one bug planted in :func:`my_backprop`, a plain NumPy
backprop written the way a student writes it (its own activations and
derivatives, in the dtype of the inputs, float32 arithmetic included). For
each bug the check, with its default settings (the per-entry error-budget
verdict), must

* fail;
* blame exactly the tensors the bug touches, no more and no fewer;
* where a pattern applies, say so in that tensor's ``hint`` (or, for a
  misbehaving callable, in ``result.notes``).

``test_correct_backprop_passes`` shows that the same function without a bug
passes on every architecture used here, so each failure below is caused by
the bug and by nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import reference as ref
import reference_conventions as conv

import fastgrad

# --------------------------------------------------------------------------
# Architectures and their data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Arch:
    sizes: tuple[int, ...]
    hidden: str
    output: str
    loss: str
    N: int = 8
    dtype: type = np.float64
    seed: int = 0
    #: MLP conventions, as (name, value) pairs: reduction, scale, l2, leaky_slope, weight_layout
    options: tuple = ()


ARCHS = {
    # the tutorial's net: sigmoid everywhere, mse
    "sigmoid-mse": Arch((4, 5, 3), "sigmoid", "sigmoid", "mse", N=8, seed=1),
    # a regression net: sigmoid hidden layer, linear output
    "sigmoid-linear": Arch((4, 6, 2), "sigmoid", "identity", "half_sse", N=10, seed=2),
    "tanh-mse": Arch((4, 5, 3), "tanh", "sigmoid", "mse", N=8, seed=3),
    "relu-sse": Arch((4, 6, 3), "relu", "sigmoid", "sse", N=12, seed=4),
    "leaky-relu-regression": Arch((4, 6, 2), "leaky_relu", "identity", "half_sse", N=12, seed=5),
    # square layers, so that shape mistakes (transposes, a_l for a_{l-1}) go unnoticed by NumPy
    "square-sigmoid": Arch((5, 5, 5), "sigmoid", "sigmoid", "mse", N=8, seed=6),
    "tanh-softmax-ce": Arch((4, 6, 3), "tanh", "softmax", "cross_entropy", N=10, seed=7),
    "deep-tanh": Arch((3, 4, 4, 2), "tanh", "sigmoid", "mse", N=8, seed=8),
    "float32-tanh": Arch((4, 5, 3), "tanh", "sigmoid", "mse", N=32, dtype=np.float32, seed=9),
    # the conventions of issue 15: weights (out, in) with an L2 term, a framework's 1/2 mean over N x K, a slope
    "tanh-out-in-l2": Arch((4, 5, 3), "tanh", "sigmoid", "mse", N=8, seed=10,
                           options=(("l2", 0.01), ("weight_layout", "out_in"))),
    "half-mean-all-regression": Arch((4, 6, 3), "sigmoid", "identity", "mse", N=10, seed=11,
                                     options=(("reduction", "mean_all"), ("scale", 0.5))),
    "leaky-0.3-regression": Arch((4, 6, 2), "leaky_relu", "identity", "half_sse", N=12, seed=12,
                                 options=(("leaky_slope", 0.3),)),
}


@functools.lru_cache(maxsize=None)
def _case(arch_name: str):
    a = ARCHS[arch_name]
    rng = np.random.default_rng(1000 + a.seed)
    if a.hidden in ref.KINKED:
        # pre-activations at least 0.05 away from the kink: no step crosses it
        params, X, Y = ref.random_case(rng, list(a.sizes), a.hidden, a.output, a.loss, N=a.N, kink_margin=0.05)
    else:
        params = ref.random_params(rng, list(a.sizes))
        X = rng.standard_normal((a.N, a.sizes[0]))
        Y = ref.random_targets(rng, a.N, a.sizes[-1], a.output, a.loss)
    if a.loss == "cross_entropy":
        Y = np.eye(a.sizes[-1])[rng.integers(a.sizes[-1], size=a.N)]  # one-hot labels
    params = [p.astype(a.dtype) for p in params]
    X, Y = X.astype(a.dtype), Y.astype(a.dtype)
    for v in params + [X, Y]:
        v.setflags(write=False)  # nothing in this file may write into the shared case
    net = fastgrad.MLP(list(a.sizes), hidden=a.hidden, output=a.output, loss=a.loss, **dict(a.options))
    if dict(a.options).get("weight_layout") == "out_in":
        params = [np.ascontiguousarray(p.T) if p.ndim == 2 else p for p in params]
        for p in params:
            p.setflags(write=False)
    return net, params, X, Y


def case(arch_name: str):
    """``(net, params, X, Y)``: fresh writable copies of the cached case."""
    net, params, X, Y = _case(arch_name)
    return net, [p.copy() for p in params], X.copy(), Y.copy()


# --------------------------------------------------------------------------
# A hand-written backprop, with the bugs that can be switched on
# --------------------------------------------------------------------------


def act(name, z, slope=0.01):
    one = z.dtype.type(1)
    if name == "sigmoid":
        return one / (one + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, z.dtype.type(0))
    if name == "leaky_relu":
        return np.where(z > 0, z, z.dtype.type(slope) * z)
    if name == "identity":
        return z.copy()
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(name)


def act_prime(name, z, a, bug=None, slope=0.01):
    """Return d act / dz, from the pre-activation z and the activation a = act(z)."""
    one, zero = z.dtype.type(1), z.dtype.type(0)
    if name == "sigmoid":
        if bug == "sigmoid_prime_is_s":
            return a  # s instead of s (1 - s)
        return a * (one - a)
    if name == "tanh":
        if bug == "tanh_prime_of_z":
            return one - z**2  # derivative of the wrong variable: 1 - z^2 instead of 1 - a^2
        return one - a**2
    if name == "relu":
        if bug == "relu_prime_is_a":
            return a  # relu(z) instead of the step function
        return np.where(z > 0, one, zero)
    if name == "leaky_relu":
        if bug == "leaky_slope_forgotten":
            slope = zero
        elif bug == "leaky_default_slope":
            slope = 0.01  # the textbook's 0.01 where the net's slope is another
        return np.where(z > 0, one, z.dtype.type(slope))
    if name == "identity":
        return np.ones_like(z)
    raise ValueError(name)


def my_backprop(params, X, Y, *, hidden, output, loss, bug=None, reduction=None, scale=1.0, l2=0.0, leaky_slope=0.01):
    """Textbook backprop in the dtype of the inputs; ``bug`` plants one mistake.

    ``reduction``, ``scale``, ``l2`` and ``leaky_slope`` are the net's
    conventions, computed as a user writes them: the reduction's divisor on
    the output delta, ``2 l2 W`` added to each weight's gradient.
    """
    dtype = np.result_type(*params, X, Y)
    params = [np.asarray(p, dtype=dtype) for p in params]
    X, Y = np.asarray(X, dtype=dtype), np.asarray(Y, dtype=dtype)
    if bug == "centres_X_in_place":
        X -= X.mean(axis=0)  # "normalising the data" inside the backprop, in the caller's array
    L = len(params) // 2
    N = X.shape[0]
    two, n = dtype.type(2), dtype.type(N)

    # forward
    a = X
    zs, acts = [], [X]
    for layer in range(L):
        z = a @ params[2 * layer] + params[2 * layer + 1]
        a = act(output if layer == L - 1 else hidden, z, leaky_slope)
        zs.append(z)
        acts.append(a)

    # output delta = dE / dz_L; a reduction other than the loss's own divides the element terms' sum
    own = {"mse": "mean", "sse": "sum", "half_sse": "sum", "cross_entropy": "mean"}[loss]
    K = dtype.type(Y.shape[1])
    divisor = {"sum": dtype.type(1), "mean": n, "mean_all": n * K}[reduction or own]
    if bug == "mean_not_mean_all":
        divisor = n
    if loss == "cross_entropy":
        delta = (Y - a) / divisor if bug == "ce_y_minus_p" else (a - Y) / divisor
    else:
        factor = {"mse": two, "sse": two, "half_sse": dtype.type(1)}[loss] / divisor
        if bug == "sum_not_mean":
            factor = two  # gradient of the sum over the batch, not the mean
        elif bug == "mean_twice":
            factor = two / n / n
        elif bug == "dropped_2":
            factor = dtype.type(1) / n  # d(y - x)^2 / dx without its 2
        diff = (Y - a) if bug == "sign_flipped" else (a - Y)
        delta = factor * diff
        if bug != "output_prime_forgotten":
            delta = delta * act_prime(output, zs[-1], a, bug, leaky_slope)
    delta = delta * dtype.type(scale)

    grads = [np.zeros_like(p) for p in params]
    for layer in reversed(range(L)):
        W = params[2 * layer]
        a_prev = acts[layer + 1] if bug == "dW_uses_a_l" else acts[layer]
        if bug == "dW_transposed":
            grads[2 * layer] = delta.T @ a_prev
        elif bug == "loop_skips_last_unit":
            for j in range(W.shape[1] - 1):  # off by one
                grads[2 * layer][:, j] = a_prev.T @ delta[:, j]
                grads[2 * layer + 1][j] = delta[:, j].sum()
        elif bug == "loop_skips_first_input":
            for i in range(1, W.shape[0]):  # off by one
                grads[2 * layer][i, :] = a_prev[:, i] @ delta
        else:
            grads[2 * layer] = a_prev.T @ delta
        if bug == "weight_decay_in_gradient_only":
            grads[2 * layer] += dtype.type(1e-3) * W  # L2 term whose loss is not the one checked
        if l2 and bug != "l2_term_missing":
            grads[2 * layer] += dtype.type(2 * l2) * W
        if bug == "bias_first_sample":
            grads[2 * layer + 1] = delta[0].copy()
        elif bug == "bias_never_written" and layer == L - 1:
            pass  # db_L stays at the zeros it was initialised with
        elif bug != "loop_skips_last_unit":
            grads[2 * layer + 1] = delta.sum(axis=0)
        if layer > 0:
            back = delta @ W if bug == "delta_uses_W_not_WT" else delta @ W.T
            delta = back * act_prime(hidden, zs[layer - 1], acts[layer], bug, leaky_slope)
    return grads


def backprop_for(arch_name: str, bug: str | None = None) -> Callable:
    """``grads(params, X, Y)`` for one architecture, with ``bug`` planted."""
    a = ARCHS[arch_name]
    options = dict(a.options)
    layout = options.pop("weight_layout", "in_out")
    grads = functools.partial(my_backprop, hidden=a.hidden, output=a.output, loss=a.loss, bug=bug, **options)
    if layout == "in_out":
        return grads

    def out_in(params, X, Y):  # a user whose weights are (out, in): the same backprop on their transposes
        flip = [np.asarray(p).T for p in params]
        return [g.T.copy() if g.ndim == 2 else g for g in grads(flip, X, Y)]

    return out_in


# --------------------------------------------------------------------------
# The mutations
# --------------------------------------------------------------------------


def _scale_tensor(t: int, factor: float):
    def post(grads):
        out = [g.copy() for g in grads]
        out[t] = out[t] * out[t].dtype.type(factor)
        return out

    return post


def _worst_entry(grads, t):
    """Index of the largest entry of tensor t: a well-conditioned entry."""
    return tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(grads[t])), grads[t].shape))


def _nudge_largest_entry(t: int, relative: float):
    def post(grads):
        out = [g.copy() for g in grads]
        out[t][_worst_entry(grads, t)] *= 1 + relative
        return out

    return post


@dataclass(frozen=True)
class Mutation:
    id: str
    arch: str
    touches: frozenset[str]
    bug: str | None = None
    post: Callable | None = None  # a change made to the correct gradient instead of a planted bug
    hints: dict[str, str] = field(default_factory=dict)  # tensor -> text its hint must contain
    description: str = ""


def M(id, arch, touches, bug=None, post=None, hints=None, description=""):
    return Mutation(id, arch, frozenset(touches), bug, post, dict(hints or {}), description)


ALL = ("W1", "b1", "W2", "b2")
N_HINT = "analytic = 8 x numerical over the whole tensor (factor N = 8: sum over the batch instead of the mean?)"

MUTATIONS = [
    # --- the list ---
    M("tanh-prime-of-z", "tanh-mse", {"W1", "b1"}, bug="tanh_prime_of_z",
      description="tanh' = 1 - z**2 (pre-activation) instead of 1 - a**2 in the hidden layer"),
    M("tanh-prime-of-z-deep", "deep-tanh", {"W1", "b1", "W2", "b2"}, bug="tanh_prime_of_z",
      description="same, two hidden layers: the output layer's tensors stay right"),
    M("leaky-relu-slope-forgotten", "leaky-relu-regression", {"W1", "b1"}, bug="leaky_slope_forgotten",
      description="leaky_relu'(z) = 0 instead of 0.01 for z < 0"),
    M("sum-not-mean", "sigmoid-mse", ALL, bug="sum_not_mean", hints={k: N_HINT for k in ALL},
      description="mse gradient of the sum over the batch: every tensor N = 8 times too big"),
    M("one-entry-1e-6-W1", "sigmoid-mse", {"W1"}, post=_nudge_largest_entry(0, 1e-6),
      hints={"W1": "only entry"}, description="largest entry of dW1 off by a relative 1e-6"),
    M("one-entry-1e-6-b1", "sigmoid-mse", {"b1"}, post=_nudge_largest_entry(1, 1e-6),
      hints={"b1": "only entry"}, description="largest entry of db1 off by a relative 1e-6"),
    M("one-entry-1e-6-W2", "sigmoid-mse", {"W2"}, post=_nudge_largest_entry(2, 1e-6),
      hints={"W2": "only entry"}, description="largest entry of dW2 off by a relative 1e-6"),
    M("one-entry-1e-6-b2", "sigmoid-mse", {"b2"}, post=_nudge_largest_entry(3, 1e-6),
      hints={"b2": "only entry"}, description="largest entry of db2 off by a relative 1e-6"),
    # --- more ---
    M("mean-taken-twice", "sigmoid-mse", ALL, bug="mean_twice",
      hints={k: "analytic = 1/8 x numerical over the whole tensor (factor 1/N" for k in ALL},
      description="divided by N twice: every tensor 1/N times too small"),
    M("sign-flipped", "sigmoid-mse", ALL, bug="sign_flipped",
      hints={k: "analytic = -1 x numerical over the whole tensor (factor -1" for k in ALL},
      description="(y - a) instead of (a - y)"),
    M("squared-loss-2-dropped", "sigmoid-mse", ALL, bug="dropped_2",
      hints={k: "analytic = 0.5 x numerical over the whole tensor (a factor 1/2" for k in ALL},
      description="d(y - a)^2/da taken as (a - y)"),
    M("dW-transposed", "square-sigmoid", {"W1", "W2"}, bug="dW_transposed",
      hints={"W1": "W1 looks transposed", "W2": "W2 looks transposed"},
      description="dW = delta.T @ a_prev on square layers"),
    M("dW-uses-a-l", "square-sigmoid", {"W1", "W2"}, bug="dW_uses_a_l",
      description="dW_l = a_l.T @ delta_l instead of a_{l-1}.T @ delta_l"),
    M("delta-uses-W-not-WT", "square-sigmoid", {"W1", "b1"}, bug="delta_uses_W_not_WT",
      description="delta_{l-1} = (delta_l @ W_l) * f' instead of delta_l @ W_l.T"),
    M("bias-first-sample-only", "sigmoid-mse", {"b1", "b2"}, bug="bias_first_sample",
      description="db = delta[0] instead of the sum over the batch"),
    M("sigmoid-prime-is-s", "sigmoid-linear", {"W1", "b1"}, bug="sigmoid_prime_is_s",
      description="sigmoid' = s instead of s (1 - s), hidden layer of a regression net"),
    M("output-prime-forgotten", "sigmoid-mse", ALL, bug="output_prime_forgotten",
      description="the output sigmoid's derivative left out of delta_L"),
    M("relu-prime-is-a", "relu-sse", {"W1", "b1"}, bug="relu_prime_is_a",
      description="relu' computed as relu(z) instead of the step (z > 0)"),
    M("cross-entropy-y-minus-p", "tanh-softmax-ce", ALL, bug="ce_y_minus_p",
      hints={k: "analytic = -1 x numerical" for k in ALL},
      description="softmax + cross-entropy delta (y - p)/N instead of (p - y)/N"),
    M("loop-skips-last-unit", "sigmoid-mse", ALL, bug="loop_skips_last_unit",
      hints={"W1": "only column 4 of W1 is wrong", "W2": "only column 2 of W2 is wrong",
             "b1": "only entry (4,) of b1 is wrong", "b2": "only entry (2,) of b2 is wrong"},
      description="for j in range(H - 1): the last unit's column of dW and entry of db never written"),
    M("loop-skips-first-input", "sigmoid-mse", {"W1", "W2"}, bug="loop_skips_first_input",
      hints={"W1": "only row 0 of W1 is wrong", "W2": "only row 0 of W2 is wrong"},
      description="for i in range(1, fan_in): row 0 of every dW never written"),
    M("tensor-scaled-1e-4", "sigmoid-mse", {"W2"}, post=_scale_tensor(2, 1 + 1e-4),
      hints={"W2": "scaled by 1.0001"}, description="dW2 scaled by 1 + 1e-4"),
    M("bias-never-written", "sigmoid-mse", {"b2"}, bug="bias_never_written",
      hints={"b2": "all zeros"}, description="db2 left at np.zeros_like(b2)"),
    M("weight-decay-in-gradient-only", "tanh-mse", {"W1", "W2"}, bug="weight_decay_in_gradient_only",
      description="dW += 1e-3 * W, a regulariser the checked loss does not have"),
    # --- the conventions of issue 15 ---
    M("l2-term-missing", "tanh-out-in-l2", {"W1", "W2"}, bug="l2_term_missing",
      hints={"W1": "lacks the weight-decay term 0.02 x W1", "W2": "lacks the weight-decay term 0.02 x W2"},
      description="MLP(l2=0.01): the gradient leaves out 2 * 0.01 * W"),
    M("out-in-loop-skips-last-unit", "tanh-out-in-l2", ALL, bug="loop_skips_last_unit",
      hints={"W1": "only row 4 of W1 is wrong", "W2": "only row 2 of W2 is wrong",
             "b1": "only entry (4,) of b1 is wrong", "b2": "only entry (2,) of b2 is wrong"},
      description="weights (out, in): the last unit's row of dW (its column in (in, out)) never written"),
    M("mean-not-mean-all", "half-mean-all-regression", ALL, bug="mean_not_mean_all",
      hints={k: "factor K = 3 outputs" for k in ALL},
      description="0.5 * mean over all N x K elements differentiated as a mean over the N samples"),
    M("leaky-default-slope", "leaky-0.3-regression", {"W1", "b1"}, bug="leaky_default_slope",
      description="MLP(leaky_slope=0.3) but the backprop's leaky_relu' uses 0.01 below 0"),
]


def _grads(m: Mutation):
    net, params, X, Y = case(m.arch)
    grads = backprop_for(m.arch, m.bug)(params, X, Y)
    if m.post is not None:
        grads = m.post(grads)
    return net, params, X, Y, grads


def _failing(result):
    by_failures = {f.tensor for f in result.failures}
    by_summary = {t.name for t in result.tensors if not t.passed}
    assert by_failures == by_summary
    return by_failures


@pytest.mark.parametrize("engine", ["incremental", "unit"])
@pytest.mark.parametrize("m", MUTATIONS, ids=[m.id for m in MUTATIONS])
def test_mutation_is_caught_in_the_right_tensors(m, engine):
    # engine="unit" (numerical per-unit deltas, assembled through dz/dW = a)
    # must catch every mutation the per-parameter engine catches.
    net, params, X, Y, grads = _grads(m)
    result = fastgrad.check(net, params, X, Y, grads, engine=engine)
    assert result.verdict == "budget"
    assert not result.passed, f"{m.description}\n{result}"
    assert _failing(result) == m.touches, f"{m.description}\n{result}"
    assert result.inconclusive == [] and result.notes == []
    for name, text in m.hints.items():
        hint = result.tensor(name).hint
        assert hint is not None and text in hint, f"{name}: {hint!r}"


@pytest.mark.parametrize("t", range(4), ids=["W1", "b1", "W2", "b2"])
def test_one_entry_off_by_1e_6_is_reported_at_its_index(t):
    net, params, X, Y = case("sigmoid-mse")
    grads = backprop_for("sigmoid-mse")(params, X, Y)
    index = _worst_entry(grads, t)
    result = fastgrad.check(net, params, X, Y, _nudge_largest_entry(t, 1e-6)(grads))
    name = net.tensor_names[t]
    assert [(f.tensor, f.index) for f in result.failures] == [(name, index)]
    f = result.failures[0]
    assert f.abs_error > result.safety * f.budget and f.budget_ratio > result.safety
    assert result.tensor(name).hint == f"only entry {index!r} of {name} is wrong"


# --------------------------------------------------------------------------
# float32: a 1 % error is caught, the correct float32 backprop is not flagged
# --------------------------------------------------------------------------


@pytest.mark.parametrize("t", range(4), ids=["W1", "b1", "W2", "b2"])
def test_float32_gradient_off_by_one_percent_is_caught(t):
    net, params, X, Y = case("float32-tanh")
    assert all(v.dtype == np.float32 for v in params + [X, Y])
    grads = backprop_for("float32-tanh")(params, X, Y)
    assert all(g.dtype == np.float32 for g in grads)  # float32 arithmetic throughout
    assert fastgrad.check(net, params, X, Y, grads).passed
    result = fastgrad.check(net, params, X, Y, _scale_tensor(t, 1.01)(grads))
    assert not result.passed
    assert _failing(result) == {net.tensor_names[t]}, str(result)
    assert "scaled by 1.01" in result.tensor(net.tensor_names[t]).hint


# --------------------------------------------------------------------------
# the correct backprop passes everywhere
# --------------------------------------------------------------------------


@pytest.mark.parametrize("arch_name", list(ARCHS))
def test_correct_backprop_passes(arch_name):
    net, params, X, Y = case(arch_name)
    grads = backprop_for(arch_name)(params, X, Y)
    # the hand-written backprop without a bug is the textbook one (the conventions' twin, weights (in, out))
    a = ARCHS[arch_name]
    options = dict(a.options)
    out_in = options.pop("weight_layout", "in_out") == "out_in"
    twin = {"slope" if k == "leaky_slope" else k: v for k, v in options.items()}
    flip = [p.T if out_in and p.ndim == 2 else p for p in params]
    expected = conv.gradient(flip, X, Y, a.hidden, a.output, a.loss, **twin)
    expected = [e.T if out_in and e.ndim == 2 else e for e in expected]
    rtol = 1e-4 if a.dtype == np.float32 else 1e-12
    for g, e in zip(grads, expected):
        assert g.dtype == a.dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * float(np.max(np.abs(e))))
    for given in (grads, backprop_for(arch_name)):  # as arrays, and as a callable
        result = fastgrad.check(net, params, X, Y, given)
        assert result.verdict == "budget"
        assert result.passed, str(result)
        assert result.failures == [] and result.notes == [] and result.inconclusive == []
        assert all(t.hint is None for t in result.tensors)


def test_every_architecture_has_a_mutation():
    used = {m.arch for m in MUTATIONS} | {"float32-tanh"}
    assert used == set(ARCHS)


# --------------------------------------------------------------------------
# the budget verdict sees what a fixed tolerance does not
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "post",
    [_nudge_largest_entry(0, 1e-6), _scale_tensor(2, 1 + 1e-4)],
    ids=["one-entry-1e-6", "tensor-scaled-1e-4"],
)
def test_fixed_tolerance_misses_what_the_budget_catches(post):
    net, params, X, Y = case("sigmoid-mse")
    wrong = post(backprop_for("sigmoid-mse")(params, X, Y))
    by_budget = fastgrad.check(net, params, X, Y, wrong)
    assert by_budget.verdict == "budget" and not by_budget.passed
    by_tolerance = fastgrad.check(net, params, X, Y, wrong, rtol=1e-3, atol=1e-5)  # torch.gradcheck's defaults
    assert by_tolerance.verdict == "tolerance" and by_tolerance.passed


# --------------------------------------------------------------------------
# misbehaving callables
# --------------------------------------------------------------------------


def _snapshot(params, X, Y):
    return [p.copy() for p in params], X.copy(), Y.copy()


def _assert_untouched(before, params, X, Y):
    b_params, b_X, b_Y = before
    for p, q in zip(params, b_params):
        assert p.tobytes() == q.tobytes()
    assert X.tobytes() == b_X.tobytes() and Y.tobytes() == b_Y.tobytes()


def test_callable_that_shuffles_the_batch_is_nondeterministic():
    # the same gradient in exact arithmetic, summed in a different order on each call
    arch = "sigmoid-mse"
    net, params, X, Y = case(arch)
    rng = np.random.default_rng(0)
    correct = backprop_for(arch)

    def grads(params, X, Y):
        perm = rng.permutation(X.shape[0])
        return correct(params, X[perm], Y[perm])

    result = fastgrad.check(net, params, X, Y, grads)
    assert not result.passed
    assert result.failures == []  # each result is right to rounding...
    assert len(result.notes) == 1 and result.notes[0].startswith("grads callable is nondeterministic")  # ...twice


def test_callable_adding_noise_is_nondeterministic():
    arch = "sigmoid-mse"
    net, params, X, Y = case(arch)
    rng = np.random.default_rng(0)
    correct = backprop_for(arch)

    def grads(params, X, Y):
        g = correct(params, X, Y)
        g[2] = g[2] + 1e-9 * rng.standard_normal(g[2].shape)  # "jitter for stability"
        return g

    result = fastgrad.check(net, params, X, Y, grads)
    assert not result.passed
    assert _failing(result) == {"W2"}, str(result)
    assert len(result.notes) == 1
    note = result.notes[0]
    assert "nondeterministic" in note and "most in 'W2'" in note and "2 x" not in note


def test_accumulating_callable_that_never_zeroes_its_buffer():
    arch = "tanh-mse"
    net, params, X, Y = case(arch)
    correct = backprop_for(arch)
    buffer = []

    def grads(params, X, Y):
        g = correct(params, X, Y)
        if not buffer:
            buffer.extend(np.zeros_like(x) for x in g)
        for acc, x in zip(buffer, g):
            acc += x
        return buffer

    result = fastgrad.check(net, params, X, Y, grads)
    assert not result.passed
    assert result.failures == []  # the first call's result is right
    assert len(result.notes) == 1
    assert "nondeterministic" in result.notes[0] and "the second result is 2 x the first" in result.notes[0]


def test_callable_updating_the_weights_in_place():
    # backprop and SGD step fused into one function: W -= lr * dW after computing the gradient
    arch = "sigmoid-mse"
    net, params, X, Y = case(arch)
    before = _snapshot(params, X, Y)
    correct = backprop_for(arch)

    def grads(params, X, Y):
        g = correct(params, X, Y)
        params[0] -= 0.1 * g[0]
        return g

    result = fastgrad.check(net, params, X, Y, grads)
    _assert_untouched(before, params, X, Y)
    assert not result.passed
    assert result.failures == []  # the gradient was computed before the update
    assert len(result.notes) == 1
    assert result.notes[0].startswith("grads callable modified its argument params['W1'] in place")
    # and the same gradient given as arrays passes
    assert fastgrad.check(net, params, X, Y, correct(params, X, Y)).passed


def test_callable_centring_X_in_place():
    arch = "sigmoid-mse"
    net, params, X, Y = case(arch)
    before = _snapshot(params, X, Y)
    result = fastgrad.check(net, params, X, Y, backprop_for(arch, "centres_X_in_place"))
    _assert_untouched(before, params, X, Y)
    assert not result.passed
    assert any(note.startswith("grads callable modified its argument X in place") for note in result.notes)
    assert not any("params" in note or "argument Y" in note for note in result.notes)
    assert _failing(result)  # the gradient of the centred batch is not that of the batch


def test_a_mutating_callable_leaves_read_only_arrays_alone():
    # the caller's arrays are never handed to the callable: read-only inputs still work
    arch = "sigmoid-mse"
    net, params, X, Y = _case(arch)  # the shared, read-only arrays

    def grads(params, X, Y):
        g = backprop_for(arch)(params, X, Y)
        for p in params:
            p *= 0.5
        X += 1.0
        return g

    result = fastgrad.check(net, params, X, Y, grads)
    assert not result.passed and result.failures == []
    labels = ("params['W1']", "params['b1']", "params['W2']", "params['b2']", "argument X")
    for label in labels:
        assert any(label in note for note in result.notes), label


def test_mutations_cover_the_required_bugs():
    ids = {m.id for m in MUTATIONS}
    assert {"tanh-prime-of-z", "leaky-relu-slope-forgotten", "sum-not-mean", "one-entry-1e-6-W1"} <= ids
    assert {"l2-term-missing", "mean-not-mean-all", "leaky-default-slope"} <= ids
    assert len(MUTATIONS) >= 15

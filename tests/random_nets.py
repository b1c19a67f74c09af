"""Seeded random nets for the verdict property test (issue 12's acceptance), and its judge.

Every case is drawn from its own generator, ``numpy.random.default_rng((MASTER, index))``,
so ``make_case(index)`` rebuilds it exactly; ``run_case(index)`` runs it and returns
what went wrong (``python tests/random_nets.py 17 42`` prints cases 17 and 42).

A case is a correct float64 network (depth 1-4, widths 1-12, every hidden
activation and every output/loss pair, N 1-64, features scaled by 1, 1e2 or
1e4, weights x1 or x6), an engine/method combination, and a step (default, or
log-uniform in [1e-12, 1e-1]). The gradient checked is either fastgrad's own
backprop or the NumPy textbook one of ``reference.py`` (a real user's), both
cross-checked against each other first, so the test does not trust the code
under test blindly.

:func:`judge_correct` flags, on the correct gradient: a check that raises, a
false FAIL (``passed`` is False), a non-finite numerical value where the loss
at the perturbed points is finite. :func:`judge_perturbed` scales one entry by
``1 + 1e-6`` (float64, default eps, the same engine and method) and flags a
detectable change that is missed or blamed on another tensor, and an entry
whose budget cannot tell its value from zero that still passes silently
(neither failed nor listed as inconclusive, and ``passed`` is True).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# run as a script (``python tests/random_nets.py 17``): this checkout's fastgrad and reference.py
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
import reference as ref  # noqa: E402
import reference_conventions as conv  # noqa: E402

import fastgrad  # noqa: E402

MASTER = 20261212

HIDDEN = ref.ACTIVATIONS
OUTPUT_LOSS = ref.OUTPUT_LOSS_PAIRS
X_SCALES = (1.0, 1e2, 1e4)
W_SCALES = (1.0, 6.0)
#: (engine, method); "directional" chooses its own step and ignores the engine.
COMBOS = (
    ("incremental", "central"), ("incremental", "richardson"), ("incremental", "complex"),
    ("full", "central"), ("full", "richardson"), ("full", "complex"),
    ("unit", "central"), ("incremental", "directional"),
)
EPS_RANGE = (1e-12, 1e-1)
#: Whose correct gradient is checked: fastgrad's backprop; NumPy's textbook one (reference.py, BLAS
#: summation order, s(1 - s) derivatives); or NumPy's with a weight-decay term added and taken off
#: again, ``(g + lam W) - lam W`` with ``max|lam W| = max|g|`` per tensor, which leaves the
#: rounding residue of order u max|g| that real training code leaves (issue 12, item 4: exact
#: zeros that come back as 1e-17 "must never fail").
SOURCES = ("fastgrad", "reference", "decay_roundtrip")
#: Issue 15's conventions, drawn per case (about half the cases keep the defaults): a reduction, a scale, an L2
#: coefficient from negligible to dominant, a leaky slope.
REDUCTIONS = conv.REDUCTIONS
SCALES = (1.0, 0.5, 3.0)
L2S = (0.0, 1e-4, 0.05, 3.0)
SLOPES = (0.01, 0.3, 1e-3)
#: The perturbation of one entry.
BUMP = 1e-6
#: A change is "detectable" when it exceeds MARGIN x safety x the entry's budget
#: (between safety and MARGIN x safety budgets it may honestly go either way).
MARGIN = 2.0


@dataclass
class Case:
    index: int
    sizes: list[int]
    hidden: str
    output: str
    loss: str
    N: int
    x_scale: float
    w_scale: float
    engine: str
    method: str
    eps: float | None
    source: str  # whose backprop is checked: one of SOURCES
    params: list[np.ndarray] = field(repr=False)
    X: np.ndarray = field(repr=False)
    Y: np.ndarray = field(repr=False)
    bump_at: int = 0  # flat index (among the nonzero-gradient entries, modulo) of the entry to perturb
    #: reduction, scale, l2, leaky_slope (MLP's keyword arguments; the defaults for about half the cases)
    options: dict = field(default_factory=dict)

    @property
    def net(self) -> fastgrad.MLP:
        return fastgrad.MLP(self.sizes, hidden=self.hidden, output=self.output, loss=self.loss, **self.options)

    @property
    def twin_options(self) -> dict:
        """The options as ``reference_conventions`` takes them."""
        return {"slope" if k == "leaky_slope" else k: v for k, v in self.options.items()}

    def describe(self) -> str:
        eps = "default" if self.eps is None else f"{self.eps:.3g}"
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return (f"case {self.index}: MLP({self.sizes}, hidden={self.hidden!r}, output={self.output!r}, "
                f"loss={self.loss!r}{options}) N={self.N} X*{self.x_scale:g} W*{self.w_scale:g} "
                f"engine={self.engine} method={self.method} eps={eps} grads={self.source}")


def make_case(index: int) -> Case:
    """The case number ``index`` (deterministic)."""
    rng = np.random.default_rng((MASTER, index))
    depth = int(rng.integers(1, 5))
    sizes = [int(rng.integers(1, 13)) for _ in range(depth + 1)]
    hidden = HIDDEN[int(rng.integers(len(HIDDEN)))]
    output, loss = OUTPUT_LOSS[int(rng.integers(len(OUTPUT_LOSS)))]
    if loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    N = int(rng.choice([1, 1, 2, 3, 5, 8, 16, 33, 64]))
    x_scale = X_SCALES[int(rng.integers(len(X_SCALES)))]
    w_scale = W_SCALES[int(rng.integers(len(W_SCALES)))]
    # every combination equally often, cycling with the index (a thousand cases cover each ~125 times)
    engine, method = COMBOS[index % len(COMBOS)]
    eps = None if rng.random() < 0.25 else float(10.0 ** rng.uniform(math.log10(EPS_RANGE[0]),
                                                                       math.log10(EPS_RANGE[1])))
    source = SOURCES[int(rng.integers(len(SOURCES)))]
    params = ref.random_params(rng, sizes, scale=w_scale)
    X = rng.standard_normal((N, sizes[0])) * x_scale
    Y = ref.random_targets(rng, N, sizes[-1], output, loss)
    if loss == "cross_entropy" and rng.random() < 0.3:  # hard labels too
        Y = np.eye(sizes[-1])[rng.integers(sizes[-1], size=N)]
    bump_at = int(rng.integers(1 << 30))
    options: dict = {}
    if rng.random() < 0.5:  # drawn last: the cases' other fields are those of the first 1,000 before issue 15
        options = {"reduction": REDUCTIONS[int(rng.integers(len(REDUCTIONS)))],
                   "scale": SCALES[int(rng.integers(len(SCALES)))], "l2": L2S[int(rng.integers(len(L2S)))],
                   "leaky_slope": SLOPES[int(rng.integers(len(SLOPES)))]}
    return Case(index, sizes, hidden, output, loss, N, x_scale, w_scale, engine, method, eps, source,
                params, X, Y, bump_at, options)


def user_grads(case: Case, mine: list[np.ndarray], theirs: list[np.ndarray]) -> list[np.ndarray]:
    """The correct gradient checked in this case (see SOURCES)."""
    if case.source == "fastgrad":
        return mine
    if case.source == "reference":
        return theirs
    out = []
    for g, p in zip(theirs, case.params):
        top = float(np.max(np.abs(p)))
        lam = float(np.max(np.abs(g))) / top if top > 0 else 0.0
        out.append((g + lam * p) - lam * p)
    return out


def reference_grads(case: Case) -> list[np.ndarray]:
    with np.errstate(all="ignore"):
        if not case.options:
            return ref.backprop(case.params, case.X, case.Y, case.hidden, case.output, case.loss)
        return conv.gradient(case.params, case.X, case.Y, case.hidden, case.output, case.loss,
                             **case.twin_options)


def _derivative(name: str, z: np.ndarray) -> np.ndarray:
    """act'(z) in forms that keep their relative accuracy in saturation (unlike ``s (1 - s)``)."""
    if name == "sigmoid":
        return ref.sigmoid(z) * ref.sigmoid(-z)
    if name == "tanh":
        e = np.exp(-2.0 * np.abs(z))  # 1 - tanh^2 = 4 e / (1 + e)^2, e = exp(-2|z|)
        return 4.0 * e / (1.0 + e) ** 2
    if name == "softplus":
        return ref.sigmoid(z)
    return ref.activation_derivative(name, z)


def accurate_backprop(case: Case) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Backprop from ``reference.forward`` with saturation-accurate derivatives, and each entry's term size.

    The second list bounds the size of the terms each entry sums (every factor
    in absolute value, and 1 added to every sigmoid/tanh derivative: the
    textbook ``s (1 - s)`` and ``1 - t^2`` are off by a roundoff of 1 in
    saturation): rounding of any backprop is a small multiple of u times it.
    """
    def slack(name: str, deriv: np.ndarray) -> np.ndarray:
        return np.abs(deriv) + (1.0 if name in ("sigmoid", "tanh") else 0.0)

    slope = case.options.get("leaky_slope", ref.LEAKY_SLOPE)
    with np.errstate(all="ignore"), conv.leaky_slope(slope):
        zs, acts = ref.forward(case.params, case.X, case.hidden, case.output)
        L = len(zs)
        N = case.N
        if case.loss == "cross_entropy":
            p = acts[-1]
            delta = (p * case.Y.sum(axis=1, keepdims=True) - case.Y) / N
            size = (p * np.abs(case.Y).sum(axis=1, keepdims=True) + np.abs(case.Y)) / N
        elif case.loss == "bce":  # sigmoid(z) - y as (1 - y) s(z) - y s(-z): exact for 0/1 targets in saturation
            s, q = ref.sigmoid(zs[-1]), ref.sigmoid(-zs[-1])
            delta = ((1.0 - case.Y) * s - case.Y * q) / N
            size = (s + np.abs(case.Y)) / N
        else:
            d_out = ref.loss_derivative(case.loss, acts[-1], case.Y)
            size_out = ref.loss_derivative(case.loss, np.abs(acts[-1]) + np.abs(case.Y), 0.0 * case.Y)
            deriv = _derivative(case.output, zs[-1])
            delta, size = d_out * deriv, size_out * slack(case.output, deriv)
        grads, sizes = [None] * (2 * L), [None] * (2 * L)
        for layer in reversed(range(L)):
            a = acts[layer]
            grads[2 * layer], sizes[2 * layer] = a.T @ delta, np.abs(a).T @ size
            grads[2 * layer + 1], sizes[2 * layer + 1] = delta.sum(axis=0), size.sum(axis=0)
            if layer > 0:
                W = case.params[2 * layer]
                deriv = _derivative(case.hidden, zs[layer - 1])
                delta = (delta @ W.T) * deriv
                size = (size @ np.abs(W).T) * slack(case.hidden, deriv)
        if case.options:  # the data term's reduction and scale, and the L2 term, on the loss's own gradient
            K = case.sizes[-1]
            r = case.options["scale"] * conv.divisor(case.loss, None, N, K) / conv.divisor(
                case.loss, case.options["reduction"], N, K)
            c = case.options["l2"]
            for k in range(2 * L):
                decay = 2.0 * c * case.params[k] if k % 2 == 0 else 0.0
                grads[k] = r * grads[k] + decay
                sizes[k] = abs(r) * sizes[k] + np.abs(decay)
    return grads, sizes


#: Backprops agree within this many unit roundoffs of their terms' size (forward rounding of a pre-activation
#: moves a saturated derivative by its own relative amount times |z|; a real bug is off by O(1)).
BACKPROP_ROUNDOFFS = 1e8


def grads_disagree(case: Case, mine: list[np.ndarray]) -> str | None:
    """Where fastgrad's backprop and an independent NumPy one differ by more than rounding explains.

    The NumPy side is :func:`accurate_backprop`; an entry disagrees when the
    two differ by more than ``BACKPROP_ROUNDOFFS * u`` times the size of the
    terms it sums (a real backprop bug is off by O(1) of them).
    """
    theirs, sizes = accurate_backprop(case)
    for name, a, b, s in zip(case.net.tensor_names, mine, theirs, sizes):
        with np.errstate(all="ignore"):
            excess = np.abs(a - b) - BACKPROP_ROUNDOFFS * 2.0**-53 * s
        if np.any(~(excess <= 1e-300)):
            k = int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess)))
            return (f"backprop {name}.flat[{k}]: fastgrad {a.flat[k]:.17g} vs NumPy {b.flat[k]:.17g} "
                    f"(terms of size {s.flat[k]:.3g})")
    return None


@dataclass
class Problem:
    kind: str  # "error", "false_fail", "non_finite", "bad_backprop", "missed", "wrong_tensor", "silent_pass"
    case: Case
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.case.describe()}\n    {self.detail}"


@dataclass
class Tally:
    """Counts of what the perturbed checks found."""

    caught: int = 0
    caught_right_index: int = 0
    marginal: int = 0
    resolution_limited: int = 0  # budget too coarse for 1e-6, fine for the value itself: passing is honest
    inconclusive: int = 0  # not detectable and reported as such
    zero_gradient: int = 0

    def add(self, other: Tally) -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def _check(case: Case, grads: list[np.ndarray], eps: float | None) -> fastgrad.CheckResult:
    # directional draws random projections: seeded per case, so that a failure replays
    seed = case.index if case.method == "directional" else None
    return fastgrad.check(case.net, case.params, case.X, case.Y, grads, eps=eps, method=case.method,
                          engine=case.engine, seed=seed)


def _loss_at(case: Case, p: int, h: float) -> float:
    theta = np.concatenate([q.ravel() for q in case.params])
    theta[p] += h
    moved = case.net.unflatten(theta)
    with np.errstate(all="ignore"):
        return conv.loss(moved, case.X, case.Y, case.hidden, case.output, case.loss, **case.twin_options)


def _nominal_step(case: Case, eps: float | None, w: float) -> float:
    from fastgrad.checking import default_eps

    if eps is None:
        return default_eps(case.engine, case.method) * max(1.0, abs(w))
    return eps


def judge_correct(case: Case, grads: list[np.ndarray], eps: float | None) -> tuple[list[Problem], Any]:
    """Problems of the check of a correct gradient at ``eps``, and the result (None when it raised)."""
    problems = []
    at = "" if eps == case.eps else " (at the default eps)"
    try:
        result = _check(case, grads, eps)
    except Exception as exc:  # noqa: BLE001 - any exception on a finite-loss net is the finding
        return [Problem("error", case, f"check{at} raised {type(exc).__name__}: {exc}")], None
    checked = np.concatenate([c.ravel() for c in result.checked])
    numerical = np.concatenate([n.ravel() for n in result.numerical])
    bad = np.flatnonzero(checked & ~np.isfinite(numerical))
    if bad.size and case.method != "complex" and case.method != "directional":
        theta = np.concatenate([q.ravel() for q in case.params])
        finite = []
        for p in bad[:20]:
            h = _nominal_step(case, eps, float(theta[p]))
            reach = (1, 2) if case.method == "richardson" else (1,)
            if all(np.isfinite(_loss_at(case, int(p), s * k * h)) for k in reach for s in (1, -1)):
                finite.append(int(p))
        bad = np.array(finite, dtype=int)
    if bad.size:
        where = ", ".join(f"{case.net.locate(int(p))}" for p in bad[:3])
        problems.append(Problem("non_finite", case, f"{bad.size}{at} non-finite numerical values where the loss is "
                                f"finite (e.g. {where}); passed={result.passed}"))
    problems += _bad_budgets(case, result, f"correct gradient{at}")
    # an honest "inconclusive" (entries listed, none failed) is not a false FAIL, even when it keeps
    # passed from being True (issue 12, item 1: a mostly inconclusive check does not pass)
    honest = result.n_failed == 0 and bool(result.inconclusive) and not result.notes
    if not result.passed and not honest:
        worst = result.worst_failures(2)
        detail = "; ".join(f"{f.tensor}{f.index} a={f.analytic:.6g} n={f.numerical:.6g} budget={f.budget:.3g} "
                           f"x{f.budget_ratio:.3g}" for f in worst)
        if result.notes:
            detail += f"; notes: {result.notes}"
        problems.append(Problem("false_fail", case,
                                f"correct gradient FAILED{at} ({result.n_failed} entries): {detail}"))
    return problems, result


def _inconclusive_mask(case: Case, result: Any) -> np.ndarray:
    net = case.net
    mask = np.zeros(net.n_params, dtype=bool)
    for c in result.inconclusive:
        t = net.tensor_names.index(c.tensor)
        mask[int(net.offsets[t]) + int(np.ravel_multi_index(tuple(c.index), net.param_shapes[t]))] = True
    return mask


def _bad_budgets(case: Case, result: Any, what: str) -> list[Problem]:
    """Checked entries whose budget is NaN, infinite or not positive, and that are neither failed nor inconclusive.

    Their ratio is NaN, 0 or negative, so they pass whatever the gradient says.
    """
    if case.method == "directional":
        return []  # entries it did not localise carry an infinite budget by design
    checked = np.concatenate([c.ravel() for c in result.checked])
    budget = np.concatenate([b.ravel() for b in result.budget])
    failed = np.concatenate([f.ravel() for f in result.failed])
    bad = np.flatnonzero(checked & ~(np.isfinite(budget) & (budget > 0)) & ~failed & ~_inconclusive_mask(case, result))
    if not bad.size:
        return []
    where = ", ".join(f"{case.net.locate(int(p))} budget={budget[p]}" for p in bad[:3])
    return [Problem("bad_budget", case, f"{what}: {bad.size} entries with a non-finite or non-positive budget "
                    f"pass unjudged (e.g. {where}); passed={result.passed}")]


def _budget_of(case: Case, result: Any, t: int, idx: tuple[int, ...], grads: list[np.ndarray]) -> float:
    # method="directional" states each entry's budget too: for an entry it did not check one by one, what its
    # projection vouches for (an error of more than safety x that budget in that entry would have failed it)
    own = float(result.budget[t][idx])
    if case.method != "directional" or np.isfinite(own):
        return own
    central = fastgrad.check(case.net, case.params, case.X, case.Y, grads)
    return float(central.budget[t][idx])


def _negligible(result: Any, t: int) -> float:
    """The budget below which fastgrad.check judges an entry however small it is (NEGLIGIBLE_BUDGET x scale).

    An entry whose value is within its budget of 0 is inconclusive unless its
    budget is at most this: an exact zero confirmed to within 1e-6 of its
    tensor's largest gradient is a zero.
    """
    from fastgrad.budget import NEGLIGIBLE_BUDGET

    def scale(k: int) -> float:
        n = np.abs(np.asarray(result.numerical[k] if result.method != "directional" else result.analytic[k]))
        return float(n[np.isfinite(n)].max(initial=0.0))

    own = scale(t)  # a tensor whose gradient is all zero takes the whole gradient's scale
    return NEGLIGIBLE_BUDGET * (own if own > 0.0 else max(scale(k) for k in range(len(result.tensors))))


def judge_perturbed(case: Case, grads: list[np.ndarray], baseline: Any = None) -> tuple[list[Problem], Tally]:
    """One entry scaled by 1 + 1e-6 (float64, default eps): caught in its tensor, or honestly not.

    ``baseline``: the check of the correct gradient at the default eps;
    failures in tensors that already failed there belong to that false FAIL
    (counted there), and are not blamed on the bump.
    """
    tally = Tally()
    flat = np.concatenate([g.ravel() for g in grads])
    nonzero = np.flatnonzero(flat)
    if nonzero.size == 0:
        tally.zero_gradient += 1
        return [], tally
    p = int(nonzero[case.bump_at % nonzero.size])
    net = case.net
    name, idx = net.locate(p)
    t = net.tensor_names.index(name)
    wrong = [g.copy() for g in grads]
    wrong[t][idx] *= 1.0 + BUMP
    delta = abs(float(wrong[t][idx]) - float(grads[t][idx]))
    if delta == 0.0:
        tally.zero_gradient += 1
        return [], tally
    try:
        result = _check(case, wrong, None)
    except Exception as exc:  # noqa: BLE001
        return [Problem("error", case, f"perturbed check raised {type(exc).__name__}: {exc}")], tally
    safety = result.safety
    budget = _budget_of(case, result, t, idx, grads)
    g = abs(float(grads[t][idx]))
    if not (np.isfinite(budget) and budget > 0):
        budget = np.inf  # the entry cannot be judged: only a failure or an inconclusive flag is honest
    failed_here = bool(result.failed[t][idx])
    inconclusive_here = any(c.tensor == name and tuple(c.index) == tuple(idx) for c in result.inconclusive)
    where = f"{name}{idx} g={float(grads[t][idx]):.6g} change={delta:.3g} budget={budget:.3g}"
    problems = []
    if failed_here or not result.passed:
        # failures in a tensor where the correct gradient already failed are that false FAIL, not this bump
        spoiled = set() if baseline is None else {s.name for s in baseline.tensors if s.n_failed}
        worst = [f for f in result.worst_failures(None) if f.tensor not in spoiled][:1]
        if failed_here:
            tally.caught += 1
            if worst and worst[0].tensor == name and tuple(worst[0].index) == tuple(idx):
                tally.caught_right_index += 1
        if worst and worst[0].tensor != name:
            f = worst[0]
            problems.append(Problem("wrong_tensor", case, f"bumped {where}; the worst failure is {f.tensor}{f.index} "
                                    f"(a={f.analytic:.6g} n={f.numerical:.6g} x{f.budget_ratio:.3g} budget)"))
        elif not failed_here and delta > MARGIN * safety * budget and not inconclusive_here:
            problems.append(Problem("missed", case, f"bumped {where} ratio={float(result.budget_ratio[t][idx]):.3g}: "
                                    "the check failed elsewhere in the tensor but not at the entry"))
        return problems, tally
    # the check passed
    if inconclusive_here:
        tally.inconclusive += 1
    elif delta > MARGIN * safety * budget:
        ratio = float(result.budget_ratio[t][idx]) if case.method != "directional" else float("nan")
        problems.append(Problem("missed", case, f"bumped {where}: {delta / budget:.3g} budgets, "
                                f"yet passed (entry ratio {ratio:.3g}, numerical "
                                f"{float(result.numerical[t][idx]):.6g})"))
    elif delta > safety * budget:
        tally.marginal += 1
    elif budget <= _negligible(result, t):
        tally.resolution_limited += 1  # confirmed to within 1e-6 of its tensor's scale: judged (see fastgrad.check)
    elif g <= safety * budget:
        problems.append(Problem("silent_pass", case, f"bumped {where}: the budget cannot tell the value from 0 "
                                "(|g| <= safety x budget), yet the check passed and does not list it inconclusive"))
    else:
        tally.resolution_limited += 1
    return problems, tally


#: The gross error of :func:`judge_gross`: one whole tensor scaled by this.
GROSS = 1.5


def judge_gross(case: Case, grads: list[np.ndarray]) -> list[Problem]:
    """One whole tensor scaled by 1.5, at the case's own eps: failed in that tensor, or honestly not judged.

    Missed when some entry's change exceeds MARGIN x safety x its budget;
    passed silently when every entry's budget is too large to tell its value
    from 0 and none is flagged inconclusive.
    """
    net = case.net
    sizes = [int(np.count_nonzero(g)) for g in grads]
    if not any(sizes):
        return []
    candidates = [t for t, n in enumerate(sizes) if n]
    t = candidates[case.bump_at % len(candidates)]
    name = net.tensor_names[t]
    wrong = [g.copy() for g in grads]
    wrong[t] = wrong[t] * GROSS
    try:
        result = _check(case, wrong, case.eps)
    except Exception as exc:  # noqa: BLE001
        return [Problem("error", case, f"gross check raised {type(exc).__name__}: {exc}")]
    if np.any(result.failed[t]):
        return []
    if case.method == "directional":
        budget = np.where(np.isfinite(result.budget[t]), result.budget[t],
                          fastgrad.check(net, case.params, case.X, case.Y, grads).budget[t])
    else:
        budget = result.budget[t]
    budget = np.where(np.isfinite(budget) & (budget > 0), budget, np.inf)
    lo = int(net.offsets[t])
    inconclusive = _inconclusive_mask(case, result)[lo:lo + grads[t].size].reshape(grads[t].shape)
    change = np.abs(wrong[t] - grads[t])
    g = np.abs(grads[t])
    detectable = (change > MARGIN * result.safety * budget) & ~inconclusive
    others = [f"{f.tensor}{f.index}" for f in result.worst_failures(2)]
    at = "default" if case.eps is None else f"{case.eps:.3g}"
    if detectable.any():
        k = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.where(detectable, change / budget, 0.0))), g.shape))
        return [Problem("missed", case, f"{name} x{GROSS} at eps={at}: {int(detectable.sum())} entries "
                        f"changed by more than {MARGIN:g} x safety budgets, none failed (e.g. {name}{k} "
                        f"g={float(grads[t][k]):.6g} budget={float(budget[k]):.3g}); passed={result.passed} "
                        f"{others}")]
    unjudgeable = ((g <= result.safety * budget) | (g == 0)) & (budget > _negligible(result, t))
    if result.passed and unjudgeable.all() and not inconclusive.any():
        k = tuple(int(i) for i in np.unravel_index(int(np.argmax(g)), g.shape))
        return [Problem("silent_pass", case, f"{name} x{GROSS} at eps={at} passed: no budget in {name} can "
                        f"tell its value from 0 (e.g. {name}{k} g={float(grads[t][k]):.6g} "
                        f"budget={float(budget[k]):.3g}) and none is flagged inconclusive")]
    return []


def run_case(index: int, perturb: bool = True) -> tuple[list[Problem], Tally]:
    """Run case ``index``: the correct gradient, then (``perturb``) one entry off by 1e-6."""
    case = make_case(index)
    net = case.net
    mine = net.backprop(case.params, case.X, case.Y)
    theirs = reference_grads(case)
    problems = []
    why = grads_disagree(case, mine)
    if why is not None:
        problems.append(Problem("bad_backprop", case, why))
    grads = user_grads(case, mine, theirs)
    if not all(np.all(np.isfinite(g)) for g in grads):
        grads = mine
    found, result = judge_correct(case, grads, case.eps)
    problems += found
    tally = Tally()
    if not perturb:
        return problems, tally
    baseline = result
    if case.eps is not None and case.method != "directional":
        # the default step too: the perturbed checks below use it
        found, baseline = judge_correct(case, grads, None)
        problems += found
    found, tally = judge_perturbed(case, grads, baseline)
    problems += found
    problems += judge_gross(case, grads)
    return problems, tally


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        found, tally = run_case(int(arg))
        print(make_case(int(arg)).describe())
        print("  ", tally)
        for problem in found:
            print("  ", problem)

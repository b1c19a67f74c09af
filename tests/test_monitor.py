"""Sampled checks and fastgrad.Monitor: coverage, rotation, failure handling, untouched arrays."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import reference as ref

import fastgrad
from fastgrad.sampling import RotatingSampler, sample_mask

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def case():
    rng = np.random.default_rng(4)
    sizes = [7, 9, 6, 3]
    net = fastgrad.MLP(sizes, hidden="tanh", output="sigmoid", loss="mse")
    params = ref.random_params(rng, sizes)
    X = rng.standard_normal((10, 7))
    Y = rng.uniform(size=(10, 3))
    return net, params, X, Y, net.backprop(params, X, Y)


def test_sample_covers_every_tensor_its_corners_and_biases(case):
    net, params, X, Y, grads = case
    for sample in (1, 3, 0.1, 0.5):
        mask = sample_mask(net, sample, seed=0)
        masks = net.unflatten(mask)
        counts = fastgrad.sampling.per_tensor_counts(net, sample)
        for m, shape, count in zip(masks, net.param_shapes, counts):
            assert m.any()
            if len(shape) == 1:
                assert m.sum() == min(max(count, 2), m.size) and m[0] and m[-1]  # the count asked for, corners in
            else:
                assert m[0, 0] and m[0, -1] and m[-1, 0] and m[-1, -1]
    assert np.array_equal(sample_mask(net, 3, seed=5), sample_mask(net, 3, seed=5))
    assert not np.array_equal(sample_mask(net, 20, seed=5), sample_mask(net, 20, seed=6))
    for bad in (0, -1, 0.0, 1.5, "3", True):
        with pytest.raises((TypeError, ValueError), match="sample"):
            sample_mask(net, bad)


def test_sampled_check_reports_what_it_checked_and_still_fails_on_a_bug(case):
    net, params, X, Y, grads = case
    result = fastgrad.check(net, params, X, Y, grads, sample=4, seed=1)
    assert result.passed
    assert result.n_checked == int(sum(c.sum() for c in result.checked)) < net.n_params
    assert all(np.isnan(n[~c]).all() and np.isfinite(n[c]).all() for n, c in zip(result.numerical, result.checked))
    assert "sampled:" in str(result)
    wrong = [g.copy() for g in grads]
    wrong[3][2] *= 1.001  # b2[2]: biases are always in the sample
    result = fastgrad.check(net, params, X, Y, wrong, sample=4, seed=1)
    assert [(f.tensor, f.index) for f in result.failures] == [("b2", (2,))]
    num = fastgrad.numerical_gradient(net, params, X, Y, sample=0.2, seed=3)
    full = fastgrad.numerical_gradient(net, params, X, Y)
    for a, b in zip(num, full):
        seen = ~np.isnan(a)
        assert seen.any() and np.array_equal(a[seen], b[seen])  # bitwise the same entries


def test_rotation_visits_every_entry_within_the_promised_checks(case):
    net, *_ = case
    sampler = RotatingSampler(net, seed=0)
    promised = sampler.steps_to_cover(2)
    assert promised == max(int(np.ceil(h / 2)) for h in net.sizes[1:])
    seen = np.zeros(net.n_params, dtype=bool)
    for _ in range(promised):
        mask = sampler.next(2)
        assert all(m.any() for m in net.unflatten(mask))  # every tensor, every time
        seen |= mask
    assert seen.all()


def test_monitor_finds_a_wrong_bias_entry_within_the_rotation(case):
    net, params, X, Y, grads = case
    wrong = [g.copy() for g in grads]
    wrong[1][7] *= 1.001  # one entry of b1
    caught = []
    mon = fastgrad.Monitor(net, every=1, budget=None, seed=0, on_fail=caught.append, warm_up=False)
    promised = RotatingSampler(net, 0).steps_to_cover(1)
    for _ in range(promised):
        mon.step(params, X, Y, wrong)
        if caught:
            break
    assert caught, "the rotation should have reached b1[7]"
    assert [(f.tensor, f.index) for f in caught[0].failures] == [("b1", (7,))]
    assert len(mon.history) <= promised
    assert all(r.passed for r in mon.history[:-1]) and not mon.history[-1].passed


def test_monitor_is_cheap_off_checking_steps_and_touches_nothing(case):
    net, params, X, Y, grads = case
    copies = [a.copy() for a in (*params, X, Y, *grads)]
    mon = fastgrad.Monitor(net, every=5, budget=None, units=2, warm_up=False)
    results = [mon.step(params, X, Y, grads) for _ in range(12)]
    assert [r is not None for r in results] == [(i + 1) % 5 == 0 for i in range(12)]
    assert all(r.passed for r in results if r is not None)
    assert [r.step for r in mon.history] == [5, 10]
    for a, b in zip((*params, X, Y, *grads), copies):
        assert np.array_equal(a, b)
    assert 0.0 <= mon.overhead


def test_monitor_on_fail_modes(case):
    net, params, X, Y, grads = case
    wrong = [2 * g for g in grads]
    mon = fastgrad.Monitor(net, every=1, budget=None, warm_up=False)
    with pytest.warns(fastgrad.GradientCheckWarning, match="factor 2"):
        mon.step(params, X, Y, wrong)
    mon = fastgrad.Monitor(net, every=1, budget=None, on_fail="raise", warm_up=False)
    with pytest.raises(fastgrad.GradientCheckError, match="step 1"):
        mon.step(params, X, Y, wrong)
    mon = fastgrad.Monitor(net, every=1, budget=None, on_fail=None, warm_up=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not mon.step(params, X, Y, wrong).passed
    for bad in (dict(every=0), dict(budget=0.0), dict(budget=1.5), dict(on_fail="log"), dict(units=0)):
        with pytest.raises((TypeError, ValueError)):
            fastgrad.Monitor(net, **bad)


def test_training_example_stays_within_budget_and_reports_the_bug():
    spec = importlib.util.spec_from_file_location("train_with_monitor", EXAMPLES / "train_with_monitor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Untimed here (timing belongs to the example's own run and the benchmarks):
    # a check every 200 steps, one unit per layer, the bug from step 1000 on.
    module.STEPS, module.BUG_AT = 1600, 1000
    report = module.main(budget=None, every=200)
    assert report["false_alarms_before_bug"] == 0
    assert report["detected_at"] == 1000 and report["checking_steps_to_detect"] == 1
    assert report["failing_tensors"] == ["W2"]
    # 8 checks of one unit per layer, all different: 8 units of every layer, each with its fan_in + 1 entries
    sizes = module.SIZES
    covered = sum(min(8, fan_out) * (fan_in + 1) for fan_in, fan_out in zip(sizes, sizes[1:]))
    assert report["coverage"] == covered / fastgrad.MLP(sizes).n_params and report["budget_warnings"] == 0


def test_directional_finds_one_wrong_entry_in_a_million_with_few_forward_passes():
    rng = np.random.default_rng(2)
    sizes = [784, 1258, 10]  # 1,000,120 parameters
    net = fastgrad.MLP(sizes, hidden="sigmoid", output="sigmoid", loss="mse")
    params = net.init(3)
    X = rng.standard_normal((16, 784))
    Y = rng.uniform(size=(16, 10))
    grads = net.backprop(params, X, Y)
    assert net.n_params > 1_000_000
    correct = fastgrad.check(net, params, X, Y, grads, method="directional", seed=0)
    assert correct.passed, str(correct)
    assert correct.forward_passes == 4  # one projection per tensor
    wrong = [g.copy() for g in grads]
    index = (123, 456)
    wrong[0][index] *= 1 + 1e-3
    result = fastgrad.check(net, params, X, Y, wrong, method="directional", seed=0)
    assert not result.passed
    assert [(f.tensor, f.index) for f in result.failures] == [("W1", index)]
    assert result.forward_passes < 0.01 * 2 * net.n_params  # < 1% of a per-parameter check's passes
    assert result.forward_passes <= 4 + 2 * 21 + 4
    assert "complex forward passes" in str(result)


def test_directional_on_small_nets_passes_correct_and_catches_spread_errors(case):
    net, params, X, Y, grads = case
    assert fastgrad.check(net, params, X, Y, grads, method="directional").passed
    wrong = [g.copy() for g in grads]
    wrong[2] = wrong[2] * (1 + 1e-6)  # a whole tensor, thinly
    result = fastgrad.check(net, params, X, Y, wrong, method="directional")
    assert not result.passed
    assert {f.tensor for f in result.failures} <= {"W2"} and (result.failures or result.notes)
    with pytest.raises(ValueError, match="directional"):
        fastgrad.numerical_gradient(net, params, X, Y, method="directional")


def test_an_inconclusive_periodic_check_warns_and_never_raises():
    # a saturated net: every gradient is below rounding, the check cannot vouch for it; a training loop
    # with on_fail="raise" must not be stopped for that, but is told
    net = fastgrad.MLP([3, 1, 4, 3], hidden="identity", output="tanh", loss="half_sse")
    rng = np.random.default_rng(0)
    params = [p * 300.0 for p in ref.random_params(rng, [3, 1, 4, 3])]
    X, Y = rng.standard_normal((1, 3)) * 100.0, rng.uniform(size=(1, 3))
    grads = net.backprop(params, X, Y)
    assert fastgrad.check(net, params, X, Y, grads).status == "inconclusive"
    mon = fastgrad.Monitor(net, every=1, budget=None, on_fail="raise", warm_up=False)
    with pytest.warns(fastgrad.monitor.GradientCheckWarning, match="inconclusive"):
        result = mon.step(params, X, Y, grads)
    assert result.status == "inconclusive" and mon.history[-1].status == "inconclusive"


def test_a_failed_periodic_check_still_raises(case):
    net, params, X, Y, grads = case
    wrong = [g.copy() for g in grads]
    wrong[0] = wrong[0] * 1.01
    mon = fastgrad.Monitor(net, every=1, budget=None, on_fail="raise", warm_up=False)
    with pytest.raises(fastgrad.GradientCheckError):
        mon.step(params, X, Y, wrong)
    assert mon.history[-1].status == "failed"


# --- coverage, the budget's warning and min_every, on a clock the test drives -----------------------------------


@pytest.fixture
def timed(monitor_clock):
    """Return ``run(mon, steps, params, X, Y, grads)``: steps of 1 ms training, checks of 10 ms, on a fake clock."""
    clock = monitor_clock

    def run(mon, steps, params, X, Y, grads):
        results = []
        for _ in range(steps):
            clock.now += 0.001  # the training step
            results.append(mon.step(params, X, Y, grads))
        return results

    return run


def union_of_checked(net, results):
    """Exactly which entries the returned results checked: the union of their ``checked`` masks."""
    seen = np.zeros(net.n_params, dtype=bool)
    for r in results:
        if r is not None:
            seen |= np.concatenate([c.ravel() for c in r.checked])
    return seen


def budget_warnings(caught):
    return [w for w in caught if issubclass(w.category, fastgrad.monitor.MonitorBudgetWarning)]


def test_a_budget_that_pays_for_nothing_warns_once_with_the_numbers(case, timed):
    net, params, X, Y, grads = case
    # 1 ms steps, 10 ms checks, budget 0.1 %: the first check (at step 20) measures the cost, and the
    # 1 us saved per step would pay for the next one after ~10,000 steps
    mon = fastgrad.Monitor(net, every=20, budget=0.001, seed=0, warm_up=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = timed(mon, 400, params, X, Y, grads)
    budget_warned = budget_warnings(caught)
    assert len(budget_warned) == 1  # once, not at every step after step 220
    assert issubclass(budget_warned[0].category, RuntimeWarning)
    assert not issubclass(budget_warned[0].category, fastgrad.GradientCheckWarning)
    message = str(budget_warned[0].message)
    assert mon.notes == [message]
    for said in ("last 200 steps", "every=20", "1 check in 220 steps", "budget=0.001", "costs 10 ms",
                 "training step takes 1 ms", "about every 10,000 steps", "raise budget (about 0.5 for a check every "
                 "20 steps)", "min_every="):
        assert said in message, said
    assert budget_warned[0].filename == __file__  # pointed at the training loop's step() call
    assert mon.steps == 400 and mon.checks_done == 1 == len(mon.history) and mon.history[0].step == 20
    assert mon.steps_since_check == 380
    # one unit per layer of [7, 9, 6, 3]: 8 + 10 + 7 of 153 entries
    seen = union_of_checked(net, results)
    assert mon.entries_covered == int(seen.sum()) == 25
    assert mon.coverage == 25 / net.n_params == mon.history[0].coverage
    assert "1 check in 400 steps" in repr(mon) and "coverage 16.3% of 153 entries" in mon.summary()
    # a check dearer than `every` steps of training: no budget < 1 can do it, and the message says so
    mon = fastgrad.Monitor(net, every=5, budget=0.001, seed=0, warm_up=False)
    with pytest.warns(fastgrad.monitor.MonitorBudgetWarning, match=r"no budget < 1 pays for a check every 5 steps "
                      r"\(one costs 10 training steps\); make a check cheaper"):
        timed(mon, 60, params, X, Y, grads)
    assert len(mon.notes) == 1 and mon.checks_done == 1


def test_min_every_forces_checks_past_the_budget_and_coverage_reaches_every_entry(case, timed):
    net, params, X, Y, grads = case
    mon = fastgrad.Monitor(net, every=2, budget=0.001, seed=0, warm_up=False, min_every=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastgrad.monitor.MonitorBudgetWarning)  # checks happen: nothing to warn
        results = timed(mon, 50, params, X, Y, grads)
    steps = [r.step for r in mon.history]
    gaps = np.diff([0, *steps, 50])
    assert steps[0] == 2 and gaps.max() <= 5 and np.diff(steps).min() >= 2
    assert mon.checks_done == len(steps) == 10  # 2, then forced at 7, 12, ..., 47
    assert [r.forced for r in mon.history] == [False] + [True] * 9
    assert mon.notes == []
    # coverage is counted exactly: after each check, the union of every result's checked entries so far
    checked = [r for r in results if r is not None]
    for i, record in enumerate(mon.history):
        assert record.coverage == union_of_checked(net, checked[:i + 1]).sum() / net.n_params
    coverages = [r.coverage for r in mon.history]
    assert all(a < b for a, b in zip(coverages[:8], coverages[1:9]))  # new entries each time until covered
    promised = RotatingSampler(net, 0).steps_to_cover(1)  # 9: the 9 units of the widest layer
    assert mon.history[promised - 2].coverage < 1.0 == mon.history[promised - 1].coverage == mon.coverage
    assert mon.entries_covered == net.n_params


def test_no_budget_warning_when_the_budget_pays_for_checks(case, timed):
    net, params, X, Y, grads = case
    # budget 0.9 of 1 ms steps pays for a 10 ms check about every 11 steps (the first one's debt: 35)
    for options in (dict(budget=0.9), dict(budget=None), dict(budget=0.001, min_every=50)):
        mon = fastgrad.Monitor(net, every=5, seed=0, warm_up=False, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("error", fastgrad.monitor.MonitorBudgetWarning)
            timed(mon, 300, params, X, Y, grads)
        assert mon.notes == [] and mon.checks_done >= 6, options
        assert max(np.diff([0, *(r.step for r in mon.history)])) <= 50
    # budget=None: every 5th step, two units of every layer per check (steps_to_cover 5): all covered
    mon = fastgrad.Monitor(net, every=5, budget=None, units=2, warm_up=False)
    timed(mon, 25, params, X, Y, grads)
    assert mon.checks_done == 5 and mon.coverage == 1.0


def test_min_every_validation_and_old_names(case):
    net, *_ = case
    for bad, error in ((0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError), ("10", TypeError)):
        with pytest.raises(error, match="min_every"):
            fastgrad.Monitor(net, every=1, min_every=bad, warm_up=False)
    with pytest.raises(ValueError, match="min_every=50 is less than every=100"):
        fastgrad.Monitor(net, every=100, min_every=50, warm_up=False)
    mon = fastgrad.Monitor(net, every=10, min_every=np.int64(10), warm_up=False)
    assert mon.min_every == 10 and type(mon.min_every) is int
    assert (mon.steps, mon.checks_done, mon.coverage, mon.entries_covered, mon.notes) == (0, 0, 0.0, 0, [])
    assert mon.history == [] and mon.overhead == 0.0 and mon.steps_to_cover() >= 1  # the old names still work
    assert "min_every=10" in repr(mon) and "coverage 0.0%" in repr(mon)

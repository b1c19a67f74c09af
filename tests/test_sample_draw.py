"""sample_mask draws without building every other entry's index (issue 16: a 67 M-entry tensor took minutes).

The weights' draw must stay the one ``rng.choice(setdiff1d(arange(size), corners))``
made, so that a seed names the same weights as before. An MLP's biases are
drawn among the units the weights' draw took (a unit's series is the cost:
a sample of 1000 of a 10^8-parameter net computed every unit's series when
every bias was in every sample), and each bias is as likely as any other.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastgrad
from fastgrad.sampling import _corners, _skip_fixed, sample_mask


def _old_mask(net, sample, seed):
    counts = fastgrad.sampling.per_tensor_counts(net, sample)
    rng = np.random.default_rng(seed)
    mask = np.zeros(net.n_params, dtype=bool)
    for t, (shape, count) in enumerate(zip(net.flat_shapes, counts)):
        lo, size = int(net.offsets[t]), int(np.prod(shape))
        if len(shape) == 1:  # the biases: compared on their own below
            continue
        fixed = _corners(shape)
        rest = np.setdiff1d(np.arange(size), fixed)
        extra = max(0, count - fixed.size)
        chosen = rng.choice(rest, size=min(extra, rest.size), replace=False) if extra else np.empty(0, int)
        mask[lo + fixed] = True
        mask[lo + chosen] = True
    return mask


@pytest.mark.parametrize("sizes", [[3, 1, 2], [1, 1], [30, 200, 7], [2, 5000, 3]])
@pytest.mark.parametrize("sample", [1, 4, 50, 0.3, 1.0])
@pytest.mark.parametrize("seed", [0, 5])
def test_same_sample_as_the_setdiff_draw(sizes, sample, seed):
    net = fastgrad.MLP(sizes)
    weights = np.zeros(net.n_params, dtype=bool)
    for t in range(0, len(net.offsets) - 1, 2):
        weights[net.offsets[t]:net.offsets[t + 1]] = True
    assert np.array_equal(sample_mask(net, sample, seed) & weights, _old_mask(net, sample, seed) & weights)


def _layer_units(net, mask, layer):
    """Units of ``layer`` with a checked weight, and the checked biases."""
    fan_in, fan_out = net.sizes[layer], net.sizes[layer + 1]
    w = mask[net.offsets[2 * layer]:net.offsets[2 * layer + 1]].reshape(fan_in, fan_out)
    return set(np.flatnonzero(w.any(axis=0))), set(np.flatnonzero(mask[net.offsets[2 * layer + 1]:
                                                                         net.offsets[2 * layer + 2]]))


@pytest.mark.parametrize("sample", [1, 3, 40, 300, 0.01, 0.2])
def test_biases_are_drawn_among_the_units_the_weights_took(sample):
    net = fastgrad.MLP([50, 400, 30, 3])
    counts = fastgrad.sampling.per_tensor_counts(net, sample)
    for seed in range(4):
        mask = sample_mask(net, sample, seed)
        for layer in range(net.n_layers):
            units, biases = _layer_units(net, mask, layer)
            size = net.sizes[layer + 1]
            assert len(biases) == min(max(counts[2 * layer + 1], 2), size)  # the corners at least
            assert {0, size - 1} <= biases
            if len(units) >= len(biases):  # enough units drawn: no bias adds a unit's series
                assert biases <= units
            else:  # every drawn unit's bias, and a top-up
                assert units <= biases


def test_a_bias_draw_is_uniform_over_the_units():
    net = fastgrad.MLP([20, 60, 4])
    hits = np.zeros(60)
    draws = 3000
    for seed in range(draws):
        mask = sample_mask(net, 10, seed)
        hits += mask[net.offsets[1]:net.offsets[2]]
    inner = hits[1:-1] / draws  # the corners are always in; 8 of the other 58 units per draw
    assert hits[0] == hits[-1] == draws
    assert np.all(np.abs(inner - 8 / 58) < 0.035), inner  # 5 sigma of a binomial(3000, 0.138)
    assert inner.std() < 0.012


def test_a_sample_still_finds_a_wrong_bias():
    rng = np.random.default_rng(3)
    net = fastgrad.MLP([30, 200, 5])
    params = net.init(seed=1)
    X, Y = rng.standard_normal((8, 30)), rng.uniform(size=(8, 5))
    g = net.backprop(params, X, Y)
    assert fastgrad.check(net, params, X, Y, g, sample=20, seed=0).passed
    wrong = [x.copy() for x in g]
    wrong[1] *= 1.5  # every hidden bias off by half
    result = fastgrad.check(net, params, X, Y, wrong, sample=20, seed=0)
    assert not result.passed and result.tensor("b1").n_failed == result.tensor("b1").n_checked == 20


def test_skip_fixed_enumerates_the_other_entries():
    fixed = np.array([0, 3, 4, 9])
    assert _skip_fixed(np.arange(6), fixed).tolist() == [1, 2, 5, 6, 7, 8]

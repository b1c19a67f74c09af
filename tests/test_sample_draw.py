"""sample_mask draws without building every other entry's index (issue 16: a 67 M-entry tensor took minutes).

The draw must stay the one ``rng.choice(setdiff1d(arange(size), corners))``
made, so that a seed names the same sample as before.
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
        if len(shape) == 1:
            mask[lo:lo + size] = True
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
    assert np.array_equal(sample_mask(net, sample, seed), _old_mask(net, sample, seed))


def test_skip_fixed_enumerates_the_other_entries():
    fixed = np.array([0, 3, 4, 9])
    assert _skip_fixed(np.arange(6), fixed).tolist() == [1, 2, 5, 6, 7, 8]

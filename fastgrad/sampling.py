"""Which entries a sampled check looks at.

A sampled check covers every tensor: its corner entries and a seeded
random draw of the rest. An MLP's bias entries are drawn among the units
whose weights the draw already took: a unit's numerical derivatives share
one loss-change series, whose cost is the check's, so a bias costs nothing
more there (every bias in every sample paid every unit's series: 28 s of
a 10^8-parameter net's sample of 1000). :class:`RotatingSampler` walks a
fixed random permutation of every layer's units, so that successive
checks (a training loop's) visit every entry; :class:`EntryRotation` does
the same by single entries, for a model without units.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # types only: model and protocol import this module for their rotations
    from .model import MLP
    from .protocol import Model


def per_tensor_counts(net: Model, sample: Any) -> list[int]:
    """How many entries of each tensor ``sample`` asks for (at least 1 each).

    ``sample`` is a count per tensor (int >= 1) or a fraction of each tensor
    (float in (0, 1]).
    """
    sizes = [int(np.prod(s)) for s in net.param_shapes]
    if isinstance(sample, bool) or not isinstance(sample, numbers.Real):
        raise TypeError(f"sample must be a count (int >= 1) or a fraction (float in (0, 1]), got {sample!r}")
    if isinstance(sample, numbers.Integral):
        if sample < 1:
            raise ValueError(f"sample must be >= 1 entries per tensor, got {sample}")
        return [min(int(sample), n) for n in sizes]
    fraction = float(sample)
    if not (0.0 < fraction <= 1.0):
        raise ValueError(f"sample as a fraction must be in (0, 1], got {sample!r}")
    return [max(1, min(n, math.ceil(fraction * n))) for n in sizes]


def _corners(shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices of a tensor's corner entries (first and last along each axis)."""
    grids = np.meshgrid(*[np.unique([0, n - 1]) for n in shape], indexing="ij")
    return np.unique(np.ravel_multi_index([g.ravel() for g in grids], shape))


def _skip_fixed(positions: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Entries at ``positions`` of the sorted entries not in ``fixed`` (sorted, unique): ``rest[positions]``."""
    # rest[k] = k + the number of fixed entries at or below it; fixed[i] - i counts the rest below fixed[i]
    return positions + np.searchsorted(fixed - np.arange(fixed.size), positions, side="right")


def sample_mask(net: Model, sample: Any, seed: Any = None) -> np.ndarray:
    """Boolean mask (P,) of the entries a sampled check computes.

    Every tensor's corners are always in; the rest of each tensor's count
    is drawn at random (``seed``) from its other entries, except an MLP's
    biases (:func:`_bias_draw`): ``count`` of them, its corners and the
    units the weights' draw took first, topped up at random.
    """
    counts = per_tensor_counts(net, sample)
    rng = np.random.default_rng(seed)
    mask = np.zeros(net.n_params, dtype=bool)
    units_drawn = np.empty(0, dtype=np.int64)  # the previous weight tensor's drawn units, in the order drawn
    # shapes in the flat order the mask indexes (an MLP's weights are (fan_in, fan_out) there in any layout)
    for t, (shape, count) in enumerate(zip(getattr(net, "flat_shapes", net.param_shapes), counts)):
        lo = int(net.offsets[t])
        size = int(np.prod(shape))
        if len(shape) == 1 and getattr(net, "kind", "mlp") == "mlp":  # an MLP's bias
            mask[lo + _bias_draw(size, count, units_drawn, rng)] = True
            continue
        fixed = _corners(shape)
        extra = max(0, count - fixed.size)
        # the draw is from the other entries' positions (what rng.choice(rest) draws: the same entries for a
        # seed), mapped to entries without building rest = setdiff1d(arange(size), fixed), which costs
        # minutes on a 67 M-entry tensor (NumPy 2.4's unique of an arange) for a sample of a thousand
        n_rest = size - fixed.size
        picked = rng.choice(n_rest, size=min(extra, n_rest), replace=False) if extra else np.empty(0, int)
        chosen = _skip_fixed(picked, fixed)
        mask[lo + fixed] = True
        mask[lo + chosen] = True
        units_drawn = np.concatenate([fixed, chosen]) % shape[-1]
    return mask


def _bias_draw(size: int, count: int, units_drawn: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Which of a layer's ``size`` biases a sample of ``count`` takes: all, or its corners and drawn units.

    ``units_drawn``: the units of the layer's weight entries in the sample,
    corners first, then in the order drawn. The biases are the corners, then
    the first distinct units of that order, topped up by a uniform draw of
    the others. The weights' draw is uniform over the entries, so the units
    it takes first are a uniform draw of the units too: every bias has the
    same chance to be checked, at no extra series.
    """
    if count >= size:
        return np.arange(size)
    fixed = _corners((size,))
    _, first = np.unique(units_drawn, return_index=True)
    in_order = units_drawn[np.sort(first)]
    fresh = in_order[~np.isin(in_order, fixed)]
    chosen = np.concatenate([fixed, fresh[:max(0, count - fixed.size)]]).astype(np.int64)
    short = count - chosen.size
    if short > 0:  # fewer units drawn than biases asked for: a uniform draw of the others
        taken = np.sort(chosen)
        # from a child generator: the weights' draws stay those of a seed whatever the biases took
        top_up = rng.spawn(1)[0].choice(size - taken.size, size=short, replace=False)
        chosen = np.concatenate([chosen, _skip_fixed(top_up, taken)])
    return chosen


class RotatingSampler:
    """Successive stratified samples, by unit, that together visit every entry.

    The numerical derivatives' cost is per unit (each unit's loss-change
    series, shared by its ``fan_in + 1`` parameters), so a cheap check takes
    whole units: every call of :meth:`next` takes the next ``count`` units of
    every layer, in a fixed random order per layer (from ``seed``), wrapping
    around, and checks all their parameters (``W_l[:, j]`` and ``b_l[j]``).
    Every tensor is covered by every call; after :meth:`steps_to_cover`
    calls every entry has been checked.

    Parameters
    ----------
    net : MLP
    seed : int or None
    """

    def __init__(self, net: MLP, seed: Any = None) -> None:
        self.net = net
        rng = np.random.default_rng(seed)
        self._order = [rng.permutation(net.sizes[l + 1]) for l in range(net.n_layers)]
        self._cursor = [0] * net.n_layers

    def next(self, count: int) -> np.ndarray:
        """Mask (P,) of every parameter of the next ``count`` units of every layer."""
        mask = np.zeros(self.net.n_params, dtype=bool)
        for layer, order in enumerate(self._order):
            take = min(max(1, int(count)), order.size)
            start = self._cursor[layer]
            units = np.take(order, np.arange(start, start + take), mode="wrap")
            self._cursor[layer] = (start + take) % order.size
            fan_in, fan_out = self.net.sizes[layer], self.net.sizes[layer + 1]
            w_off, b_off = int(self.net.offsets[2 * layer]), int(self.net.offsets[2 * layer + 1])
            weights = w_off + np.arange(fan_in)[:, None] * fan_out + units[None, :]
            mask[weights.ravel()] = True
            mask[b_off + units] = True
        return mask

    def steps_to_cover(self, count: int) -> int:
        """Calls of :meth:`next` with ``count`` after which every entry has been visited."""
        return max(math.ceil(o.size / max(1, min(int(count), o.size))) for o in self._order)


class EntryRotation:
    """Successive samples of single entries that together visit every entry (a model without units).

    The default rotation of :class:`fastgrad.Monitor` for a model that does
    not group its parameters (:meth:`fastgrad.protocol.ModelBase.rotation`):
    every call of :meth:`next` takes the next ``count`` entries of a fixed
    random order (from ``seed``), wrapping around.

    Parameters
    ----------
    n_params : int
    seed : int or None
    """

    def __init__(self, n_params: int, seed: Any = None) -> None:
        self._order = np.random.default_rng(seed).permutation(int(n_params))
        self._cursor = 0

    def next(self, count: int) -> np.ndarray:
        """Mask (P,) of the next ``count`` entries."""
        mask = np.zeros(self._order.size, dtype=bool)
        take = min(max(1, int(count)), self._order.size)
        mask[np.take(self._order, np.arange(self._cursor, self._cursor + take), mode="wrap")] = True
        self._cursor = (self._cursor + take) % max(1, self._order.size)
        return mask

    def steps_to_cover(self, count: int) -> int:
        """Return how many calls of :meth:`next` with ``count`` visit every entry."""
        return math.ceil(self._order.size / max(1, min(int(count), self._order.size)))

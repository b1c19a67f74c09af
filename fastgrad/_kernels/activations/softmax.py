"""``softmax`` (output layer only, with cross-entropy): ``p_k = exp(z_k) / sum_j exp(z_j)``.

Not elementwise: it has a layer function (``layer_value``) and none of the
elementwise ones, so the elementwise dispatchers raise on its code. Its
derivative, changes and complex step are its loss's (cross-entropy is
computed from the logits: :mod:`fastgrad._kernels.losses.cross_entropy`).
"""

import math

from .._jit import jit
from . import _series

CODE = 6
NAME = "softmax"
#: Only allowed as the output activation (with ``loss="cross_entropy"``).
OUTPUT_ONLY = True
SLACK = 1.0
#: Curved: ``p - y`` inherits a relative error of up to 2 u s from logits rounded at scale s.
CURVED = True


@jit(inline=True)
def layer_value(z, a, start, stop):
    """Write ``softmax(z[start:stop])`` into ``a[start:stop]``, shifted by the largest logit (no overflow)."""
    zmax = z[start]
    for j in range(start + 1, stop):
        zmax = max(zmax, z[j])
    total = 0.0
    for j in range(start, stop):
        a[j] = math.exp(z[j] - zmax)
        total += a[j]
    for j in range(start, stop):
        a[j] /= total


@jit(inline=True)
def taylor(z, a):
    """Zeros: a softmax unit has no change of its own (its layer's change is its loss's), and nothing reads them.

    Defined so that the incremental engine's base state can fill every unit's coefficients in one loop.
    """
    return 0.0, 0.0, 0.0, 0.0


change_limit = _series.change_limit

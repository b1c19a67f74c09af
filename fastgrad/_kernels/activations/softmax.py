"""``softmax`` (output layer only, with cross-entropy): ``p_k = exp(z_k) / sum_j exp(z_j)``.

Not elementwise: it has a layer function (``layer_value``) and none of the
elementwise ones, so the elementwise dispatchers raise on its code. Its
derivative, changes and complex step are its loss's (cross-entropy is
computed from the logits: :mod:`fastgrad._kernels.loss`, :mod:`.deltas`).
"""

import math

from .._jit import jit
from ._series import SERIES_MAX

CODE = 6
NAME = "softmax"
#: Only allowed as the output activation (with ``loss="cross_entropy"``).
OUTPUT_ONLY = True
KINK = False
PIECEWISE = False
SERIES = False
SLACK = 1.0
#: Curved: ``p - y`` inherits a relative error of up to 2 u s from logits rounded at scale s.
CURVED = True


@jit()
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


@jit()
def taylor(z, a):
    """Zeros: a softmax unit has no change of its own (its layer's change is its loss's), and nothing reads them.

    Defined so that the incremental engine's base state can fill every unit's coefficients in one loop.
    """
    return 0.0, 0.0, 0.0, 0.0


@jit()
def change_limit(z, bound):
    """Largest ``|s|`` keeping a logit change ``|d| <= |s| bound`` in the range of its loss's (log-sum-exp) series."""
    return SERIES_MAX / bound

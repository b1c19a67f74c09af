"""Per-entry error budgets, budget ratios and relative errors, in one parallel pass.

:func:`fastgrad.check` judges every entry; on a large net the NumPy version
of these elementwise formulas (a dozen temporaries of P doubles) cost as much
as the numerical gradient itself, on one thread. Each entry is computed on
its own, with the same operations in the same order as the NumPy twins
(:func:`fastgrad.check.error_budget`, :func:`fastgrad.check.relative_error`),
so the result is the same bits for any thread count.
"""

import numpy as np
from numba import prange

from ._jit import jit


@jit(parallel=True)
def budget_into(absum, trunc, steps, c_own, c_cancel, c_user, tiny, out):
    """``out = trunc + (c_own absum [+ c_cancel / steps]) + c_user absum + tiny``.

    ``c_cancel`` = 0 leaves the cancellation term out (it is not added as 0,
    so that the sum is bitwise NumPy's ``trunc + own + user + tiny``).
    """
    for p in prange(out.shape[0]):
        own = c_own * absum[p]
        if c_cancel != 0.0:
            own = own + c_cancel / steps[p]
        user = c_user * absum[p]
        out[p] = trunc[p] + own + user + tiny


@jit(parallel=True)
def entry_errors(analytic, numerical, budget, checked, rtol, atol, ratio_out, rel_out):
    """Budget ratio ``|a - n| / budget`` and relative error of every entry.

    The relative error is ``|a - n| / max(|a|, |n|, atol / rtol)`` (0 where
    ``a == n``). A non-finite value on either side gives ``inf`` in both;
    an entry that is not ``checked`` gives 0 in both.
    """
    floor = atol / rtol
    for p in prange(analytic.shape[0]):
        if not checked[p]:
            ratio_out[p] = 0.0
            rel_out[p] = 0.0
            continue
        a = analytic[p]
        n = numerical[p]
        if not (np.isfinite(a) and np.isfinite(n)):
            ratio_out[p] = np.inf
            rel_out[p] = np.inf
            continue
        diff = abs(a - n)
        ratio_out[p] = diff / budget[p]
        if diff == 0.0:
            rel_out[p] = 0.0
        else:
            rel_out[p] = diff / max(max(abs(a), abs(n)), floor)

"""The one place kernels get their Numba options."""

import numba

from .._config import CACHE


def jit(parallel: bool = False):
    """Return ``numba.njit`` with fastgrad's options.

    ``fastmath`` is never enabled: the kernels take differences whose rounding
    is the quantity being measured. ``cache`` follows ``FASTGRAD_CACHE``.
    """
    return numba.njit(cache=CACHE, parallel=parallel, nogil=True, fastmath=False)

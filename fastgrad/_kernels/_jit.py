"""The one place kernels get their Numba options."""

import numba

from .._config import CACHE


def jit(parallel: bool = False, inline: bool = False):
    """Return ``numba.njit`` with fastgrad's options.

    ``fastmath`` is never enabled: the kernels take differences whose rounding
    is the quantity being measured. ``cache`` follows ``FASTGRAD_CACHE``.
    ``inline=True`` inlines the function into its callers at Numba IR level,
    which removes the per-call reference counting of array arguments: use it
    for helpers called once per parameter or per sample in a hot loop.
    """
    return numba.njit(
        cache=CACHE, parallel=parallel, nogil=True, fastmath=False, inline="always" if inline else "never"
    )

"""The one place kernels get their Numba options."""

from .._config import CACHE
from .._threading import guard
from ._cache import compile_kernel


def jit(parallel: bool = False, inline: bool = False):
    """Return a decorator that compiles a kernel with fastgrad's options.

    ``fastmath`` is never enabled: the kernels take differences whose rounding
    is the quantity being measured. ``cache`` follows ``FASTGRAD_CACHE``, keyed
    by the package's sources (:mod:`fastgrad._kernels._cache`).
    ``inline=True`` inlines the function into its callers at Numba IR level,
    which removes the per-call reference counting of array arguments: use it
    for helpers called once per parameter or per sample in a hot loop.

    Every other kernel is wrapped in a :class:`fastgrad._threading.Kernel`,
    through which each call from Python passes the fork and thread guards of
    the threading layer (compiled callers call the Numba dispatcher directly).
    """
    options = dict(cache=CACHE, parallel=parallel, nogil=True, fastmath=False,
                   inline="always" if inline else "never")

    def decorate(fn):
        dispatcher = compile_kernel(fn, options)
        return dispatcher if inline else guard(dispatcher, options)

    return decorate

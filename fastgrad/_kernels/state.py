"""The incremental engine's per-sample base state: one named structure instead of six arrays in every signature.

Built once per (parameters, batch) by :func:`fastgrad.engines.IncrementalState`
(:func:`fastgrad._kernels.incremental.base_state` fills ``C``, ``R`` and
``ysum``) and passed whole to every kernel of the incremental engine; Numba
passes a named tuple of arrays like the arrays themselves.
"""

from collections import namedtuple

#: ``Z``, ``A`` (N, U): the cached forward pass; ``C`` (N_COEF, N, U): every
#: unit's activation Taylor coefficients; ``R`` (N, K): output residuals
#: ``y - x``; ``Y`` (N, K): targets; ``ysum`` (N,): ``sum_k y_nk``.
BaseState = namedtuple("BaseState", ["Z", "A", "C", "R", "Y", "ysum"])

"""Large steps: the tutorial's ``eps = 1e-4`` and unnormalised features, beside the default step.

The series behind the incremental engine holds while each sample's step
``h |a_ni|`` is within about 1e-4 of a unit's scale; beyond it an entry is
*pending*. Pending samples used to be computed one by one, by the direct
path (two or three evaluations of the sample's later layers per entry and
sample): with ``eps = 1e-4`` every entry of 784-128-10 was pending, 1.3 s
against 2 ms at the default step. They are now fitted once per (sample,
unit) (:mod:`fastgrad._kernels.pending_fit`) and the direct path is left for
what a fit cannot vouch for.

Group ``large steps 784-128-10 N=64``: the full check at the default step,
at ``eps = 1e-4``, at ``eps = 1e-3``, with features x 1e4 at the default
step, the ``eps = 1e-4`` check by the direct path alone (the fits turned
off: the code before them), and one NumPy forward pass (the FPE unit).
Every check is asserted against backprop, and the fitted check against the
direct one.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastgrad
from fastgrad._kernels import pending_fit
from fastgrad.bench import blas_threads, forward_flops, make_case, numpy_loss, peer_threads

GROUP = "large steps 784-128-10 N=64"
SIZES = [784, 128, 10]
#: (label, eps, feature scale); eps None is the default step.
CASES = {
    "default": ("default step (1e-8 max(1, abs w))", None, 1.0),
    "eps1e-4": ("eps = 1e-4 (the tutorial's)", 1e-4, 1.0),
    "eps1e-3": ("eps = 1e-3", 1e-3, 1.0),
    "x1e4": ("features x 1e4, default step", None, 1e4),
}
#: Against backprop, relative to the largest derivative: the central difference's own h^2 error at eps = 1e-3.
BACKPROP_RTOL = 1e-5


def _case(scale):
    net, params, X, Y = make_case(SIZES, 64)
    return net, params, X * scale, Y


def _flat(grads):
    return np.concatenate([g.ravel() for g in grads])


def _info(benchmark, net, X, **extra):
    benchmark.extra_info.update(n_params=net.n_params, n_samples=X.shape[0], sizes="-".join(map(str, net.sizes)),
                                **extra)


@pytest.mark.parametrize("case", list(CASES))
def test_large_steps(benchmark, case, max_threads):
    label, eps, scale = CASES[case]
    net, params, X, Y = _case(scale)
    benchmark.group = GROUP
    kwargs = dict(eps=eps, threads=max_threads)
    fastgrad.numerical_gradient(net, params, X[:2], Y[:2], **kwargs)  # compile
    values = _flat(benchmark(fastgrad.numerical_gradient, net, params, X, Y, **kwargs))
    analytic = _flat(net.backprop(params, X, Y))
    err = float(np.max(np.abs(values - analytic)) / np.max(np.abs(analytic)))
    assert err <= BACKPROP_RTOL, err
    _info(benchmark, net, X, label=f"fastgrad, {label}", role="fastgrad", threads=max_threads, eps=eps,
          feature_scale=scale, max_rel_error_vs_backprop=err)


def test_large_steps_direct_path_only(benchmark, max_threads, monkeypatch):
    """``eps = 1e-4`` with the fits turned off: every pending sample by the direct path, as before them."""
    net, params, X, Y = _case(1.0)
    benchmark.group = GROUP
    kwargs = dict(eps=1e-4, threads=max_threads)
    fitted = _flat(fastgrad.numerical_gradient(net, params, X, Y, **kwargs))
    monkeypatch.setattr(pending_fit, "FIT_MIN_ENTRIES", 10**9)
    values = _flat(benchmark.pedantic(fastgrad.numerical_gradient, args=(net, params, X, Y), kwargs=kwargs,
                                      rounds=3, iterations=1))
    scale = float(np.max(np.abs(values)))
    diff = float(np.max(np.abs(fitted - values)))
    assert diff <= 1e-13 * scale, diff  # the fits change nothing but rounding
    _info(benchmark, net, X, label="fastgrad, eps = 1e-4, direct path only (before the fits)", role="fastgrad",
          threads=max_threads, eps=1e-4, feature_scale=1.0, max_abs_diff_fitted_vs_direct=diff)


def test_large_steps_numpy_forward(benchmark):
    net, params, X, Y = _case(1.0)
    benchmark.group = GROUP
    with peer_threads(1):
        benchmark(numpy_loss, params, X, Y)
        n_blas = blas_threads()
    _info(benchmark, net, X, label="one NumPy forward pass (the unit)", role="forward", threads=1,
          flops=forward_flops(net, X.shape[0]), blas_threads=n_blas)

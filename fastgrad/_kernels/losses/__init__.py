"""Losses: one module each, and the dispatchers the kernels call with a loss code.

Each loss is one module of this package (``squared_error.py`` for ``mse``,
``sse`` and ``half_sse``; ``cross_entropy.py``) that owns every kernel about
it: ``CODE`` and ``NAME`` (or ``CODES`` and ``NAMES``);
``REDUCTION`` (its own reduction, "mean" over samples or "sum", or a
dict of them by name), ``READS_ACTIVATIONS`` (the per-sample term reads the output activations, not
only the logits), ``OUTPUT`` (the output activation it requires, or
None) and ``QUADRATIC`` (quadratic in the output activations); and the
kernels ``scale(n_samples)`` (sum of sample terms -> ``E``),
``sample_value`` and ``sample_magnitude`` (one sample's term and the size of
the numbers it is computed from), ``output_deltas`` (backprop's ``dE/dz`` at
the output), ``output_change`` and ``unit_change`` (the incremental
engine's cancellation-free loss changes), ``abs_term``, ``output_series``,
``output_series_lanes`` and ``unit_series`` (its series), and ``complex_sample_value`` and
``split_sample_value`` (the complex step), and ``abs_terms`` (``abs_term`` in
NumPy over a batch). ``scale`` and ``output_deltas`` take the code, which
tells a module's losses apart.

Adding a loss is adding its module (and its NumPy twin in
``tests/reference.py``); the dispatchers below get a branch for it, and an
unknown code raises (:mod:`fastgrad._kernels._registry`).
"""

from .._registry import Dispatchers, codes_of, discover, names_of

MODULES = discover(__name__, __path__)

#: Loss name -> code.
CODES = {name: code for m in MODULES for name, code in zip(names_of(m), codes_of(m))}
#: Loss name -> the output activation it requires (None: any that is not output-only).
OUTPUTS = {name: m.OUTPUT for m in MODULES for name in names_of(m)}
#: Loss name -> its own reduction ("mean" over samples or "sum"): a module's ``REDUCTION``, one or per name.
OWN_REDUCTION = {name: (m.REDUCTION[name] if isinstance(m.REDUCTION, dict) else m.REDUCTION)
                 for m in MODULES for name in names_of(m)}
#: Codes of the losses that are quadratic in the output activations.
QUADRATIC_CODES = frozenset(code for m in MODULES if m.QUADRATIC for code in codes_of(m))
#: Code -> the NumPy form of ``abs_term`` over all samples and outputs: ``abs_terms(Y, A_out, ysum, deriv)``.
ABS_TERMS = {code: m.abs_terms for m in MODULES for code in codes_of(m)}

_dispatchers = Dispatchers("losses", MODULES, __file__)
_make = _dispatchers.make

#: Factor turning the sum of the samples' terms into ``E``.
loss_scale = _make("loss_scale(code, n_samples)", lambda m: "return {m}.scale(code, n_samples)")
#: Whether the per-sample term reads the output activations (else only the logits).
reads_activations = _make("reads_activations(code)", lambda m: f"return {bool(m.READS_ACTIVATIONS)}")
#: One sample's unscaled term, from its rows ``z``, ``a`` and targets ``y`` (output units ``start..+count``).
sample_term = _make("sample_term(code, z, a, y, start, count)",
                    lambda m: "return {m}.sample_value(z, a, y, start, count)")
#: The size of the numbers that term is computed from (for its rounding).
sample_magnitude = _make("sample_magnitude(code, z, a, y, start, count)",
                         lambda m: "return {m}.sample_magnitude(z, a, y, start, count)")
#: Writes ``dE/dz`` of one sample's output units into ``d_out``.
output_deltas = _make("output_deltas(code, z, a, y, start, count, act, n_samples, d_out)",
                      lambda m: "{m}.output_deltas(code, z, a, y, start, count, act, n_samples, d_out)\nreturn")
#: Unscaled ``E_n(+) - E_n(-)`` from the output pre-activation changes, and a kink flag.
output_change = _make("output_change(code, base, n, off, K, act, dz_p, dz_m, x_p, x_m)",
                      lambda m: "return {m}.output_change(base, n, off, K, act, dz_p, dz_m, x_p, x_m)")
#: Unscaled ``E_n(+) - E_n(-)`` when output unit ``j`` moves by ``+-t``, and a kink flag.
unit_change = _make("unit_change(code, base, n, off, K, j, t, act)",
                    lambda m: "return {m}.unit_change(base, n, off, K, j, t, act)")
#: Output unit ``k``'s factor in the absolute-value chain of the series' rounding.
abs_term = _make("abs_term(code, base, n, off, k, act)",
                 lambda m: "return {m}.abs_term(base, n, off, k, act)")
#: ``(e1, e3, e1_abs, lim)`` of sample ``n`` from the output pre-activations' change series.
output_series = _make("output_series(code, base, n, off, K, act, s1, s2, s3, s_abs)",
                      lambda m: "return {m}.output_series(base, n, off, K, act, s1, s2, s3, s_abs)")
#: :func:`output_series` of one sample for many units of the last hidden layer at once, one lane each
#: (:mod:`fastgrad._kernels.series_lanes`).
output_series_lanes = _make(
    "output_series_lanes(code, base, n, off, K, act, WT, g, e1, e3, e1_abs, lim, scratch)",
    lambda m: "{m}.output_series_lanes(base, n, off, K, act, WT, g, e1, e3, e1_abs, lim, scratch)\nreturn")
#: The same when only output unit ``j`` moves.
unit_series = _make("unit_series(code, base, n, off, K, j, act, s1, s2, s3, sa)",
                    lambda m: "return {m}.unit_series(base, n, off, K, j, act, s1, s2, s3, sa)")
#: One sample's unscaled term from complex128 rows.
complex_sample_term = _make("complex_sample_term(code, z, a, y, start, count)",
                            lambda m: "return {m}.complex_sample_value(z, a, y, start, count)")
#: The same from split real/imaginary buffers, as ``(re, im)``.
split_sample_term = _make("split_sample_term(code, Zr, Zi, Ar, Ai, n, y, start, count)",
                          lambda m: "return {m}.split_sample_value(Zr, Zi, Ar, Ai, n, y, start, count)")

#: The generated source of the dispatchers above.
SOURCE = _dispatchers.source

__all__ = ["ABS_TERMS", "CODES", "MODULES", "OUTPUTS",
           "OWN_REDUCTION", "QUADRATIC_CODES", "SOURCE", "abs_term", "complex_sample_term",
           "loss_scale",
           "output_change", "output_deltas", "output_series", "output_series_lanes", "reads_activations",
           "sample_magnitude",
           "sample_term", "split_sample_term", "unit_change", "unit_series"]

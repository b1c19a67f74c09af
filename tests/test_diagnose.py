"""diagnose_tensor: recognisable patterns of a wrong gradient, and no false hints."""

from __future__ import annotations

import numpy as np
import pytest

import fastgrad
from fastgrad.diagnose import diagnose_tensor

RTOL, ATOL = 1e-5, 1e-8
WHOLE = "x numerical over the whole tensor"


def failed(analytic, numerical, atol=ATOL):
    return fastgrad.relative_error(analytic, numerical, RTOL, atol) > RTOL


def diagnose(name, analytic, numerical, n_samples=8, atol=ATOL):
    return diagnose_tensor(name, analytic, numerical, failed(analytic, numerical, atol), n_samples)


@pytest.fixture
def numerical(rng):
    """Return a 4 x 5 reference gradient with entries of mixed sizes and signs."""
    return rng.standard_normal((4, 5)) * rng.uniform(0.1, 1.0, (4, 5))


# --------------------------------------------------------------------------
# nothing to say
# --------------------------------------------------------------------------


def test_correct_tensor_gives_none(numerical):
    assert diagnose_tensor("W1", numerical.copy(), numerical, np.zeros((4, 5), bool), 8) is None


def test_empty_mask_gives_none_even_when_the_values_differ(numerical):
    assert diagnose_tensor("W1", 2 * numerical, numerical, np.zeros((4, 5), bool), 8) is None


@pytest.mark.parametrize("rows_cols", [[(0, 0), (1, 2), (3, 4), (2, 1)], [(0, 1), (0, 3), (2, 1), (3, 3)]])
def test_noise_on_several_rows_and_columns_gives_none(numerical, rng, rows_cols):
    analytic = numerical.copy()
    for i, j in rows_cols:
        analytic[i, j] += rng.uniform(0.01, 0.1) * rng.choice([-1, 1])
    assert diagnose("W1", analytic, numerical) is None


def test_noise_everywhere_gives_no_factor(numerical, rng):
    analytic = 2 * numerical + 0.01 * rng.standard_normal(numerical.shape)
    hint = diagnose("W1", analytic, numerical)
    assert hint is None


def test_non_finite_values_give_none(numerical):
    analytic = 2 * numerical
    analytic[0, 0] = np.nan
    mask = np.ones_like(numerical, dtype=bool)
    assert diagnose_tensor("W1", analytic, numerical, mask, 8) is None


# --------------------------------------------------------------------------
# all zeros
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape, name", [((4, 5), "W1"), ((5,), "b1")])
def test_all_zeros(rng, shape, name):
    numerical = rng.standard_normal(shape)
    hint = diagnose(name, np.zeros(shape), numerical)
    assert hint == f"all zeros: the gradient of {name} was never written?"


# --------------------------------------------------------------------------
# constant factors
# --------------------------------------------------------------------------


def test_factor_2(numerical):
    assert diagnose("W1", 2 * numerical, numerical) == (
        f"analytic = 2 {WHOLE} (a factor 2: a missing 1/2, or a squared loss's 2 counted twice?)"
    )


def test_factor_one_half(numerical):
    assert diagnose("W1", 0.5 * numerical, numerical) == (
        f"analytic = 0.5 {WHOLE} (a factor 1/2: a squared loss's 2 dropped, or a 1/2 applied twice?)"
    )


def test_factor_n(numerical):
    assert diagnose("W1", 64 * numerical, numerical, n_samples=64) == (
        f"analytic = 64 {WHOLE} (factor N = 64: sum over the batch instead of the mean?)"
    )


def test_factor_one_over_n(numerical):
    assert diagnose("W1", numerical / 64, numerical, n_samples=64) == (
        f"analytic = 1/64 {WHOLE} (factor 1/N: divided by the batch size twice, or where the loss sums over the batch?)"
    )


def test_factor_minus_one(numerical):
    assert diagnose("b2", -numerical, numerical) == (
        f"analytic = -1 {WHOLE} (factor -1: sign flipped, e.g. (x - y) vs (y - x))"
    )


def test_factor_minus_two_names_both(numerical):
    assert diagnose("W1", -2 * numerical, numerical) == (
        f"analytic = -2 {WHOLE} (sign flipped, e.g. (x - y) vs (y - x), and a factor 2: a missing 1/2, "
        "or a squared loss's 2 counted twice?)"
    )


def test_factor_2_with_batch_of_2_names_both_causes(numerical):
    hint = diagnose("W1", 2 * numerical, numerical, n_samples=2)
    assert hint.startswith(f"analytic = 2 {WHOLE} (a factor 2: ")
    assert "factor N = 2: sum over the batch instead of the mean?" in hint


@pytest.mark.parametrize("factor, shown", [(1.0001, "1.0001"), (3.14159265, "3.142"), (0.9999, "0.9999"),
                                           (1.00002, "1.00002"), (-7.5, "-7.5")])
def test_generic_factor(numerical, factor, shown):
    assert diagnose("W1", factor * numerical, numerical) == f"scaled by {shown}: analytic = {shown} {WHOLE}"


def test_factor_survives_numerical_noise_and_float32_rounding(numerical, rng):
    reference = numerical * (1 + 1e-10 * rng.standard_normal(numerical.shape))
    analytic = (2 * numerical).astype(np.float32).astype(np.float64)
    assert diagnose("W1", analytic, reference).startswith(f"analytic = 2 {WHOLE}")


@pytest.mark.parametrize("scale", [1e-12, 1e-200, 1e200])
def test_factor_on_tiny_and_huge_gradients(numerical, scale):
    reference = numerical * scale
    hint = diagnose("W1", 2 * reference, reference, atol=0.0)
    assert hint.startswith(f"analytic = 2 {WHOLE}")


def test_factor_ignores_zero_entries_of_the_reference(numerical):
    numerical[1, :] = 0.0
    assert diagnose("W1", 2 * numerical, numerical).startswith(f"analytic = 2 {WHOLE}")


def test_factor_must_hold_on_every_entry(numerical):
    # 2 x on every failing entry but one passing entry left alone is no constant factor
    analytic = 2 * numerical
    analytic[0, 0] = numerical[0, 0]
    assert "x numerical over the whole tensor" not in (diagnose("W1", analytic, numerical) or "")


def test_1d_tensor_factor(rng):
    numerical = rng.standard_normal(7)
    assert diagnose("b1", -numerical, numerical, n_samples=3).startswith(f"analytic = -1 {WHOLE}")


# --------------------------------------------------------------------------
# transposed
# --------------------------------------------------------------------------


def test_square_transposed(rng):
    numerical = rng.standard_normal((5, 5))
    assert diagnose("W2", numerical.T.copy(), numerical) == "W2 looks transposed"


def test_non_square_in_transposed_order(rng):
    numerical = rng.standard_normal((4, 6))
    analytic = numerical.T.ravel().reshape(4, 6)
    assert diagnose("W1", analytic, numerical) == "W1's entries are in transposed order"


def test_single_column_tensor_is_not_called_transposed(rng):
    numerical = rng.standard_normal((5, 1))
    analytic = numerical.copy()
    analytic[2, 0] *= 1.5
    assert diagnose("W2", analytic, numerical) == "only entry (2, 0) of W2 is wrong"


# --------------------------------------------------------------------------
# confined failures
# --------------------------------------------------------------------------


def test_only_one_column(numerical):
    analytic = numerical.copy()
    analytic[:, 3] *= 1.01
    assert diagnose("W1", analytic, numerical) == "only column 3 of W1 is wrong"


def test_only_part_of_one_column(numerical):
    analytic = numerical.copy()
    analytic[1:3, 0] += 0.5
    assert diagnose("W1", analytic, numerical) == "only column 0 of W1 is wrong"


def test_column_scaled_by_2_is_a_column_not_a_factor(numerical):
    analytic = numerical.copy()
    analytic[:, 1] *= 2
    assert diagnose("W1", analytic, numerical) == "only column 1 of W1 is wrong"


def test_only_one_row(numerical):
    analytic = numerical.copy()
    analytic[0, :] += 0.1
    assert diagnose("W2", analytic, numerical) == "only row 0 of W2 is wrong"


def test_single_entry_of_a_matrix(numerical):
    analytic = numerical.copy()
    analytic[3, 1] *= 1.001
    assert diagnose("W1", analytic, numerical) == "only entry (3, 1) of W1 is wrong"


def test_single_entry_of_a_vector(rng):
    numerical = rng.standard_normal(5)
    analytic = numerical.copy()
    analytic[2] += 0.01
    assert diagnose("b1", analytic, numerical) == "only entry (2,) of b1 is wrong"


def test_several_entries_of_a_vector_give_none(rng):
    numerical = rng.standard_normal(5)
    analytic = numerical.copy()
    analytic[[1, 3]] += 0.01
    assert diagnose("b1", analytic, numerical) is None


def test_small_entries_failing_by_atol_are_not_called_a_factor(numerical):
    # the large entries match; two tiny ones are off: a single-row hint, no "scaled by 1"
    numerical[2, 1] = numerical[2, 3] = 1e-7
    analytic = numerical.copy()
    analytic[2, 1] = analytic[2, 3] = 3e-7
    assert diagnose("W1", analytic, numerical) == "only row 2 of W1 is wrong"


# --------------------------------------------------------------------------
# the arguments
# --------------------------------------------------------------------------


def test_arguments_are_not_modified(numerical):
    analytic = 2 * numerical
    mask = failed(analytic, numerical)
    before = [x.copy() for x in (analytic, numerical, mask)]
    diagnose_tensor("W1", analytic, numerical, mask, 8)
    for b, x in zip(before, (analytic, numerical, mask)):
        assert b.tobytes() == x.tobytes()


def test_bad_arguments_raise_naming_them(numerical):
    mask = np.ones((4, 5), bool)
    with pytest.raises(ValueError, match=r"^numerical has shape \(5, 4\), expected \(4, 5\)"):
        diagnose_tensor("W1", numerical, numerical.T, mask, 8)
    with pytest.raises(ValueError, match=r"^failed_mask has shape \(20,\), expected \(4, 5\)"):
        diagnose_tensor("W1", numerical, numerical, mask.ravel(), 8)
    with pytest.raises(ValueError, match=r"^n_samples must be >= 1, got 0"):
        diagnose_tensor("W1", numerical, numerical, mask, 0)
    with pytest.raises(TypeError, match=r"^n_samples must be an int, got float"):
        diagnose_tensor("W1", numerical, numerical, mask, 8.0)

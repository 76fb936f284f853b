"""R12: tokens = ceil(people * passes_per_person * (1 + buffer) / 10), exactly."""

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import estimate_tokens


def test_r12_seed_example_103_people_4_passes_20_percent_buffer_is_50_tokens():
    estimate = estimate_tokens(103, 4)

    assert estimate.tokens == 50
    assert estimate.exact == "49.44"  # 103 * 4 * 1.2 / 10 (SPEC's "49.4" drops a digit)
    assert estimate.buffer_percent == "20"


@pytest.mark.parametrize(
    ("people", "passes", "buffer", "tokens"),
    [
        (10, 10, 10, 11),  # float: 10*10*1.1/10 = 11.000000000000002 → 12
        (100, 1, 10, 11),
        (20, 10, 10, 22),
        (75, 12, 10, 99),
        (100, 13, 10, 143),
    ],
)
def test_r12_exact_arithmetic_where_binary_floats_would_round_up_wrongly(
    people, passes, buffer, tokens
):
    assert math.ceil(people * passes * (1 + buffer / 100) / 10) == tokens + 1  # the trap
    assert estimate_tokens(people, passes, buffer).tokens == tokens


def test_r12_exact_result_that_is_a_whole_number_is_not_rounded_up():
    estimate = estimate_tokens(50, 2, 0)

    assert estimate.tokens == 10
    assert estimate.exact == "10"


def test_r12_any_fraction_above_a_whole_number_rounds_up():
    assert estimate_tokens(1, 1, 0).tokens == 1  # 0.1 → 1
    assert estimate_tokens(101, 1, 0).tokens == 11  # 10.1 → 11


def test_r12_decimal_passes_and_buffer_are_taken_exactly():
    estimate = estimate_tokens(30, "2.5", "12.5")

    assert estimate.exact == "8.4375"
    assert estimate.tokens == 9
    assert estimate_tokens(30, Decimal("2.5"), Decimal("12.5")) == estimate


def test_r12_default_buffer_is_20_percent():
    assert estimate_tokens(103, 4) == estimate_tokens(103, 4, 20)


def test_r12_zero_people_need_zero_tokens():
    assert estimate_tokens(0, 4).tokens == 0


def test_r12_more_than_10_passes_per_person_recommends_a_user_access_pass():
    many = estimate_tokens(5, 11)
    assert many.recommend_user_access is True
    assert many.user_access_tokens == 5


def test_r12_exactly_10_passes_per_person_does_not_recommend_a_user_access_pass():
    assert estimate_tokens(5, 10).recommend_user_access is False
    assert estimate_tokens(5, 4).recommend_user_access is False
    assert estimate_tokens(5, "10.5").recommend_user_access is True


@pytest.mark.parametrize(("people", "passes", "buffer"), [(-1, 4, 20), (1, -4, 20), (1, 4, -1)])
def test_r12_negative_inputs_are_refused(people, passes, buffer):
    with pytest.raises(ValueError):
        estimate_tokens(people, passes, buffer)


@settings(max_examples=200, deadline=None)
@given(
    people=st.integers(0, 100_000),
    passes_hundredths=st.integers(0, 5_000),
    buffer_tenths=st.integers(0, 2_000),
)
def test_r12_tokens_is_the_exact_ceiling_for_any_decimal_inputs(
    people, passes_hundredths, buffer_tenths
):
    passes = Decimal(passes_hundredths) / 100
    buffer = Decimal(buffer_tenths) / 10
    exact = people * Fraction(passes) * (1 + Fraction(buffer) / 100) / 10

    estimate = estimate_tokens(people, passes, buffer)

    assert estimate.tokens == math.ceil(exact)
    assert estimate.tokens - 1 < exact <= estimate.tokens

"""R12 beyond the formula: the pure planning arithmetic of `rules.planning` and the
input rewrites of `rules.scenario`, against independent computations."""

import statistics
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules import Engine, estimate_tokens
from rules.planning import (
    DAY,
    Usage,
    busiest_span,
    ceil_tokens,
    per_period,
    percentile,
    returns_by_day,
)
from rules.scenario import LICENCE_MAX, UNLIMITED_TOKENS, Scenario
from schemas import (
    Licence,
    LoginGroup,
    SessionHeartbeat,
    SessionStart,
    UserAccess,
    to_micros,
)
from schemas.internal import GroupTokens

T0 = datetime(2026, 11, 2, tzinfo=UTC)
SPAN = 28 * DAY


def brute_busiest(instants: list[int], span: int) -> int:
    return max((sum(1 for c in instants if t - span < c <= t) for t in instants), default=0)


def test_r12_seed_103_users_4_passes_is_50_tokens_by_formula_and_by_peak():
    assert estimate_tokens(103, Fraction(4), 20).tokens == 50
    assert ceil_tokens(103 * 4, Fraction(20), 10) == 50  # 412 passes in use x 1.2 / 10


def test_r12_tokens_by_peak_are_exact_where_floats_round_up_wrongly():
    # 100 passes x 1.1 / 10 is 11.000000000000002 in binary floats.
    assert ceil_tokens(100, Fraction(10), 10) == 11
    assert ceil_tokens(101, Fraction(10), 10) == 12


@given(st.lists(st.integers(0, 120 * DAY // 3_600_000_000), max_size=60))
def test_r7_busiest_span_is_the_most_passes_in_use_at_once(hours: list[int]):
    instants = sorted(h * 3_600_000_000 for h in hours)
    count, at = busiest_span(instants, SPAN)
    assert count == brute_busiest(instants, SPAN)
    if instants:
        assert at is not None
        assert sum(1 for c in instants if at - SPAN < c <= at) == count


def test_r7_a_pass_no_longer_counts_at_its_return_instant():
    # Consumed at 0 and at exactly 28 days: the first has returned when the second is
    # consumed (returns fire first), so never 2 in use at once.
    assert busiest_span([0, SPAN], SPAN) == (1, 0)
    assert busiest_span([0, SPAN - 1], SPAN) == (2, SPAN - 1)


@given(st.lists(st.fractions(min_value=0, max_value=100, max_denominator=12),
                min_size=2, max_size=40))
def test_percentiles_match_statistics_inclusive_method(values: list[Fraction]):
    ordered = sorted(values)
    deciles = statistics.quantiles(ordered, n=10, method="inclusive")
    assert percentile(ordered, Fraction(9, 10)) == deciles[8]
    assert percentile(ordered, Fraction(1, 2)) == statistics.median(ordered)


def test_per_period_counts_complete_periods_only():
    start = 0
    end = 90 * DAY  # three complete 28-day periods, 6 days left over
    instants = [d * DAY for d in (1, 2, 30, 60, 85, 86)]  # the last two are in the rest
    assert per_period(instants, start, end, SPAN) == Fraction(4, 3)


def test_per_period_scales_a_history_shorter_than_one_period():
    assert per_period([DAY, 2 * DAY], 0, 14 * DAY, SPAN) == 4


def test_returns_calendar_buckets_per_day_after_the_end_of_history():
    as_of = 10 * DAY + 15 * 3_600_000_000  # day 10, 15:00
    calendar = [(as_of - 1, 5), (as_of + 1, 2), (11 * DAY + 1, 3), (as_of + SPAN + 1, 9)]
    days = returns_by_day(calendar, as_of, SPAN)
    assert days[0] == (10 * DAY, 2)  # what already returned is not counted
    assert days[1] == (11 * DAY, 3)
    assert sum(c for _, c in days) == 5  # the return after the horizon is left out
    assert days[-1][0] == 38 * DAY


_M = timedelta(minutes=1)


def start(sid: str, user: str | None, group: str = "g", minute: int = 0) -> SessionStart:
    return SessionStart(event_id=f"s-{sid}", ts=T0 + minute * _M, group=group, session_id=sid,
                        user_id=user)


def test_demand_scenario_gives_groups_unlimited_passes_and_drops_uaps():
    scenario = Scenario.demand()
    uap = UserAccess(event_id="u", ts=T0, user_id="ann", action="assign")
    assert scenario.rewrite(uap) == []
    assert scenario.uap_holders == {"ann"}
    assert scenario.rewrite(Licence(event_id="l", ts=T0, total_tokens=1)) == []
    first = scenario.rewrite(LoginGroup(event_id="g", ts=T0, group="g", tokens=1))
    assert first == [GroupTokens(event_id="scenario-g", ts=T0, group="g",
                                 tokens=UNLIMITED_TOKENS)]
    ev = start("s1", "ann", "other")  # never allocated: granted at its first start
    steps = scenario.rewrite(ev)
    assert [type(s) for s in steps] == [GroupTokens, SessionStart]
    assert scenario.rewrite(start("s2", "bob", "other")) == [start("s2", "bob", "other")]


def test_what_if_scenario_replaces_only_the_named_groups_and_lifts_the_licence():
    scenario = Scenario.what_if({"g": 3})
    licence = scenario.rewrite(Licence(event_id="l", ts=T0, total_tokens=1))
    assert licence == [Licence(event_id="l", ts=T0, total_tokens=LICENCE_MAX)]
    other = LoginGroup(event_id="h", ts=T0, group="h", tokens=2)
    assert scenario.rewrite(other) == [other]
    steps = scenario.rewrite(LoginGroup(event_id="g", ts=T0, group="g", tokens=50))
    assert steps == [GroupTokens(event_id="scenario-g", ts=T0, group="g", tokens=3)]
    assert scenario.rewrite(LoginGroup(event_id="g2", ts=T0, group="g", tokens=70)) == []
    hb = SessionHeartbeat(event_id="hb", ts=T0, group="g", session_id="s", user_id=None)
    assert scenario.rewrite(hb) == [hb]


def test_scenario_refuses_negative_tokens():
    with pytest.raises(ValueError, match="negative"):
        Scenario.what_if({"g": -1})


def test_r8_usage_records_denials_and_the_instant_the_pool_ran_dry():
    engine = Engine()
    out: list = []
    engine.apply(Licence(event_id="l", ts=T0, total_tokens=1), out)
    engine.apply(LoginGroup(event_id="g", ts=T0, group="g", tokens=1), out)  # 10 passes
    for i in range(11):
        engine.apply(start(f"s{i}", f"user{i}", minute=i), out)
    usage = Usage()
    for o in out:
        usage.observe(o)
    g = usage.groups["g"]
    assert len(g.passes) == 10
    assert g.in_use == 10
    assert g.denials == {"pool_exhausted": 1}
    assert g.ran_dry_at == to_micros(T0 + 9 * _M)  # the 10th pass took the last one

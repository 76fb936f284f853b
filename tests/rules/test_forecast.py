"""Pool exhaustion ETA and consumption rate, read off the R7 return calendar (SPEC §5)."""

from builders import GROUP, Scenario, micros_at
from hypothesis import given
from hypothesis import strategies as st

from rules.config import Config
from rules.forecast import HOUR, consumed_since, exhaustion_eta

DAYS_28 = 28 * 24 * HOUR
LIFETIME = DAYS_28


def test_r7_consumption_of_the_last_hour_is_read_off_the_return_calendar():
    s = Scenario.with_pool(10)
    s.at(1, 9, 0).start("a", "alice")  # more than an hour before the check: not counted
    s.at(1, 10, 30).start("b", "bob")
    s.at(1, 10, 59).start("c", "carol")
    now = micros_at(1, 11, 0)
    lifetime = int(Config().pass_lifetime.total_seconds() * 1_000_000)

    assert consumed_since(s.pool().returns_calendar(), now, lifetime, HOUR) == 2


def test_r7_lookback_longer_than_the_pass_lifetime_is_capped():
    calendar = [(130, 1), (190, 2)]  # consumed at 30 and 90, lifetime 100; now 120
    assert consumed_since(calendar, 120, 100, 1_000) == 3


def test_eta_is_zero_when_nothing_is_available():
    assert exhaustion_eta(0, [], 0, 5, HOUR, DAYS_28) == 0


def test_eta_is_absent_without_consumption():
    assert exhaustion_eta(10, [], 0, 0, HOUR, DAYS_28) is None


def test_eta_at_the_last_hours_rate_without_returns():
    # 20 available, 10 consumed in the last hour: dry in 2 hours
    assert exhaustion_eta(20, [], 0, 10, HOUR, DAYS_28) == 2 * HOUR


def test_eta_counts_scheduled_returns():
    # 10 available, 10/hour; 5 passes return at +30 min: dry at 1.5 h instead of 1 h
    assert exhaustion_eta(10, [(HOUR // 2, 5)], 0, 10, HOUR, DAYS_28) == HOUR + HOUR // 2


def test_eta_is_absent_when_the_pool_lasts_beyond_the_horizon():
    assert exhaustion_eta(1_000, [], 0, 1, HOUR, DAYS_28) is None


def test_eta_of_a_live_pool_uses_its_own_calendar():
    s = Scenario.with_pool(1)  # 10 passes
    for i in range(4):
        s.at(1, 10, 5 + 15 * i).start(f"s{i}", f"u{i}")
    pool = s.pool()
    now = micros_at(1, 11, 0)
    calendar = pool.returns_calendar()
    consumed = consumed_since(calendar, now, LIFETIME, HOUR)
    assert consumed == 4 and pool.available == 6
    assert exhaustion_eta(pool.available, calendar, now, consumed, HOUR, DAYS_28) == (
        6 * HOUR // 4
    )
    assert GROUP in s.engine.pools


@given(
    available=st.integers(0, 50),
    consumed=st.integers(0, 20),
    returns=st.lists(st.tuples(st.integers(1, 400), st.integers(1, 5)), max_size=8),
)
def test_eta_is_the_first_instant_the_stock_reaches_zero(available, consumed, returns):
    """Against a step-by-step simulation: lookback 60, horizon 500 (integer instants)."""
    calendar = sorted(returns)
    lookback, horizon = 60, 500
    eta = exhaustion_eta(available, calendar, 0, consumed, lookback, horizon)
    expected = None
    if available == 0:
        expected = 0
    elif consumed > 0:
        for s in range(1, horizon + 1):
            back = sum(c for t, c in calendar if t <= s)
            if (available + back) * lookback - consumed * s <= 0:
                expected = s
                break
    assert eta == expected

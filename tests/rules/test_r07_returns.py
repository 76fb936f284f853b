"""R7: every pass returns to its pool exactly 28 days after it was consumed."""

from datetime import timedelta

from builders import GROUP, Scenario, when

from rules import Config, Engine
from schemas import PassReturned


def test_r7_pass_returns_exactly_28_days_after_it_was_consumed():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice").end("laptop")

    s.advance(29, 8, 59, 59, 999_999)
    assert s.returned() == []
    assert s.in_use() == 1
    s.advance(29, 9, 0)
    assert s.last == [
        PassReturned(
            event_id=s.last[0].event_id,
            ts=when(29, 9, 0),
            group=GROUP,
            count=1,
            consumed_at=when(1, 9, 0),
            available=10,
            capacity=10,
        )
    ]
    assert s.in_use() == 0


def test_r7_passes_returning_at_one_instant_give_one_output_with_their_count():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1").start("anon-2").start("bob-1", user="bob")
    s.advance(40, 0, 0)

    assert [(r.ts, r.count, r.consumed_at) for r in s.returned()] == [
        (when(29, 9, 0), 3, when(1, 9, 0))
    ]


def test_r7_one_returned_output_per_instant_and_group():
    s = Scenario.with_pool(tokens=1).group("support", 1)
    s.at(1, 9, 0).start("a1", user="alice").start("b1", user="bob")
    s.start("c1", user="carol", group="support")
    s.advance(40, 0, 0)

    assert sorted((r.group, r.ts, r.count) for r in s.returned()) == [
        (GROUP, when(29, 9, 0), 2),
        ("support", when(29, 9, 0), 1),
    ]


def test_r7_passes_consumed_at_different_instants_return_separately():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1")
    s.at(1, 9, 0, 0, 1).start("anon-2")
    s.advance(40, 0, 0)

    assert [(r.ts, r.count) for r in s.returned()] == [
        (when(29, 9, 0), 1),
        (when(29, 9, 0, 0, 1), 1),
    ]


def test_r7_passes_used_on_day_1_are_available_again_on_day_29():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for n in range(10):
        s.start(f"anon-{n}").end(f"anon-{n}")

    s.at(28, 9, 0).start("late-comer")
    assert [d.reason for d in s.last] == ["pool_exhausted"]
    s.at(29, 9, 0).start("late-comer-2")
    assert [type(o).__name__ for o in s.last] == ["PassReturned", "PassConsumed"]
    assert s.pool().available == 9


def test_r7_pass_lifetime_is_configurable():
    s = Scenario.with_pool(tokens=1, config=Config(pass_lifetime=timedelta(days=7)))
    s.at(1, 9, 0).start("anon-1")

    assert s.consumed()[0].returns_at == when(8, 9, 0)
    s.advance(8, 9, 0)
    assert [r.ts for r in s.returned()] == [when(8, 9, 0)]


def test_r7_seed_scenario_four_passes_return_on_days_29_43_and_53():
    """The seed, in exact arithmetic: day 1 login + hour 2; day 15 two devices;
    day 25 re-login inside the hour. 25 + 28 is day 53 (the seed's "Day 54" is off)."""
    s = Scenario.with_pool(tokens=1)
    # Day 1: active past the first hour: two passes.
    s.at(1, 9, 0).start("d1-laptop", user="alice")
    s.keep_alive("d1-laptop", minutes=80)
    s.end("d1-laptop")
    # Day 15: iPad and laptop for under an hour: one pass.
    s.at(15, 14, 0).start("d15-ipad", user="alice", device="ipad")
    s.at(15, 14, 1).start("d15-laptop", user="alice", device="laptop")
    s.at(15, 14, 25).end("d15-ipad").end("d15-laptop")
    # Day 25: log out after 30 min, in and out again minutes later: one pass.
    s.at(25, 11, 0).start("d25-a", user="alice")
    s.at(25, 11, 20).heartbeat("d25-a")
    s.at(25, 11, 30).end("d25-a")
    s.at(25, 11, 36).start("d25-b", user="alice")
    s.at(25, 11, 39).end("d25-b")
    s.advance(60, 0, 0)

    assert [c.ts for c in s.consumed()] == [
        when(1, 9, 0),
        when(1, 10, 0),
        when(15, 14, 0),
        when(25, 11, 0),
    ]
    assert [(r.ts, r.count) for r in s.returned()] == [
        (when(29, 9, 0), 1),
        (when(29, 10, 0), 1),
        (when(43, 14, 0), 1),
        (when(53, 11, 0), 1),
    ]
    assert s.in_use() == 0
    assert s.pool().available == 10


def test_r7_returns_calendar_lists_instants_and_counts_soonest_first():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1").start("anon-2")
    s.at(2, 9, 0).start("anon-3")
    micros = [t for t, _ in s.pool().returns_calendar()]

    assert [count for _, count in s.pool().returns_calendar()] == [2, 1]
    assert micros == sorted(micros)


def test_r7_the_count_due_back_at_any_instant_is_read_from_the_calendar():
    """A checkpoint reads, for every return instant an event touched, the passes due
    back then: the count while they are out, 0 once they have returned, whatever the
    instant's place in the calendar, and the same after a restore."""
    s = Scenario.with_pool(tokens=2)
    for minute in range(12):
        s.at(1, 9, minute).start(f"anon-{minute}")
        if minute % 3 == 0:
            s.start(f"anon-{minute}-b")  # two passes due back at one instant
    pool = s.pool()
    calendar = dict(pool.returns_calendar())
    assert len(calendar) == 12 and sorted(set(calendar.values())) == [1, 2]
    for instant, count in calendar.items():
        assert pool.returning_at(instant) == count
    assert pool.returning_at(min(calendar) - 1) == pool.returning_at(max(calendar) + 1) == 0

    s.advance(29, 9, 5, 30)  # the first six instants come due
    due = dict(pool.returns_calendar())
    assert len(due) == 6
    for instant in calendar:
        assert pool.returning_at(instant) == due.get(instant, 0)

    restored = Engine.restore(s.engine.snapshot()).pools[GROUP]
    for instant in calendar:
        assert restored.returning_at(instant) == due.get(instant, 0)

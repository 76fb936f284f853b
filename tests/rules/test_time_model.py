"""SPEC §2 ordering at equal timestamps and §3 time: event time drives every rule."""

from builders import GROUP, Scenario, micros_at, when
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import BatchMerge, TimestampMerge
from schemas import AccessDenied, PassConsumed, PassReturned


def test_order_timers_due_at_t_fire_before_the_input_event_stamped_t():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for n in range(10):
        s.start(f"anon-{n}").end(f"anon-{n}")

    s.at(29, 9, 0).start("laptop", user="alice")  # the 10 passes return at this instant

    assert [type(o) for o in s.last] == [PassReturned, PassConsumed]
    assert s.last[0].count == 10
    assert (s.last[1].ts, s.last[1].available) == (when(29, 9, 0), 9)


def test_order_returns_fire_before_renewals_at_the_same_instant():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for n in range(9):
        s.start(f"anon-{n}").end(f"anon-{n}")
    s.at(29, 8, 0).start("laptop", user="alice")  # the last pass; window ends 09:00
    s.keep_alive("laptop", minutes=50)
    assert s.pool().available == 0

    s.advance(29, 9, 0)  # 9 passes return and alice renews, both at 09:00

    assert [type(o) for o in s.last] == [PassReturned, PassConsumed]
    assert s.last[1].reason == "renewal"
    assert s.denied() == []


def renewal_race(first: str, second: str) -> Scenario:
    """Two users open windows at day 29 09:00 (in the order given) and stay active; at
    10:00 exactly one pass comes back and both windows end."""
    s = Scenario.with_pool(tokens=1)
    s.at(1, 10, 0).start("early").end("early")  # returns at day 29 10:00
    s.at(29, 9, 0).start(first, user=first).start(second, user=second)
    for n in range(7):
        s.start(f"anon-{n}").end(f"anon-{n}")
    assert s.pool().available == 0
    s.keep_alive(first, second, minutes=50)
    s.advance(29, 10, 0)
    return s


def test_order_renewals_at_one_instant_go_in_window_open_order():
    s = renewal_race("alice", "bob")

    assert [type(o) for o in s.last] == [PassReturned, PassConsumed, AccessDenied]
    assert (s.last[1].user_id, s.last[1].reason) == ("alice", "renewal")
    assert (s.last[2].user_id, s.last[2].renewal) == ("bob", True)


def test_order_renewal_order_follows_window_opening_not_names():
    s = renewal_race("bob", "alice")

    assert (s.last[1].user_id, s.last[1].reason) == ("bob", "renewal")
    assert (s.last[2].user_id, s.last[2].renewal) == ("alice", True)


def test_order_input_events_at_one_instant_apply_in_arrival_order():
    for first, second in (("alice", "bob"), ("bob", "alice")):
        s = Scenario.with_pool(tokens=1)
        s.at(1, 9, 0)
        for n in range(9):
            s.start(f"anon-{n}")
        s.start(first, user=first).start(second, user=second)

        assert [c.user_id for c in s.consumed() if c.user_id] == [first]
        assert [d.user_id for d in s.denied()] == [second]


def test_time_late_event_is_applied_at_the_group_clock_and_counted():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 10, 0).start("anon-1")
    s.at(1, 9, 0).start("laptop", user="alice")  # an hour late

    assert [(c.ts, c.returns_at) for c in s.last] == [(when(1, 10, 0), when(29, 10, 0))]
    assert s.pool().record.late_events == 1
    assert s.pool().record.clock == micros_at(1, 10, 0)


def test_time_late_heartbeat_counts_as_activity_at_the_group_clock():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 20).start("anon-1")
    s.at(1, 9, 10).heartbeat("laptop")  # late: applied at 09:20, timeout 09:50

    s.advance(1, 9, 45)
    assert s.pool().sessions["laptop"].last_activity == micros_at(1, 9, 20)
    assert s.open_sessions() == 2


def test_time_each_group_has_its_own_clock():
    s = Scenario.with_pool(tokens=1).group("support", 1)
    s.at(1, 10, 0).start("a1", user="alice")
    s.at(1, 9, 0).start("b1", user="bob", group="support")  # not late for support

    assert s.last[0].ts == when(1, 9, 0)
    assert s.pool("support").record.late_events == 0
    assert s.pool(GROUP).record.late_events == 0


def test_time_clock_tick_fires_returns_renewals_and_timeouts_without_events():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 25).heartbeat("laptop")
    s.at(1, 9, 50).heartbeat("laptop")

    s.advance(1, 10, 0)
    assert [(type(o), o.ts) for o in s.last] == [(PassConsumed, when(1, 10, 0))]
    s.advance(1, 10, 20)
    assert s.open_sessions() == 0
    s.advance(29, 9, 0)
    assert [(type(o), o.ts) for o in s.last] == [(PassReturned, when(29, 9, 0))]
    s.advance(29, 10, 0)
    assert [(type(o), o.ts) for o in s.last] == [(PassReturned, when(29, 10, 0))]
    assert s.in_use() == 0


def test_time_tick_fires_every_timer_due_in_between_in_time_order():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1")
    s.at(2, 9, 0).start("anon-2")
    s.at(3, 9, 0).start("anon-3")
    s.advance(60, 0, 0)

    assert [(r.ts, r.available) for r in s.last] == [
        (when(29, 9, 0), 8),
        (when(30, 9, 0), 9),
        (when(31, 9, 0), 10),
    ]


def test_time_tick_to_a_past_instant_or_repeated_changes_nothing():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1")
    s.advance(29, 9, 0)
    assert len(s.last) == 1
    snapshot = s.engine.snapshot()

    s.advance(29, 9, 0)
    assert s.last == []
    s.advance(2, 0, 0)
    assert s.last == []
    assert s.engine.snapshot() == snapshot


def test_time_tick_then_late_event_does_not_move_time_back():
    s = Scenario.with_pool(tokens=1)
    s.advance(1, 12, 0)
    s.at(1, 11, 0).start("anon-1")

    assert s.consumed()[0].ts == when(1, 12, 0)
    assert s.pool().record.late_events == 1


# -- SPEC §3: inputs from separate topics are applied in event-time order ----------------


def test_merge_releases_the_lowest_timestamp_head_across_sources():
    merge: TimestampMerge[str] = TimestampMerge(2)
    merge.push(1, 50, "heartbeat@50")
    merge.push(1, 70, "heartbeat@70")
    merge.push(0, 10, "start@10")
    merge.push(0, 60, "start@60")

    assert list(merge.ready()) == ["start@10", "heartbeat@50", "start@60"]
    assert merge.pending() == 1  # source 0 is empty again: wait for it


def test_merge_waits_while_an_open_source_has_nothing_buffered():
    merge: TimestampMerge[str] = TimestampMerge(2)
    for ts in range(5):  # a backfill: days of heartbeats before any start arrives
        merge.push(1, 1_000 + ts, f"heartbeat@{1_000 + ts}")

    assert list(merge.ready()) == []
    merge.push(0, 10, "start@10")
    assert list(merge.ready()) == ["start@10"]


def test_merge_closed_or_idle_source_no_longer_holds_the_others_back():
    merge: TimestampMerge[str] = TimestampMerge(2)
    merge.push(1, 5, "b@5")
    merge.close(0)
    assert list(merge.ready()) == ["b@5"]

    idle: TimestampMerge[str] = TimestampMerge(2)
    idle.push(1, 5, "b@5")
    idle.push(1, 7, "b@7")
    assert list(idle.flush()) == ["b@5", "b@7"]  # the empty source idled long enough


def test_merge_ties_go_to_the_lower_source_rank_then_arrival_order():
    merge: TimestampMerge[str] = TimestampMerge(3)
    merge.push(2, 5, "end-1")
    merge.push(1, 5, "start-1")
    merge.push(1, 5, "start-2")
    merge.push(0, 5, "alloc-1")
    for source in range(3):
        merge.close(source)

    assert list(merge.ready()) == ["alloc-1", "start-1", "start-2", "end-1"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(0, 50), max_size=12).map(sorted), min_size=1, max_size=4
    )
)
def test_merge_of_time_ordered_sources_is_one_stable_time_ordered_stream(sources):
    merge: TimestampMerge[tuple[int, int, int]] = TimestampMerge(len(sources))
    for rank, stamps in enumerate(sources):
        for n, ts in enumerate(stamps):
            merge.push(rank, ts, (ts, rank, n))
    released = list(merge.ready())
    for rank in range(len(sources)):
        merge.close(rank)
    released += list(merge.ready())

    expected = sorted((ts, rank, n) for rank, s in enumerate(sources) for n, ts in enumerate(s))
    assert released == expected
    assert merge.pending() == 0


# A batch: items (source, ts) pushed in order, then closes, then a release.
_batches = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 30)), max_size=8),
        st.sets(st.integers(0, 2), max_size=1),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(_batches, st.booleans())
def test_merge_by_batches_releases_exactly_what_item_by_item_releases(batches, in_order):
    """SPEC §3 order, a batch at a time (the replay's reader): after every batch the
    same items come out, in the same order, whether the sources stay in time order
    (a sort) or one goes back in time (then item by item)."""
    one: TimestampMerge[int] = TimestampMerge(3)
    batch: BatchMerge[int] = BatchMerge(3)
    n = 0
    for items, closes in batches:
        if in_order:  # each source's stamps never decrease, as in a time-ordered file
            items = sorted(items, key=lambda i: i[1])
        triples = []
        for source, ts in items:
            triples.append((source, ts, n))
            one.push(source, ts, n)
            n += 1
        batch.extend(triples)
        for source in closes:
            one.close(source)
            batch.close(source)
        assert batch.ready() == list(one.ready())
        assert batch.pending() == one.pending()
        assert batch.starved() == one.starved()
    assert batch.flush() == list(one.flush())

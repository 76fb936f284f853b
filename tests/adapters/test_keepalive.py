"""Point 7, the keep-alive: while a session has an open connection and no stop, a
heartbeat every interval after its last record; bounded by a silence limit; driven by
each proxy node's event time, so a file read after the fact and the same file
followed live give the same heartbeats."""

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from qlik_helpers import kept_alive

from adapters.qlik.activity import Activity, ActivityKind, Connection, to_session_event
from adapters.qlik.keepalive import KeepAlive, KeepAliveState
from schemas.inputs import SessionEnd

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
MIN = timedelta(minutes=1)


def record(kind: ActivityKind, minute: float, session: str = "s1", host: str = "n1",
           connection: Connection | None = None) -> Activity:
    ts = T0 + timedelta(minutes=minute)
    return Activity(kind=kind, ts=ts, host=host, user_directory="CORP", user_id="ann",
                    session_id=session, connection=connection,
                    end_reason="logout" if kind == "stop" else None,
                    ref=f"{kind}-{session}-{minute}")


def opened(minute: float, session: str = "s1", host: str = "n1") -> Activity:
    return record("activity", minute, session, host, "open")


def closed(minute: float, session: str = "s1", host: str = "n1") -> Activity:
    return record("activity", minute, session, host, "close")


def replay(records: list[Activity], keeper: KeepAlive | None = None) -> list[Activity]:
    out = kept_alive([(r, r.ts) for r in records], keeper)
    return [a for a in out if isinstance(a, Activity)]


def beats(items: list[Activity]) -> list[float]:
    """Minutes after T0 of the heartbeats the keep-alive made."""
    return [(a.ts - T0) / MIN for a in items if a.synthetic and a.kind == "activity"]


def test_point7_a_heartbeat_every_interval_while_a_connection_is_open() -> None:
    out = replay([record("start", 0), opened(1), closed(17), record("activity", 40),
                  record("stop", 50)])
    assert beats(out) == [6, 11, 16]  # 5 min after the open, then every 5 min; none after close
    assert [a.ref for a in out if not a.synthetic] == ["start-s1-0", "activity-s1-1",
                                                       "activity-s1-17", "activity-s1-40",
                                                       "stop-s1-50"]


def test_point7_every_record_of_the_session_restarts_the_interval() -> None:
    out = replay([record("start", 0), opened(0), record("activity", 8), record("stop", 20)])
    assert beats(out) == [5, 13, 18]


def test_point7_no_heartbeats_without_an_open_connection() -> None:
    assert beats(replay([record("start", 0), record("stop", 120)])) == []


def test_point7_two_connections_keep_it_alive_until_both_close() -> None:
    out = replay([record("start", 0), opened(0), opened(1), closed(9), record("stop", 30)])
    assert beats(out) == [6, 14, 19, 24, 29]


def test_point7_a_connection_silent_past_the_bound_is_ended_and_marked_silent() -> None:
    keeper = KeepAlive(interval=timedelta(minutes=30), max_silence=timedelta(hours=2))
    out = replay([record("start", 0), opened(0), record("start", 180, session="s2")], keeper)
    assert beats(out) == [30, 60, 90]  # the one at 120 min would be past the bound
    end = next(a for a in out if a.kind == "stop")
    assert (end.session_id, end.ts, end.end_reason, end.synthetic) == (
        "s1", T0 + timedelta(hours=2), "silent", True)
    event = to_session_event(end, "g", "CORP\\ann")
    assert isinstance(event, SessionEnd) and event.reason == "browser_closed"
    assert keeper.open_connections() == 0  # and it is forgotten: nothing more for s1
    assert beats(replay([record("activity", 600, session="s2")], keeper)) == []


def test_point7_each_node_keeps_its_own_clock() -> None:
    """A node whose log is read ahead does not make heartbeats for another node's
    sessions past what that node has written: its stop may still be unread."""
    out = replay([record("start", 0), opened(0), record("start", 600, session="x", host="n2"),
                  record("stop", 12)])
    assert beats(out) == [5, 10]


def test_point7_live_follow_and_later_replay_give_the_same_events() -> None:
    """Live, records arrive at their time and the receive clock advances between them;
    replayed after the fact, only event time drives. Same heartbeats, ids, order."""
    records = [record("start", 0), opened(0.05), record("start", 3, session="s2"),
               opened(3.1, session="s2"), record("activity", 47, session="s2"),
               closed(124.97), closed(125, session="s2"), record("stop", 125),
               record("stop", 126, session="s2")]
    after_the_fact = replay(records)
    keeper, live = KeepAlive(), []
    pending = sorted(records, key=lambda r: r.ts)
    for second in range(0, 130 * 60, 20):
        wall = T0 + timedelta(seconds=second)
        while pending and pending[0].ts <= wall:
            live += keeper.accept(pending.pop(0), wall)
        live += keeper.advance(wall)
    assert [(a.ref, a.ts) for a in live] == [(a.ref, a.ts) for a in after_the_fact]
    assert len(beats(live)) == 24 + 8 + 15  # s1; s2 before and after its record at 47


def test_point7_live_clock_keeps_a_quiet_node_alive_and_still_honours_the_bound() -> None:
    keeper = KeepAlive(max_silence=timedelta(hours=1))
    replay([record("start", 0), opened(0)], keeper)
    got = keeper.advance(T0 + timedelta(minutes=30))  # no record since, 30 min later
    assert beats(got) == [5, 10, 15, 20, 25]  # the node's clock: 29 min (a minute's lag)
    got = keeper.advance(T0 + timedelta(hours=3))
    assert beats(got) == [30, 35, 40, 45, 50, 55]
    assert [(a.kind, a.end_reason) for a in got if a.kind == "stop"] == [("stop", "silent")]


def test_point7_state_saved_and_restored_continues_exactly() -> None:
    first, rest = [record("start", 0), opened(0)], [record("activity", 33), record("stop", 61)]
    whole = replay(first + rest)
    keeper = KeepAlive()
    part = replay(first, keeper)
    saved = msgspec.json.encode(keeper.state)
    resumed = KeepAlive(state=msgspec.json.decode(saved, type=KeepAliveState))
    assert part + replay(rest, resumed) == whole


def test_point7_interval_must_be_shorter_than_the_bound() -> None:
    with pytest.raises(ValueError, match="shorter than the silence bound"):
        KeepAlive(interval=timedelta(hours=9), max_silence=timedelta(hours=8))

"""R4: a session is open from its start until its end event or its inactivity timeout."""

from datetime import timedelta

from builders import Scenario, when

from rules import Config


def test_r4_logout_closes_the_session_so_the_window_is_not_renewed():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 20).end("laptop", reason="logout")

    assert s.open_sessions() == 0
    s.advance(1, 11, 0)
    assert len(s.consumed()) == 1


def test_r4_browser_closed_closes_the_session_like_a_logout():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 20).end("laptop", reason="browser_closed")

    assert s.open_sessions() == 0
    s.advance(1, 11, 0)
    assert len(s.consumed()) == 1


def test_r4_session_without_activity_times_out_after_30_minutes_by_default():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")

    s.advance(1, 9, 29, 59, 999_999)
    assert s.open_sessions() == 1
    s.advance(1, 9, 30)
    assert s.open_sessions() == 0
    s.advance(1, 11, 0)
    assert len(s.consumed()) == 1


def test_r4_heartbeat_is_activity_and_pushes_the_timeout_back():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 25).heartbeat("laptop")

    s.advance(1, 9, 54, 59)
    assert s.open_sessions() == 1
    s.advance(1, 9, 55)
    assert s.open_sessions() == 0


def test_r4_session_whose_timeout_falls_exactly_at_window_end_is_not_open_then():
    # last_activity + timeout == w: not strictly after w, so no renewal.
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 15).heartbeat("laptop")
    s.at(1, 9, 30).heartbeat("laptop")  # deadline 10:00 == window end
    s.advance(1, 12, 0)

    assert [c.reason for c in s.consumed()] == ["login"]
    assert s.open_sessions() == 0


def test_r4_session_whose_timeout_is_one_microsecond_after_window_end_is_renewed():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 15).heartbeat("laptop")
    s.at(1, 9, 30, 0, 1).heartbeat("laptop")  # deadline 10:00:00.000001 > window end
    s.advance(1, 12, 0)

    assert [(c.ts, c.reason) for c in s.consumed()] == [
        (when(1, 9, 0), "login"),
        (when(1, 10, 0), "renewal"),
    ]


def test_r4_inactivity_timeout_is_configurable():
    s = Scenario.with_pool(tokens=1, config=Config(inactivity_timeout=timedelta(minutes=10)))
    s.at(1, 9, 0).start("laptop", user="alice")

    s.advance(1, 9, 9)
    assert s.open_sessions() == 1
    s.advance(1, 9, 10)
    assert s.open_sessions() == 0


def test_r4_heartbeat_at_the_timeout_instant_is_too_late_and_changes_nothing():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 30).heartbeat("laptop")

    assert s.open_sessions() == 0
    assert s.pool().record.ignored_events == 1


def test_r4_heartbeat_after_timeout_does_not_reopen_the_session():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 40).heartbeat("laptop")
    s.at(1, 9, 50).heartbeat("laptop")
    s.advance(1, 12, 0)

    assert s.open_sessions() == 0
    assert len(s.consumed()) == 1  # no renewal: the session stayed closed
    assert s.pool().record.ignored_events == 2


def test_r4_client_whose_session_timed_out_starts_a_new_one():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 40).start("laptop-2", user="alice")  # joins the 09:00 window

    assert s.open_sessions() == 1
    assert len(s.consumed()) == 1


def test_r4_heartbeat_for_a_session_never_started_is_counted_not_applied():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).heartbeat("ghost")

    assert s.last == []
    assert s.open_sessions() == 0
    assert "ghost" not in s.pool().sessions
    assert s.pool().record.ignored_events == 1


def test_r4_end_for_a_session_never_started_is_counted_not_applied():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 5).end("ghost")

    assert s.last == []
    assert s.open_sessions() == 1
    assert s.pool().record.ignored_events == 1


def test_r4_end_after_timeout_changes_nothing():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 45).end("laptop")

    assert s.last == []
    assert s.open_sessions() == 0
    assert s.pool().record.ignored_events == 1


def test_r4_heartbeat_for_a_denied_session_changes_nothing():
    s = Scenario.with_pool(tokens=1, config=Config(max_devices=1))
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 1).start("tablet", user="alice")  # denied: too many sessions
    s.at(1, 9, 2).heartbeat("tablet")

    assert s.last == []
    assert s.open_sessions() == 1
    assert s.pool().record.ignored_events == 1

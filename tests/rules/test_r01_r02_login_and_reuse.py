"""R1 (login opens or joins the holder's access window) and R2 (same-hour reuse)."""

from builders import GROUP, Scenario, when

from schemas import PassConsumed


def test_r1_first_login_consumes_one_pass_at_the_start_instant():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")

    assert s.last == [
        PassConsumed(
            event_id=s.last[0].event_id,
            ts=when(1, 9, 0),
            group=GROUP,
            user_id="alice",
            session_id="laptop",
            reason="login",
            returns_at=when(29, 9, 0),
            available=9,
            capacity=10,
        )
    ]
    assert s.in_use() == 1
    assert s.open_sessions() == 1


def test_r1_session_start_inside_the_open_window_joins_it_without_a_pass():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 29).heartbeat("laptop")
    s.at(1, 9, 45).heartbeat("laptop")
    s.at(1, 9, 59).start("tablet", user="alice")

    assert s.last == []
    assert len(s.consumed()) == 1
    assert s.open_sessions() == 2


def test_r1_window_is_half_open_a_start_one_microsecond_before_its_end_joins():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice").end("laptop")
    s.at(1, 9, 59, 59, 999_999).start("tablet", user="alice")

    assert len(s.consumed()) == 1


def test_r1_start_exactly_at_window_end_consumes_a_new_pass_at_that_instant():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice").end("laptop")
    s.at(1, 10, 0).start("tablet", user="alice")

    assert [(c.ts, c.reason) for c in s.consumed()] == [
        (when(1, 9, 0), "login"),
        (when(1, 10, 0), "login"),
    ]


def test_r1_holders_are_independent_each_user_consumes_their_own_pass():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("a1", user="alice")
    s.at(1, 9, 5).start("b1", user="bob")

    assert [c.user_id for c in s.consumed()] == ["alice", "bob"]
    assert s.in_use() == 2


def test_r1_pass_consumed_reports_pool_figures_right_after_the_login():
    s = Scenario.with_pool(tokens=2)
    s.at(1, 9, 0).start("a1", user="alice").start("b1", user="bob")

    assert [(c.available, c.capacity) for c in s.consumed()] == [(19, 20), (18, 20)]


def test_r2_logout_and_login_again_inside_the_hour_consumes_nothing_more_seed_day_25():
    s = Scenario.with_pool(tokens=1)
    s.at(25, 9, 0).start("laptop", user="alice")
    s.at(25, 9, 30).end("laptop")
    s.at(25, 9, 35).start("laptop-2", user="alice")
    s.at(25, 9, 40).end("laptop-2")
    s.advance(26, 0, 0)

    assert len(s.consumed()) == 1
    assert s.in_use() == 1


def test_r2_logging_in_again_at_minute_61_consumes_a_new_pass():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 30).end("laptop")
    s.at(1, 10, 1).start("laptop-2", user="alice")

    assert [(c.ts, c.reason) for c in s.consumed()] == [
        (when(1, 9, 0), "login"),
        (when(1, 10, 1), "login"),
    ]
    assert s.in_use() == 2

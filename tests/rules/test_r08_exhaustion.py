"""R8: a login that needs a pass from an empty pool is denied; a renewal that finds
none discontinues all of the holder's open sessions."""

from builders import GROUP, Scenario, when

from rules.records import SessionState
from schemas import AccessDenied


def exhausted_pool() -> Scenario:
    """One token (10 passes), all consumed at day 1 09:00 by anonymous sessions that ended."""
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for n in range(10):
        s.start(f"anon-{n}").end(f"anon-{n}")
    assert s.pool().available == 0
    return s


def test_r8_login_that_needs_a_pass_from_an_empty_pool_is_denied_pool_exhausted():
    s = exhausted_pool()
    s.at(1, 12, 0).start("laptop", user="alice")

    assert s.last == [
        AccessDenied(
            event_id=s.last[0].event_id,
            ts=when(1, 12, 0),
            group=GROUP,
            user_id="alice",
            session_id="laptop",
            reason="pool_exhausted",
            renewal=False,
        )
    ]
    assert s.in_use() == 10
    assert s.open_sessions() == 0


def test_r8_anonymous_login_into_an_empty_pool_is_denied():
    s = exhausted_pool()
    s.at(1, 12, 0).start("anon-x")

    assert [(d.reason, d.user_id, d.renewal) for d in s.last] == [
        ("pool_exhausted", None, False)
    ]


def test_r8_denied_login_does_not_open_the_session():
    s = exhausted_pool()
    s.at(1, 12, 0).start("laptop", user="alice")
    s.at(1, 12, 5).heartbeat("laptop")

    assert s.last == []
    assert s.open_sessions() == 0
    assert s.pool().record.ignored_events == 1


def test_r8_user_inside_an_open_window_joins_even_when_the_pool_is_empty():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    for n in range(9):
        s.start(f"anon-{n}")
    assert s.pool().available == 0

    s.at(1, 9, 10).start("tablet", user="alice")  # needs no pass: no denial

    assert s.last == []
    assert s.open_sessions() == 11


def renewal_into_an_empty_pool() -> Scenario:
    """Alice (two devices) holds the last free pass; her window ends at 10:00 while both
    devices are active and nothing returns."""
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for n in range(9):
        s.start(f"anon-{n}").end(f"anon-{n}")
    s.start("laptop", user="alice")
    s.at(1, 9, 5).start("tablet", user="alice")
    s.keep_alive("laptop", "tablet", minutes=50)  # 09:15 … 09:55
    assert s.pool().available == 0
    return s


def test_r8_renewal_with_no_pass_available_is_denied_with_renewal_true():
    s = renewal_into_an_empty_pool()
    s.advance(1, 10, 0)

    denials = s.denied()
    assert denials, "a renewal into an empty pool must be denied"
    assert {(d.ts, d.user_id, d.reason, d.renewal) for d in denials} == {
        (when(1, 10, 0), "alice", "pool_exhausted", True)
    }
    assert {d.session_id for d in denials} <= {"laptop", "tablet"}
    assert [c.reason for c in s.consumed() if c.user_id == "alice"] == ["login"]


def test_r8_renewal_denial_discontinues_all_of_the_holders_open_sessions():
    s = renewal_into_an_empty_pool()
    s.advance(1, 10, 0)

    assert s.open_sessions() == 0
    sessions = s.pool().sessions
    assert sessions["laptop"].state == SessionState.DISCONTINUED
    assert sessions["tablet"].state == SessionState.DISCONTINUED
    s.at(1, 10, 5).heartbeat("laptop").heartbeat("tablet")
    assert s.open_sessions() == 0


def test_r8_renewal_denial_leaves_other_holders_sessions_open():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for n in range(8):
        s.start(f"anon-{n}").end(f"anon-{n}")
    s.start("laptop", user="alice")
    s.at(1, 9, 25).heartbeat("laptop")
    s.at(1, 9, 40).start("b-phone", user="bob")  # the last pass; window until 10:40
    s.at(1, 9, 50).heartbeat("laptop").heartbeat("b-phone")
    s.advance(1, 10, 0)

    assert [(d.user_id, d.renewal) for d in s.denied()] == [("alice", True)]
    assert s.open_sessions() == 1
    assert s.pool().sessions["b-phone"].state == SessionState.OPEN


def test_r8_discontinued_holder_is_not_charged_or_denied_again_next_hour():
    s = renewal_into_an_empty_pool()
    s.advance(1, 13, 0)

    assert len({d.ts for d in s.denied()}) == 1
    assert [c.user_id for c in s.consumed()].count("alice") == 1


def test_r8_after_discontinuation_a_new_login_needs_a_pass_again():
    s = renewal_into_an_empty_pool()
    s.advance(1, 10, 0)
    s.at(1, 10, 1).start("laptop-2", user="alice")

    assert [(d.reason, d.renewal) for d in s.last] == [("pool_exhausted", False)]

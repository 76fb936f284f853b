"""R6: an anonymous session is its own holder: its own pass, no sharing, no device rule."""

from builders import Scenario, when


def test_r6_every_anonymous_session_consumes_its_own_pass():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1").start("anon-2")
    s.at(1, 9, 1).start("anon-3")

    assert [(c.session_id, c.user_id, c.reason) for c in s.consumed()] == [
        ("anon-1", None, "login"),
        ("anon-2", None, "login"),
        ("anon-3", None, "login"),
    ]
    assert s.in_use() == 3


def test_r6_anonymous_sessions_never_share_a_window_even_within_the_hour():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1")
    s.at(1, 9, 5).end("anon-1")
    s.at(1, 9, 10).start("anon-2")

    assert len(s.consumed()) == 2


def test_r6_anonymous_access_has_no_device_limit():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for n in range(7):
        s.start(f"anon-{n}")

    assert s.denied() == []
    assert s.open_sessions() == 7
    assert s.in_use() == 7


def test_r6_anonymous_session_active_past_the_hour_renews_its_own_pass():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1").start("anon-2")
    s.at(1, 9, 10).end("anon-2")
    s.keep_alive("anon-1", minutes=70)
    s.end("anon-1")
    s.advance(1, 12, 0)

    assert [(c.ts, c.session_id, c.reason) for c in s.consumed()] == [
        (when(1, 9, 0), "anon-1", "login"),
        (when(1, 9, 0), "anon-2", "login"),
        (when(1, 10, 0), "anon-1", "renewal"),
    ]

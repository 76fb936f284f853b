"""R13: inputs are idempotent by meaning; a retry or redelivery changes nothing."""

from builders import Scenario, when

from rules.records import SessionState


def test_r13_redelivered_start_of_an_open_session_changes_nothing():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    before = s.engine.summary()

    s.apply(s.inputs[-1])  # the very same record again

    assert s.last == []
    assert s.engine.summary() == before
    assert len(s.consumed()) == 1


def test_r13_repeated_start_of_an_open_session_is_activity():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 20).start("laptop", user="alice")  # a retry: pushes the timeout to 09:50

    assert s.last == []
    s.advance(1, 9, 45)
    assert s.open_sessions() == 1
    s.advance(1, 9, 50)
    assert s.open_sessions() == 0
    assert len(s.consumed()) == 1


def test_r13_repeated_start_at_the_device_limit_is_not_a_sixth_device():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for device in ("laptop", "tablet", "phone", "desktop", "tv"):
        s.start(device, user="alice")
    s.at(1, 9, 1).start("tv", user="alice")

    assert s.last == []
    assert s.denied() == []


def test_r13_repeated_anonymous_start_does_not_consume_a_second_pass():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1")
    s.at(1, 9, 1).start("anon-1")

    assert len(s.consumed()) == 1
    assert s.open_sessions() == 1


def test_r13_start_of_an_ended_session_within_the_horizon_changes_nothing():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1")
    s.at(1, 9, 10).end("anon-1")
    s.at(1, 18, 0).start("anon-1")  # window long over: a new session would need a pass

    assert s.last == []
    assert s.open_sessions() == 0
    assert len(s.consumed()) == 1


def test_r13_start_of_a_timed_out_session_within_the_horizon_changes_nothing():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 20, 0).start("laptop", user="alice")

    assert s.last == []
    assert s.open_sessions() == 0
    assert len(s.consumed()) == 1


def test_r13_start_of_a_discontinued_session_within_the_horizon_changes_nothing():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for n in range(9):
        s.start(f"anon-{n}")
    s.start("laptop", user="alice")
    s.at(1, 9, 20).heartbeat("laptop")
    for n in range(9):
        s.end(f"anon-{n}")
    s.at(1, 9, 45).heartbeat("laptop")
    s.advance(1, 10, 0)  # renewal denied: discontinued
    assert s.pool().sessions["laptop"].state == SessionState.DISCONTINUED

    s.at(1, 10, 5).start("laptop", user="alice")

    assert s.last == []
    assert s.open_sessions() == 0


def test_r13_session_id_is_new_again_after_the_dedupe_horizon():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("anon-1")
    s.at(1, 9, 10).end("anon-1")
    s.at(2, 9, 11).start("anon-1")  # 24 h 1 min after it closed

    assert [(c.ts, c.reason) for c in s.last] == [(when(2, 9, 11), "login")]
    assert s.open_sessions() == 1


def test_r13_repeated_heartbeat_changes_nothing_beyond_the_first():
    once = Scenario.with_pool(tokens=1)
    once.at(1, 9, 0).start("laptop", user="alice")
    once.at(1, 9, 20).heartbeat("laptop")
    once.advance(2, 0, 0)

    twice = Scenario.with_pool(tokens=1)
    twice.at(1, 9, 0).start("laptop", user="alice")
    twice.at(1, 9, 20).heartbeat("laptop")
    twice.apply(twice.inputs[-1])
    twice.advance(2, 0, 0)

    assert twice.outputs == once.outputs
    assert twice.engine.summary() == once.engine.summary()


def test_r13_repeated_end_changes_nothing_beyond_the_first():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice").start("tablet", user="alice")
    s.at(1, 9, 10).end("laptop")
    s.apply(s.inputs[-1])

    assert s.last == []
    assert s.open_sessions() == 1
    assert s.pool().record.ignored_events == 1


def test_r13_redelivered_allocation_changes_nothing():
    s = Scenario.with_pool(tokens=2, licence=3).uap_assign("alice")
    for event in list(s.inputs):
        s.apply(event)

    assert s.rejected() == []
    assert s.pool().capacity == 20


def test_r13_redelivered_heartbeat_after_the_clock_moved_on_changes_nothing():
    # A redelivery of an already-applied heartbeat must not count as fresh activity,
    # even though it now arrives behind the group clock (SPEC §3 would apply it late).
    def morning(redeliver: bool) -> Scenario:
        s = Scenario.with_pool(tokens=1)
        s.at(1, 9, 0).start("laptop", user="alice")
        s.at(1, 9, 10).heartbeat("laptop")  # laptop open until 09:40
        heartbeat = s.inputs[-1]
        s.at(1, 9, 35).start("anon-1")  # the group clock moves to 09:35
        if redeliver:
            s.apply(heartbeat)
        s.advance(1, 12, 0)
        return s

    once, twice = morning(redeliver=False), morning(redeliver=True)

    assert [c.reason for c in once.consumed()] == ["login", "login"]
    assert twice.outputs == once.outputs
    assert twice.engine.summary() == once.engine.summary()

"""R3: a holder still active at the end of the window consumes one more pass, hourly."""

from builders import Scenario, when


def test_r3_active_past_the_hour_consumes_a_second_pass_at_window_end_seed_day_1():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.keep_alive("laptop", minutes=80)  # heartbeats 09:10 … 10:20
    s.at(1, 10, 20).end("laptop")
    s.advance(2, 0, 0)

    assert [(c.ts, c.reason, c.session_id) for c in s.consumed()] == [
        (when(1, 9, 0), "login", "laptop"),
        (when(1, 10, 0), "renewal", "laptop"),
    ]
    assert s.consumed()[1].returns_at == when(29, 10, 0)


def test_r3_renewal_repeats_every_hour_until_all_sessions_close():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.keep_alive("laptop", minutes=210)  # until 12:30
    s.end("laptop")
    s.advance(1, 18, 0)

    assert [c.ts for c in s.consumed()] == [
        when(1, 9, 0),
        when(1, 10, 0),
        when(1, 11, 0),
        when(1, 12, 0),
    ]


def test_r3_no_renewal_when_every_session_closed_before_window_end():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.keep_alive("laptop", minutes=50)
    s.end("laptop")
    s.advance(1, 12, 0)

    assert len(s.consumed()) == 1


def test_r3_one_open_device_is_enough_to_renew_the_shared_window():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 10).start("tablet", user="alice")
    s.at(1, 9, 20).end("laptop")
    s.at(1, 9, 35).heartbeat("tablet")
    s.advance(1, 10, 0)

    renewals = [c for c in s.consumed() if c.reason == "renewal"]
    assert [(c.ts, c.user_id) for c in renewals] == [(when(1, 10, 0), "alice")]
    assert s.in_use() == 2


def test_r3_renewal_happens_on_a_clock_tick_without_any_event():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 25).heartbeat("laptop")
    s.at(1, 9, 50).heartbeat("laptop")
    s.advance(1, 10, 0)

    assert [(c.ts, c.reason) for c in s.last] == [(when(1, 10, 0), "renewal")]


def test_r3_window_after_renewal_runs_from_the_old_window_end():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice")
    s.keep_alive("laptop", minutes=60, every=15)  # renewed at 10:00, window [10:00, 11:00)
    s.end("laptop")
    s.at(1, 10, 59).start("tablet", user="alice")  # inside the renewed window: joins
    s.at(1, 10, 59).end("tablet")
    s.advance(1, 12, 0)

    assert [c.ts for c in s.consumed()] == [when(1, 9, 0), when(1, 10, 0)]

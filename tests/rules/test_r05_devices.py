"""R5: an identified user may hold at most 5 open sessions (devices) at once."""

from builders import GROUP, Scenario, when

from rules import Config
from schemas import AccessDenied

DEVICES = ["laptop", "tablet", "phone", "desktop", "tv"]


def test_r5_five_devices_share_one_pass_seed_day_15():
    s = Scenario.with_pool(tokens=1)
    s.at(15, 9, 0)
    for device in DEVICES:
        s.start(device, user="alice", device=device)

    assert len(s.consumed()) == 1
    assert s.open_sessions() == 5
    assert s.denied() == []


def test_r5_sixth_concurrent_session_is_denied_too_many_sessions_and_consumes_nothing():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for device in DEVICES:
        s.start(device, user="alice")
    in_use = s.in_use()

    s.at(1, 9, 5).start("watch", user="alice")

    assert s.last == [
        AccessDenied(
            event_id=s.last[0].event_id,
            ts=when(1, 9, 5),
            group=GROUP,
            user_id="alice",
            session_id="watch",
            reason="too_many_sessions",
            renewal=False,
        )
    ]
    assert s.in_use() == in_use
    assert s.open_sessions() == 5


def test_r5_sixth_session_is_denied_in_a_renewed_window_too():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for device in DEVICES:
        s.start(device, user="alice")
    s.keep_alive(*DEVICES, minutes=90)
    s.at(1, 10, 30).start("watch", user="alice")

    assert [d.reason for d in s.last] == ["too_many_sessions"]
    assert len(s.consumed()) == 2  # login + one renewal, nothing for the denied device


def test_r5_after_one_device_closes_another_may_join():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for device in DEVICES:
        s.start(device, user="alice")
    s.at(1, 9, 10).end("tv")
    s.at(1, 9, 11).start("watch", user="alice")

    assert s.last == []
    assert s.open_sessions() == 5
    assert len(s.consumed()) == 1


def test_r5_device_limit_is_configurable():
    s = Scenario.with_pool(tokens=1, config=Config(max_devices=2))
    s.at(1, 9, 0).start("laptop", user="alice").start("tablet", user="alice")
    s.start("phone", user="alice")

    assert [d.reason for d in s.last] == ["too_many_sessions"]
    assert s.open_sessions() == 2


def test_r5_device_limit_is_per_user_not_per_pool():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0)
    for device in DEVICES:
        s.start(f"alice-{device}", user="alice")
    s.start("bob-laptop", user="bob")

    assert s.denied() == []
    assert s.open_sessions() == 6

"""R11: a session start in a group with no allocation is denied (no_allocation)."""

from builders import Scenario, when

from schemas import AccessDenied


def test_r11_start_in_a_never_allocated_group_is_denied_no_allocation():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice", group="marketing")

    assert s.last == [
        AccessDenied(
            event_id=s.last[0].event_id,
            ts=when(1, 9, 0),
            group="marketing",
            user_id="alice",
            session_id="laptop",
            reason="no_allocation",
            renewal=False,
        )
    ]
    assert s.consumed() == []


def test_r11_anonymous_start_in_an_unknown_group_is_denied_no_allocation():
    s = Scenario()
    s.at(1, 9, 0).start("anon-1", group="nowhere")

    assert [(d.reason, d.user_id, d.renewal) for d in s.last] == [
        ("no_allocation", None, False)
    ]


def test_r11_group_allocated_zero_tokens_denies_no_allocation():
    s = Scenario.with_pool(tokens=0)
    s.at(1, 9, 0).start("laptop", user="alice")

    assert [d.reason for d in s.last] == ["no_allocation"]
    assert s.in_use() == 0


def test_r11_unknown_group_keeps_no_state_and_ignores_heartbeats_and_ends():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice", group="marketing")
    s.at(1, 9, 5).heartbeat("laptop", group="marketing")
    assert s.last == []
    s.at(1, 9, 10).end("laptop", group="marketing")
    assert s.last == []

    assert "marketing" not in s.engine.summary()
    assert s.engine.unknown_group_events == 3


def test_r11_unknown_group_does_not_touch_allocated_pools():
    s = Scenario.with_pool(tokens=1)
    s.at(1, 9, 0).start("laptop", user="alice", group="marketing")

    assert s.in_use() == 0
    assert s.pool().available == 10

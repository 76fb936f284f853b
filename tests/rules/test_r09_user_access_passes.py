"""R9: a user access pass (UAP) covers its user everywhere; removing one used in the
last 7 days quarantines its token until last use + 7 days."""

from builders import Scenario


def full_licence_with_alice_uap() -> Scenario:
    """Licence 2 = alice's UAP + one group token. Alice last uses her UAP on day 1 at
    09:20 (a heartbeat), then her session ends."""
    s = Scenario.with_pool(tokens=1, licence=2).uap_assign("alice")
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 20).heartbeat("laptop")
    s.at(1, 9, 25).end("laptop")
    assert s.rejected() == []
    return s


def test_r9_uap_holder_never_consumes_login_passes_in_any_group():
    s = Scenario.with_pool(tokens=1, licence=10).group("support", 1).uap_assign("alice")
    s.at(1, 9, 0).start("laptop", user="alice")
    s.start("tablet", user="alice", group="support")
    for _ in range(18):  # three hours of activity in both groups
        s.later(minutes=10).heartbeat("laptop").heartbeat("tablet", group="support")
    s.advance(1, 18, 0)

    assert s.consumed() == []
    assert s.denied() == []
    assert s.in_use() == 0
    assert s.in_use("support") == 0


def test_r9_uap_holder_is_admitted_when_the_login_pool_is_exhausted():
    s = Scenario.with_pool(tokens=1, licence=10).uap_assign("alice")
    s.at(1, 9, 0)
    for n in range(10):
        s.start(f"anon-{n}")
    s.start("laptop", user="alice")

    assert s.last == []
    assert s.open_sessions() == 11


def test_r9_uap_assigned_during_an_open_window_stops_renewals():
    s = Scenario.with_pool(tokens=1, licence=10)
    s.at(1, 9, 0).start("laptop", user="alice")  # a login pass, window until 10:00
    s.at(1, 9, 20).heartbeat("laptop")
    s.at(1, 9, 30).uap_assign("alice")
    s.keep_alive("laptop", minutes=180)  # active until 12:30
    s.advance(1, 18, 0)

    assert [c.reason for c in s.consumed()] == ["login"]


def test_r9_after_uap_removal_the_user_needs_login_passes_again():
    s = full_licence_with_alice_uap()
    s.at(20, 9, 0).uap_remove("alice")
    s.at(20, 10, 0).start("laptop-2", user="alice")

    assert [(c.user_id, c.reason) for c in s.last] == [("alice", "login")]


def test_r9_removing_a_uap_used_in_the_last_7_days_quarantines_its_token():
    s = full_licence_with_alice_uap()
    s.at(3, 12, 0).uap_remove("alice")

    s.uap_assign("bob")  # the quarantined token is not free
    assert len(s.last) == 1 and s.last[0].reason
    s.group(tokens=2)  # nor can a group take it
    assert len(s.rejected()) == 2
    assert s.pool().capacity == 10


def test_r9_quarantine_lasts_until_last_use_plus_7_days():
    s = full_licence_with_alice_uap()  # last use day 1 09:20
    s.at(3, 12, 0).uap_remove("alice")

    s.at(8, 9, 19, 59, 999_999).group(tokens=2)
    assert len(s.rejected()) == 1
    s.at(8, 9, 20).group(tokens=2)
    assert len(s.rejected()) == 1
    assert s.pool().capacity == 20


def test_r9_reassigning_to_the_same_user_within_quarantine_costs_nothing():
    s = full_licence_with_alice_uap()
    s.at(3, 12, 0).uap_remove("alice")
    s.at(5, 12, 0).uap_assign("alice")  # licence is full: only free because quarantined

    assert s.rejected() == []
    s.at(5, 13, 0).start("laptop-2", user="alice")
    assert s.consumed() == []


def test_r9_quarantined_token_cannot_be_reassigned_to_another_user():
    s = full_licence_with_alice_uap()
    s.at(3, 12, 0).uap_remove("alice")
    s.at(5, 12, 0).uap_assign("bob")

    assert [r.request.user_id for r in s.rejected()] == ["bob"]
    s.at(5, 13, 0).start("bob-laptop", user="bob")
    assert [c.user_id for c in s.last] == ["bob"]  # bob has no UAP: a login pass


def test_r9_removing_a_never_used_uap_frees_its_token_at_once():
    s = Scenario.with_pool(tokens=1, licence=2).uap_assign("alice")
    s.at(3, 12, 0).uap_remove("alice").uap_assign("bob")

    assert s.rejected() == []


def test_r9_removing_a_uap_last_used_over_7_days_ago_frees_its_token_at_once():
    s = full_licence_with_alice_uap()  # last use day 1 09:20
    s.at(8, 9, 20).uap_remove("alice").group(tokens=2)

    assert s.rejected() == []
    assert s.pool().capacity == 20


def test_r9_use_in_any_group_counts_as_recent_use():
    s = Scenario.with_pool(tokens=1, licence=3).group("support", 1).uap_assign("alice")
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(4, 9, 0).start("tablet", user="alice", group="support")  # last use: day 4
    s.at(10, 9, 0).uap_remove("alice").uap_assign("bob")

    assert [r.request.user_id for r in s.rejected()] == ["bob"]
    s.at(11, 9, 0).uap_assign("bob")
    assert len(s.rejected()) == 1


def test_r9_removed_uap_means_the_next_activity_of_open_sessions_needs_a_login_pass():
    """Sessions a UAP covered keep running after its removal, but continued use then
    needs a login pass (R3), consumed at their next activity."""
    s = Scenario.with_pool(tokens=1, licence=2).uap_assign("alice")
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 10).uap_remove("alice")
    assert s.consumed() == []
    s.at(1, 9, 15).heartbeat("laptop")
    renewal = s.consumed()
    assert [(c.reason, c.session_id) for c in renewal] == [("renewal", "laptop")]
    assert s.in_use() == 1
    s.at(1, 9, 20).heartbeat("laptop")  # inside the new window: nothing more
    assert len(s.consumed()) == 1


def test_r9_removed_uap_with_an_exhausted_pool_discontinues_the_open_sessions():
    s = Scenario.with_pool(tokens=1, licence=2).uap_assign("alice")
    s.at(1, 9, 0)
    for n in range(10):
        s.start(f"anon-{n}")
    s.start("laptop", user="alice")
    s.at(1, 9, 10).uap_remove("alice")
    s.at(1, 9, 15).heartbeat("laptop")
    assert [(d.reason, d.renewal, d.session_id) for d in s.denied()] == [
        ("pool_exhausted", True, "laptop")
    ]
    s.at(1, 9, 20).heartbeat("laptop")  # discontinued: no longer open (R4)
    assert s.pool().record.ignored_events == 1

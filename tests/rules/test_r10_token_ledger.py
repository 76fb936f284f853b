"""R10: total_tokens ≥ UAP tokens + quarantined tokens + Σ group tokens."""

from builders import GROUP, Scenario, when

from schemas import AllocationRejected, LoginGroup


def test_r10_group_allocation_within_the_licence_gives_ten_passes_per_token():
    s = Scenario().licence(10).group(GROUP, 3)

    assert s.rejected() == []
    assert s.pool().capacity == 30
    assert s.pool().available == 30


def test_r10_group_allocation_needs_a_licence_first():
    s = Scenario().group(GROUP, 1)

    assert len(s.last) == 1
    rejection = s.last[0]
    assert isinstance(rejection, AllocationRejected)
    assert rejection.reason
    assert rejection.request == s.inputs[-1]


def test_r10_allocation_beyond_the_licence_is_rejected_with_reason_and_request():
    s = Scenario().licence(5).group(GROUP, 3)
    s.at(1, 8, 0).group("support", 3)

    assert s.last == [
        AllocationRejected(
            event_id=s.last[0].event_id,
            ts=when(1, 8, 0),
            reason=s.last[0].reason,
            request=LoginGroup(event_id=s.inputs[-1].event_id, ts=when(1, 8, 0),
                               group="support", tokens=3),
        )
    ]
    assert s.last[0].reason


def test_r10_rejected_raise_of_an_existing_group_changes_nothing():
    s = Scenario.with_pool(tokens=3, licence=5)
    s.at(1, 9, 0).start("laptop", user="alice")
    before = s.engine.summary()

    s.at(1, 9, 5).group(GROUP, 6)

    assert [type(o) for o in s.last] == [AllocationRejected]
    assert s.engine.summary() == before
    assert s.pool().capacity == 30


def test_r10_rejected_allocation_of_a_new_group_changes_nothing():
    s = Scenario.with_pool(tokens=3, licence=5)
    before = s.engine.summary()

    s.at(1, 9, 0).group("support", 3)

    assert [type(o) for o in s.last] == [AllocationRejected]
    assert s.engine.summary() == before


def test_r10_ledger_counts_uaps_and_the_tokens_of_every_group():
    s = Scenario.with_pool(tokens=1, licence=4).uap_assign("alice").group("support", 2)
    assert s.rejected() == []  # 1 UAP + 1 + 2 = 4

    s.uap_assign("bob")
    s.group("support", 3)
    s.group(GROUP, 2)

    assert [type(r.request).__name__ for r in s.rejected()] == [
        "UserAccess",
        "LoginGroup",
        "LoginGroup",
    ]
    assert s.pool("support").capacity == 20
    assert s.pool().capacity == 10


def test_r10_uap_assignment_beyond_the_licence_is_rejected():
    s = Scenario().licence(1).uap_assign("alice").uap_assign("bob")

    assert [r.request.user_id for r in s.rejected()] == ["bob"]
    s.at(1, 9, 0).group(GROUP, 0).start("laptop", user="bob")
    assert [d.reason for d in s.denied()] == ["no_allocation"]  # bob holds no UAP


def test_r10_licence_below_what_is_allocated_is_rejected_and_changes_nothing():
    s = Scenario.with_pool(tokens=5, licence=10)
    s.licence(4)

    assert [type(r.request).__name__ for r in s.rejected()] == ["Licence"]
    s.group("support", 5)  # the licence is still 10
    assert len(s.rejected()) == 1


def test_r10_raising_and_lowering_the_licence_within_allocation_is_accepted():
    s = Scenario.with_pool(tokens=5, licence=10).licence(20).licence(5)

    assert s.rejected() == []


def pool_with_25_in_use() -> Scenario:
    """Licence 5, group of 3 tokens (30 passes); 10 passes consumed on day 1, 10 on
    day 2 and 5 on day 3 (sessions ended)."""
    s = Scenario.with_pool(tokens=3, licence=5)
    for day, n in ((1, 10), (2, 10), (3, 5)):
        s.at(day, 9, 0)
        for i in range(n):
            s.start(f"d{day}-anon-{i}").end(f"d{day}-anon-{i}")
    assert s.in_use() == 25
    return s


def test_r10_lowering_below_passes_in_use_is_accepted_and_capacity_drops_at_once():
    s = pool_with_25_in_use()
    s.at(4, 9, 0).group(GROUP, 1)

    assert s.rejected() == []
    assert s.pool().capacity == 10
    assert s.pool().available == 0
    assert s.in_use() == 25


def test_r10_after_lowering_no_pass_is_consumed_until_returns_bring_in_use_below_capacity():
    s = pool_with_25_in_use()
    s.at(4, 9, 0).group(GROUP, 1)

    s.at(4, 10, 0).start("a1", user="alice")
    assert [d.reason for d in s.last] == ["pool_exhausted"]
    s.at(29, 10, 0).start("a2", user="alice")  # 10 returned at 09:00: in use 15 > 10
    assert [type(o).__name__ for o in s.last] == ["PassReturned", "AccessDenied"]
    assert s.last[1].reason == "pool_exhausted"
    s.at(30, 10, 0).start("a3", user="alice")  # 10 more returned: in use 5 < 10
    assert [type(o).__name__ for o in s.last] == ["PassReturned", "PassConsumed"]
    assert s.last[1].available == 4


def test_r10_lowered_group_stays_counted_as_max_of_new_tokens_and_ceil_in_use_over_10():
    s = pool_with_25_in_use()
    s.at(4, 9, 0).group(GROUP, 1)  # counted max(1, ceil(25/10)) = 3 of the licence's 5

    s.group("support", 3)
    assert len(s.rejected()) == 1
    s.group("support", 2)
    assert len(s.rejected()) == 1

    s.advance(29, 9, 0)  # 10 return: in use 15, counted max(1, 2) = 2
    s.group("support", 3)
    assert len(s.rejected()) == 1
    s.group("support", 4)
    assert len(s.rejected()) == 2

    s.advance(30, 9, 0)  # 10 more return: in use 5, counted max(1, 1) = 1
    s.group("support", 4)
    assert len(s.rejected()) == 2
    assert s.pool("support").capacity == 40


def test_r10_allocation_at_t_sees_the_returns_due_by_t_in_other_groups():
    # Timers due at or before t fire before the input stamped t (SPEC §2): the 10 passes
    # the lowered group returns at day 29 09:00 free a token for an allocation stamped then.
    s = pool_with_25_in_use()
    s.at(4, 9, 0).group(GROUP, 1).group("support", 2)  # licence 5 = 3 counted + 2

    s.at(29, 9, 0).group("support", 3)  # no tick in between: replay uses event time only

    assert s.rejected() == []
    assert s.pool("support").capacity == 30

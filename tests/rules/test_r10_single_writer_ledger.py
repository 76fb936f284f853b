"""R9, R10 on the stream's single-writer path: however many producers change allocations
concurrently, in whatever order their changes reach the ledger, and however late
the grants reach the group partitions and their reports come back, the licence is
never over-allocated.

The group partitions are modelled here as the worker runs them (`PartitionTask`):
a partition applies grants in the order sent, consumes passes up to its capacity,
returns them, and reports the tokens it counts at every change. What a partition
holds, or will hold once a grant in flight lands, must always fit the licence.
"""

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from rules import Config
from rules.single_writer import PENDING, SingleWriterLedger
from schemas.inputs import Allocation, Licence, LoginGroup, UserAccess
from schemas.internal import Feedback, GroupTokens, GroupUsage, UapLastUse, UserAccessChange
from schemas.timestamps import to_micros

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PARTITIONS = 2
GROUPS = ["a", "b"]
USERS = ["u1", "u2", "u3"]


@dataclass
class GroupPartition:
    """One group as its partition sees it."""

    tokens: int = 0
    grant_seq: int = 0
    in_use: int = 0
    reported: int = 0

    @property
    def counted(self) -> int:
        return max(self.tokens, math.ceil(self.in_use / 10))


@dataclass
class World:
    writer: SingleWriterLedger
    groups: dict[str, GroupPartition] = field(default_factory=dict)
    grants: dict[int, deque[GroupTokens | UserAccessChange]] = field(default_factory=dict)
    feedback: deque[Feedback] = field(default_factory=deque)
    offset: int = 0
    minutes: int = 0

    def partition(self, group: str) -> int:
        return GROUPS.index(group) % PARTITIONS

    def now(self) -> datetime:
        self.minutes += 1
        return T0 + timedelta(minutes=self.minutes)

    def allocate(self, ev: Allocation) -> None:
        grants, _ = self.writer.decide(ev, self.offset)
        self.offset += 1
        for grant in grants:
            if isinstance(grant, GroupTokens):
                self.grants.setdefault(self.partition(grant.group), deque()).append(grant)
            else:
                for p in range(PARTITIONS):
                    self.grants.setdefault(p, deque()).append(grant)

    def report(self, group: str) -> None:
        g = self.groups[group]
        if g.counted != g.reported:
            g.reported = g.counted
            self.feedback.append(GroupUsage(ts=T0, group=group, counted_tokens=g.counted,
                                            grant_seq=g.grant_seq))

    def deliver_grant(self, partition: int, last_use: int | None) -> None:
        queue = self.grants.get(partition)
        if not queue:
            return
        grant = queue.popleft()
        if isinstance(grant, GroupTokens):
            g = self.groups.setdefault(grant.group, GroupPartition())
            g.tokens, g.grant_seq = grant.tokens, grant.seq
            g.reported = g.counted
            self.feedback.append(GroupUsage(ts=T0, group=grant.group, counted_tokens=g.counted,
                                            grant_seq=g.grant_seq))
        elif not grant.assigned:
            self.feedback.append(UapLastUse(ts=T0, user_id=grant.user_id, partition=partition,
                                            last_used=last_use))

    def consume(self, group: str, passes: int) -> None:
        g = self.groups.get(group)
        if g is not None:
            g.in_use = max(g.in_use, min(10 * g.tokens, g.in_use + passes))  # capacity
            self.report(group)

    def give_back(self, group: str, passes: int) -> None:
        g = self.groups.get(group)
        if g is not None:
            g.in_use = max(0, g.in_use - passes)
            self.report(group)

    def deliver_feedback(self) -> None:
        if self.feedback:
            self.writer.on_feedback(self.feedback.popleft())

    def held(self) -> int:
        """Tokens held now or once the grants in flight land: every group's largest
        share, every UAP, every quarantined token (R9, R10)."""
        s = self.writer.state
        shares = {g: max(n, self.groups.get(g, GroupPartition()).counted)
                  for g, n in s.tokens.items()}
        for queue in self.grants.values():
            for grant in queue:
                if isinstance(grant, GroupTokens):
                    shares[grant.group] = max(shares.get(grant.group, 0), grant.tokens)
        t = to_micros(T0 + timedelta(minutes=self.minutes))
        quarantined = sum(1 for until in s.ledger.quarantine.values() if until > t)
        return len(s.ledger.uap) + quarantined + sum(shares.values())


group_changes = st.builds(lambda g, n: ("group", g, n), st.sampled_from(GROUPS),
                          st.integers(0, 6))
allocations = st.one_of(
    st.builds(lambda n: ("licence", n), st.integers(0, 8)),
    group_changes,
    st.builds(lambda u, a: ("uap", u, a), st.sampled_from(USERS),
              st.sampled_from(["assign", "remove"])),
)
grant_arrives = st.builds(lambda p, u: ("grant", p, u), st.integers(0, PARTITIONS - 1),
                          st.none() | st.integers(0, 10**9))
steps = st.one_of(
    group_changes,  # the contended path, drawn most often
    grant_arrives,
    st.just(("feedback",)),
    allocations,
    st.builds(lambda g, n: ("consume", g, n), st.sampled_from(GROUPS), st.integers(1, 80)),
    st.builds(lambda g, n: ("return", g, n), st.sampled_from(GROUPS), st.integers(1, 80)),
)


def run(world: World, plan: list[tuple]) -> None:
    for step in plan:
        kind = step[0]
        ts = world.now()
        if kind == "licence":
            world.allocate(Licence(event_id=f"l{world.offset}", ts=ts, total_tokens=step[1]))
        elif kind == "group":
            world.allocate(LoginGroup(event_id=f"g{world.offset}", ts=ts, group=step[1],
                                      tokens=step[2]))
        elif kind == "uap":
            world.allocate(UserAccess(event_id=f"u{world.offset}", ts=ts, user_id=step[1],
                                      action=step[2]))
        elif kind == "grant":
            world.deliver_grant(step[1], step[2])
        elif kind == "consume":
            world.consume(step[1], step[2])
        elif kind == "return":
            world.give_back(step[1], step[2])
        else:
            world.deliver_feedback()
        total = world.writer.state.ledger.total_tokens
        assert world.held() <= total, (step, world.held(), total, world.writer.state)


@given(licence=st.integers(1, 8), plan=st.lists(steps, max_size=40))
@settings(max_examples=1500, deadline=None)
def test_r10_concurrent_allocation_changes_never_over_allocate_the_licence(
    licence: int, plan: list[tuple]
) -> None:
    run(World(SingleWriterLedger(Config(), PARTITIONS)), [("licence", licence), *plan])


@given(plan=st.lists(steps, max_size=80), request=allocations)
@settings(max_examples=200, deadline=None)
def test_r10_a_rejected_allocation_changes_nothing(plan, request) -> None:
    world = World(SingleWriterLedger(Config(), PARTITIONS))
    run(world, plan)
    before = world.writer.to_bytes()
    ts = world.now()
    if request[0] == "licence":
        ev: Allocation = Licence(event_id="x", ts=ts, total_tokens=request[1])
    elif request[0] == "group":
        ev = LoginGroup(event_id="x", ts=ts, group=request[1], tokens=request[2])
    else:
        ev = UserAccess(event_id="x", ts=ts, user_id=request[1], action=request[2])
    probe = SingleWriterLedger.from_bytes(Config(), PARTITIONS, before)
    grants, rejection = probe.decide(ev, world.offset)
    if rejection is None:
        return
    assert grants == []
    old = SingleWriterLedger.from_bytes(Config(), PARTITIONS, before).state
    new = probe.state
    t = to_micros(ts)
    assert (new.tokens, new.counted, new.grant_seq, new.pending) == (
        old.tokens, old.counted, old.grant_seq, old.pending)
    assert (new.ledger.total_tokens, new.ledger.uap) == (old.ledger.total_tokens, old.ledger.uap)
    assert new.ledger.quarantine == {u: q for u, q in old.ledger.quarantine.items() if q > t}


@given(plan=st.lists(steps, max_size=80))
@settings(max_examples=100, deadline=None)
def test_r10_decisions_are_a_pure_function_of_the_inputs(plan) -> None:
    first, second = World(SingleWriterLedger(Config(), PARTITIONS)), World(
        SingleWriterLedger(Config(), PARTITIONS))
    run(first, plan)
    run(second, plan)
    assert first.writer.to_bytes() == second.writer.to_bytes()


def test_r10_a_report_about_a_superseded_grant_does_not_lower_the_count() -> None:
    """The race the grant sequence closes (too deep for the random search above to
    find reliably): group a's partition reports 1 token; meanwhile the ledger raised a
    to 6 and lowered it to 1 again, both grants still in flight. Taking the old report
    at its word would let b have 5 tokens while a's partition is about to hold 6."""
    world = World(SingleWriterLedger(Config(), PARTITIONS))
    run(world, [("licence", 6), ("group", "a", 1), ("grant", 0, None), ("group", "a", 6),
                ("group", "a", 1), ("feedback",)])
    assert world.writer.committed(to_micros(T0 + timedelta(days=1))) == 6
    run(world, [("group", "b", 5)])
    assert "b" not in world.writer.state.tokens
    run(world, [("grant", 0, None), ("consume", "a", 60), ("feedback",), ("grant", 0, None),
                ("feedback",)])
    assert world.writer.committed(to_micros(T0 + timedelta(days=1))) == 6  # 60 in use


def test_r9_a_removed_uap_stays_counted_until_every_partition_told() -> None:
    world = World(SingleWriterLedger(Config(), PARTITIONS))
    run(world, [("licence", 1), ("uap", "u1", "assign"), ("uap", "u1", "remove")])
    assert world.writer.state.ledger.quarantine == {"u1": PENDING}
    run(world, [("group", "a", 1)])
    assert "a" not in world.writer.state.tokens  # the pending token is still held
    for p in range(PARTITIONS):  # each partition: the assign, then the remove
        run(world, [("grant", p, None), ("grant", p, None), ("feedback",)])
    assert world.writer.state.ledger.quarantine == {}  # never used: freed (R9)
    run(world, [("group", "a", 1)])
    assert world.writer.state.tokens == {"a": 1}

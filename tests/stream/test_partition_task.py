"""Crash safety of one partition's state without a broker (SPEC §3): a crash between
the changelog writes of a checkpoint never leaves it half-applied."""

import itertools
import random

import pytest

from rules import Config, Engine
from schemas import (
    Licence,
    LoginGroup,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
)
from schemas.internal import GroupTokens
from stream_app.site.synthetic import generate
from stream_app.worker.partition_task import ENDS, GRANTS, HEARTBEATS, STARTS, PartitionTask

SOURCE = {SessionStart: STARTS, SessionHeartbeat: HEARTBEATS, SessionEnd: ENDS}


def workload(n: int = 3000) -> list[object]:
    events = []
    for _, ev in itertools.islice(generate(users=60, groups=3, days=30, seed=11), n):
        if isinstance(ev, LoginGroup):
            ev = GroupTokens(event_id=ev.event_id, ts=ev.ts, group=ev.group, tokens=ev.tokens)
        elif isinstance(ev, Licence):
            continue  # decided by the ledger, never reaches a group partition
        events.append(ev)
    return events


def feed(task: PartitionTask, events: list[object], offsets: dict[int, int]) -> None:
    for ev in events:
        source = GRANTS if isinstance(ev, GroupTokens) else SOURCE[type(ev)]
        offsets[source] = offsets.get(source, -1) + 1
        if not task.is_applied(source, offsets[source]):
            task.offer(source, offsets[source], ev, handle=None)
    task.flush_merge()


def write(table: dict[bytes, bytes], updates: list[tuple[bytes, bytes | None]]) -> None:
    for key, value in updates:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def snapshot(engine: Engine) -> bytes:
    return engine.snapshot()


@pytest.mark.parametrize("cut", [0, 1, 2, 5, 17, -1])
def test_crash_between_two_changelog_writes_is_completed_on_recovery(cut: int) -> None:
    """The commit record goes first and carries every update of the checkpoint, so
    recovery finishes the updates a crash cut short: the state equals no crash."""
    events = workload()
    half = len(events) // 2
    config = Config()

    reference = PartitionTask(0, config)
    offsets: dict[int, int] = {}
    feed(reference, events, offsets)

    table: dict[bytes, bytes] = {}
    task = PartitionTask(0, config)
    offsets = {}
    feed(task, events[:half], offsets)
    cp = task.checkpoint()
    table[cp.commit[0]] = cp.commit[1]
    write(table, cp.updates)
    feed(task, events[half:], offsets)
    cp = task.checkpoint()
    assert len(cp.updates) > 20
    table[cp.commit[0]] = cp.commit[1]  # the commit record lands ...
    write(table, cp.updates[: cut if cut >= 0 else len(cp.updates)])  # ... then a crash

    recovered, redo = PartitionTask.load(0, config, table)
    write(table, redo)
    assert recovered.engine.summary() == reference.engine.summary()
    assert snapshot(recovered.engine) == snapshot(PartitionTask.load(0, config, table)[0].engine)
    for group, pool in reference.engine.pools.items():
        got = recovered.engine.pools[group]
        assert got.record == pool.record
        assert got.sessions == pool.sessions
        assert got.holders == pool.holders
        assert got.returns_calendar() == pool.returns_calendar()


def test_inputs_already_applied_are_skipped_after_recovery() -> None:
    """Re-delivered records at or below the committed offsets change nothing."""
    events = workload(1500)
    config = Config()
    table: dict[bytes, bytes] = {}
    task = PartitionTask(0, config)
    offsets: dict[int, int] = {}
    feed(task, events, offsets)
    cp = task.checkpoint()
    table[cp.commit[0]] = cp.commit[1]
    write(table, cp.updates)
    before = task.engine.summary()

    recovered, _ = PartitionTask.load(0, config, table)
    feed(recovered, events, {})  # the whole partition re-delivered from offset 0
    assert recovered.checkpoint().outputs == []
    assert recovered.engine.summary() == before


def test_a_checkpoint_writes_each_touched_record_once_and_small() -> None:
    """One input writes O(1) small records, whatever the pool size (SPEC §6)."""
    rng = random.Random(3)
    config = Config()
    for tokens in (1, 100, 10_000):
        task = PartitionTask(0, config)
        base = workload(50)[0]
        assert isinstance(base, GroupTokens)
        task.offer(GRANTS, 0, GroupTokens(event_id="g", ts=base.ts, group="g",
                                          tokens=tokens), None)
        task.flush_merge()
        task.checkpoint()
        start = SessionStart(event_id="s", ts=base.ts, group="g", session_id=f"s{rng.random()}",
                             user_id="ann")
        task.offer(STARTS, 0, start, None)
        task.flush_merge()
        cp = task.checkpoint()
        sizes = [len(k) + len(v or b"") for k, v in cp.updates]
        assert len(cp.updates) <= 4 and max(sizes) < 200, (tokens, sizes)


def test_an_acknowledgement_never_overtakes_a_record_the_merge_still_holds() -> None:
    """Faust commits the first run of consecutive acknowledged offsets, even one that
    does not start at the committed offset: a ledger mark acknowledged while the grant
    before it waits in the merge would let a crash skip the grant. Acks leave in
    offset order per input."""
    task = PartitionTask(0, Config())
    first = workload(50)[0]
    assert isinstance(first, GroupTokens)
    start = SessionStart(event_id="s", ts=first.ts, group=first.group, session_id="s1",
                         user_id=None)
    task.offer(GRANTS, 0, first, "grant@0")  # held: the session inputs have no head yet
    task.ack_only("mark@1", GRANTS)
    task.ack_only("dead-letter@0", STARTS)
    assert task.waiting() == 1
    assert task.checkpoint().acks == ["dead-letter@0"]  # nothing of grants yet
    task.offer(STARTS, 1, start, "start@1")
    task.flush_merge()
    assert task.checkpoint().acks == ["grant@0", "mark@1", "start@1"]


def test_a_dead_letter_counts_as_applied_once_every_earlier_record_of_its_input_is() -> None:
    """A dead-lettered session record moves its input's applied offset (a restart
    must not read it and send its dead letter again, and the input's lag must reach
    zero), but only past records already applied: never over one the merge still
    holds. A ledger mark never moves the applied offset."""
    task = PartitionTask(0, Config())
    first = workload(50)[0]
    assert isinstance(first, GroupTokens)
    start = SessionStart(event_id="s", ts=first.ts, group=first.group, session_id="s1",
                         user_id=None)
    task.offer(GRANTS, 0, first, None)
    task.ack_only(None, GRANTS)  # a ledger mark at offset 1
    task.offer(STARTS, 0, start, None)  # held: heartbeats and ends have no head yet
    task.ack_only(None, STARTS, 1)  # a dead letter behind the held start
    assert STARTS not in task.applied
    task.flush_merge()
    assert task.applied == {GRANTS: 0, STARTS: 1}
    task.ack_only(None, STARTS, 2)
    assert task.applied[STARTS] == 2
    commit = task.checkpoint().commit
    assert commit is not None
    task.ack_only(None, GRANTS)  # marks while idle: nothing to write
    assert task.checkpoint().commit is None


def test_an_idle_checkpoint_writes_no_commit_record() -> None:
    """Watermarks and idle ticks are acknowledged without a changelog write: an idle
    site must not grow the changelog (and so its recovery time)."""
    task = PartitionTask(0, Config())
    task.ack_only("mark-1")
    task.ack_only("mark-2")
    cp = task.checkpoint()
    assert cp.commit is None and cp.updates == [] and cp.acks == ["mark-1", "mark-2"]

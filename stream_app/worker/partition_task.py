"""One input partition of the worker: event-time merge, engine, and its keyed records.

Nothing here touches Kafka, so crash recovery can be tested without a broker. The
Faust glue feeds records in (`offer`), fires ticks, and at each checkpoint writes what
`checkpoint()` returns, in order:

1. the outputs, then a producer flush: they are durable before the state that
   produced them, so a crash re-applies the batch and re-emits the same ids;
2. the commit record: applied offsets per input topic and every record update of
   the batch, written first so that a crash between the updates leaves enough to
   finish them on recovery (`PartitionTask.load`);
3. the record updates, then a flush, then the acks of the applied input records.

Records re-delivered after a crash whose offset is at or below the applied offset of
their topic are skipped: the state already holds them.
"""

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from rules import Config, Engine, TimestampMerge
from rules.ledger import NEVER_USED
from rules.pool import TOUCH_HOLDER, TOUCH_RETURN, TOUCH_SESSION, TOUCH_UAP, Journal
from rules.records import Holder, PoolRecord, Session
from schemas import (
    AccessDenied,
    AllocationRejected,
    OutputEvent,
    PassConsumed,
    PassReturned,
    Topic,
    encode,
    from_micros,
    to_micros,
)
from schemas.internal import Feedback, Grant, GroupUsage, UapLastUse

# Merge sources of a group partition, in the order that breaks timestamp ties.
GRANTS, STARTS, HEARTBEATS, ENDS = range(4)
SOURCES = 4

_KIND_POOL, _KIND_SESSION, _KIND_HOLDER, _KIND_RETURN, _KIND_UAP, _KIND_COMMIT = (
    "P", "S", "H", "R", "U", "C",
)
_JOURNAL_KIND = {
    TOUCH_SESSION: _KIND_SESSION,
    TOUCH_HOLDER: _KIND_HOLDER,
    TOUCH_RETURN: _KIND_RETURN,
    TOUCH_UAP: _KIND_UAP,
}
_OUTPUT_TOPIC = {
    PassConsumed: Topic.PASS_CONSUMED,
    PassReturned: Topic.PASS_RETURNED,
    AccessDenied: Topic.ACCESS_DENIED,
    AllocationRejected: Topic.ALLOCATION_REJECTED,
}

_key_encoder = msgspec.msgpack.Encoder()
_key_decoder = msgspec.msgpack.Decoder(tuple[int, str, str, str | int])
_record = msgspec.msgpack.Encoder()
_pool_decoder = msgspec.msgpack.Decoder(PoolRecord)
_session_decoder = msgspec.msgpack.Decoder(Session)
_holder_decoder = msgspec.msgpack.Decoder(Holder)
_int_decoder = msgspec.msgpack.Decoder(int)


class Commit(msgspec.Struct, array_like=True):
    offsets: dict[int, int]
    """Merge source → offset of the last record applied from it."""
    updates: list[tuple[bytes, bytes | None]]


_commit_decoder = msgspec.msgpack.Decoder(Commit)


def record_key(partition: int, kind: str, group: str, key: str | int) -> bytes:
    """Table key: the partition comes first, so the table knows its changelog partition
    without an event in scope, and names can hold any character."""
    return _key_encoder.encode((partition, kind, group, key))


def partition_of_key(key: bytes) -> int:
    return _key_decoder.decode(key)[0]


@dataclass
class Output:
    topic: str
    key: bytes
    value: bytes


@dataclass
class Checkpoint:
    outputs: list[Output]
    feedback: list[bytes]
    commit: tuple[bytes, bytes] | None
    """None when nothing changed: only watermarks or idle ticks were acknowledged, and
    writing a commit record for them would grow the changelog while the site is idle."""
    updates: list[tuple[bytes, bytes | None]]
    acks: list[Any]
    offsets: dict[int, int]
    """Merge source → last offset applied, as the state holds it once this is written."""


class _InOrderAcks:
    """One input's acknowledgements, released in offset order.

    Faust commits the first run of consecutive acknowledged offsets it holds, and
    does not check that the run starts at the committed offset when none was
    committed yet (nor when the record right at the committed offset is missing).
    So acknowledging a record while an earlier one of the same partition is still
    held by the merge (a ledger mark, a dead letter behind a held event) could
    commit past the held record, and a crash would then skip it. Here a record's
    acknowledgement waits for every earlier record of its input."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: deque[list[Any]] = deque()
        """[handle, done, offset] per record received and not yet released, in offset
        order (offset -1: a record that must not move the applied offset)."""

    def hold(self, handle: Any, offset: int) -> list[Any]:
        entry = [handle, False, offset]
        self._open.append(entry)
        return entry

    def release(self, entry: list[Any], out: list[Any]) -> int:
        """Mark `entry` done; returns the largest offset of the records released (-1:
        none), every record of the input up to it being handled."""
        entry[1] = True
        queue = self._open
        last = -1
        while queue and queue[0][1]:
            handle, _, offset = queue.popleft()
            out.append(handle)
            if offset > last:
                last = offset
        return last


@dataclass
class _Pending:
    """Applied since the last checkpoint."""

    outputs: list[OutputEvent] = field(default_factory=list)
    groups: set[str] = field(default_factory=set)
    report: set[str] = field(default_factory=set)
    """Groups whose counted tokens the ledger must hear about (a grant applied)."""
    feedback: list[Feedback] = field(default_factory=list)
    acks: list[Any] = field(default_factory=list)


class PartitionTask:
    __slots__ = (
        "_acks",
        "_committed",
        "_journal",
        "_merge",
        "_pending",
        "_reported",
        "applied",
        "engine",
        "partition",
    )

    def __init__(self, partition: int, config: Config) -> None:
        self.partition = partition
        self._journal: Journal = []
        self.engine = Engine(config, journal=self._journal)
        self._merge: TimestampMerge[tuple[int, int, Grant | Any, Any]] = TimestampMerge(SOURCES)
        self._pending = _Pending()
        self._acks = [_InOrderAcks() for _ in range(SOURCES)]
        self.applied: dict[int, int] = {}
        """Merge source → offset of the last record applied (survives restarts)."""
        self._committed: dict[int, int] = {}
        """`applied` as the last commit record wrote it."""
        self._reported: dict[str, int] = {}
        """Group → counted tokens last told to the ledger by this process."""

    # -- recovery ----------------------------------------------------------------

    @classmethod
    def load(
        cls, partition: int, config: Config, table: Mapping[bytes, bytes]
    ) -> tuple["PartitionTask", list[tuple[bytes, bytes | None]]]:
        """Rebuild from the table. Returns the task and the updates of the last commit,
        which the caller writes again: a crash may have cut them short."""
        task = cls(partition, config)
        commit_key = record_key(partition, _KIND_COMMIT, "", "")
        raw = table.get(commit_key)
        redo: list[tuple[bytes, bytes | None]] = []
        values: dict[bytes, bytes | None] = {}
        if raw is not None:
            commit = _commit_decoder.decode(raw)
            task.applied = dict(commit.offsets)
            task._committed = dict(commit.offsets)
            redo = list(commit.updates)
            values.update(redo)
        pools: dict[str, PoolRecord] = {}
        sessions: dict[str, dict[str, Session]] = {}
        holders: dict[str, dict[str, Holder]] = {}
        returns: dict[str, list[tuple[int, int]]] = {}
        uap = task.engine.ledger.uap
        keys = {k for k in table if _key_decoder.decode(k)[0] == partition} | set(values)
        for key in keys:
            value = values[key] if key in values else table.get(key)
            if value is None:
                continue
            _, kind, group, name = _key_decoder.decode(key)
            if kind == _KIND_POOL:
                pools[group] = _pool_decoder.decode(value)
            elif kind == _KIND_SESSION:
                sessions.setdefault(group, {})[str(name)] = _session_decoder.decode(value)
            elif kind == _KIND_HOLDER:
                holders.setdefault(group, {})[str(name)] = _holder_decoder.decode(value)
            elif kind == _KIND_RETURN:
                returns.setdefault(group, []).append((int(name), _int_decoder.decode(value)))
            elif kind == _KIND_UAP:
                uap[str(name)] = _int_decoder.decode(value)
        for group, record in pools.items():
            task.engine.pool(group).load(
                record, sessions.get(group, {}), holders.get(group, {}), returns.get(group, [])
            )
        return task, redo

    # -- input -------------------------------------------------------------------

    def is_applied(self, source: int, offset: int) -> bool:
        return offset <= self.applied.get(source, -1)

    def offer(self, source: int, offset: int, event: Any, handle: Any) -> None:
        """Queue a decoded input; it applies once the merge releases it."""
        entry = self._acks[source].hold(handle, offset)
        self._merge.push(source, to_micros(event.ts), (source, offset, event, entry))
        self._apply(self._merge.ready())

    def waiting(self) -> int:
        """Inputs held back by the merge, waiting for an empty source."""
        return self._merge.pending()

    def flush_merge(self, idle: frozenset[int] | None = None) -> None:
        """The `idle` sources (all, if None) have idled long enough: go on without them."""
        if idle is None:
            self._apply(self._merge.flush())
        else:
            self._apply(self._merge.release_idle(idle))

    def starved(self) -> list[int]:
        return self._merge.starved()

    def _apply(self, items: Iterable[tuple[int, int, Any, Any]]) -> None:
        engine, pending = self.engine, self._pending
        outputs, applied = pending.outputs, self.applied
        acks = self._acks
        for source, offset, event, entry in items:
            if source == GRANTS:
                last = engine.ledger.uap.get(getattr(event, "user_id", ""))
                engine.apply_grant(event, outputs)
                group = getattr(event, "group", None)
                if group is None:  # a UAP change: the partition's replica of UAP holders
                    self._journal.append((TOUCH_UAP, "", event.user_id))
                    if not event.assigned:  # tell the ledger its last use here (R9)
                        pending.feedback.append(UapLastUse(
                            ts=event.ts, user_id=event.user_id, partition=self.partition,
                            last_used=None if last is None or last == NEVER_USED else last,
                        ))
                else:
                    pending.groups.add(group)
                    pending.report.add(group)
            else:
                engine.apply(event, outputs)
                if event.group in engine.pools:
                    pending.groups.add(event.group)
            done = acks[source].release(entry, pending.acks)
            applied[source] = done if done > offset else offset

    def tick(self, now: int, handle: Any) -> None:
        """Wall-clock time: every group's timers due by `now` fire (live mode), but never
        past an input still buffered: that input would turn late."""
        lowest = self._merge.lowest()
        if lowest is not None:
            now = min(now, lowest - 1)
        self.engine.advance(now, self._pending.outputs)
        self._pending.groups.update(self.engine.pools)
        self._pending.acks.append(handle)

    def ack_only(self, handle: Any, source: int | None = None, offset: int | None = None) -> None:
        """Acknowledge a record that changes nothing (skipped, dead-lettered, a mark),
        once every earlier record of its input `source` is acknowledged too. With its
        `offset`, the record also counts as applied from then on (a dead letter: read
        again after a restart, it would be sent again, and its input's lag would never
        reach zero); without (a ledger mark), the applied offset stays where it is, so
        an idle worker's marks write no commit record."""
        if source is None:  # a tick: nothing else is read from its partition
            self._pending.acks.append(handle)
            return
        acks = self._acks[source]
        done = acks.release(acks.hold(handle, -1 if offset is None else offset),
                            self._pending.acks)
        if done > self.applied.get(source, -1):
            self.applied[source] = done

    # -- checkpoint --------------------------------------------------------------

    def pending_inputs(self) -> int:
        """Inputs applied (or skipped) since the last checkpoint."""
        return len(self._pending.acks)

    def pending_updates(self) -> int:
        """Records the next checkpoint writes, at most: its commit record holds them all."""
        return len(self._journal) + len(self._pending.groups)

    def has_pending(self) -> bool:
        p = self._pending
        return bool(p.acks or p.outputs or self._journal)

    def checkpoint(self) -> Checkpoint:
        """Everything applied since the last checkpoint, as writes in their order."""
        p, engine, part = self._pending, self.engine, self.partition
        updates: dict[bytes, bytes | None] = {}
        feedback = list(p.feedback)
        for group in p.groups:
            pool = engine.pools.get(group)
            if pool is not None:
                updates[record_key(part, _KIND_POOL, group, "")] = _record.encode(pool.record)
                counted = pool.counted_tokens
                if group in p.report or self._reported.get(group, counted) != counted:
                    self._reported[group] = counted
                    clock = pool.record.clock
                    feedback.append(GroupUsage(
                        ts=from_micros(clock if clock is not None else 0), group=group,
                        counted_tokens=counted, grant_seq=pool.record.grant_seq,
                    ))
        for kind, group, name in self._journal:
            pool = engine.pools.get(group)
            value: Any
            if kind == TOUCH_SESSION:
                value = pool.sessions.get(str(name)) if pool else None
                key = record_key(part, _KIND_SESSION, group, name)
            elif kind == TOUCH_HOLDER:
                value = pool.holders.get(str(name)) if pool else None
                key = record_key(part, _KIND_HOLDER, group, name)
            elif kind == TOUCH_RETURN:
                value = (pool.returning_at(int(name)) or None) if pool else None
                key = record_key(part, _KIND_RETURN, group, name)
            else:
                value = engine.ledger.uap.get(str(name))
                key = record_key(part, _KIND_UAP, "", name)
            updates[key] = None if value is None else _record.encode(value)
        outputs = [
            Output(str(_OUTPUT_TOPIC[type(o)]), _output_key(o), encode(o)) for o in p.outputs
        ]
        update_list = list(updates.items())
        commit: tuple[bytes, bytes] | None = None
        if update_list or self.applied != self._committed:
            record = Commit(offsets=dict(self.applied), updates=update_list)
            commit = (record_key(part, _KIND_COMMIT, "", ""), _record.encode(record))
            self._committed = dict(self.applied)
        checkpoint = Checkpoint(
            outputs=outputs,
            feedback=[encode(f) for f in feedback],
            commit=commit,
            updates=update_list,
            acks=p.acks,
            offsets=dict(self._committed),
        )
        self._journal.clear()
        self._pending = _Pending()
        return checkpoint


def _output_key(o: OutputEvent) -> bytes:
    group = getattr(o, "group", None)
    return group.encode() if group is not None else b""

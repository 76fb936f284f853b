"""The input topics read back as a history: the one reader behind `tokenpool export`
and behind `tokenpool plan` and `estimate --from-history` when they read the broker.

What comes out is the replay file format (`{"topic": ..., "value": {...}}` lines, the
logical topic names of SPEC §4), in the order `tokenpool replay` applies records and
the worker merges them (`rules.BatchMerge`): lowest event time first, ties in the
order allocations, starts, heartbeats, ends, then by partition and offset. Each
topic partition is a source of its own, as in the worker, so a replay of the output
applies each group's records in the order the worker applied them.

A bounded read: the end of every partition is taken when the read starts, as
`read_committed` sees it (the last stable offset: records of open or aborted
transactions are never read), and the read stops there, so it ends while producers
go on writing. Tansu 0.6 answers ListOffsets with the start of a partition's last
batch plus one, so a partition's end is the larger of that answer and the end its
first fetch reports, and a partition is done only once a fetch has reported it.

Where the read starts. `since` is an event time, but Kafka finds offsets by record
timestamp (ListOffsets by time, aiokafka's `offsets_for_times`). A record's timestamp
is its producer's clock when it was sent (CreateTime) or the broker's when it was
appended (LogAppendTime): at or after the event's own `ts` for a live producer and for
a backfill alike, give or take clock skew. So every partition is read from its first
record stamped at or after `since - RECORD_TIME_MARGIN`, and each record is kept or
left out by its event `ts` alone: kept when `since <= ts <= until`. Only a record
stamped more than the margin before its own event would be missed. (Tansu 0.6 ignores
the time asked and answers the first offset: the read is longer, the result the same.)
Allocations are the exception: they are read from the beginning whatever `since` says,
since the sessions of a span need the licence, group tokens and user access passes in
force when it starts (`until` still applies). Passes consumed before the span are not
in it: its pools start with none in use.

Bad records (no value, not JSON, not the wire contract) are counted by topic and
reason and left out, never fatal; the first of each kind is logged with its partition
and offset.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any

import msgspec

from rules import BatchMerge
from schemas import INPUT_TOPICS, Topic, input_decoder, to_micros
from schemas.replay import AllocationLine, EndLine, HeartbeatLine, StartLine
from schemas.timestamps import from_micros
from stream_app.config import StreamConfig

log = logging.getLogger("tokenpool.history")

RECORD_TIME_MARGIN = timedelta(days=1)
"""How much earlier than `since` the record timestamps are searched from."""
FETCH_WAIT_MS = 200
MAX_RECORDS = 10_000
"""Records taken from the consumer at a time."""
HOLD = 50_000
"""Records one partition may have waiting in the merge before it is paused: a topic
far ahead in event time waits for the others instead of filling memory."""
STALL = 60.0
"""Seconds without any progress after which the read gives up (the broker is gone)."""

_LINES: dict[str, Any] = {
    Topic.ALLOCATIONS: AllocationLine,
    Topic.SESSION_START: StartLine,
    Topic.SESSION_HEARTBEAT: HeartbeatLine,
    Topic.SESSION_END: EndLine,
}
_LINE_TYPES = [_LINES[t] for t in INPUT_TOPICS]
"""The replay line type of each topic rank (INPUT_TOPICS' order)."""
_DECODERS = [input_decoder(t) for t in INPUT_TOPICS]
_encode = msgspec.json.Encoder().encode


class HistoryError(RuntimeError):
    """The topics cannot be read: the broker does not answer, or a topic is missing."""


class Interrupted(Exception):
    """The caller asked the read to stop (`stop()` became true)."""


@dataclass(frozen=True)
class Span:
    """Event times to keep, in µs, both ends included; None: no bound."""

    since: int | None = None
    until: int | None = None


@dataclass
class ReadReport:
    records: int = 0
    """Records read from the topics (bad ones included)."""
    events: int = 0
    """Records written: valid and within the span."""
    before: int = 0
    """Valid session records stamped before `since` (read because of the margin)."""
    after: int = 0
    """Valid records stamped after `until`."""
    by_topic: Counter[str] = field(default_factory=Counter)
    """Events written per topic."""
    bad: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Records left out, by (topic, reason): `empty`, `not_json`, `invalid`."""
    first_bad: dict[tuple[str, str], str] = field(default_factory=dict)
    """The first bad record of each (topic, reason): where it is and what is wrong."""
    partitions: int = 0
    first: int | None = None
    last: int | None = None
    """Event times of the first and last event written (µs)."""
    seconds: float = 0.0


def _reason(exc: Exception) -> str:
    text = str(exc)
    if text.startswith(("JSON is malformed", "Input data was truncated")):
        return "not_json"
    return "invalid"


class _Partitions:
    """Where each partition of one read stands: its bounds, what was read of it, and
    what it holds in the merge."""

    def __init__(self, tps: list[Any], starts: dict[Any, int], ends: dict[Any, int]) -> None:
        self.tps = tps
        self.source = {tp: i for i, tp in enumerate(tps)}
        """The merge source of each partition."""
        self.starts = starts
        self.ends = ends
        self.read_to = dict(starts)
        self.waiting = [0] * len(tps)
        """Records of each partition held in the merge."""
        self.pending = set(tps)
        """Partitions not read to their end yet."""
        self.unconfirmed = set(tps)
        """Partitions no fetch has reported the end of yet."""
        self.paused: set[Any] = set()

    def to_read(self) -> int:
        return sum(max(0, self.ends[tp] - self.starts[tp]) for tp in self.tps)

    def balance(self, consumer: Any) -> None:
        """Bounded memory: a partition far ahead in event time waits for the others."""
        for tp in self.pending:
            waiting = self.waiting[self.source[tp]]
            if tp not in self.paused and waiting > HOLD:
                consumer.pause(tp)
                self.paused.add(tp)
            elif tp in self.paused and waiting <= HOLD // 2:
                consumer.resume(tp)
                self.paused.discard(tp)


class _Reader:
    """One read of the input topics (see the module docstring)."""

    def __init__(self, config: StreamConfig, span: Span, emit: Callable[[bytes], object],
                 progress: IO[str] | None, stop: Callable[[], bool] | None,
                 stall: float) -> None:
        names = config.topics
        self.config = config
        self.span = span
        self.emit = emit
        self.stop = stop
        self.stall = stall
        self.progress = progress
        self.physical = [names.allocations, names.session_start, names.session_heartbeat,
                         names.session_end]
        self.report = ReadReport()

    async def run(self) -> ReadReport:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        from stream_app.kafka.client import client_kwargs

        began = time.monotonic()
        kwargs = client_kwargs(self.config)
        try:
            tps = await self._partitions(kwargs)
        except (KafkaError, TimeoutError) as exc:
            raise HistoryError(f"no answer from {self.config.broker}: {exc!r}") from exc
        consumer = AIOKafkaConsumer(
            **kwargs, group_id=None, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_WAIT_MS, max_partition_fetch_bytes=4 << 20,
            fetch_max_bytes=64 << 20,
        )
        try:
            await asyncio.wait_for(consumer.start(), self.stall)
        except (KafkaError, TimeoutError) as exc:
            raise HistoryError(f"no answer from {self.config.broker}: {exc!r}") from exc
        try:
            await self._read(consumer, tps)
        except KafkaError as exc:
            raise HistoryError(f"reading the input topics failed: {exc!r}") from exc
        finally:
            await consumer.stop()
        self.report.seconds = time.monotonic() - began
        return self.report

    async def _partitions(self, kwargs: dict[str, Any]) -> list[Any]:
        """Every partition of the four input topics (HistoryError if one is missing)."""
        from aiokafka import TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**kwargs)
        await asyncio.wait_for(admin.start(), self.stall)
        try:
            existing = set(await admin.list_topics())
            missing = [name for name in self.physical if name not in existing]
            if missing:
                raise HistoryError(
                    f"no topic {', '.join(missing)} on {self.config.broker}: create the "
                    "topics with `tokenpool topics create`, or name yours with the "
                    "--topic-* flags")
            described = {t["topic"]: t["partitions"]
                         for t in await admin.describe_topics(self.physical)}
        finally:
            await admin.close()
        return [TopicPartition(name, p) for name in self.physical
                for p in sorted(part["partition"] for part in described[name])]

    async def _starts(self, consumer: Any, tps: list[Any],
                      ends: dict[Any, int]) -> dict[Any, int]:
        """Where each partition is read from: allocations from their beginning, the
        session topics from the first record stamped within the margin before `since`."""
        starts = dict(await consumer.beginning_offsets(tps))
        sessions = [tp for tp in tps if tp.topic != self.physical[0]]
        if self.span.since is None or not sessions:
            return starts
        margin = RECORD_TIME_MARGIN // timedelta(microseconds=1)
        target = max(0, (self.span.since - margin) // 1000)  # ms, as Kafka stamps
        found = await consumer.offsets_for_times({tp: target for tp in sessions})
        for tp in sessions:
            starts[tp] = ends[tp] if found[tp] is None else max(starts[tp], found[tp].offset)
        return starts

    async def _read(self, consumer: Any, tps: list[Any]) -> None:
        self.report.partitions = len(tps)
        consumer.assign(tps)
        ends = dict(await consumer.end_offsets(tps))
        starts = await self._starts(consumer, tps, ends)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        self.parts = parts = _Partitions(tps, starts, ends)
        self.merge: BatchMerge[tuple[int, bytes]] = BatchMerge(len(tps))
        self.bar = self._bar(parts.to_read())
        last_progress = time.monotonic()
        while parts.pending:
            if self.stop is not None and self.stop():
                raise Interrupted
            batch = await consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=MAX_RECORDS)
            moved = self._confirm_ends(consumer) or bool(batch)
            for tp, records in batch.items():
                self._take(tp, records)
            await self._finish_partitions(consumer)
            self._write(self.merge.ready() if parts.pending else self.merge.flush())
            parts.balance(consumer)
            now = time.monotonic()
            if moved:
                last_progress = now
            elif now - last_progress > self.stall:
                raise HistoryError(f"no record from {self.config.broker} for {self.stall:g}s "
                                   f"({len(parts.pending)} partitions not read to their end)")
        self._write(self.merge.flush())
        if self.bar is not None:
            self.bar.close()

    def _confirm_ends(self, consumer: Any) -> bool:
        """Take the end the first fetch of a partition reported, where it is past the
        one ListOffsets gave (see the module docstring). True if any was confirmed."""
        parts = self.parts
        confirmed = False
        for tp in list(parts.unconfirmed):
            fetched = consumer.last_stable_offset(tp)
            if fetched is None or fetched < 0:
                fetched = consumer.highwater(tp)
            if fetched is not None:
                parts.ends[tp] = max(parts.ends[tp], fetched)
                parts.unconfirmed.discard(tp)
                confirmed = True
        if confirmed and self.bar is not None:
            self.bar.total = parts.to_read()
            self.bar.refresh()
        return confirmed

    def _take(self, tp: Any, records: list[Any]) -> None:
        """A partition's fetched records into the merge: decoded, checked, in the span."""
        parts = self.parts
        i, end, rank = parts.source[tp], parts.ends[tp], self.physical.index(tp.topic)
        decode, line = _DECODERS[rank].decode, _LINE_TYPES[rank]
        since, until = self.span.since, self.span.until
        report = self.report
        entries: list[tuple[int, int, tuple[int, bytes]]] = []
        for record in records:
            if record.offset >= end:
                break
            report.records += 1
            try:
                if record.value is None:
                    raise msgspec.DecodeError("no value (a tombstone)")
                event = decode(record.value)
            except msgspec.DecodeError as exc:
                reason = "empty" if record.value is None else _reason(exc)
                self._bad(tp, record.offset, reason, str(exc))
                continue
            ts = to_micros(event.ts)
            if since is not None and ts < since and rank:  # allocations: all (docstring)
                report.before += 1
            elif until is not None and ts > until:
                report.after += 1
            else:
                entries.append((i, ts, (i, _encode(line(event)))))
                if report.first is None or ts < report.first:
                    report.first = ts
                if report.last is None or ts > report.last:
                    report.last = ts
        parts.waiting[i] += len(entries)
        report.by_topic[tp.topic] += len(entries)
        self.merge.extend(entries)

    async def _finish_partitions(self, consumer: Any) -> None:
        """Close the partitions read to their end: the merge no longer waits for them."""
        parts = self.parts
        for tp in list(parts.pending - parts.unconfirmed):
            position = min(await consumer.position(tp), parts.ends[tp])
            if self.bar is not None and position > parts.read_to[tp]:
                self.bar.update(position - parts.read_to[tp])
            parts.read_to[tp] = max(parts.read_to[tp], position)
            if position >= parts.ends[tp]:
                parts.pending.discard(tp)
                parts.paused.discard(tp)
                consumer.pause(tp)
                self.merge.close(parts.source[tp])

    def _write(self, released: list[tuple[int, bytes]]) -> None:
        if not released:
            return
        waiting = self.parts.waiting
        for i, _ in released:
            waiting[i] -= 1
        report = self.report
        report.events += len(released)
        self.emit(b"\n".join(line for _, line in released) + b"\n")

    def _bad(self, tp: Any, offset: int, reason: str, detail: str) -> None:
        key = (tp.topic, reason)
        self.report.bad[key] += 1
        if key not in self.report.first_bad:
            where = f"partition {tp.partition} offset {offset}"
            self.report.first_bad[key] = f"{where}: {detail}"
            log.warning("bad record left out topic=%s partition=%d offset=%d reason=%s "
                        "detail=%s", tp.topic, tp.partition, offset, reason, detail)

    def _bar(self, total: int) -> Any:
        if self.progress is None or not self.progress.isatty():
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="rec", unit_scale=True, desc="read",
                    file=self.progress, leave=False)


async def read_history(
    config: StreamConfig,
    span: Span,
    emit: Callable[[bytes], object],
    *,
    progress: IO[str] | None = None,
    stop: Callable[[], bool] | None = None,
    stall: float = STALL,
) -> ReadReport:
    """Read the input topics of `config` within `span` and hand `emit` blocks of replay
    lines, in merge order. A progress bar over the records to read goes to `progress`
    when it is a terminal. Raises HistoryError when the topics cannot be read, and
    Interrupted once `stop()` is true."""
    return await _Reader(config, span, emit, progress, stop, stall).run()


def describe(report: ReadReport, config: StreamConfig) -> list[str]:
    """What a read found, for the operator: one line, then one per kind of bad record."""
    span = ""
    if report.first is not None and report.last is not None:
        span = (f", {from_micros(report.first).isoformat()} .. "
                f"{from_micros(report.last).isoformat()}")
    skipped = [f"{n} before the start" for n in [report.before] if n]
    skipped += [f"{n} after --until" for n in [report.after] if n]
    lines = [f"read {report.records} records of {report.partitions} partitions from "
             f"{config.broker} in {report.seconds:.1f}s: {report.events} events{span}"
             + (f" ({', '.join(skipped)})" if skipped else "")]
    for (topic, reason), count in sorted(report.bad.items()):
        lines.append(f"left out {count} bad record(s) of {topic}: {reason} (first: "
                     f"{report.first_bad[(topic, reason)]})")
    return lines

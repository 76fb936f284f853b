"""The session topics, read in batches by one aiokafka consumer outside Faust's streams.

Faust's stream machinery costs about 140 µs of CPU per record before an agent sees it
(`bench/profile.md`, "Faust's per-event ceiling"): a month's backfill at that rate takes
far longer than the engine needs. The session topics carry nearly every input, so the
worker reads them here, a fetch batch at a time, and Faust keeps what it does well:
the group, the assignment of partitions, the changelog-backed state table and the
low-volume inputs (grants, ticks, allocations).

There is no consumer group here. The state's commit records already hold the offset of
the last record applied from every input partition, and that is where reading starts
(`add`), so the group's committed offsets never decide what is applied. A partition is
read while the worker holds its task: from the moment the pools agent loads the task
(after Faust restored its state) until Faust revokes it.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.worker.timing import SESSION_FETCH_WAIT_MS, SESSION_RETRY_AFTER

log = logging.getLogger("tokenpool.worker")

MAX_RECORDS = 2000
"""Records handed over per batch at most (one checkpoint's worth of inputs)."""

END = -1
"""Start offset of a watched partition: its end; its records are never handed over."""

BEHIND, AT_END, CONFIRMING, UNKNOWN = "behind", "at end", "confirming", "unknown"
"""Where the reader stands in a partition (`SessionReader.lag`)."""

Handler = Callable[[dict[TopicPartition, list[Any]]], Awaitable[None]]


class SessionReader:
    """Reads the session topics of the partitions handed to it, from given offsets.

    `handle` gets each fetched batch (topic partition → records in offset order) and
    must not return before it is done with it. Only records of partitions added and
    not removed since the fetch reach it, each once, in order."""

    def __init__(self, client_kwargs: dict[str, Any], topics: Sequence[str],
                 handle: Handler, *, read_committed: bool) -> None:
        self._client_kwargs = client_kwargs
        self._topics = tuple(topics)
        self._handle = handle
        self._read_committed = read_committed
        self._consumer: AIOKafkaConsumer | None = None
        self._next: dict[TopicPartition, int] = {}
        """Partition read → offset of the next record to hand over."""
        self._position: dict[TopicPartition, int] = {}
        """Partition read → the consumer's position after the last fetch handed over:
        past the records handed over and past any marker after them."""
        self._ends: dict[TopicPartition, tuple[int, float]] = {}
        """Partition → end offset the broker gave, and when it was asked (monotonic)."""
        self._want_ends: set[TopicPartition] = set()
        self._changes: dict[TopicPartition, int | None] = {}
        """Not yet applied to the consumer: partition → offset to start at (None: stop)."""
        self._changed = asyncio.Event()

    # -- what to read (called from the worker's tasks) -----------------------------

    def add(self, partition: int, start: Callable[[str], int]) -> None:
        """Read `partition` of every session topic, each from `start(topic)` on."""
        for topic in self._topics:
            self._changes[TopicPartition(topic, partition)] = start(topic)
        self._changed.set()

    def watch(self, topic: str, partition: int) -> None:
        """Keep `highwater` of this partition as fresh as the session topics' fetches,
        without handing its records over: the ledger's "nothing pending" marks must
        not rest on an end offset older than the session records they let through."""
        self._changes[TopicPartition(topic, partition)] = END
        self._changed.set()

    def unwatch(self, topic: str, partition: int) -> None:
        tp = TopicPartition(topic, partition)
        if tp in self._next or tp in self._changes:
            self._changes[tp] = None
            self._changed.set()

    def remove(self, partitions: Iterable[int]) -> None:
        """Stop reading these partitions; records of them already fetched are dropped."""
        for partition in partitions:
            for topic in self._topics:
                tp = TopicPartition(topic, partition)
                if tp in self._next or tp in self._changes:
                    self._changes[tp] = None
        self._changed.set()

    def stale(self, tp: TopicPartition) -> bool:
        """Records of `tp` fetched before now are not to be handled: the partition was
        added or removed since (it is read again from its new start, if at all)."""
        return tp in self._changes

    def highwater(self, topic: str, partition: int) -> int | None:
        """End of the partition as of the last fetch (the last stable offset when reading
        committed records only): None when not known yet."""
        consumer = self._consumer
        tp = TopicPartition(topic, partition)
        if consumer is None or tp not in self._next:
            return None
        try:
            if self._read_committed:
                return consumer.last_stable_offset(tp)
            return consumer.highwater(tp)
        except Exception:  # not assigned (any more)
            return None

    def lag(self, topic: str, partition: int, since: float) -> str:
        """Where the reader stands in the partition: `BEHIND` (records past those handed
        over), `AT_END`, `CONFIRMING` (at the end the broker last gave, but that end is
        older than `since`: a fresh one is asked for) or `UNKNOWN` (no end known yet).

        `AT_END` rests on an end offset the broker gave after `since` (monotonic time):
        one learnt earlier may predate records appended since (after a broker stall, a
        fetch error, or a burst that reached another topic first), and skipping an
        input on it would apply the other inputs' records ahead of its own (Kafka
        Streams' idling, KIP-695, with the end asked for rather than assumed).

        By position, not by the offset of the last record: a transaction's commit or
        abort marker takes an offset, so a partition written by transactional producers
        ends one past a marker, and no record ever sits at its end minus one."""
        tp = TopicPartition(topic, partition)
        position = self._position.get(tp)
        known = self._ends.get(tp)
        if position is not None and known is not None and position < known[0]:
            return BEHIND  # records wait to be fetched, whatever the age of the end
        if position is None or known is None:
            self._want(tp)
            return UNKNOWN
        if known[1] < since:
            self._want(tp)
            return CONFIRMING
        return AT_END

    def _want(self, tp: TopicPartition) -> None:
        if tp in self._next:
            self._want_ends.add(tp)

    # -- the loop (an app task) ------------------------------------------------------

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._client_kwargs, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if self._read_committed else "read_uncommitted",
        )
        await consumer.start()
        self._consumer = consumer
        try:
            while True:
                await self._apply_changes(consumer)
                if not self._next:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                if self._want_ends:  # a merge waits on it: before the next fetch
                    await self._ask_ends(consumer)
                try:
                    batch = await consumer.getmany(timeout_ms=SESSION_FETCH_WAIT_MS,
                                                   max_records=MAX_RECORDS)
                except KafkaError as exc:
                    log.warning("session topics: fetch failed, reading again: %r", exc)
                    await asyncio.sleep(SESSION_RETRY_AFTER)
                    continue
                fresh = self._fresh(batch)
                if fresh:
                    await self._handle(fresh)
                # After the handler: while it works, a partition's position must not
                # count records of the batch it has not taken yet.
                await self._note_positions(consumer)
                if self._want_ends:
                    await self._ask_ends(consumer)
        finally:
            self._consumer = None
            await consumer.stop()

    async def _ask_ends(self, consumer: AIOKafkaConsumer) -> None:
        wanted = [tp for tp in self._want_ends if tp in self._next and tp not in self._changes]
        self._want_ends.clear()
        if not wanted:
            return
        asked = time.monotonic()
        try:
            # ListOffsets, at the consumer's isolation level: the last stable offset
            # when it reads committed records only.
            ends = await consumer.end_offsets(wanted)
        except KafkaError as exc:
            log.info("session topics: end offsets not known, asking again: %r", exc)
            return
        for tp, end in ends.items():
            # Never below the end the last fetch reported: Tansu 0.6 answers ListOffsets
            # with the start of the partition's last record batch plus one.
            fetched = self.highwater(tp.topic, tp.partition)
            self._ends[tp] = (max(end, fetched or 0), asked)

    async def _note_positions(self, consumer: AIOKafkaConsumer) -> None:
        for tp, start in self._next.items():
            if start == END or tp in self._changes:
                continue
            try:
                self._position[tp] = await consumer.position(tp)
            except Exception:  # reassigned meanwhile: noted after its next fetch
                self._position.pop(tp, None)

    async def _apply_changes(self, consumer: AIOKafkaConsumer) -> None:
        if not self._changes:
            return
        changes, self._changes = self._changes, {}
        for tp, start in changes.items():
            self._position.pop(tp, None)
            self._ends.pop(tp, None)
            if start is None:
                self._next.pop(tp, None)
            else:
                self._next[tp] = start
        # A new assignment forgets every position: all are set again.
        consumer.assign(list(self._next))
        for tp, offset in self._next.items():
            if offset != END:
                consumer.seek(tp, offset)
        watched = [tp for tp, offset in self._next.items() if offset == END]
        if watched:
            await consumer.seek_to_end(*watched)
        log.info("session topics: reading partitions %s",
                 sorted({tp.partition for tp, o in self._next.items() if o != END}))

    def _fresh(self, batch: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, list[Any]]:
        """The records of a fetch still wanted: their partition is read and was not
        changed since, and each comes once."""
        fresh: dict[TopicPartition, list[Any]] = {}
        for tp, records in batch.items():
            expected = self._next.get(tp)
            if expected is None or expected == END or tp in self._changes or not records:
                continue
            if records[0].offset < expected:
                records = [r for r in records if r.offset >= expected]
                if not records:
                    continue
            self._next[tp] = records[-1].offset + 1
            fresh[tp] = records
        return fresh

"""The ledger agent: the single writer of the token ledger (R9, R10).

It owns the single-partition `allocations` topic, so exactly one worker decides every
allocation against the licence. Accepted group allocations go to the group's partition
of the internal grants topic; UAP changes go to every partition. The pools' feedback
(usage counted, quarantines resolved) comes back on the same one-partition channel.

It never decides a rule itself (`rules.single_writer` does), never writes a grant but
with the ledger record that remembers it, and never decides while the allocations
partition is not this worker's.
"""

import functools
import logging
import time
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from rules.single_writer import SingleWriterLedger, decided_offset
from schemas import Allocation, Topic, encode, from_micros, input_decoder
from schemas.internal import GroupTokens, GroupUsage
from stream_app.config import StreamConfig
from stream_app.worker.activity import Activity
from stream_app.worker.checkpoints import CheckpointWriter
from stream_app.worker.dead_letters import DeadLetters
from stream_app.worker.input_rewind import InputRewinder
from stream_app.worker.ownership import Ownership
from stream_app.worker.timing import LEDGER_BATCH_WITHIN
from stream_app.worker.wiring import BAD_RECORD, FEEDBACK_DECODER, LEDGER_KEY, too_far_ahead

log = logging.getLogger("tokenpool.worker")

_PARTITIONER = DefaultPartitioner()


class LedgerAgent:
    """This worker's copy of the single-writer ledger, while it owns allocations."""

    def __init__(self, config: StreamConfig, table: Any, feedback_name: str,
                 ownership: Ownership, writer: CheckpointWriter, dead: DeadLetters,
                 rewinder: InputRewinder) -> None:
        self.config = config
        self.table = table
        self.feedback_name = feedback_name
        self.ownership = ownership
        self.writer = writer
        self.dead = dead
        self.rewinder = rewinder
        self.ledger: SingleWriterLedger | None = None
        self.decided = -1
        """Offset of the last allocation whose decision is flushed (this worker)."""
        self.activity = Activity()

    @property
    def allocations(self) -> TP:
        return TP(self.config.topics.allocations, 0)

    def load(self) -> SingleWriterLedger:
        if self.ledger is None:
            raw = self.table.get(LEDGER_KEY)
            self.ledger = SingleWriterLedger.from_bytes(
                self.config.rules, self.config.partitions, raw)
        return self.ledger

    def forget(self) -> None:
        """Another worker decides from now on; should this one get the ledger back, it
        must reload what that one wrote, not go on from its own old copy."""
        self.ledger = None
        self.decided = -1

    async def run(self, stream: Any) -> None:
        """Decide allocations in batches, each written as one (`CheckpointWriter.
        write_ledger`): grants and rejections durable before the one ledger record that
        remembers them (a crash re-decides the batch and re-sends the same grants; the
        state changes once), or all of it in one transaction."""
        allocations = self.allocations
        async for events in stream.take_events(500, within=LEDGER_BATCH_WITHIN):
            self.activity.received()
            if not self.ownership.owns(allocations):
                # Feedback assigned here without the allocations partition (or events
                # in flight from before a rebalance): the owner alone writes the ledger.
                log.warning("ledger: %d events without the allocations partition, skipped",
                            len(events))
                continue
            self.activity.busy = True
            await self._decide(events, allocations)
            self.activity.busy = False

    async def _decide(self, events: list[Any], allocations: TP) -> None:
        decode = input_decoder(Topic.ALLOCATIONS).decode
        writer = self.load()
        last = writer.state.offset
        rewinding = False
        sends: list[tuple[int, bytes]] = []
        rejections: list[bytes] = []
        for event in events:
            msg = event.message
            if msg.topic == self.feedback_name:
                await self._feedback(writer, msg)
                continue
            if msg.offset <= last:
                continue  # decided before a crash: the grants went out then
            if rewinding:
                continue  # read again after the rewind, in order
            if await self.rewinder.skip(allocations, last, msg.offset):
                rewinding = True
                continue
            last = msg.offset
            self.dead.count_event(msg.topic)
            try:
                allocation: Allocation = decode(msg.value)
            except BAD_RECORD as exc:
                writer.state.offset = last
                await self.dead.send(msg, "invalid", str(exc))
                continue
            if too_far_ahead(self.config, allocation.ts, time.time()):
                writer.state.offset = last
                await self.dead.send(
                    msg, "future_timestamp",
                    f"{allocation.ts.isoformat()} is beyond max clock skew",
                )
                continue
            grants, rejection = writer.decide(allocation, msg.offset)
            log.info(
                "allocation kind=%s event_id=%s accepted=%s grants=%d",
                type(allocation).__name__, allocation.event_id, rejection is None,
                len(grants),
            )
            for grant in grants:
                value = encode(grant)
                if isinstance(grant, GroupTokens):
                    sends.append((self.partition_of(grant.group), value))
                else:
                    sends += [(p, value) for p in range(self.config.partitions)]
            if rejection is not None:
                rejections.append(encode(rejection))
        written = await self.writer.write_ledger(
            sends, rejections, LEDGER_KEY, writer.to_bytes(),
            functools.partial(self.holds, writer),
        )
        if written:
            self.decided = max(self.decided, last)
        elif self.ledger is writer:  # fenced: another worker decides now
            self.forget()

    async def _feedback(self, writer: SingleWriterLedger, msg: Any) -> None:
        try:
            feedback = FEEDBACK_DECODER.decode(msg.value)
        except BAD_RECORD as exc:
            await self.dead.send(msg, "invalid", str(exc))
            return
        counted = writer.state.counted.get(getattr(feedback, "group", ""))
        resolved = writer.on_feedback(feedback)
        if resolved is not None:
            user, until = resolved
            log.info("uap quarantine resolved user_id=%s until=%s", user,
                     from_micros(until).isoformat() if until else "freed")
        elif isinstance(feedback, GroupUsage) and (
                writer.state.counted.get(feedback.group) != counted):
            # Why an allocation is refused or accepted now (R10).
            log.info("group tokens counted group=%s counted=%d", feedback.group,
                     feedback.counted_tokens)

    def holds(self, writer: SingleWriterLedger) -> bool:
        """`writer` is still this worker's ledger, and the allocations partition its."""
        return self.ledger is writer and self.ownership.owns(self.allocations)

    def partition_of(self, group: str) -> int:
        """The partition a murmur2 producer (Kafka's default) puts the group's key on."""
        parts = list(range(self.config.partitions))
        return int(_PARTITIONER(group.encode(), parts, parts))

    def idle(self, tp: TP) -> bool:
        """This worker's ledger has decided (and flushed) every allocation fetched, and
        the partition has nothing more to fetch."""
        try:
            highwater = self.ownership.app.consumer.highwater(tp)
        except Exception:
            highwater = None
        # as fresh as the session fetches
        fresh = self.ownership.reader.highwater(tp.topic, tp.partition)
        if fresh is not None and (highwater is None or fresh > highwater):
            highwater = fresh
        if highwater is None:
            return False
        done = self.table.get(LEDGER_KEY)
        decided = max(decided_offset(done) if done is not None else -1, self.decided)
        if decided >= highwater - 1 or self.rewinder.nothing_past(tp, highwater):
            return True
        if not self.activity.busy:
            # Offsets past the last decision that may hold no record (a producer's
            # transaction markers): look, in the background, rather than wait for ever.
            self.rewinder.look_past(tp, decided, highwater)
        return False

    async def catch_up(self, tp: TP) -> None:
        """Read again allocations past the decided ones that do not arrive."""
        writer = self.load()
        await self.rewinder.catch_up(tp, max(writer.state.offset, self.decided))

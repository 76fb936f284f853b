"""The pools agent: grants and ticks from Faust, session records from the
`SessionReader`, each offered to its partition's `PartitionTask` (event-time merge and
engine) and checkpointed.

It owns what has been received of each partition's inputs and the lock that keeps the
agent and the reader from interleaving a partition's checkpoints. It never decides a
rule (the engine does), never writes but through a checkpoint, and never applies a
partition this worker does not own.
"""

import asyncio
import time
from typing import Any

from faust.types import TP

from schemas import to_micros
from schemas.internal import LedgerMark
from stream_app.config import StreamConfig
from stream_app.worker.activity import Activity
from stream_app.worker.checkpointing import Checkpointing
from stream_app.worker.dead_letters import DeadLetters
from stream_app.worker.input_rewind import InputRewinder
from stream_app.worker.merge_waits import MergeWaits
from stream_app.worker.ownership import Ownership
from stream_app.worker.partition_task import GRANTS, SOURCES, PartitionTask
from stream_app.worker.wiring import BAD_RECORD, TICK_DECODER, Sources, too_far_ahead


class PoolsAgent:
    """The pools' inputs, in offset order per source, into their partitions' tasks."""

    def __init__(self, config: StreamConfig, sources: Sources, ownership: Ownership,
                 checkpointing: Checkpointing, dead: DeadLetters, waits: MergeWaits,
                 rewinder: InputRewinder) -> None:
        self.config = config
        self.sources = sources
        self.ownership = ownership
        self.checkpointing = checkpointing
        self.dead = dead
        self.waits = waits
        self.rewinder = rewinder
        self.seen: dict[tuple[int, int], int] = {}
        """(partition, source) → offset of the last record received from it."""
        self.lock = asyncio.Lock()
        """Held while an input is handled or a checkpoint written, by the agent or the
        session reader: a partition's checkpoints must not interleave."""
        self.activity = Activity()

    async def run(self, stream: Any) -> None:
        """The Faust agent: grants and ticks, acknowledged at checkpoints only."""
        self.checkpointing.stream = stream
        async for event in stream.noack().events():
            async with self.lock:
                self.activity.busy = True
                await self._event(event)
                self.activity.busy = False

    async def on_sessions(self, batch: dict[Any, list[Any]]) -> None:
        """A fetch of session records: offered to their partitions' tasks in order,
        checkpointed as the agent's inputs are."""
        async with self.lock:
            self.activity.busy = True
            self.activity.received()
            try:
                now = time.time()
                reader = self.ownership.reader
                for tp, records in batch.items():
                    task = self.ownership.tasks.get(tp.partition)
                    if task is not None and not reader.stale(tp):
                        await self._take(task, tp, records, now)
            finally:
                self.activity.busy = False

    async def _take(self, task: PartitionTask, tp: Any, records: list[Any],
                    now: float) -> None:
        partition, topic = task.partition, tp.topic
        source = self.sources.rank[topic]
        key = (partition, source)
        decode = self.sources.decoders[topic]
        live = self.config.mode == "live"
        last = self.seen.get(key, task.applied.get(source, -1))
        self.waits.offered(partition, source)
        self.dead.count_event(topic, len(records))
        for msg in records:
            offset = msg.offset
            if offset <= last:
                continue  # in the state already
            last = self.seen[key] = offset
            try:
                value = decode(msg.value)
            except BAD_RECORD as exc:
                await self.dead.send(msg, "invalid", str(exc))
                task.ack_only(None, source, offset)
            else:
                if live and too_far_ahead(self.config, value.ts, now):
                    await self.dead.send(
                        msg, "future_timestamp",
                        f"{value.ts.isoformat()} is beyond max clock skew",
                    )
                    task.ack_only(None, source, offset)
                else:
                    task.offer(source, offset, value, None)
            if self.checkpointing.full(task):
                await self.checkpointing.write(task)
            if (self.ownership.tasks.get(partition) is not task
                    or self.ownership.reader.stale(tp)):
                return  # revoked meanwhile: its next owner reads from the state
        self.waits.flush_if_idle(task, now)
        await self.checkpointing.if_due(task, now)

    async def _event(self, event: Any) -> None:
        msg = event.message
        partition = msg.partition
        if not self.ownership.owns(msg.tp):
            # In flight from before a rebalance: the partition's new owner reads it
            # again from its state's offsets; writing here would race its state.
            return
        task = self.ownership.task(partition)
        if task is None:
            return
        now = time.time()
        tick = msg.topic == self.sources.ticks_name
        if tick:
            try:
                value = TICK_DECODER.decode(msg.value)
            except BAD_RECORD as exc:
                await self.dead.send(msg, "invalid", str(exc))
                task.ack_only(event)
                return
            if value.advance:
                task.tick(to_micros(value.ts), event)
            else:
                task.ack_only(event)
            self.waits.flush_if_idle(task, now)
        else:
            await self._offer(task, event, now)
        await self.checkpointing.if_due(task, now, settled=tick and not task.waiting())

    async def _offer(self, task: PartitionTask, event: Any, now: float) -> None:
        """A grants record (the agent's only input besides ticks)."""
        msg = event.message
        source = GRANTS
        key = (task.partition, source)
        last = self.seen.get(key)
        if last is None:
            last = task.applied.get(source, -1)
        elif msg.offset <= last:
            return  # received already (read again after a rewind): that copy is in hand
        if msg.offset > last + 1 and await self.rewinder.skip(msg.tp, last, msg.offset):
            return  # not applied, not acknowledged: it comes again after those before it
        self.seen[key] = msg.offset
        if task.is_applied(source, msg.offset):
            task.ack_only(event, source)  # re-delivered after a crash: already in the state
            return
        try:
            value = self.sources.decoders[msg.topic](msg.value)
        except BAD_RECORD as exc:
            await self.dead.send(msg, "invalid", str(exc))
            task.ack_only(event, source)
            return
        if isinstance(value, LedgerMark):
            self.waits.mark_at[task.partition] = value.ts.timestamp()
            task.ack_only(event, source)
            self.waits.flush_if_idle(task, now)
            return
        self.activity.received_at = self.waits.offered(task.partition, source)
        task.offer(source, msg.offset, value, event)
        self.waits.flush_if_idle(task, now)

    async def catch_up(self, tp: TP) -> None:
        """Read again the partition's records past those applied that do not arrive."""
        source = self.sources.rank.get(tp.topic)
        if source is None or not self.ownership.owns(tp):
            return
        task = self.ownership.task(tp.partition)
        if task is None:
            return
        seen = self.seen.get((tp.partition, source), -1)
        await self.rewinder.catch_up(tp, max(task.applied.get(source, -1), seen))

    def forget(self, partition: int) -> None:
        """The partition was revoked: what was received of its inputs, the session topics
        included (no Faust subscription, so never in `revoked`), was held in a merge now
        dropped, or not applied at all. Whoever owns it next reads from the state."""
        for source in range(SOURCES):
            self.seen.pop((partition, source), None)
        self.waits.forget(partition)
        self.checkpointing.first_pending.pop(partition, None)

"""When a partition's applied inputs are checkpointed, and what a written checkpoint
releases: the inputs' acknowledgements, the partition's durable offsets, the metrics.

What a checkpoint writes, and how it becomes durable, is `checkpoints.CheckpointWriter`'s;
this decides only when (a full batch, a linger, a settled tick) and lets a fenced
partition go. It never decides a rule and never writes outside a checkpoint.
"""

import time
from typing import Any

from stream_app.worker.checkpoints import CheckpointWriter
from stream_app.worker.dead_letters import DeadLetters
from stream_app.worker.ownership import Ownership
from stream_app.worker.partition_task import PartitionTask
from stream_app.worker.timing import CHECKPOINT_LINGER

CHECKPOINT_EVERY = 2000
"""Applied inputs per checkpoint at most (one producer flush each)."""
CHECKPOINT_UPDATES = 2500
"""Record updates per checkpoint at most: its commit record carries every one of them
(about 150 bytes each), and must stay well inside a broker's message size limit."""


class Checkpointing:
    """The pools' checkpoints: cut by size or age, written, then acknowledged."""

    def __init__(self, writer: CheckpointWriter, ownership: Ownership,
                 dead: DeadLetters) -> None:
        self.writer = writer
        self.ownership = ownership
        self.dead = dead
        """Holds the metrics a checkpoint reports to."""
        self.first_pending: dict[int, float] = {}
        """Partition → when its oldest input not yet checkpointed was applied."""
        self.stream: Any = None
        """The pools agent's stream: acknowledges ticks and grants at checkpoints."""

    @staticmethod
    def full(task: PartitionTask) -> bool:
        """A checkpoint's worth of inputs or of record updates is pending."""
        return (task.pending_inputs() >= CHECKPOINT_EVERY
                or task.pending_updates() >= CHECKPOINT_UPDATES)

    async def if_due(self, task: PartitionTask, now: float, *,
                     settled: bool = False) -> None:
        """Checkpoint what is pending once it is a full batch, once its first input has
        waited `CHECKPOINT_LINGER`, or when `settled` (a tick, nothing held back)."""
        if not task.has_pending():
            return
        first = self.first_pending.setdefault(task.partition, now)
        if settled or now - first >= CHECKPOINT_LINGER or self.full(task):
            await self.write(task)

    async def write(self, task: PartitionTask) -> None:
        partition = task.partition
        self.first_pending.pop(partition, None)
        cp = task.checkpoint()
        started = time.perf_counter()
        if not await self.writer.write(task, cp):
            if self.ownership.tasks.get(partition) is task:  # still ours to the group
                self.ownership.let_go(partition)
            return  # whoever owns the partition now applies those inputs again
        counters = self.dead.counters
        counters.checkpoints.observe(time.perf_counter() - started)
        counters.checkpoint_records.labels("outputs").inc(len(cp.outputs))
        if cp.commit is not None:
            counters.checkpoint_records.labels("state").inc(1 + len(cp.updates))
            self.ownership.durable[partition] = cp.offsets
        stream = self.stream
        for handle in cp.acks:
            if handle is not None:  # session records: the state's offsets are their ack
                await stream.ack(handle)

"""Which partitions this worker owns, and the `PartitionTask` of each it has loaded.

The group's assignment says what is this worker's; a newer owner's fence (exactly_once)
takes a partition away before the group does. Everything that applies an input asks
here first: applying a partition this worker no longer owns would race its next owner.
"""

import logging
from typing import Any

from faust.types import TP

from rules import Config
from stream_app.config import StreamConfig
from stream_app.worker.partition_task import PartitionTask
from stream_app.worker.session_reader import SessionReader
from stream_app.worker.wiring import Sources

log = logging.getLogger("tokenpool.worker")


class Ownership:
    """Owned partitions, their loaded tasks and what of each the changelog holds."""

    def __init__(self, app: Any, config: StreamConfig, sources: Sources, state: Any,
                 reader: SessionReader) -> None:
        self.app = app
        self.rules: Config = config.rules
        self.exactly_once = config.guarantee == "exactly_once"
        self.sources = sources
        self.state = state
        self.reader = reader
        self.tasks: dict[int, PartitionTask] = {}
        self.durable: dict[int, dict[int, int]] = {}
        """Partition → merge source → last offset applied that the changelog holds."""
        self.fenced: set[int] = set()
        """Partitions a newer owner fenced (exactly_once): nothing applied here until the
        group gives them back."""
        self.assigned: set[TP] | None = None
        """Kept by the rebalance signals, not rebuilt per event."""

    def owns(self, tp: TP) -> bool:
        assigned = self.assigned
        if assigned is None:
            assigned = self.assigned = set(self.app.consumer.assignment())
        return tp in assigned

    def task(self, partition: int) -> PartitionTask | None:
        """The partition's task, loaded from the state table on first use; None while a
        newer owner has fenced this worker out of it."""
        task = self.tasks.get(partition)
        if task is None:
            if partition in self.fenced:
                return None
            task, redo = PartitionTask.load(partition, self.rules, self.state)
            if not self.exactly_once:  # a transaction is never cut short
                for key, value in redo:  # finish the last checkpoint (a crash may cut it)
                    self.state.write(key, value)
            self.tasks[partition] = task
            applied = task.applied
            self.durable[partition] = dict(applied)
            rank = self.sources.rank
            self.reader.add(partition, lambda topic: applied.get(rank[topic], -1) + 1)
            log.info(
                "partition loaded partition=%d groups=%d applied=%s",
                partition, len(task.engine.pools), task.applied,
            )
        return task

    def let_go(self, partition: int) -> None:
        """A newer owner fenced this worker out of `partition`: stop applying it until
        the group's next assignment says whose it is."""
        self.fenced.add(partition)
        self.tasks.pop(partition, None)
        self.durable.pop(partition, None)
        self.reader.remove({partition})

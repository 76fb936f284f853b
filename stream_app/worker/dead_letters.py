"""Records that cannot be applied, sent to the dead-letters topic with the reason, and
the per-topic event counters, so a hostile input is counted and kept, never raised."""

import logging
from typing import Any

from stream_app.worker.checkpoints import LEDGER_WRITER, CheckpointWriter, partition_writer

log = logging.getLogger("tokenpool.worker")


class DeadLetters:
    """Dead letters through the partition's (or the ledger's) own writer, and counters."""

    def __init__(self, checkpoints: CheckpointWriter, ledger_topics: frozenset[str]) -> None:
        self.checkpoints = checkpoints
        self.ledger_topics = ledger_topics
        """Topics the ledger reads: their dead letters go with the ledger's writes."""
        self.counters: Any = None
        """The worker's metrics (`web.install` sets them before the app starts)."""
        self._event_counts: dict[str, Any] = {}

    def count_event(self, topic: str, n: int = 1) -> None:
        child = self._event_counts.get(topic)
        if child is None:
            child = self._event_counts[topic] = self.counters.events.labels(topic)
        child.inc(n)

    async def send(self, msg: Any, reason: str, detail: str) -> None:
        """`reason` is a short code (a metric label: bounded); `detail` says what was
        wrong with this record."""
        log.warning(
            "dead letter topic=%s partition=%d offset=%d reason=%s detail=%s",
            msg.topic, msg.partition, msg.offset, reason, detail[:200],
        )
        self.counters.rejected.labels(msg.topic, reason).inc()
        ledger = msg.topic in self.ledger_topics
        writer = LEDGER_WRITER if ledger else partition_writer(msg.partition)
        await self.checkpoints.dead_letter(writer, msg, reason, detail)

"""How long a partition's event-time merge waits for an input that has nothing for it:
Kafka Streams' idling (KIP-695), plus the ledger's word for grants.

The merge itself (`PartitionTask`) only holds inputs back until every source has one;
this decides when an empty source is given up on for now. It never applies an input
and never touches the state.
"""

import logging
import time

from stream_app.config import StreamConfig
from stream_app.worker.partition_task import GRANTS, SOURCES, PartitionTask
from stream_app.worker.session_reader import AT_END, UNKNOWN, SessionReader
from stream_app.worker.timing import (
    GRANTS_WAIT_LIMIT,
    LEDGER_MARK_MARGIN,
    STUCK_FETCH_IDLE_WAITS,
)

log = logging.getLogger("tokenpool.worker")


class MergeWaits:
    """Per partition and source: since when it waits, and what the ledger last said."""

    def __init__(self, config: StreamConfig, reader: SessionReader,
                 source_topic: dict[int, str]) -> None:
        self.config = config
        self.reader = reader
        self.source_topic = source_topic
        self.mark_at: dict[int, float] = {}
        """Partition → wall time of the ledger's latest "nothing pending" mark there."""
        self.blocked_since: dict[int, float] = {}
        """Partition → when its merge started waiting for grants."""
        self.grants_warned: dict[int, float] = {}
        self.idle_since: dict[tuple[int, int], float] = {}
        """(partition, source) → when it was last seen empty with nothing to fetch."""
        self.offered_at: dict[int, float] = {}
        """Partition → when (monotonic) inputs were last handed to its merge: an end
        offset asked for before then may predate records that came with them."""

    def offered(self, partition: int, source: int) -> float:
        """Inputs of `source` were handed to the partition's merge now (monotonic)."""
        self.idle_since.pop((partition, source), None)
        at = self.offered_at[partition] = time.monotonic()
        return at

    def flush_if_idle(self, task: PartitionTask, now: float) -> None:
        """An empty input with nothing left to fetch is skipped at once; one whose lag is
        unknown is waited for `idle_wait`; one with records still to fetch is waited for
        (up to `STUCK_FETCH_IDLE_WAITS` idle waits, should its fetch be stuck). Grants
        are skipped only on the ledger's word that none is pending."""
        partition = task.partition
        if not task.waiting():
            self.blocked_since.pop(partition, None)
            return
        idle = self.config.idle_wait.total_seconds()
        starved = task.starved()
        for source in starved:
            if source == GRANTS:
                # Only a mark the ledger sent after this wait began (plus the age a
                # fetched highwater may have) proves it has no decision pending here.
                blocked = self.blocked_since.setdefault(partition, now)
                if self.mark_at.get(partition, 0.0) < blocked + LEDGER_MARK_MARGIN:
                    if now - blocked < GRANTS_WAIT_LIMIT:
                        return
                    if now - self.grants_warned.get(partition, 0.0) > GRANTS_WAIT_LIMIT:
                        self.grants_warned[partition] = now
                        log.warning("merge: no word from the ledger for %.0fs, going on "
                                    "without grants partition=%d", now - blocked, partition)
                continue
            key = (partition, source)
            since = self.idle_since.setdefault(key, now)
            lag = self.reader.lag(self.source_topic[source], partition,
                                  since=self.offered_at.get(partition, 0.0))
            if lag == UNKNOWN:
                if now - since < idle:
                    return
            elif lag != AT_END:  # behind, or at an end the broker is asked to confirm
                if now - since < STUCK_FETCH_IDLE_WAITS * idle:
                    return
                log.warning(
                    "merge: input still %s after %.1fs, going on topic=%s partition=%d",
                    lag, now - since, self.source_topic[source], partition,
                )
        task.flush_merge(frozenset(starved))
        if not task.waiting():
            self.blocked_since.pop(partition, None)

    def forget(self, partition: int) -> None:
        """The partition was revoked: its next owner's merge starts afresh."""
        for source in range(SOURCES):
            self.idle_since.pop((partition, source), None)
        self.blocked_since.pop(partition, None)
        self.offered_at.pop(partition, None)

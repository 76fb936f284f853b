"""The Faust worker: the objects that run the rules engine on Kafka, put together.

Two agents, no rule decided in either:

- `LedgerAgent` owns the single-partition `allocations` topic, so exactly one worker
  decides every allocation against the licence (R9, R10). Accepted group
  allocations go to the group's partition of the internal grants topic; UAP changes
  go to every partition.
- `PoolsAgent` consumes the grants and the ticks as one co-partitioned channel; the
  session topics of the same partitions, nearly all the input, come in batches from a
  `SessionReader` (one aiokafka consumer: Faust's per-record stream path costs more
  than the rules). Each partition has a `PartitionTask` (event-time merge + engine);
  its state lives in the `state` table as small keyed records, written at
  checkpoints (`Checkpointing`).

The `Clock` sends the ticks; `Ownership` knows which partitions are this worker's; the
`Worker` here answers the group's rebalances and hands each object what it needs.
"""

import asyncio
import logging
from typing import Any

from faust.types import TP

from rules import Config
from stream_app.config import StreamConfig
from stream_app.kafka.client import BrokerTraits, client_kwargs
from stream_app.kafka.topics import grants_topic
from stream_app.worker import wiring
from stream_app.worker.checkpointing import Checkpointing
from stream_app.worker.checkpoints import LEDGER_WRITER, CheckpointWriter, partition_writer
from stream_app.worker.clock import Clock
from stream_app.worker.dead_letters import DeadLetters
from stream_app.worker.input_rewind import InputRewinder
from stream_app.worker.ledger_agent import LedgerAgent
from stream_app.worker.merge_waits import MergeWaits
from stream_app.worker.ownership import Ownership
from stream_app.worker.partition_task import PartitionTask
from stream_app.worker.pools import PoolsAgent
from stream_app.worker.session_reader import SessionReader
from stream_app.worker.timing import STOP_SETTLE, TICK_WAKE_MAX, WRITES_SETTLE
from stream_app.worker.transactions import TransactionalWriters

log = logging.getLogger("tokenpool.worker")


class Worker:
    """Builds the Faust app and the objects that run it, and answers rebalances."""

    def __init__(self, config: StreamConfig, broker: BrokerTraits | None = None) -> None:
        self.config = config
        self.broker = broker if broker is not None else BrokerTraits.unknown()
        """What the broker is (Tansu or Kafka) decides which workarounds are on."""
        exactly_once = config.guarantee == "exactly_once"
        self.writers = (TransactionalWriters(client_kwargs(config), config.app_id)
                        if exactly_once else None)
        self.app = app = wiring.build_app(config)
        sources = wiring.sources(config)
        channels = wiring.channels(app, config)
        self.tables = wiring.tables(app, config)
        reader = SessionReader(
            client_kwargs(config), sources.session_topics,
            lambda batch: self.pools.on_sessions(batch), read_committed=exactly_once,
        )
        self.ownership = ownership = Ownership(app, config, sources, self.tables.state, reader)
        app.read_committed = exactly_once
        app.exact_end_offsets = self.broker.exact_end_offsets
        if exactly_once:
            app.before_restore = self._before_restore
        writer = CheckpointWriter(
            app=app, state=self.tables.state, ledger=self.tables.ledger,
            topics={**channels.outputs, "feedback": channels.feedback,
                    "grants": channels.grants, "dead-letters": channels.dead_letters},
            writers=self.writers, fence_records=self.broker.fence_records,
            owner=ownership.tasks.get,
        )
        rewinder = InputRewinder(
            app, client_kwargs(config), read_committed=exactly_once,
            relevant={grants_topic(config): wiring.not_a_mark},
        )
        dead = DeadLetters(writer, frozenset((config.topics.allocations,
                                              channels.feedback_name)))
        self.pools = PoolsAgent(
            config, sources, ownership, Checkpointing(writer, ownership, dead), dead,
            MergeWaits(config, reader, sources.source_topic), rewinder,
        )
        self.ledger = LedgerAgent(config, self.tables.ledger, channels.feedback_name,
                                  ownership, writer, dead, rewinder)
        self.clock = Clock(config, app, channels.ticks, channels.grants, self.pools,
                           self.ledger)
        app.agent(channels.pools_inputs, name="pools")(self.pools.run)
        app.agent(channels.ledger_inputs, name="ledger")(self.ledger.run)
        wake = min(TICK_WAKE_MAX, config.idle_wait.total_seconds() / 2)
        app.timer(wake, name="ticks")(self.clock.send_ticks)
        app.task(reader.run)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_before_shutdown.connect(self._on_stop)
        from stream_app.worker import web
        self.registry = web.install(self)

    # -- what the metrics endpoint and the tests read ----------------------------

    @property
    def rules(self) -> Config:
        return self.config.rules

    @property
    def tasks(self) -> dict[int, PartitionTask]:
        return self.ownership.tasks

    @property
    def durable(self) -> dict[int, dict[int, int]]:
        return self.ownership.durable

    @property
    def reader(self) -> SessionReader:
        return self.ownership.reader

    @property
    def rank(self) -> dict[str, int]:
        return self.ownership.sources.rank

    @property
    def session_topics(self) -> tuple[str, str, str]:
        return self.ownership.sources.session_topics

    @property
    def state(self) -> Any:
        return self.tables.state

    @property
    def counters(self) -> Any:
        return self.pools.dead.counters

    @counters.setter
    def counters(self, counters: Any) -> None:
        self.pools.dead.counters = counters

    # -- rebalances --------------------------------------------------------------

    async def _on_assigned(self, sender: Any, assigned: set[TP], **_: Any) -> None:
        self.ownership.assigned = set(assigned)
        if self.ledger.allocations in assigned:
            self.reader.watch(self.config.topics.allocations, 0)

    async def _on_revoked(self, sender: Any, revoked: set[TP], **_: Any) -> None:
        self._let_go(revoked)
        if revoked and self.writers is None:
            await self._writes_settled()

    async def _on_stop(self, sender: Any, **_: Any) -> None:
        """A stop (SIGTERM, Ctrl-C), before Faust flushes its producer and stops it:
        every partition is let go as in a rebalance, and what was queued is delivered,
        so that nothing is written to a stopped producer (which failed the stop, exit
        status 1). Inputs not yet checkpointed are applied again by the next owner."""
        self.clock.stopped = True
        owned = set(self.ownership.assigned or ())
        self._let_go(owned)
        try:
            await asyncio.wait_for(self._delivered(), STOP_SETTLE)
            if self.writers is not None:
                await asyncio.wait_for(self.writers.close(), STOP_SETTLE)
        except Exception as exc:  # as after a crash: the changelog is read back whole
            log.error("stopping with writes not delivered within %.0fs: %r",
                      STOP_SETTLE, exc)
        log.info("stopping: partitions let go count=%d", len(owned))

    def _let_go(self, revoked: set[TP]) -> None:
        ownership = self.ownership
        if ownership.assigned is not None:
            ownership.assigned -= set(revoked)
        if self.ledger.allocations in revoked:
            self.reader.unwatch(self.config.topics.allocations, 0)
            self.ledger.forget()
            if self.writers is not None:
                self.writers.retire(LEDGER_WRITER)
        self.pools.rewinder.forget(revoked)
        pools = {tp.partition for tp in revoked if tp.topic == self.pools.sources.ticks_name}
        self.reader.remove(pools)
        ownership.fenced -= pools
        if self.writers is not None:
            for partition in pools:
                self.writers.retire(partition_writer(partition))
        for partition in pools:
            self.pools.forget(partition)
        for tp in revoked:
            self.pools.seen.pop((tp.partition, self.rank.get(tp.topic, -1)), None)
            ownership.durable.pop(tp.partition, None)
            if ownership.tasks.pop(tp.partition, None) is not None:
                log.info("partition revoked partition=%d", tp.partition)

    async def _writes_settled(self) -> None:
        """at_least_once: before a revoked partition's state is read back (by this
        worker, should it get the partition again, or by another), every state record
        this worker queued must be in the changelog. The table's local copy has them at
        once; read back over it without them, a partition would mix records of two
        checkpoints, and one delivered after the read would overwrite a newer one.
        Past `WRITES_SETTLE` the worker stops: a restart reads a consistent changelog
        (under exactly_once the local copy changes only once a transaction committed)."""
        try:
            await asyncio.wait_for(self._delivered(), WRITES_SETTLE)
        except Exception as exc:
            log.critical("state records not delivered within %.0fs of a rebalance, "
                         "stopping so that a restart reads a consistent state: %r",
                         WRITES_SETTLE, exc)
            raise

    async def _delivered(self) -> None:
        await self.app.producer.flush()
        await self.tables.state.delivered()
        await self.tables.ledger.delivered()

    async def _before_restore(self, changelogs: set[TP]) -> None:
        """exactly_once: before an owned partition's state is read back, its producer
        starts, and Kafka fences whoever wrote that partition before (a zombie's open
        transaction is aborted, so what is read back is final)."""
        assert self.writers is not None
        for tp in sorted(changelogs):
            if tp.topic == self.tables.state_changelog:
                self.ownership.fenced.discard(tp.partition)
                await self.writers.fence(partition_writer(tp.partition))
            elif tp.topic == self.tables.ledger_changelog:
                await self.writers.fence(LEDGER_WRITER)

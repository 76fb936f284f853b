"""The Faust worker: topics, tables, agents and timers around the rules engine.

Two agents, no rule decided in either:

- `ledger` owns the single-partition `allocations` topic, so exactly one worker
  decides every allocation against the licence (R9, R10). Accepted group
  allocations go to the group's partition of the internal grants topic; UAP changes
  go to every partition.
- `pools` consumes the grants and the ticks as one co-partitioned channel; the session
  topics of the same partitions, nearly all the input, come in batches from a
  `SessionReader` (one aiokafka consumer: Faust's per-record stream path costs more
  than the rules). Each partition has a `PartitionTask` (event-time merge + engine);
  its state lives in the `state` table as small keyed records, written at
  checkpoints. One lock keeps the agent and the reader from interleaving.
"""

import asyncio
import functools
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import faust
import msgspec
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from rules import Config
from rules.single_writer import SingleWriterLedger, decided_offset
from schemas import (
    Allocation,
    Topic,
    encode,
    from_micros,
    input_decoder,
    to_micros,
)
from schemas.internal import (
    Feedback,
    GrantsRecord,
    GroupTokens,
    GroupUsage,
    LedgerMark,
    Tick,
)
from stream_app.config import StreamConfig
from stream_app.kafka.broker import BrokerTraits, client_kwargs
from stream_app.kafka.topics import (
    MAX_RECORD_BYTES,
    changelog_topic,
    feedback_topic,
    grants_topic,
    ticks_topic,
)
from stream_app.worker import restore
from stream_app.worker.checkpoints import LEDGER_WRITER, CheckpointWriter, partition_writer
from stream_app.worker.faust_app import TokenpoolApp
from stream_app.worker.input_rewind import InputRewinder
from stream_app.worker.partition_task import (
    ENDS,
    GRANTS,
    HEARTBEATS,
    SOURCES,
    STARTS,
    PartitionTask,
    record_key,
)
from stream_app.worker.session_reader import AT_END, UNKNOWN, SessionReader
from stream_app.worker.tables import PartitionedTable
from stream_app.worker.transactions import TransactionalWriters

log = logging.getLogger("tokenpool.worker")

CHECKPOINT_EVERY = 2000
"""Applied inputs per checkpoint at most (one producer flush each)."""
CHECKPOINT_UPDATES = 2500
"""Record updates per checkpoint at most: its commit record carries every one of them
(about 150 bytes each), and must stay well inside a broker's message size limit."""
CHECKPOINT_LINGER = 0.05
"""Seconds an applied input may wait for its checkpoint."""
CATCH_UP_IDLE = 5.0
"""Seconds an agent must have received nothing before inputs that do not arrive are
read again from the state's offsets."""
LEDGER_MARK_MARGIN = 0.6
"""Seconds a ledger mark must postdate a wait for grants: a highwater is only as fresh
as the fetch that brought it."""
WRITES_SETTLE = 60.0
"""Seconds a rebalance waits for this worker's queued state records to reach the
changelog (at_least_once) before the worker stops instead."""
GRANTS_WAIT_LIMIT = 60.0
"""Seconds the merge waits for the ledger's word before it goes on without grants:
long enough for the ledger to move to another worker after a crash (the session
timeout), short enough that a ledger that stopped speaking is noticed, logged and does
not hold every pool. A grant that comes later applies at its group's clock."""

_grant_decoder = msgspec.json.Decoder(GrantsRecord)
_tick_decoder = msgspec.json.Decoder(Tick)
_feedback_decoder = msgspec.json.Decoder(Feedback)

LEDGER_KEY = record_key(0, "W", "", "")
"""The single writer's whole state, one record: a batch of decisions lands at once."""
BAD_RECORD = (msgspec.DecodeError, RecursionError, TypeError, ValueError)
"""What decoding a hostile record can raise: invalid JSON or shape, nesting deeper than
the stack, a null value (tombstone). Each is dead-lettered, never raised."""


def _not_a_mark(value: bytes | None) -> bool:
    """A grants record the pools must apply (or dead-letter): not a ledger mark."""
    try:
        return not isinstance(_grant_decoder.decode(value or b""), LedgerMark)
    except BAD_RECORD:
        return True


def static_member_id(config: StreamConfig) -> str | None:
    """The group.instance.id of a worker with `--instance-id`: the name, and the web
    address Faust puts in every member's assignment. A static member gets its last
    assignment back, and Faust's assignor refuses one that names another address (its
    consumer would stop): a worker restarted on another address joins as a new member."""
    if not config.instance_id:
        return None
    address = f"{config.web_host}-{config.web_port}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{config.instance_id}-{address}")


def _credentials(config: StreamConfig) -> Any:
    sec = config.security
    if sec.protocol == "PLAINTEXT":
        return None
    from aiokafka.helpers import create_ssl_context

    ssl_context = None
    if sec.protocol in ("SSL", "SASL_SSL"):
        ssl_context = create_ssl_context(
            cafile=sec.ssl_cafile, certfile=sec.ssl_certfile, keyfile=sec.ssl_keyfile
        )
    if sec.protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    return faust.SASLCredentials(
        username=sec.sasl_username,
        password=sec.sasl_password,
        ssl_context=ssl_context,
        mechanism=sec.sasl_mechanism,
    )


class Worker:
    """Builds the Faust app and holds the per-partition tasks of this process."""

    def __init__(self, config: StreamConfig, broker: BrokerTraits | None = None) -> None:
        self.config = config
        self.broker = broker if broker is not None else BrokerTraits.unknown()
        """What the broker is (Tansu or Kafka) decides which workarounds are on."""
        self.exactly_once = config.guarantee == "exactly_once"
        self.rules: Config = config.rules
        self.tasks: dict[int, PartitionTask] = {}
        self._first_pending: dict[int, float] = {}
        self._assigned: set[TP] | None = None
        self._mark_at: dict[int, float] = {}
        """Partition → wall time of the ledger's latest "nothing pending" mark there."""
        self._blocked_since: dict[int, float] = {}
        """Partition → when its merge started waiting for grants."""
        self._grants_warned: dict[int, float] = {}
        self._ledger_seen = -1
        """Offset of the last allocation whose decision is flushed (this worker)."""
        self._last_catch_up = 0.0
        self._pools_input_at = 0.0
        self._ledger_input_at = 0.0
        """When (monotonic) the agents last received an input (ticks and ledger marks,
        which never stop, left out)."""
        self._pools_busy = False
        self._ledger_busy = False
        """An agent is handling an input (it may wait on the broker for long)."""
        self._last_mark = 0.0
        self._idle_since: dict[tuple[int, int], float] = {}
        """(partition, source) → when it was last seen empty with nothing to fetch."""
        self._offered_at: dict[int, float] = {}
        """Partition → when (monotonic) inputs were last handed to its merge: an end
        offset asked for before then may predate records that came with them."""
        self._seen: dict[tuple[int, int], int] = {}
        """(partition, source) → offset of the last record received from it."""
        self._last_advance = 0.0
        self._skew = int(config.rules.max_clock_skew.total_seconds() * 1_000_000)
        self._partitioner = DefaultPartitioner()
        self._event_counts: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        """Held while an input is handled or a checkpoint written, by the pools agent or
        the session reader: a partition's checkpoints must not interleave."""
        self.durable: dict[int, dict[int, int]] = {}
        """Partition → merge source → last offset applied that the changelog holds."""
        self._fenced: set[int] = set()
        """Partitions a newer owner fenced (exactly_once): nothing applied here until the
        group gives them back."""
        self.writers = (TransactionalWriters(client_kwargs(config), config.app_id)
                        if self.exactly_once else None)
        self._pools_stream: Any = None
        """The pools agent's stream: acknowledges ticks and grants at checkpoints."""
        self.counters: Any = None  # set by web.install
        self.app = self._build()
        self.rewinder = InputRewinder(
            self.app, client_kwargs(config),
            read_committed=self.exactly_once,
            relevant={grants_topic(config): _not_a_mark},
        )
        from stream_app.worker import web
        self.registry = web.install(self)

    # -- wiring ------------------------------------------------------------------

    def _build(self) -> faust.App:
        cfg = self.config
        app = TokenpoolApp(
            cfg.app_id,
            env={},  # our flags and TOKENPOOL_* decide; Faust's own env names must not
            broker=[f"kafka://{hp}" for hp in cfg.broker.split(",")],
            broker_credentials=_credentials(cfg),
            store=cfg.store,
            datadir=cfg.data_dir or os.path.join(tempfile.gettempdir(), f"tokenpool-{cfg.app_id}"),
            topic_partitions=cfg.partitions,
            topic_replication_factor=max(1, cfg.replication_factor),
            topic_allow_declare=False,  # `topics create` makes every topic, changelogs too
            topic_disable_leader=True,  # no leader topic: nothing here needs a leader
            web_host=cfg.web_host,
            web_bind=cfg.web_host,  # Faust binds web_bind (all interfaces by default)
            web_port=cfg.web_port,
            web_enabled=True,
            web_router_enabled=False,
            web_tables_enabled=False,
            web_graph_enabled=False,
            web_stats_enabled=False,
            web_metrics_enabled=False,
            broker_session_timeout=cfg.session_timeout.total_seconds(),
            broker_heartbeat_interval=max(0.5, cfg.session_timeout.total_seconds() / 6),
            # exactly_once is the worker's own (`transactions.py`), not Faust's.
            processing_guarantee="at_least_once",
            consumer_group_instance_id=static_member_id(cfg),
            producer_linger=0.005,
            producer_max_request_size=MAX_RECORD_BYTES,
            stream_buffer_maxsize=16384,
            stream_wait_empty=False,  # the merge holds unacked inputs across rebalances
            broker_max_poll_records=2000,
            table_cleanup_interval=3600.0,
            TableManager=restore.BulkTableManager,  # restores tables reading the changelog in bulk
        )
        names = cfg.topics
        self.rank = {
            grants_topic(cfg): GRANTS,
            names.session_start: STARTS,
            names.session_heartbeat: HEARTBEATS,
            names.session_end: ENDS,
        }
        self.source_topic = {rank: topic for topic, rank in self.rank.items()}
        self.decoders: dict[str, Callable[[bytes], Any]] = {
            grants_topic(cfg): _grant_decoder.decode,
            names.session_start: input_decoder(Topic.SESSION_START).decode,
            names.session_heartbeat: input_decoder(Topic.SESSION_HEARTBEAT).decode,
            names.session_end: input_decoder(Topic.SESSION_END).decode,
        }
        raw = {"key_type": bytes, "value_type": bytes,
               "key_serializer": "raw", "value_serializer": "raw"}
        self.ticks_name = ticks_topic(cfg)
        inputs = app.topic(grants_topic(cfg), self.ticks_name, **raw)
        self.session_topics = (names.session_start, names.session_heartbeat,
                               names.session_end)
        self.reader = SessionReader(
            client_kwargs(cfg), self.session_topics, self._on_sessions,
            read_committed=self.exactly_once,
        )
        self.allocations = app.topic(names.allocations, partitions=1, **raw)
        self.feedback_name = feedback_topic(cfg)
        self.feedback = app.topic(self.feedback_name, partitions=1, **raw)
        ledger_inputs = app.topic(names.allocations, self.feedback_name, partitions=1, **raw)
        self.grants = app.topic(grants_topic(cfg), **raw)
        self.ticks = app.topic(self.ticks_name, **raw)
        self.outputs = {
            str(Topic.PASS_CONSUMED): app.topic(names.pass_consumed, **raw),
            str(Topic.PASS_RETURNED): app.topic(names.pass_returned, **raw),
            str(Topic.ACCESS_DENIED): app.topic(names.access_denied, **raw),
            str(Topic.ALLOCATION_REJECTED): app.topic(names.allocation_rejected, **raw),
        }
        self.dead_letters = app.topic(names.dead_letters, **raw)
        self.state = app.tables.add(PartitionedTable(
            app, name="state", default=None, partitions=cfg.partitions,
            key_type=bytes, value_type=bytes,
            help="Pool, session, holder and return records, keyed by partition.",
        ))
        self.ledger_table = app.tables.add(PartitionedTable(
            app, name="ledger", default=None, partitions=1,
            key_type=bytes, value_type=bytes,
            help="The single-writer token ledger.",
        ))
        self.ledger: SingleWriterLedger | None = None
        self.state_changelog = changelog_topic(cfg, "state")
        self.ledger_changelog = changelog_topic(cfg, "ledger")
        for table, name in ((self.state, self.state_changelog),
                            (self.ledger_table, self.ledger_changelog)):
            if table.changelog_topic.get_topic_name() != name:  # `topics create` makes it
                raise RuntimeError(f"changelog {table.changelog_topic.get_topic_name()} "
                                   f"is not {name}")
        app.read_committed = self.exactly_once
        if self.exactly_once:
            app.before_restore = self._before_restore
        self.checkpoints = CheckpointWriter(
            app=app, state=self.state, ledger=self.ledger_table,
            topics={**self.outputs, "feedback": self.feedback, "grants": self.grants,
                    "dead-letters": self.dead_letters},
            writers=self.writers, fence_records=self.broker.fence_records,
            owner=self.tasks.get,
        )

        app.agent(inputs, name="pools")(self._pools_agent)
        app.agent(ledger_inputs, name="ledger")(self._ledger_agent)
        wake = min(0.1, cfg.idle_wait.total_seconds() / 2)
        app.timer(wake, name="ticks")(self._send_ticks)
        app.task(self.reader.run)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        return app

    # -- ticks -------------------------------------------------------------------

    async def _send_ticks(self) -> None:
        """Wake every owned partition: checkpoints, idle waits and (live) clocks."""
        now = time.time()
        advance = self.config.mode == "live" and (
            now - self._last_advance >= self.config.tick_interval.total_seconds()
        )
        if advance:
            self._last_advance = now
        stamp = datetime.fromtimestamp(now, UTC)
        tick = encode(Tick(ts=stamp, advance=advance))
        actives = self.app.assignor.assigned_actives()
        for tp in actives:
            if tp.topic == self.ticks_name:
                await self.ticks.send(key=b"tick", value=tick, partition=tp.partition)
        if now - self._last_catch_up >= 1.0:
            self._last_catch_up = now
            await self._catch_up(actives)
        allocations = TP(self.config.topics.allocations, 0)
        if allocations in actives and now - self._last_mark >= 0.25 and self._ledger_idle(
            allocations
        ):
            self._last_mark = now
            mark = encode(LedgerMark(ts=stamp))
            for partition in range(self.config.partitions):
                await self.grants.send(key=b"", value=mark, partition=partition)

    def _ledger_idle(self, tp: TP) -> bool:
        """This worker's ledger has decided (and flushed) every allocation fetched, and
        the partition has nothing more to fetch."""
        try:
            highwater = self.app.consumer.highwater(tp)
        except Exception:
            highwater = None
        fresh = self.reader.highwater(tp.topic, tp.partition)  # as fresh as session fetches
        if fresh is not None and (highwater is None or fresh > highwater):
            highwater = fresh
        if highwater is None:
            return False
        done = self.ledger_table.get(LEDGER_KEY)
        decided = max(decided_offset(done) if done is not None else -1, self._ledger_seen)
        if decided >= highwater - 1 or self.rewinder.nothing_past(tp, highwater):
            return True
        if not self._ledger_busy:
            # Offsets past the last decision that may hold no record (a producer's
            # transaction markers): look, in the background, rather than wait for ever.
            self.rewinder.look_past(tp, decided, highwater)
        return False

    async def _catch_up(self, actives: set[TP]) -> None:
        """Inputs past the applied offsets that do not arrive (see `InputRewinder`).
        Only while no input arrives at all: in a backfill, records fetched long ago
        may still wait their turn."""
        if self.app.rebalancing:
            return  # tables may still be recovering
        now = time.monotonic()
        ledger_idle = not self._ledger_busy and now - self._ledger_input_at > CATCH_UP_IDLE
        pools_idle = not self._pools_busy and now - self._pools_input_at > CATCH_UP_IDLE
        for tp in actives:
            if tp.topic == self.config.topics.allocations:
                if not ledger_idle:
                    continue
                writer = self._load_ledger()
                await self.rewinder.catch_up(tp, max(writer.state.offset, self._ledger_seen))
            elif (
                pools_idle and (source := self.rank.get(tp.topic)) is not None
                and self._owns(tp)
            ):
                task = self._task(tp.partition)
                if task is None:
                    continue
                seen = self._seen.get((tp.partition, source), -1)
                await self.rewinder.catch_up(tp, max(task.applied.get(source, -1), seen))

    async def _on_revoked(self, sender: Any, revoked: set[TP], **_: Any) -> None:
        if self._assigned is not None:
            self._assigned -= set(revoked)
        if TP(self.config.topics.allocations, 0) in revoked:
            self.reader.unwatch(self.config.topics.allocations, 0)
            # Another worker decides from now on; if this one gets the ledger back,
            # it must reload what that one wrote, not go on from its own old copy.
            self.ledger = None
            self._ledger_seen = -1
            if self.writers is not None:
                self.writers.retire(LEDGER_WRITER)
        self.rewinder.forget(revoked)
        pools = {tp.partition for tp in revoked if tp.topic == self.ticks_name}
        self.reader.remove(pools)
        self._fenced -= pools
        if self.writers is not None:
            for partition in pools:
                self.writers.retire(partition_writer(partition))
        for partition in pools:
            # What was received of the partition's inputs, the session topics included
            # (they are no Faust subscription, so never in `revoked`): held in a merge
            # now dropped, or not applied at all. Whoever owns the partition next, this
            # worker included, reads from the state's offsets again.
            for source in range(SOURCES):
                self._seen.pop((partition, source), None)
                self._idle_since.pop((partition, source), None)
            self._first_pending.pop(partition, None)
            self._blocked_since.pop(partition, None)
            self._offered_at.pop(partition, None)
        for tp in revoked:
            self._seen.pop((tp.partition, self.rank.get(tp.topic, -1)), None)
            self.durable.pop(tp.partition, None)
            if self.tasks.pop(tp.partition, None) is not None:
                log.info("partition revoked partition=%d", tp.partition)
        if revoked and not self.exactly_once:
            await self._writes_settled()

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
        await self.state.delivered()
        await self.ledger_table.delivered()

    async def _before_restore(self, changelogs: set[TP]) -> None:
        """exactly_once: before an owned partition's state is read back, its producer
        starts, and Kafka fences whoever wrote that partition before (a zombie's open
        transaction is aborted, so what is read back is final)."""
        assert self.writers is not None
        for tp in sorted(changelogs):
            if tp.topic == self.state_changelog:
                self._fenced.discard(tp.partition)
                await self.writers.fence(partition_writer(tp.partition))
            elif tp.topic == self.ledger_changelog:
                await self.writers.fence(LEDGER_WRITER)

    # -- pools -------------------------------------------------------------------

    def _task(self, partition: int) -> PartitionTask | None:
        """The partition's task, loaded from the state table on first use; None while a
        newer owner has fenced this worker out of it."""
        task = self.tasks.get(partition)
        if task is None:
            if partition in self._fenced:
                return None
            task, redo = PartitionTask.load(partition, self.rules, self.state)
            if not self.exactly_once:  # a transaction is never cut short
                for key, value in redo:  # finish the last checkpoint (a crash may cut it)
                    self.state.write(key, value)
            self.tasks[partition] = task
            applied = task.applied
            self.durable[partition] = dict(applied)
            self.reader.add(partition, lambda topic: applied.get(self.rank[topic], -1) + 1)
            log.info(
                "partition loaded partition=%d groups=%d applied=%s",
                partition, len(task.engine.pools), task.applied,
            )
        return task

    async def _pools_agent(self, stream: Any) -> None:
        self._pools_stream = stream
        async for event in stream.noack().events():
            async with self._lock:
                self._pools_busy = True
                await self._pools_event(event)
                self._pools_busy = False

    async def _on_sessions(self, batch: dict[Any, list[Any]]) -> None:
        """A fetch of session records: offered to their partitions' tasks in order,
        checkpointed as the agent's inputs are."""
        async with self._lock:
            self._pools_busy = True
            self._pools_input_at = time.monotonic()
            try:
                now = time.time()
                for tp, records in batch.items():
                    task = self.tasks.get(tp.partition)
                    if task is not None and not self.reader.stale(tp):
                        await self._take(task, tp, records, now)
            finally:
                self._pools_busy = False

    async def _take(self, task: PartitionTask, tp: Any, records: list[Any],
                    now: float) -> None:
        partition, topic = task.partition, tp.topic
        source = self.rank[topic]
        key = (partition, source)
        decode = self.decoders[topic]
        live = self.config.mode == "live"
        last = self._seen.get(key, task.applied.get(source, -1))
        self._idle_since.pop(key, None)
        self._offered_at[partition] = time.monotonic()
        self._count_event(topic, len(records))
        for msg in records:
            offset = msg.offset
            if offset <= last:
                continue  # in the state already
            last = self._seen[key] = offset
            try:
                value = decode(msg.value)
            except BAD_RECORD as exc:
                await self._dead_letter(msg, "invalid", str(exc))
                task.ack_only(None, source, offset)
            else:
                if live and self._too_far_ahead(value.ts, now):
                    await self._dead_letter(
                        msg, "future_timestamp",
                        f"{value.ts.isoformat()} is beyond max clock skew",
                    )
                    task.ack_only(None, source, offset)
                else:
                    task.offer(source, offset, value, None)
            if self._full(task):
                await self._checkpoint(task)
            if self.tasks.get(partition) is not task or self.reader.stale(tp):
                return  # revoked meanwhile: its next owner reads from the state
        self._maybe_flush_merge(task, now)
        await self._checkpoint_if_due(task, now)

    async def _pools_event(self, event: Any) -> None:
        msg = event.message
        partition = msg.partition
        if not self._owns(msg.tp):
            # In flight from before a rebalance: the partition's new owner reads it
            # again from its state's offsets; writing here would race its state.
            return
        task = self._task(partition)
        if task is None:
            return
        now = time.time()
        if msg.topic == self.ticks_name:
            try:
                tick = _tick_decoder.decode(msg.value)
            except BAD_RECORD as exc:
                await self._dead_letter(msg, "invalid", str(exc))
                task.ack_only(event)
                return
            if tick.advance:
                task.tick(to_micros(tick.ts), event)
            else:
                task.ack_only(event)
            self._maybe_flush_merge(task, now)
        else:
            await self._offer(task, event, now)
        await self._checkpoint_if_due(
            task, now, settled=msg.topic == self.ticks_name and not task.waiting()
        )

    @staticmethod
    def _full(task: PartitionTask) -> bool:
        """A checkpoint's worth of inputs or of record updates is pending."""
        return (task.pending_inputs() >= CHECKPOINT_EVERY
                or task.pending_updates() >= CHECKPOINT_UPDATES)

    async def _checkpoint_if_due(self, task: PartitionTask, now: float, *,
                                 settled: bool = False) -> None:
        """Checkpoint what is pending once it is a full batch, once its first input has
        waited `CHECKPOINT_LINGER`, or when `settled` (a tick, nothing held back)."""
        if not task.has_pending():
            return
        first = self._first_pending.setdefault(task.partition, now)
        if settled or now - first >= CHECKPOINT_LINGER or self._full(task):
            await self._checkpoint(task)

    async def _offer(self, task: PartitionTask, event: Any, now: float) -> None:
        """A grants record (the agent's only input besides ticks)."""
        msg = event.message
        source = GRANTS
        key = (task.partition, source)
        last = self._seen.get(key)
        if last is None:
            last = task.applied.get(source, -1)
        elif msg.offset <= last:
            return  # received already (read again after a rewind): that copy is in hand
        if msg.offset > last + 1 and await self.rewinder.skip(msg.tp, last, msg.offset):
            return  # not applied, not acknowledged: it comes again after those before it
        self._seen[key] = msg.offset
        if task.is_applied(source, msg.offset):
            task.ack_only(event, source)  # re-delivered after a crash: already in the state
            return
        try:
            value = self.decoders[msg.topic](msg.value)
        except BAD_RECORD as exc:
            await self._dead_letter(msg, "invalid", str(exc))
            task.ack_only(event, source)
            return
        if isinstance(value, LedgerMark):
            self._mark_at[task.partition] = value.ts.timestamp()
            task.ack_only(event, source)
            self._maybe_flush_merge(task, now)
            return
        self._pools_input_at = self._offered_at[task.partition] = time.monotonic()
        self._idle_since.pop((task.partition, source), None)
        task.offer(source, msg.offset, value, event)
        self._maybe_flush_merge(task, now)

    def _too_far_ahead(self, ts: datetime, now: float) -> bool:
        """Live mode: an input stamped beyond the clock skew would fast-forward a pool
        (or the ledger's quarantines) by however far its producer's clock is off."""
        return self.config.mode == "live" and to_micros(ts) > int(now * 1_000_000) + self._skew

    def _maybe_flush_merge(self, task: PartitionTask, now: float) -> None:
        """Kafka Streams' idling (KIP-695): an empty input with nothing left to fetch is
        skipped at once; one whose lag is unknown is waited for `idle_wait`; one with
        records still to fetch is waited for (up to ten idle waits, should its fetch be
        stuck). Grants are skipped only on the ledger's word that none is pending."""
        partition = task.partition
        if not task.waiting():
            self._blocked_since.pop(partition, None)
            return
        idle = self.config.idle_wait.total_seconds()
        starved = task.starved()
        for source in starved:
            if source == GRANTS:
                # Only a mark the ledger sent after this wait began (plus the age a
                # fetched highwater may have) proves it has no decision pending here.
                blocked = self._blocked_since.setdefault(partition, now)
                if self._mark_at.get(partition, 0.0) < blocked + LEDGER_MARK_MARGIN:
                    if now - blocked < GRANTS_WAIT_LIMIT:
                        return
                    if now - self._grants_warned.get(partition, 0.0) > GRANTS_WAIT_LIMIT:
                        self._grants_warned[partition] = now
                        log.warning("merge: no word from the ledger for %.0fs, going on "
                                    "without grants partition=%d", now - blocked, partition)
                continue
            key = (partition, source)
            since = self._idle_since.setdefault(key, now)
            lag = self.reader.lag(self.source_topic[source], partition,
                                  since=self._offered_at.get(partition, 0.0))
            if lag == UNKNOWN:
                if now - since < idle:
                    return
            elif lag != AT_END:  # behind, or at an end the broker is asked to confirm
                if now - since < 10 * idle:
                    return
                log.warning(
                    "merge: input still %s after %.1fs, going on topic=%s partition=%d",
                    lag, now - since, self.source_topic[source], partition,
                )
        task.flush_merge(frozenset(starved))
        if not task.waiting():
            self._blocked_since.pop(partition, None)

    def _owns(self, tp: TP) -> bool:
        assigned = self._assigned  # kept by the rebalance signals, not rebuilt per event
        if assigned is None:
            assigned = self._assigned = set(self.app.consumer.assignment())
        return tp in assigned

    async def _on_assigned(self, sender: Any, assigned: set[TP], **_: Any) -> None:
        self._assigned = set(assigned)
        if TP(self.config.topics.allocations, 0) in assigned:
            self.reader.watch(self.config.topics.allocations, 0)

    async def _checkpoint(self, task: PartitionTask) -> None:
        partition = task.partition
        self._first_pending.pop(partition, None)
        cp = task.checkpoint()
        started = time.perf_counter()
        if not await self.checkpoints.write(task, cp):
            if self.tasks.get(partition) is task:  # still ours to the group: fenced
                self._let_go(partition)
            return  # whoever owns the partition now applies those inputs again
        counters = self.counters
        counters.checkpoints.observe(time.perf_counter() - started)
        counters.checkpoint_records.labels("outputs").inc(len(cp.outputs))
        if cp.commit is not None:
            counters.checkpoint_records.labels("state").inc(1 + len(cp.updates))
            self.durable[partition] = cp.offsets
        stream = self._pools_stream
        for handle in cp.acks:
            if handle is not None:  # session records: the state's offsets are their ack
                await stream.ack(handle)

    def _let_go(self, partition: int) -> None:
        """A newer owner fenced this worker out of `partition`: stop applying it until
        the group's next assignment says whose it is."""
        self._fenced.add(partition)
        self.tasks.pop(partition, None)
        self.durable.pop(partition, None)
        self.reader.remove({partition})

    def _count_event(self, topic: str, n: int = 1) -> None:
        child = self._event_counts.get(topic)
        if child is None:
            child = self._event_counts[topic] = self.counters.events.labels(topic)
        child.inc(n)

    async def _dead_letter(self, msg: Any, reason: str, detail: str) -> None:
        """`reason` is a short code (a metric label: bounded); `detail` says what was
        wrong with this record."""
        log.warning(
            "dead letter topic=%s partition=%d offset=%d reason=%s detail=%s",
            msg.topic, msg.partition, msg.offset, reason, detail[:200],
        )
        self.counters.rejected.labels(msg.topic, reason).inc()
        ledger = msg.topic in (self.config.topics.allocations, self.feedback_name)
        writer = LEDGER_WRITER if ledger else partition_writer(msg.partition)
        await self.checkpoints.dead_letter(writer, msg, reason, detail)

    # -- ledger ------------------------------------------------------------------

    def _load_ledger(self) -> SingleWriterLedger:
        if self.ledger is None:
            raw = self.ledger_table.get(LEDGER_KEY)
            self.ledger = SingleWriterLedger.from_bytes(self.rules, self.config.partitions, raw)
        return self.ledger

    async def _ledger_agent(self, stream: Any) -> None:
        """Decide allocations in batches, each written as one (`CheckpointWriter.
        write_ledger`): grants and rejections durable before the one ledger record that
        remembers them (a crash re-decides the batch and re-sends the same grants; the
        state changes once), or all of it in one transaction."""
        decode = input_decoder(Topic.ALLOCATIONS).decode
        allocations = TP(self.config.topics.allocations, 0)
        async for events in stream.take_events(500, within=0.05):
            self._ledger_input_at = time.monotonic()
            if not self._owns(allocations):
                # Feedback assigned here without the allocations partition (or events
                # in flight from before a rebalance): the owner alone writes the ledger.
                log.warning("ledger: %d events without the allocations partition, skipped",
                            len(events))
                continue
            self._ledger_busy = True
            writer = self._load_ledger()
            last = writer.state.offset
            rewinding = False
            sends: list[tuple[int, bytes]] = []
            rejections: list[bytes] = []
            for event in events:
                msg = event.message
                if msg.topic == self.feedback_name:
                    try:
                        feedback = _feedback_decoder.decode(msg.value)
                    except BAD_RECORD as exc:
                        await self._dead_letter(msg, "invalid", str(exc))
                        continue
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
                    continue
                if msg.offset <= last:
                    continue  # decided before a crash: the grants went out then
                if rewinding:
                    continue  # read again after the rewind, in order
                if await self.rewinder.skip(allocations, last, msg.offset):
                    rewinding = True
                    continue
                last = msg.offset
                self._count_event(msg.topic)
                try:
                    allocation: Allocation = decode(msg.value)
                except BAD_RECORD as exc:
                    writer.state.offset = last
                    await self._dead_letter(msg, "invalid", str(exc))
                    continue
                if self._too_far_ahead(allocation.ts, time.time()):
                    writer.state.offset = last
                    await self._dead_letter(
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
                        sends.append((self._partition_of(grant.group), value))
                    else:
                        sends += [(p, value) for p in range(self.config.partitions)]
                if rejection is not None:
                    rejections.append(encode(rejection))
            written = await self.checkpoints.write_ledger(
                sends, rejections, LEDGER_KEY, writer.to_bytes(),
                functools.partial(self._holds_ledger, writer),
            )
            if written:
                self._ledger_seen = max(self._ledger_seen, last)
            elif self.ledger is writer:  # fenced: another worker decides now
                self.ledger = None
                self._ledger_seen = -1
            self._ledger_busy = False

    def _holds_ledger(self, writer: SingleWriterLedger) -> bool:
        """`writer` is still this worker's ledger, and the allocations partition its."""
        return self.ledger is writer and self._owns(TP(self.config.topics.allocations, 0))

    def _partition_of(self, group: str) -> int:
        """The partition a murmur2 producer (Kafka's default) puts the group's key on."""
        parts = list(range(self.config.partitions))
        return int(self._partitioner(group.encode(), parts, parts))


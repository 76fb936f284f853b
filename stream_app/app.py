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
import logging
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import faust
import msgspec
from aiokafka.partitioner import DefaultPartitioner
from faust.stores import memory
from faust.types import TP

from rules import Config
from rules.single_writer import SingleWriterLedger, decided_offset
from schemas import (
    Allocation,
    DeadLetter,
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
    LedgerMark,
    Tick,
)
from stream_app import restore
from stream_app.broker import client_kwargs, feedback_topic, grants_topic, ticks_topic
from stream_app.config import StreamConfig
from stream_app.input_rewind import InputRewinder
from stream_app.partition_task import (
    ENDS,
    GRANTS,
    HEARTBEATS,
    STARTS,
    PartitionTask,
    partition_of_key,
    record_key,
)
from stream_app.session_reader import SessionReader

log = logging.getLogger("tokenpool.worker")

CHECKPOINT_EVERY = 2000
"""Applied inputs per checkpoint at most (one producer flush each)."""
CHECKPOINT_UPDATES = 2500
"""Record updates per checkpoint at most: its commit record carries every one of them
(about 150 bytes each), and must stay well inside a broker's message size limit."""
MAX_RECORD_BYTES = 16 * 1024 * 1024
"""Changelog record size the producer and the state topic accept: room for the commit
record of one input that fires thousands of timers at once (a tick after downtime)."""
CHECKPOINT_LINGER = 0.05
"""Seconds an applied input may wait for its checkpoint."""
CATCH_UP_IDLE = 5.0
"""Seconds an agent must have received nothing before inputs that do not arrive are
read again from the state's offsets."""
LEDGER_MARK_MARGIN = 0.6
"""Seconds a ledger mark must postdate a wait for grants: a highwater is only as fresh
as the fetch that brought it."""

_grant_decoder = msgspec.json.Decoder(GrantsRecord)
_tick_decoder = msgspec.json.Decoder(Tick)
_feedback_decoder = msgspec.json.Decoder(Feedback)

DEAD_LETTER_RAW = 256 * 1024
"""Bytes of a rejected record kept in its dead letter: a record near the broker's size
limit, base64-encoded, would not fit in a dead letter whole and could not be sent."""
DEAD_LETTER_DETAIL = 1000
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


class PartitionedTable(faust.Table):  # type: ignore[misc]
    """A table whose keys carry their partition, so records can be written for any
    owned partition, at a checkpoint, not only for the event in scope.

    It also keeps the changelog writes not yet known to be delivered: Faust queues
    them in its producer buffer, and `producer.flush()` may return while some are
    still queued (it gives up after 0.1 s without progress). Acknowledging inputs
    before their state is durable would lose them in a crash; `delivered()` is the
    barrier that waits for each write's broker acknowledgement."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._in_flight: list[Any] = []

    def _new_store_by_url(self, url: Any) -> Any:
        store = super()._new_store_by_url(url)
        if type(store) is memory.Store:  # the same store, restored from records in bulk
            store = restore.MemoryStore(
                url, self.app, self, table_name=self.name, key_type=self.key_type,
                key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                value_type=self.value_type, loop=self.loop, options=self.options,
            )
        return store

    def partition_for_key(self, key: Any) -> int | None:
        return partition_of_key(key)

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self._in_flight.append(fut)
        return fut

    async def delivered(self) -> None:
        """Return once every changelog write made so far is acknowledged."""
        in_flight, self._in_flight = self._in_flight, []
        if in_flight:
            await asyncio.gather(*in_flight)


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

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.rules: Config = config.rules
        self.tasks: dict[int, PartitionTask] = {}
        self._first_pending: dict[int, float] = {}
        self._assigned: set[TP] | None = None
        self._mark_at: dict[int, float] = {}
        """Partition → wall time of the ledger's latest "nothing pending" mark there."""
        self._blocked_since: dict[int, float] = {}
        """Partition → when its merge started waiting for grants."""
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
        self._letters: list[Any] = []
        """Dead letters sent and not yet known delivered: a checkpoint waits for them
        before its commit record counts their inputs as handled."""
        self._pools_stream: Any = None
        """The pools agent's stream: acknowledges ticks and grants at checkpoints."""
        self.counters: Any = None  # set by web.install
        self.app = self._build()
        self.rewinder = InputRewinder(
            self.app, client_kwargs(config),
            read_committed=config.guarantee == "exactly_once",
            relevant={grants_topic(config): _not_a_mark},
        )
        from stream_app import web

        self.registry = web.install(self)

    # -- wiring ------------------------------------------------------------------

    def _build(self) -> faust.App:
        cfg = self.config
        app = faust.App(
            cfg.app_id,
            env={},  # our flags and TOKENPOOL_* decide; Faust's own env names must not
            broker=[f"kafka://{hp}" for hp in cfg.broker.split(",")],
            broker_credentials=_credentials(cfg),
            store=cfg.store,
            datadir=cfg.data_dir or os.path.join(tempfile.gettempdir(), f"tokenpool-{cfg.app_id}"),
            topic_partitions=cfg.partitions,
            topic_replication_factor=cfg.replication_factor,
            topic_allow_declare=False,
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
            processing_guarantee=cfg.guarantee,
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
            read_committed=cfg.guarantee == "exactly_once",
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
            extra_topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES)},
            help="Pool, session, holder and return records, keyed by partition.",
        ))
        self.ledger_table = app.tables.add(PartitionedTable(
            app, name="ledger", default=None, partitions=1,
            key_type=bytes, value_type=bytes,
            help="The single-writer token ledger.",
        ))
        self.ledger: SingleWriterLedger | None = None

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
        decided = decided_offset(done) if done is not None else -1
        return max(decided, self._ledger_seen) >= highwater - 1

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
        self.rewinder.forget(revoked)
        self.reader.remove({tp.partition for tp in revoked if tp.topic == self.ticks_name})
        for tp in revoked:
            self._seen.pop((tp.partition, self.rank.get(tp.topic, -1)), None)
            self.durable.pop(tp.partition, None)
            if self.tasks.pop(tp.partition, None) is not None:
                log.info("partition revoked partition=%d", tp.partition)

    # -- pools -------------------------------------------------------------------

    def _task(self, partition: int) -> PartitionTask:
        task = self.tasks.get(partition)
        if task is None:
            task, redo = PartitionTask.load(partition, self.rules, self.state)
            for key, value in redo:  # finish the last checkpoint (a crash may cut it)
                self._write(self.state, key, value)
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
        self._pools_input_at = time.monotonic()
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
                    return
                continue
            key = (partition, source)
            since = self._idle_since.setdefault(key, now)
            highwater = self.reader.highwater(self.source_topic[source], partition)
            if highwater is None:
                if now - since < idle:
                    return
            elif self._seen.get(key, -1) < highwater - 1:
                if now - since < 10 * idle:
                    return
                log.warning(
                    "merge: input still behind after %.1fs, going on topic=%s partition=%d",
                    now - since, self.source_topic[source], partition,
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
        self._first_pending.pop(task.partition, None)
        cp = task.checkpoint()
        for o in cp.outputs:
            await self.outputs[o.topic].send(key=o.key, value=o.value)
        for f in cp.feedback:
            await self.feedback.send(key=b"", value=f, partition=0)
        if cp.outputs or cp.feedback:
            await self.app.producer.flush()
        if self._letters:
            letters, self._letters = self._letters, []
            for failed in await asyncio.gather(*letters, return_exceptions=True):
                if isinstance(failed, BaseException):
                    log.error("dead letter not delivered: %r", failed)
        if self.tasks.get(task.partition) is not task:
            return  # revoked while the outputs went out: the new owner re-applies
        if cp.commit is not None:
            key, value = cp.commit
            self.state[key] = value
            for key, value in cp.updates:
                self._write(self.state, key, value)
            await self.app.producer.flush()
            await self.state.delivered()
            # A one-record batch last, so a broker that reports a partition's end as
            # the start of its last batch (Tansu 0.6 answers ListOffsets so, and
            # Faust's table recovery reads a changelog up to that end) hides nothing.
            self.state[record_key(task.partition, "F", "", "")] = b"f"
            await self.state.delivered()
            if self.tasks.get(task.partition) is task:
                self.durable[task.partition] = cp.offsets
        stream = self._pools_stream
        for handle in cp.acks:
            if handle is not None:  # session records: the state's offsets are their ack
                await stream.ack(handle)

    @staticmethod
    def _write(table: Any, key: bytes, value: bytes | None) -> None:
        if value is None:
            if key in table:
                del table[key]
        else:
            table[key] = value

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
        raw = msg.value if isinstance(msg.value, bytes) else b""
        error = f"{reason.replace('_', ' ')}: {detail[:DEAD_LETTER_DETAIL]}"
        if len(raw) > DEAD_LETTER_RAW:
            error += f" (raw cut to its first {DEAD_LETTER_RAW} of {len(raw)} bytes)"
            raw = raw[:DEAD_LETTER_RAW]
        key = msg.key if isinstance(msg.key, bytes) and len(msg.key) <= 1024 else None
        letter = DeadLetter(raw=raw, topic=msg.topic, partition=msg.partition,
                            offset=msg.offset, error=error)
        self._letters.append(await self.dead_letters.send(key=key, value=encode(letter)))

    # -- ledger ------------------------------------------------------------------

    def _load_ledger(self) -> SingleWriterLedger:
        if self.ledger is None:
            raw = self.ledger_table.get(LEDGER_KEY)
            self.ledger = SingleWriterLedger.from_bytes(self.rules, self.config.partitions, raw)
        return self.ledger

    async def _ledger_agent(self, stream: Any) -> None:
        """Decide allocations in batches: one producer flush per batch, grants and
        rejections durable before the one ledger record that remembers them (a crash
        re-decides the batch and re-sends the same grants; the state changes once)."""
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
            for event in events:
                msg = event.message
                if msg.topic == self.feedback_name:
                    try:
                        feedback = _feedback_decoder.decode(msg.value)
                    except BAD_RECORD as exc:
                        await self._dead_letter(msg, "invalid", str(exc))
                        continue
                    resolved = writer.on_feedback(feedback)
                    if resolved is not None:
                        user, until = resolved
                        log.info("uap quarantine resolved user_id=%s until=%s", user,
                                 from_micros(until).isoformat() if until else "freed")
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
                        partitions = [self._partition_of(grant.group)]
                    else:
                        partitions = list(range(self.config.partitions))
                    for partition in partitions:
                        await self.grants.send(key=b"", value=value, partition=partition)
                if rejection is not None:
                    await self.outputs[str(Topic.ALLOCATION_REJECTED)].send(
                        key=b"", value=encode(rejection)
                    )
            await self.app.producer.flush()
            self._ledger_seen = max(self._ledger_seen, last)
            # A table store files a write under its task's current event (RocksDB: its
            # partition); `take_events` fills its batches in another task, so name the
            # batch's last event here (every ledger input is on partition 0).
            stream._set_current_event(events[-1])
            self.ledger_table[LEDGER_KEY] = writer.to_bytes()
            await self.ledger_table.delivered()  # before the batch's offsets commit
            self._ledger_busy = False

    def _partition_of(self, group: str) -> int:
        """The partition a murmur2 producer (Kafka's default) puts the group's key on."""
        parts = list(range(self.config.partitions))
        return int(self._partitioner(group.encode(), parts, parts))


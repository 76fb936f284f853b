"""Table recovery that reads the changelog in large batches.

Faust restores a table by feeding each changelog record through its consumer's
per-message path (a task and a wait per message, a queue, a wait per event): about
160 µs a record, so a worker with a million records of state took minutes to start.

`BulkRecovery` keeps Faust's recovery and changes one step. Once Faust has found, for
each active changelog partition, the offset its table holds (`_build_offsets`), the
partitions are read here with a separate, group-less aiokafka consumer up to the end
of the log, in fetches of thousands of records, and applied batch by batch: to a
`MemoryStore` (`stream_app/worker/tables.py`) as they are, otherwise through the table's
`apply_changelog_batch` (events decoded by the changelog topic, as Faust does). Each
applied batch advances Faust's offset for its partition, so Faust then finds nothing
left to read, or reads on from where this stopped: a rebalance (Faust cancels the
step), the end of its time budget or a broker error leaves a table that holds exactly
the records up to its recorded offset, never a gap.

Under `exactly_once` the partitions' previous writer is fenced first (the app's
`before_restore`) and only committed records are read.

Standby partitions are left to Faust; the changelog stays the only source of state.

Where the broker's ListOffsets answers less than a partition's end (Tansu 0.6: the
start of its last record batch plus one), the ends Faust goes by are taken from a fetch
response's high watermark instead (`exact_end_offsets` off). Faust checks that no table
holds records past its changelog's end, and a standby that had read the whole of a last
batch would otherwise fail that check and stop the worker.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list
from faust.types import TP
from faust.types.enums import ProcessingGuarantee
from faust.types.tuples import ConsumerMessage

from stream_app.worker.faust_app import BeforeRestore
from stream_app.worker.timing import RESTORE_FETCH_WAIT_MS

log = logging.getLogger("tokenpool.restore")

FETCH_RECORDS = 20_000
"""Records applied per table and batch at most."""
PARTITION_FETCH_BYTES = 4 * 1024 * 1024
"""Bytes per partition and fetch (a larger single record still comes whole)."""
FETCH_BYTES = 16 * 1024 * 1024
"""Bytes per fetch response: what the read holds at once stays bounded."""


class BulkRecovery(Recovery):
    """Faust's table recovery, its active changelog partitions read in bulk first."""

    read_budget: float | None = None
    """Seconds the bulk read may go on; None: half of `broker_request_timeout`. Faust
    runs each step of its recovery with that timeout, and a step that overruns it
    ends its recovery service for good (`wait_first` reports a timeout as a stop), so
    the read ends in time and leaves the rest of the changelog to Faust."""

    async def _build_highwaters(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        if not tps or getattr(self.app, "exact_end_offsets", True):
            return
        try:
            ends = await self._fetched_ends(tps, destination)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("%s changelog ends not fetched, the listed ends kept: %r", title, exc)
            return
        for tp, end in ends.items():
            if end - 1 > destination[tp]:
                log.info("%s changelog end from a fetch topic=%s partition=%d "
                         "listed=%d fetched=%d", title, tp.topic, tp.partition,
                         destination[tp] + 1, end)
                destination[tp] = end - 1  # Faust's highwater: the last offset

    async def _fetched_ends(self, tps: set[TP], listed: Counter[TP]) -> dict[TP, int]:
        """Each partition's end as a fetch response reports it. The fetch starts at the
        listed end, so it carries at most the last batch."""
        reader, read_committed = self._reader()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._budget()
        ends: dict[TP, int] = {}
        await reader.start()
        try:
            pending = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
            reader.assign(list(pending))
            for partition, tp in pending.items():
                reader.seek(partition, max(listed[tp] + 1, 0))
            while pending:
                await reader.getmany(*pending, timeout_ms=RESTORE_FETCH_WAIT_MS * 4)
                for partition in list(pending):
                    end = (reader.last_stable_offset(partition) if read_committed
                           else reader.highwater(partition))
                    if end is not None:
                        ends[pending.pop(partition)] = end
                if pending and loop.time() > deadline:
                    raise TimeoutError(f"no fetch response for {len(pending)} partitions")
        finally:
            await _stop(reader)
        return ends

    def _reader(self) -> tuple[AIOKafkaConsumer, bool]:
        """A group-less consumer of the changelogs, and whether it reads committed
        records only: the worker's own transactions (exactly_once) or Faust's."""
        app: Any = self.app
        conf = app.conf
        read_committed = bool(getattr(app, "read_committed", False)) or (
            conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE)
        reader = AIOKafkaConsumer(
            bootstrap_servers=server_list(app.transport.url, app.transport.default_port),
            client_id=f"{conf.broker_client_id}-restore",
            group_id=None,
            enable_auto_commit=False,
            max_poll_records=FETCH_RECORDS,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
            fetch_max_wait_ms=RESTORE_FETCH_WAIT_MS,
            request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
            check_crcs=conf.broker_check_crcs,
            isolation_level="read_committed" if read_committed else "read_uncommitted",
            **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )
        return reader, read_committed

    def _budget(self) -> float:
        budget = self.read_budget
        return self.app.conf.broker_request_timeout / 2 if budget is None else budget

    async def _build_offsets(
        self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        if title == "active" and tps:
            before: BeforeRestore | None = getattr(self.app, "before_restore", None)
            if before is not None:
                await before(tps)  # fence the partitions' previous writer first
        await super()._build_offsets(consumer, tps, destination, title)
        if title == "active" and tps:
            try:
                await self._read_ahead(tps, destination)
            except (KafkaError, OSError, TimeoutError) as exc:
                # A broker error: Faust reads on from the offsets reached. Anything else
                # is a fault here (or a Faust internal that moved) and must be seen.
                log.warning("changelog bulk read stopped, recovery goes on: %r", exc)

    async def _read_ahead(self, tps: set[TP], offsets: Counter[TP]) -> None:
        reader, read_committed = self._reader()
        loop = asyncio.get_running_loop()
        budget = self._budget()
        deadline = loop.time() + budget
        await reader.start()
        applied = 0
        try:
            pending = {TopicPartition(tp.topic, tp.partition) for tp in tps}
            reader.assign(list(pending))
            for tp in pending:
                reader.seek(tp, max(offsets[tp] + 1, 0))
            while pending:
                batch = await reader.getmany(*pending, timeout_ms=RESTORE_FETCH_WAIT_MS * 4)
                for tp, records in batch.items():
                    if records:
                        offsets[tp] = await self._apply(TP(tp.topic, tp.partition), records)
                        applied += len(records)
                for tp in list(pending):
                    end = (reader.last_stable_offset(tp) if read_committed
                           else reader.highwater(tp))
                    if end is None:
                        continue  # no fetch response for it yet
                    position = await reader.position(tp)
                    offsets[tp] = max(offsets[tp], position - 1)
                    if position >= end:
                        pending.discard(tp)
                        reader.pause(tp)
                        # Faust reads on to its own end of the log, which may be older
                        # than this one (a later write, or a broker that reports the
                        # start of the last batch as the end): it must not count the
                        # records read here as beyond the end.
                        highwaters = self.active_highwaters
                        if highwaters.get(tp) is None or highwaters[tp] < position - 1:
                            highwaters[tp] = position - 1
                if pending and loop.time() > deadline:
                    log.warning("changelog bulk read out of time after %.0f s, the rest is "
                                "read record by record partitions=%d", budget, len(pending))
                    break
                await asyncio.sleep(0)
        finally:
            log.info("changelog read in bulk records=%d partitions=%d", applied, len(tps))
            await _stop(reader)

    async def _apply(self, tp: TP, records: Sequence[Any]) -> int:
        """Apply records of one changelog partition to its table, as Faust's recovery
        does; return the offset of the last."""
        table: Any = self.tp_to_table[tp]
        bulk = getattr(table.data, "apply_changelog_records", None)
        if bulk is not None:
            bulk(records)
            return int(records[-1].offset)
        decode = table.changelog_topic.decode
        on_event = table.on_changelog_event
        generation = self.app.consumer_generation_id
        events = []
        for r in records:
            timestamp = cast(float, r.timestamp / 1000.0 if r.timestamp is not None else None)
            message = ConsumerMessage(
                r.topic, r.partition, r.offset, timestamp, r.timestamp_type, r.headers,
                r.key, r.value, r.checksum, r.serialized_key_size,
                r.serialized_value_size, tp, generation_id=generation,
            )
            event = await decode(message)
            await on_event(event)
            events.append(event)
        table.apply_changelog_batch(events)
        return int(records[-1].offset)


async def _stop(reader: AIOKafkaConsumer) -> None:
    """Stop the reader. aiokafka ends a helper task by cancelling it, and when that task
    had not run yet (an error right after the start) the cancellation reaches here:
    it must not end the recovery service, unless the service itself is cancelled."""
    try:
        await reader.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.info("changelog reader stopped before its start completed")


class BulkTableManager(TableManager):
    """Faust's table manager with `BulkRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = BulkRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


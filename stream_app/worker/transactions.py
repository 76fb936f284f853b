"""Kafka transactions for `--guarantee exactly_once`: one producer per writer.

A writer is one owned partition of the pools (`state-<p>`) or the ledger (`ledger`):
what one checkpoint of it writes (outputs, feedback, dead letters, its state records)
goes in one transaction, so a `read_committed` consumer sees all of it or none, once.
The transactional id is the writer's, not the worker's: a worker that takes a partition
over starts that partition's producer before it reads the partition's state back, and
Kafka then fences the previous owner (its open transaction aborted, its next write
refused with `ProducerFenced`), so a zombie can neither land a late checkpoint nor
decide allocations beside the new ledger.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import RecordMetadata

from stream_app.kafka.topics import MAX_RECORD_BYTES
from stream_app.worker.timing import TRANSACTION_RETRY_AFTER, TRANSACTION_TIMEOUT_MS

log = logging.getLogger("tokenpool.transactions")



class Record(NamedTuple):
    topic: str
    partition: int | None
    """None: Kafka's default partitioner picks it from the key (murmur2)."""
    key: bytes | None
    value: bytes | None


class Fenced(Exception):
    """A newer owner of the writer's partition started: this worker must let it go."""


class TransactionalWriters:
    def __init__(self, client_kwargs: dict[str, Any], app_id: str) -> None:
        self._client_kwargs = client_kwargs
        self._app_id = app_id
        self._producers: dict[str, AIOKafkaProducer] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._stopping: set[asyncio.Future[None]] = set()
        self._broken: set[str] = set()
        """Writers whose producer failed a transaction: started anew before the next."""

    def transactional_id(self, writer: str) -> str:
        return f"{self._app_id}-{writer}"

    def has(self, writer: str) -> bool:
        return writer in self._producers

    async def fence(self, writer: str) -> None:
        """Start the writer's producer, if this worker has none: from now on the writer's
        previous producer (another worker's, or this one's before a crash) is fenced."""
        async with self._lock(writer):
            if writer not in self._producers:
                self._producers[writer] = await self._start(writer)

    async def _start(self, writer: str) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **self._client_kwargs, transactional_id=self.transactional_id(writer),
            enable_idempotence=True, acks="all", linger_ms=5,
            max_request_size=MAX_RECORD_BYTES,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        )
        await producer.start()
        log.info("transactional producer started writer=%s transactional_id=%s", writer,
                 self.transactional_id(writer))
        return producer

    def retire(self, writer: str) -> None:
        """The worker gave the writer's partition up: its producer is stopped once the
        transaction under way, if any, is over. At once: a later `fence` of the same
        writer (the partition back here) starts a new producer."""
        producer = self._producers.pop(writer, None)
        self._broken.discard(writer)
        if producer is not None:
            task = asyncio.ensure_future(self._stop_when_free(writer, producer))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _stop_when_free(self, writer: str, producer: AIOKafkaProducer) -> None:
        async with self._lock(writer):
            await _stop(producer)

    async def commit(self, writer: str, records: Sequence[Record],
                     still_owned: Callable[[], bool]) -> list[RecordMetadata] | None:
        """Write `records` in one transaction; return their metadata, or None when the
        writer's partition was given up meanwhile. Raises `Fenced` when a newer owner
        started. A refused transaction is aborted and written again, whole, with a new
        producer (which fences this worker's old one), until it commits."""
        while True:
            async with self._lock(writer):
                if not still_owned():
                    return None
                if writer in self._broken:
                    try:
                        # A new producer of the same id: its start aborts what is left of
                        # the refused transaction and fences the old producer.
                        self._producers[writer] = await self._start(writer)
                        self._broken.discard(writer)
                    except KafkaError as exc:
                        log.warning("transactional producer not restarted writer=%s: %r",
                                    writer, exc)
                producer = self._producers.get(writer)
                if producer is None:
                    # Only the start of an owned partition's recovery starts its producer
                    # (fencing whoever wrote it before); starting one here could fence
                    # the partition's new owner.
                    log.error("no transactional producer writer=%s: not written", writer)
                    return None
                if writer not in self._broken:
                    try:
                        return await _in_transaction(producer, records)
                    except ProducerFenced as exc:
                        if self._producers.get(writer) is producer:
                            del self._producers[writer]
                        await _stop(producer)
                        raise Fenced(writer) from exc
                    except KafkaError as exc:
                        log.warning("transaction refused, writing it again writer=%s "
                                    "records=%d: %r", writer, len(records), exc)
                        await _stop(producer)
                        self._broken.add(writer)
            await asyncio.sleep(TRANSACTION_RETRY_AFTER)

    async def close(self) -> None:
        for writer in list(self._producers):
            self.retire(writer)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    def _lock(self, writer: str) -> asyncio.Lock:
        lock = self._locks.get(writer)
        if lock is None:
            lock = self._locks[writer] = asyncio.Lock()
        return lock


async def _in_transaction(producer: AIOKafkaProducer,
                          records: Sequence[Record]) -> list[RecordMetadata]:
    async with producer.transaction():
        futures = [await producer.send(r.topic, r.value, key=r.key, partition=r.partition)
                   for r in records]
    return [f.result() for f in futures]


async def _stop(producer: AIOKafkaProducer) -> None:
    try:
        await producer.stop()
    except Exception as exc:  # a fenced or broken producer: nothing left to save
        log.info("transactional producer stopped with an error: %r", exc)

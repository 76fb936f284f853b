"""What the worker writes, and when it is durable: checkpoints, ledger batches, dead letters.

A checkpoint of a partition (`PartitionTask.checkpoint()`) holds the outputs, the
feedback for the ledger, the commit record and the record updates of the inputs
applied since the last one. How they reach Kafka depends on `--guarantee`:

- `at_least_once`: the outputs and feedback, then a flush (they are durable before the
  state that produced them, so a crash re-applies the batch and re-emits the same
  ids); the commit record, then the updates, then a flush. Recovery finishes the
  updates of the last commit record. On Tansu a one-record batch follows
  (`fence_records`: see RELIABILITY.md, "Broker quirks").
- `exactly_once`: all of it, and the dead letters of its inputs, in one Kafka
  transaction of the partition's own producer (`transactions.py`). The local table
  store changes once the transaction committed.

The ledger's batches go the same two ways: grants and rejections before the one
ledger record that remembers them, or all of it in one transaction.

Only then are the inputs acknowledged, by the caller.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from schemas import DeadLetter, encode
from stream_app.worker.partition_task import Checkpoint, record_key
from stream_app.worker.tables import PartitionedTable
from stream_app.worker.transactions import Fenced, Record, TransactionalWriters

log = logging.getLogger("tokenpool.worker")

DEAD_LETTER_RAW = 256 * 1024
"""Bytes of a rejected record kept in its dead letter: a record near the broker's size
limit, base64-encoded, would not fit in a dead letter whole and could not be sent."""
DEAD_LETTER_DETAIL = 1000
LEDGER_WRITER = "ledger"
FENCE_KEY_KIND = "F"


def partition_writer(partition: int) -> str:
    """The transactional writer of a pools partition (its id: `<app id>-state-<p>`)."""
    return f"state-{partition}"


def dead_letter(msg: Any, reason: str, detail: str) -> tuple[bytes | None, bytes]:
    """Key and value of the dead letter of a rejected input record. `reason` is a short
    code (a metric label: bounded); `detail` says what was wrong with this record."""
    raw = msg.value if isinstance(msg.value, bytes) else b""
    error = f"{reason.replace('_', ' ')}: {detail[:DEAD_LETTER_DETAIL]}"
    if len(raw) > DEAD_LETTER_RAW:
        error += f" (raw cut to its first {DEAD_LETTER_RAW} of {len(raw)} bytes)"
        raw = raw[:DEAD_LETTER_RAW]
    key = msg.key if isinstance(msg.key, bytes) and len(msg.key) <= 1024 else None
    letter = DeadLetter(raw=raw, topic=msg.topic, partition=msg.partition,
                        offset=msg.offset, error=error)
    return key, encode(letter)


class CheckpointWriter:
    """Writes checkpoints, ledger batches and dead letters; knows nothing of rules.

    `topics` holds the Faust topics by role: the four outputs by logical name
    (`pass-consumed`, ...), `feedback`, `dead-letters` and `grants`. `writers` is given
    under `exactly_once`. `owner(partition)` is the partition's task while this worker
    owns it, else None."""

    def __init__(
        self,
        *,
        app: Any,
        state: PartitionedTable,
        ledger: PartitionedTable,
        topics: Mapping[str, Any],
        writers: TransactionalWriters | None,
        fence_records: bool,
        owner: Callable[[int], Any],
    ) -> None:
        self._app = app
        self._state = state
        self._ledger = ledger
        self._topics = topics
        self._writers = writers
        self._fence_records = fence_records
        self._owner = owner
        self._letters: dict[str, list[tuple[bytes | None, bytes]]] = {}
        """exactly_once: dead letters waiting for their writer's next transaction."""
        self._in_flight: list[Any] = []
        """at_least_once: dead letters sent and not yet known delivered."""

    @property
    def transactional(self) -> bool:
        return self._writers is not None

    # -- dead letters ----------------------------------------------------------------

    async def dead_letter(self, writer: str, msg: Any, reason: str, detail: str) -> None:
        key, value = dead_letter(msg, reason, detail)
        if self._writers is not None:
            self._letters.setdefault(writer, []).append((key, value))
        else:
            topic = self._topics["dead-letters"]
            self._in_flight.append(await topic.send(key=key, value=value))

    async def _letters_delivered(self) -> None:
        if self._in_flight:
            letters, self._in_flight = self._in_flight, []
            for failed in await asyncio.gather(*letters, return_exceptions=True):
                if isinstance(failed, BaseException):
                    log.error("dead letter not delivered: %r", failed)

    def _letter_records(self, writer: str) -> list[Record]:
        topic = self._topics["dead-letters"].get_topic_name()
        return [Record(topic, None, key, value)
                for key, value in self._letters.pop(writer, ())]

    # -- partitions ------------------------------------------------------------------

    async def write(self, task: Any, cp: Checkpoint) -> bool:
        """Make `cp` durable; False when the partition was given up (revoked, or fenced
        by a newer owner) before it was: its next owner applies those inputs again."""
        if self._writers is not None:
            return await self._write_transaction(task, cp)
        return await self._write_in_order(task, cp)

    async def _write_in_order(self, task: Any, cp: Checkpoint) -> bool:
        for o in cp.outputs:
            await self._topics[o.topic].send(key=o.key, value=o.value)
        for f in cp.feedback:
            await self._topics["feedback"].send(key=b"", value=f, partition=0)
        if cp.outputs or cp.feedback:
            await self._app.producer.flush()
        await self._letters_delivered()
        if self._owner(task.partition) is not task:
            return False  # revoked while the outputs went out: the new owner re-applies
        if cp.commit is not None:
            state = self._state
            key, value = cp.commit
            state[key] = value
            for key, update in cp.updates:
                state.write(key, update)
            await self._app.producer.flush()
            await state.delivered()
            if self._fence_records:
                state[record_key(task.partition, FENCE_KEY_KIND, "", "")] = b"f"
                await state.delivered()
        return self._owner(task.partition) is task

    async def _write_transaction(self, task: Any, cp: Checkpoint) -> bool:
        assert self._writers is not None
        partition = task.partition
        writer = partition_writer(partition)
        records = [Record(self._topics[o.topic].get_topic_name(), None, o.key, o.value)
                   for o in cp.outputs]
        feedback = self._topics["feedback"].get_topic_name()
        records += [Record(feedback, 0, b"", f) for f in cp.feedback]
        records += self._letter_records(writer)
        state_records: list[tuple[bytes, bytes | None]] = []
        if cp.commit is not None:
            state_records = [cp.commit, *cp.updates]
        changelog = self._state.changelog_topic.get_topic_name()
        records += [Record(changelog, partition, k, v) for k, v in state_records]
        if not records:
            return self._owner(partition) is task
        try:
            written = await self._writers.commit(
                writer, records, lambda: self._owner(partition) is task)
        except Fenced:
            log.warning("partition fenced by a newer owner, letting it go partition=%d",
                        partition)
            return False
        if written is None:
            return False
        self._put_local(self._state, state_records, written, partition)
        return True

    @staticmethod
    def _put_local(table: PartitionedTable, records: Iterable[tuple[bytes, bytes | None]],
                   written: list[Any], partition: int) -> None:
        records = list(records)
        for key, value in records:
            table.put_local(key, value)
        if records:
            table.persist_offset(partition, written[-1].offset)

    # -- the ledger ------------------------------------------------------------------

    async def write_ledger(self, grants: list[tuple[int, bytes]], rejections: list[bytes],
                           ledger_key: bytes, ledger_value: bytes,
                           still_owned: Callable[[], bool]) -> bool:
        """A batch of decisions, then the ledger record that remembers them; False when
        the ledger was taken over before it was written."""
        if self._writers is None:
            for partition, grant in grants:
                await self._topics["grants"].send(key=b"", value=grant, partition=partition)
            for rejection in rejections:
                await self._topics["allocation-rejected"].send(key=b"", value=rejection)
            await self._app.producer.flush()
            await self._letters_delivered()
            if not still_owned():
                return False
            self._ledger[ledger_key] = ledger_value
            await self._ledger.delivered()  # before the batch's offsets commit
            return True
        grants_name = self._topics["grants"].get_topic_name()
        rejected = self._topics["allocation-rejected"].get_topic_name()
        changelog = self._ledger.changelog_topic.get_topic_name()
        records = [Record(grants_name, p, b"", g) for p, g in grants]
        records += [Record(rejected, None, b"", r) for r in rejections]
        records += self._letter_records(LEDGER_WRITER)
        records.append(Record(changelog, 0, ledger_key, ledger_value))
        try:
            written = await self._writers.commit(LEDGER_WRITER, records, still_owned)
        except Fenced:
            log.warning("ledger fenced by a newer owner, letting it go")
            return False
        if written is None:
            return False
        self._put_local(self._ledger, [(ledger_key, ledger_value)], written, 0)
        return True

"""The worker's tables: Faust tables whose keys carry their partition, and their stores.

The worker writes its state at checkpoints, for any partition it owns, from whichever
task reaches the checkpoint (the session reader or an agent), and under
`exactly_once` it writes the changelog itself, in a Kafka transaction. Faust's stores
assume the opposite: RocksDB files a key under the partition of the event being
processed (`current_event()`), which at a checkpoint may be another partition's or
none. These stores ask the key instead (`partition_of_key`), and take changelog
records as read, in bulk (`stream_app/worker/restore.py`).
"""

import asyncio
from collections.abc import Iterable
from typing import Any

import faust
from faust.stores import by_url, memory
from faust.types import TP

from stream_app.worker.partition_task import partition_of_key

try:  # the rocksdb extra (rocksdict): optional
    from faust.stores import rocksdb as _rocksdb
except ImportError:  # pragma: no cover - faust ships the module; rocksdict may be absent
    _rocksdb = None  # type: ignore[assignment]


class MemoryStore(memory.Store):  # type: ignore[type-arg]
    """Faust's in-memory store, able to take changelog records as read, in bulk.

    For tables with raw keys and values (bytes both ways, as `PartitionedTable`),
    whose events are the records' own key and value: `apply_changelog_batch` without
    an event object per record, with the same result (the last record of a key wins,
    a null value deletes the key)."""

    def apply_changelog_records(self, records: Iterable[Any]) -> None:
        data = self.data
        partitions = self._key_partition
        for record in records:
            key = record.key
            if record.value is None:
                data.pop(key, None)
                partitions.pop(key, None)
            else:
                data[key] = record.value
                partitions[key] = record.partition

    def put_local(self, key: bytes, value: bytes | None) -> None:
        """Change the local copy only: its changelog record is written by the caller."""
        if value is None:
            self.data.pop(key, None)
            self._key_partition.pop(key, None)
        else:
            self.data[key] = value
            self._key_partition[key] = partition_of_key(key)

    def persist_offset(self, tp: TP, offset: int) -> None:
        """Nothing persists in memory: a restart reads the whole changelog."""


if _rocksdb is not None:

    class RocksDBStore(_rocksdb.Store):
        """Faust's RocksDB store, each key in the file of its own partition."""

        def _set(self, key: bytes, value: bytes | None) -> None:
            partition = partition_of_key(key)
            self._key_index[key] = partition
            self._db_for_partition(partition).put(key, value)

        def _get(self, key: bytes) -> bytes | None:
            value: bytes | None = self._db_for_partition(partition_of_key(key)).get(key)
            return value

        def _del(self, key: bytes) -> None:
            self._key_index.pop(key, None)
            self._db_for_partition(partition_of_key(key)).delete(key)

        def put_local(self, key: bytes, value: bytes | None) -> None:
            """Change the local copy only: its changelog record is written by the caller."""
            if value is None:
                self._del(key)
            else:
                self._set(key, value)

        def persist_offset(self, tp: TP, offset: int) -> None:
            """The changelog offset the local files hold up to: a restart reads on from
            there, not from the start."""
            self.set_persisted_offset(tp, offset)

else:  # pragma: no cover
    RocksDBStore = None  # type: ignore[assignment,misc]


def partitioned_store_class(faust_class: type) -> type:
    """The store of this module that replaces Faust's `faust_class`."""
    if faust_class is memory.Store:
        return MemoryStore
    if _rocksdb is not None and faust_class is _rocksdb.Store:
        return RocksDBStore
    raise ValueError(f"unsupported table store {faust_class.__name__}: "
                     "use memory:// or rocksdb://")


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
        cls = partitioned_store_class(by_url(url))
        return cls(
            url, self.app, self, table_name=self.name, key_type=self.key_type,
            key_serializer=self.key_serializer, value_serializer=self.value_serializer,
            value_type=self.value_type, loop=self.loop, options=self.options,
        )

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

    def write(self, key: bytes, value: bytes | None) -> None:
        """Set or (None) delete a key, its changelog record sent by Faust's producer."""
        if value is not None:
            self[key] = value
        elif key in self:
            del self[key]

    def put_local(self, key: bytes, value: bytes | None) -> None:
        """Set or delete a key in the local store only: the caller writes its changelog
        record (in a Kafka transaction)."""
        self.data.put_local(key, value)

    def persist_offset(self, partition: int, offset: int) -> None:
        """The local store holds the changelog of `partition` up to `offset`."""
        self.data.persist_offset(TP(self.changelog_topic.get_topic_name(), partition), offset)

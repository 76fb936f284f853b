"""The Faust app of the worker, and the parts of Faust it changes.

Faust's `exactly_once` is not used: it picks a transactional producer by the partition a
record is sent *to*, so the worker's writes to partitions another worker owns (grants
and ledger marks to every partition, feedback to partition 0) raise, and outputs sent
through the plain producer leave outside any transaction (faust-streaming issues 177,
323, 517). The worker runs its own transactions (`stream_app/worker/transactions.py`) and
asks two things of Faust:

- its consumer reads committed records only, so the agents never see a grant or a
  feedback record of an aborted transaction (`read_committed`);
- before a table's changelog partitions are read back, the worker fences their
  previous writer (`before_restore`): a zombie's open transaction is aborted first,
  so the state read back is final.

Every Faust internal the worker relies on is listed in `check_faust_internals`, which
the worker runs at start: a faust-streaming release that moves one fails there, by
name, not later in a rebalance.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

BeforeRestore = Callable[[set[Any]], Awaitable[None]]


class _ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        # Faust chooses read_committed from this flag (it also routes commits through
        # its transaction manager with it, so it is set for the creation only).
        consumer = self.consumer
        consumer.in_transaction = True
        try:
            return super()._create_worker_consumer(transport)
        finally:
            consumer.in_transaction = False


class _ReadCommittedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _ReadCommittedTransport(faust_aiokafka.Transport):
    Consumer = _ReadCommittedConsumer


class TokenpoolApp(faust.App):  # type: ignore[misc]
    """`faust.App` with a read-committed consumer (when asked) and a fencing hook."""

    read_committed: bool = False
    before_restore: BeforeRestore | None = None
    exact_end_offsets: bool = True
    """Whether the broker's ListOffsets answers a partition's true end (`restore.py`)."""

    def _new_transport(self) -> Any:
        if not self.read_committed:
            return super()._new_transport()
        return _ReadCommittedTransport(self.conf.broker_consumer, self)


_INTERNALS: tuple[tuple[str, str], ...] = (
    ("faust.app.base:App", "_new_transport"),
    ("faust.transport.drivers.aiokafka:Consumer", "_new_consumer_thread"),
    ("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread", "_create_worker_consumer"),
    ("faust.transport.consumer:Consumer", "seek_wait"),
    ("faust.tables.recovery:Recovery", "_build_offsets"),
    ("faust.tables.recovery:Recovery", "active_highwaters"),
    ("faust.tables.recovery:Recovery", "tp_to_table"),
    ("faust.tables.manager:TableManager", "_recovery"),
    ("faust.tables.base:Collection", "apply_changelog_batch"),
    ("faust.tables.base:Collection", "_new_store_by_url"),
    ("faust.stores.memory:Store", "_key_partition"),
    ("faust.stores.rocksdb:Store", "_db_for_partition"),
    ("faust.stores.rocksdb:Store", "_key_index"),
    ("faust.streams:Stream", "_set_current_event"),
    ("faust.web.base:Web", "blueprints"),
)
"""(module:class, attribute): what the worker reaches into (`restore.py`, this module,
`tables.py`, `input_rewind.py`, `web.py`, the ledger agent)."""


class FaustInternalsChanged(RuntimeError):
    """The installed faust-streaming lacks an internal the worker relies on."""


def check_faust_internals() -> None:
    import importlib

    missing = []
    for where, attribute in _INTERNALS:
        module_name, class_name = where.split(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            missing.append(where)
            continue
        if not _has(cls, attribute):
            missing.append(f"{where}.{attribute}")
    if missing:
        from importlib.metadata import version

        raise FaustInternalsChanged(
            f"faust-streaming {version('faust-streaming')} lacks what the worker relies on: "
            f"{', '.join(missing)}; install the version pyproject.toml pins"
        )


def _has(cls: type, attribute: str) -> bool:
    if hasattr(cls, attribute):
        return True
    # Attributes set in __init__ or __post_init__ are not on the class: look in its code.
    for klass in cls.__mro__:
        for method in ("__init__", "__post_init__", "on_init", "_reset_state"):
            code = getattr(getattr(klass, method, None), "__code__", None)
            if code is not None and attribute in code.co_names:
                return True
    return False

"""Read every input from the state's own offsets, not the consumer group's.

The state records the last offset it applied of each input partition (the pools'
commit records, the ledger's decided offset). Faust starts reading at the group's
committed offset, and that can run past records nothing applied: Faust counts a jump
in the offsets it receives as acknowledged, and after a rebalance records fetched
before it can cause one. `InputRewinder` notices (a record arrives past the next one
the state expects, or the partition holds records past it that do not arrive) and
sends the consumer back to the first record not applied.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from stream_app.worker.timing import CATCH_UP_AFTER, LOOK_EVERY, PROBE_STALL, RESEEK_AFTER

log = logging.getLogger("tokenpool.worker")


Relevant = Callable[[bytes | None], bool]


class InputRewinder:
    """`relevant` maps a topic to what tells a record the state must apply from one it
    may skip (the ledger's marks in the grants topic change nothing and advance no
    state offset: a restart after a quiet day must not read them all again)."""

    def __init__(self, app: Any, client_kwargs: dict[str, Any], *, read_committed: bool,
                 relevant: Mapping[str, Relevant] | None = None) -> None:
        self.app = app
        self._client_kwargs = client_kwargs
        self._isolation = "read_committed" if read_committed else "read_uncommitted"
        self._relevant = dict(relevant or {})
        self._rewound: dict[TP, tuple[int, int, float]] = {}
        """tp → (applied offset, first record after it, when the consumer was sent there)."""
        self._empty: dict[TP, int] = {}
        """tp → an offset up to which the partition holds no record past the applied."""
        self._behind_since: dict[TP, float] = {}
        self._looking: dict[TP, asyncio.Future[None]] = {}
        self._looked: dict[TP, float] = {}

    def nothing_past(self, tp: TP, end: int) -> bool:
        """Known: the partition holds no record past the applied one before `end`."""
        return self._empty.get(tp, -1) >= end - 1

    def look_past(self, tp: TP, applied: int, end: int) -> None:
        """Find out, in the background, whether records follow `applied` before `end`
        (at most one look per partition at a time, and one a second)."""
        now = time.monotonic()
        if tp in self._looking or now - self._looked.get(tp, 0.0) < LOOK_EVERY:
            return
        self._looked[tp] = now
        task = asyncio.ensure_future(self._look(tp, applied, end))
        self._looking[tp] = task
        task.add_done_callback(lambda _: self._looking.pop(tp, None))

    async def _look(self, tp: TP, applied: int, end: int) -> None:
        try:
            found = await self._first_record(tp, applied + 1, end)
        except Exception as exc:  # the broker did not answer: looked at again later
            log.info("input: could not look into %s[%d] offsets %d..%d: %r",
                     tp.topic, tp.partition, applied + 1, end - 1, exc)
            return
        if found is None and self._empty.get(tp, -1) < end - 1:
            log.info("input: no record at %s[%d] offsets %d..%d (transaction markers)",
                     tp.topic, tp.partition, applied + 1, end - 1)
            self._empty[tp] = end - 1

    def forget(self, tps: set[TP]) -> None:
        """The partitions are revoked: whoever owns them next reads from its state."""
        for tp in tps:
            self._looked.pop(tp, None)
            self._rewound.pop(tp, None)
            self._empty.pop(tp, None)
            self._behind_since.pop(tp, None)

    async def skip(self, tp: TP, applied: int, offset: int) -> bool:
        """A record at `offset` arrived and `applied` is the last offset handled: True
        when records in between exist, so the consumer was sent back to them and this
        one comes again in order (do not handle it now)."""
        if offset <= max(applied, self._empty.get(tp, -1)) + 1:
            return False
        now = time.monotonic()
        rewound = self._rewound.get(tp)
        if rewound is not None and rewound[0] == applied:
            _, first, at = rewound
            if offset <= first:
                return False  # the first record after offsets that hold none
            if now - at > RESEEK_AFTER:
                self._rewound[tp] = (applied, first, now)
                await self._seek(tp, first)
            return True
        try:
            found = await self._first_record(tp, applied + 1, offset)
        except Exception as exc:  # the broker did not answer: reading again is safe
            log.warning("input: could not look into %s[%d] offsets %d..%d: %r",
                        tp.topic, tp.partition, applied + 1, offset - 1, exc)
            found = applied + 1
        if found is None:
            # Offsets without records (transaction markers) or gone (retention).
            log.info("input: nothing to apply at %s[%d] offsets %d..%d, going on",
                     tp.topic, tp.partition, applied + 1, offset - 1)
            self._empty[tp] = offset - 1
            return False
        self._rewound[tp] = (applied, found, now)
        # Routine after a restart (the ledger's marks advance no state offset), a
        # recovered loss after a rebalance that made the group's offset jump.
        log.info("input: %s[%d] records %d..%d past the state's offset, reading again",
                 tp.topic, tp.partition, found, offset - 1)
        await self._seek(tp, found)
        return True

    async def _seek(self, tp: TP, offset: int) -> None:
        # In the consumer's own thread, and the offset Faust reads from reset with it
        # (`Consumer.seek` calls into the consumer from this thread: its fetch can
        # then stall for a minute).
        await self.app.consumer.seek_wait({tp: offset})

    async def catch_up(self, tp: TP, applied: int) -> None:
        """Call now and then for an idle partition: records past `applied` that have
        not arrived for `CATCH_UP_AFTER` seconds are read again."""
        try:
            highwater = self.app.consumer.highwater(tp)
        except Exception:
            return
        if highwater is None or max(applied, self._empty.get(tp, -1)) >= highwater - 1:
            self._behind_since.pop(tp, None)
            return
        now = time.monotonic()
        since = self._behind_since.setdefault(tp, now)
        if now - since > CATCH_UP_AFTER:
            self._behind_since.pop(tp, None)
            await self.skip(tp, applied, highwater)

    async def _first_record(self, tp: TP, start: int, end: int) -> int | None:
        """Offset of the first relevant record in [start, end), read with a consumer of
        its own, outside the group; None when there is none."""
        relevant = self._relevant.get(tp.topic)
        consumer = AIOKafkaConsumer(
            **self._client_kwargs, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level=self._isolation,
        )
        await consumer.start()
        try:
            part = TopicPartition(tp.topic, tp.partition)
            consumer.assign([part])
            consumer.seek(part, start)
            progress = time.monotonic()
            while time.monotonic() - progress < PROBE_STALL:
                batch = await consumer.getmany(part, timeout_ms=500, max_records=5000)
                for record in batch.get(part, ()):
                    progress = time.monotonic()
                    if record.offset >= end:
                        return None
                    if relevant is None or relevant(record.value):
                        return int(record.offset)
                if await consumer.position(part) >= end:
                    return None
            raise TimeoutError(f"no answer reading {tp.topic} from offset {start}")
        finally:
            await consumer.stop()

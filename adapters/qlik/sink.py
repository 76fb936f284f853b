"""Mapped session events to the input topics, keyed by group, and the ingest report.

Keys are the group name and aiokafka's default partitioner is Kafka's murmur2, the
one the worker routes by, so a group's events land on its partition.
"""

import asyncio
import logging
from collections import Counter
from typing import Any

from adapters.qlik.activity import Activity, Rejected, to_session_event
from adapters.qlik.group_mapping import GroupMapping
from schemas.codec import encode
from schemas.inputs import Allocation, SessionEnd, SessionHeartbeat, SessionStart
from stream_app.config import StreamConfig

log = logging.getLogger("tokenpool.qlik")


class IngestReport:
    """What an ingest run did with every record: produced, skipped, malformed, unmapped."""

    def __init__(self) -> None:
        self.produced: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()
        self.unmapped: Counter[str] = Counter()
        self.unsent_unmapped = 0
        self.keepalive_heartbeats = 0
        self.silent_ended = 0
        """Sessions the keep-alive ended: an open connection silent past its bound."""

    def rejected(self, what: Rejected, where: str) -> None:
        if what.skipped:
            self.skipped[what.reason] += 1
            log.debug("skipped %s: %s", where, what.reason)
        else:
            self.malformed[what.reason] += 1
            log.warning("malformed %s: %s", where, what.reason)

    def summary(self) -> str:
        parts = [f"produced={sum(self.produced.values())}"]
        parts += [f"{topic}={n}" for topic, n in sorted(self.produced.items())]
        parts.append(f"skipped={sum(self.skipped.values())}")
        parts.append(f"malformed={sum(self.malformed.values())}")
        parts.append(f"unmapped_users={len(self.unmapped)}")
        parts.append(f"unsent_unmapped={self.unsent_unmapped}")
        parts.append(f"keepalive_heartbeats={self.keepalive_heartbeats}")
        parts.append(f"silent_ended={self.silent_ended}")
        return " ".join(parts)

    def made(self, item: Activity) -> None:
        """Count (and, for a silent end, log) what the keep-alive made."""
        if item.kind == "stop":
            self.silent_ended += 1
            log.warning("session ended: an open connection sent nothing past the keep-alive "
                        "bound session=%s user=%s\\%s host=%s ended_at=%s", item.session_id,
                        item.user_directory, item.user_id, item.host, item.ts.isoformat())
        else:
            self.keepalive_heartbeats += 1


class EventSink:
    """Produces activities as session events; never decides a licensing rule."""

    def __init__(self, config: StreamConfig, mapping: GroupMapping,
                 report: IngestReport | None = None) -> None:
        self.config = config
        self.mapping = mapping
        self.report = report or IngestReport()
        t = config.topics
        self._topics: dict[type, str] = {
            SessionStart: t.session_start,
            SessionHeartbeat: t.session_heartbeat,
            SessionEnd: t.session_end,
        }
        self._producer: Any = None
        self._pending: list[asyncio.Future[Any]] = []

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        from stream_app.kafka.client import client_kwargs

        self._producer = AIOKafkaProducer(**client_kwargs(self.config), acks="all",
                                          linger_ms=5, max_batch_size=256 * 1024)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            try:
                await self.flush()
            finally:
                await self._producer.stop()
                self._producer = None

    async def submit(self, item: Activity | Rejected, where: str) -> bool:
        """Send one activity (or report why not); True if an event was queued."""
        if isinstance(item, Rejected):
            self.report.rejected(item, where)
            return False
        if item.synthetic:
            self.report.made(item)
        decision = self.mapping.decide(item.user_directory, item.user_id)
        user = f"{item.user_directory}\\{item.user_id}"
        if not decision.matched:
            if user not in self.report.unmapped:
                log.warning("user %s matched no group rule: %s", user,
                            f"sent to default group {decision.group}" if decision.group
                            else "not sent (no default_group)")
            self.report.unmapped[user] += 1
        if decision.group is None:
            self.report.unsent_unmapped += 1
            return False
        event = to_session_event(item, decision.group, decision.user_id)
        topic = self._topics[type(event)]
        fut = await self._producer.send(topic, encode(event), key=decision.group.encode())
        self._pending.append(fut)
        self.report.produced[topic] += 1
        if len(self._pending) >= 10_000:
            await self.flush()
        return True

    async def send_allocation(self, event: Allocation) -> None:
        fut = await self._producer.send(self.config.topics.allocations, encode(event))
        self._pending.append(fut)
        self.report.produced[self.config.topics.allocations] += 1

    async def flush(self) -> None:
        """Wait until the broker acknowledged everything sent so far (raises if not)."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

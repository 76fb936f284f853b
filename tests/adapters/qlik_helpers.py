"""Shared by the adapter tests: fixtures on disk, and records turned into plain
JSON-able rows so expectations are files a reader can check line by line."""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from adapters.qlik.activity import Activity, Rejected, to_session_event
from adapters.qlik.group_mapping import GroupMapping
from adapters.qlik.ingest import load_mapping
from adapters.qlik.keepalive import KeepAlive
from schemas.inputs import SessionEnd, SessionHeartbeat, SessionStart
from schemas.topics import Topic

FIXTURES = Path(__file__).parent / "fixtures"
TOPIC_OF = {SessionStart: Topic.SESSION_START, SessionHeartbeat: Topic.SESSION_HEARTBEAT,
            SessionEnd: Topic.SESSION_END}
STOCK_RECEIVED = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
"""The stock datagrams of `udp_stock.txt` are taken as received a minute apart from here."""


def mapping() -> GroupMapping:
    return load_mapping(FIXTURES / "groups.yaml")


def row(item: Activity | Rejected, groups: GroupMapping) -> dict[str, Any]:
    """The session event an adapter would produce for `item` (or why none)."""
    if isinstance(item, Rejected):
        return {"rejected": item.reason, "skipped": item.skipped}
    decision = groups.decide(item.user_directory, item.user_id)
    assert decision.group is not None
    event = to_session_event(item, decision.group, decision.user_id)
    return {"topic": str(TOPIC_OF[type(event)]), "value": msgspec.to_builtins(event)}


def read_expected(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [msgspec.json.decode(line) for line in lines if line.strip()]


def datagrams(name: str) -> list[bytes]:
    return [line.encode() for line in (FIXTURES / name).read_text().splitlines()]


def minutes_after(start: datetime, n: int) -> Iterable[datetime]:
    return (start + timedelta(minutes=i) for i in range(n))


def kept_alive(items: Iterable[tuple[Activity | Rejected, datetime]],
               keeper: KeepAlive | None = None) -> list[Activity | Rejected]:
    """What the ingest shells send for records read in this order (each with its
    receive time): every activity through the keep-alive, rejections as they are."""
    keeper = keeper or KeepAlive()
    out: list[Activity | Rejected] = []
    for item, received_at in items:
        out += keeper.accept(item, received_at) if isinstance(item, Activity) else [item]
    return out

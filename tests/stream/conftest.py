"""Fixtures for tests against a real Kafka-protocol broker (Tansu, in memory).

One broker serves the whole session (it starts in milliseconds, but a fresh one per
test would only cost). Tests stay independent through names: each `stream_config()`
call gets its own app id (so its own consumer group and internal topics) and its own
topic names, because a restarted group member waits out the previous member's session
timeout and leftover records would leak between tests.
"""

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import StreamConfigFactory

from stream_app.broker import EmbeddedBroker, free_port
from stream_app.config import StreamConfig, TopicNames


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the broker, so `-m "not broker"` leaves them out."""
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def broker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tansu's output, kept for the failure report."""
    return tmp_path_factory.mktemp("tansu") / "tansu.log"


@pytest.fixture(scope="session")
def broker(broker_log: Path) -> Iterator[str]:
    """Bootstrap address (`127.0.0.1:PORT`) of the session's embedded broker."""
    embedded = EmbeddedBroker(log_path=broker_log)
    embedded.start()
    try:
        yield embedded.bootstrap
    finally:
        embedded.stop()


def unique_topics(prefix: str) -> TopicNames:
    defaults = TopicNames()
    return TopicNames(**{
        field: f"{prefix}-{getattr(defaults, field)}" for field in TopicNames.__struct_fields__
    })


@pytest.fixture
def stream_config(broker: str) -> StreamConfigFactory:
    """Factory of configs on the session broker, unique per call; keywords override."""

    def make(**overrides: Any) -> StreamConfig:
        tag = uuid.uuid4().hex[:12]
        fields: dict[str, Any] = {
            "broker": broker,
            "app_id": f"tokenpool-test-{tag}",
            "topics": unique_topics(tag),
            "partitions": 4,
            "session_timeout": timedelta(seconds=6),
            "web_port": free_port(),
        }
        fields.update(overrides)
        return StreamConfig(**fields)

    return make

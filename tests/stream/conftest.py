"""Fixtures for tests against a real Kafka-protocol broker.

`TOKENPOOL_TEST_BROKER` chooses it for the whole run: `tansu` (the default: the
embedded broker of the demo, in memory, starts in milliseconds), `kafka` (Apache Kafka
4.4, one KRaft node) or `kafka-3.9` (the 3.9 line). `./run test` runs the suite on
Tansu and every broker test again on each Kafka line.

One broker serves the whole session. Tests stay independent through names: each
`stream_config()` call gets its own app id (so its own consumer group and internal
topics) and its own topic names, so leftover records never leak between tests.

The choice and the markers that follow from it are in `tests/conftest.py`.
"""

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import StreamConfigFactory
from tests_brokers import BrokerUnderTest, broker_under_test

from stream_app import apache_kafka
from stream_app.broker import EmbeddedBroker, free_port
from stream_app.config import StreamConfig, TopicNames


@pytest.fixture(scope="session")
def broker_kind() -> BrokerUnderTest:
    return broker_under_test()


@pytest.fixture(scope="session")
def broker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The broker's output (Tansu's log, or the folder of Kafka's node logs), kept for
    the failure report."""
    return tmp_path_factory.mktemp("broker") / "broker.log"


@pytest.fixture(scope="session")
def broker(broker_log: Path) -> Iterator[str]:
    """Bootstrap address of the session's broker (`HOST:PORT`)."""
    under_test = broker_under_test()
    if under_test.kind == "tansu":
        embedded = EmbeddedBroker(log_path=broker_log)
        embedded.start()
        try:
            yield embedded.bootstrap
        finally:
            embedded.stop()
        return
    cluster = apache_kafka.KafkaCluster(1, under_test.version, home=broker_log.parent / "kafka")
    cluster.start()
    try:
        yield cluster.bootstrap
    finally:
        cluster.stop()


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

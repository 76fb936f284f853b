"""The broker under test, chosen once for the run, and the fixtures that start it.

`TOKENPOOL_TEST_BROKER` chooses it: `tansu` (the default: the embedded broker of the
demo, in memory, starts in milliseconds), `kafka` (Apache Kafka 4.4, one KRaft node) or
`kafka-3.9` (the 3.9 line). `./run test` runs the suite on Tansu and every broker test
again on each Kafka line.

One broker serves the whole session, whichever folders its tests are in. Tests stay
independent through names: each `stream_config()` call gets its own app id (so its own
consumer group and internal topics) and its own topic names, so leftover records never
leak between tests. The helpers beside the stream tests (`kafka_helpers`,
`stream_harness`, `worker_process`) are importable from every test folder.

Markers (pyproject.toml):
- `broker`: the test uses the broker under test (given to every test that asks for it).
- `tansu_only`: about the embedded Tansu broker itself (the demo's); runs with Tansu.
- `kafka_only`: needs what only Apache Kafka has (transactions, replicas, Kafka's group
  rules); runs with Kafka.
"""

import os
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "stream"))

from kafka_helpers import StreamConfigFactory
from tests_brokers import BrokerUnderTest, broker_under_test

from stream_app.config import StreamConfig, TopicNames
from stream_app.kafka import apache_kafka
from stream_app.kafka.broker import EmbeddedBroker, free_port


def pytest_report_header(config: pytest.Config) -> str:
    return f"broker under test: {broker_under_test().name}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs the broker, so `-m "not broker"` leaves them out, and
    leave out the tests of the other broker kind."""
    other = "kafka_only" if broker_under_test().kind == "tansu" else "tansu_only"
    kept, dropped = [], []
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)
        (dropped if item.get_closest_marker(other) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


class HalfwayOrder:
    """TOKENPOOL_TEST_ORDER=halfway: the tests that will run, from the module at the
    middle of the run to the end, then the first half (each module whole, in its
    order). Two broker lines run side by side this way do not reach their heaviest
    module (three-node clusters) together; it also shows a test that leans on one
    that ran before it. After every other hook: the middle of what runs."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if not items:
            return
        middle = items[len(items) // 2].nodeid.split("::")[0] + "::"
        start = next(i for i, item in enumerate(items) if item.nodeid.startswith(middle))
        items[:] = items[start:] + items[:start]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("TOKENPOOL_TEST_ORDER") == "halfway":
        config.pluginmanager.register(HalfwayOrder(), "tokenpool-halfway-order")


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

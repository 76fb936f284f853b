"""The broker under test, chosen once for the run, and what follows from it.

`TOKENPOOL_TEST_BROKER` chooses it: `tansu` (the default: the embedded broker of the
demo, in memory, starts in milliseconds), `kafka` (Apache Kafka 4.4, one KRaft node) or
`kafka-3.9` (the 3.9 line). `./run test` runs the suite on Tansu and every broker test
again on each Kafka line (`tests/stream/conftest.py` starts the broker).

Markers (pyproject.toml):
- `broker`: the test uses the broker under test (given to every test that asks for it).
- `tansu_only`: about the embedded Tansu broker itself (the demo's); runs with Tansu.
- `kafka_only`: needs what only Apache Kafka has (transactions, replicas, Kafka's group
  rules); runs with Kafka.
"""

import pytest
from tests_brokers import broker_under_test


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

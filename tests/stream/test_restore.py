"""Table recovery reads the changelog in bulk and restores exactly what Faust would."""

import asyncio
import random
import re
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from kafka_helpers import consume_all
from stream_harness import produce, replay_reference, wait_for_state
from test_stream_equals_replay import random_workload
from worker_process import WorkerProcess

from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics
from stream_app.worker import restore
from stream_app.worker.app import Worker
from stream_app.worker.partition_task import record_key
from stream_app.worker.tables import MemoryStore


def _changelog(n: int, seed: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Writes, overwrites and deletes (null values) of a few hundred keys, each key on
    the partition it names, as the worker writes its state."""
    rng = random.Random(seed)
    offsets = [0] * 4
    out = []
    for _ in range(n):
        partition = rng.randrange(4)
        key = record_key(partition, rng.choice("PSHRU"), f"g{rng.randrange(5)}",
                         rng.randrange(60))
        value = None if rng.random() < 0.3 else rng.randbytes(rng.randrange(1, 40))
        out.append(ConsumerRecord(
            topic="t-state-changelog", partition=partition, offset=offsets[partition],
            timestamp=1_700_000_000_000, timestamp_type=0, key=key, value=value,
            checksum=None, serialized_key_size=len(key),
            serialized_value_size=-1 if value is None else len(value), headers=[],
        ))
        offsets[partition] += 1
    return out


def test_bulk_records_leave_the_store_as_faust_s_changelog_events_do() -> None:
    """`MemoryStore.apply_changelog_records` against Faust's own path (the changelog
    topic decodes each record into an event, `apply_changelog_batch` applies them), for
    the same records cut into batches at random points."""
    records = _changelog(20_000, seed=7)
    cuts = sorted(random.Random(8).sample(range(1, len(records)), 200))
    batches = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]
    bulk = Worker(StreamConfig(broker="127.0.0.1:1", app_id="restore-bulk")).state
    faust_path = Worker(StreamConfig(broker="127.0.0.1:1", app_id="restore-faust")).state
    assert isinstance(bulk.data, MemoryStore)

    async def by_events() -> None:
        decode = faust_path.changelog_topic.decode
        for batch in batches:
            events = [await decode(ConsumerMessage(
                r.topic, r.partition, r.offset, r.timestamp / 1000.0, r.timestamp_type,
                r.headers, r.key, r.value, r.checksum, r.serialized_key_size,
                r.serialized_value_size, TP(r.topic, r.partition),
            )) for r in batch]
            faust_path.apply_changelog_batch(events)

    asyncio.run(by_events())
    for batch in batches:
        bulk.data.apply_changelog_records(batch)
    assert len(faust_path.data.data) > 100  # some keys left, some deleted
    assert bulk.data.data == faust_path.data.data
    assert bulk.data._key_partition == faust_path.data._key_partition


def test_restart_restores_the_whole_changelog_in_bulk(stream_config, tmp_path: Path) -> None:
    """A worker started on the changelogs another one wrote reads every record of them
    in bulk, leaves Faust nothing to read record by record, and holds the same state."""
    config = stream_config(mode="replay")
    asyncio.run(create_topics(config))
    records = random_workload(3000)
    _, state = replay_reference(records, tmp_path)
    first = WorkerProcess(config, tmp_path, name="first").start(config.partitions)
    try:
        produce(config, records)
        assert wait_for_state(first, state, timeout=60) == state
    finally:
        first.stop()
    written = sum(
        len(asyncio.run(consume_all(config.broker, f"{config.app_id}-{name}-changelog")))
        for name in ("state", "ledger")
    )
    second = WorkerProcess(config, tmp_path, name="second").start(config.partitions)
    try:
        assert wait_for_state(second, state) == state
        log = second.log_text()
        read = [int(n) for n in re.findall(r"changelog read in bulk records=(\d+)", log)]
        assert read and sum(read) >= written, (written, read, second.log_tail())
        assert "Restoring state from changelog topics" not in log, second.log_tail()
    finally:
        second.stop()


def test_a_bulk_read_cut_short_leaves_the_table_at_its_recorded_offsets(
    stream_config,
) -> None:
    """With no time left after its first fetch, the bulk read stops there: each
    partition's table holds exactly the records up to the offset given to Faust, which
    reads on from it."""
    config = stream_config(mode="replay")
    worker = Worker(config)
    recovery = worker.app.tables.recovery
    assert isinstance(recovery, restore.BulkRecovery)
    topic = f"{config.app_id}-state-changelog"
    records = [(r.partition, r.key, r.value) for r in _changelog(30_000, seed=11)]

    tps = {TP(topic, p) for p in range(4)}
    for tp in tps:
        recovery.tp_to_table[tp] = worker.state
    offsets: Counter[TP] = Counter(dict.fromkeys(tps, -1))  # Faust's: nothing applied

    async def run(budget: float) -> None:
        recovery.read_budget = budget
        await recovery._read_ahead(tps, offsets)

    async def produce_all() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=config.broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 4, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=config.broker, linger_ms=5)
        await producer.start()
        try:
            sent = [await producer.send(topic, v, key=k, partition=p) for p, k, v in records]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(produce_all())
    asyncio.run(run(budget=0.0))
    expected: dict[bytes, bytes | None] = {}
    seen = [0] * 4
    for partition, key, value in records:
        if seen[partition] <= offsets[TP(topic, partition)]:
            expected[key] = value
        seen[partition] += 1
    assert 0 < sum(o + 1 for o in offsets.values()) < len(records)  # cut short
    assert worker.state.data.data == {k: v for k, v in expected.items() if v is not None}
    asyncio.run(run(budget=60.0))  # the rest, from the offsets reached
    assert [offsets[TP(topic, p)] + 1 for p in range(4)] == seen
    final = {k: v for _, k, v in records}
    assert worker.state.data.data == {k: v for k, v in final.items() if v is not None}


class _ListedEnds:
    """Faust's consumer as `_build_highwaters` asks it: each partition's end by
    ListOffsets, from the broker under test."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        ends = await self.consumer.end_offsets([TopicPartition(t.topic, t.partition)
                                                for t in tps])
        return {TP(t.topic, t.partition): end for t, end in ends.items()}


def test_changelog_ends_are_fetched_where_the_broker_may_list_less(stream_config) -> None:
    """Faust stops the worker when a table holds a changelog offset past the end it was
    told (its consistency check). Tansu lists a partition's end as the start of its last
    batch plus one, so a standby that had read a whole last batch stopped its worker in
    a rebalance. Where the broker's listed ends are not known to be exact, the ends are
    the high watermark of a fetch: every record read is below them."""
    config = stream_config(mode="replay")
    worker = Worker(config)  # the broker not asked: every workaround on
    assert worker.app.exact_end_offsets is False
    recovery = worker.app.tables.recovery
    assert isinstance(recovery, restore.BulkRecovery)
    topic = f"{config.app_id}-state-changelog"
    records = {0: 0, 1: 1, 2: 9, 3: 40}  # per partition, written as one batch
    tps = {TP(topic, p) for p in records}

    async def run() -> Counter[TP]:
        admin = AIOKafkaAdminClient(bootstrap_servers=config.broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, len(records), 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=config.broker)
        await producer.start()
        try:
            for partition, n in records.items():
                if n:
                    batch = producer.create_batch()
                    for i in range(n):
                        batch.append(key=b"k%d" % i, value=b"v", timestamp=None)
                    await (await producer.send_batch(batch, topic, partition=partition))
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=config.broker)
        await consumer.start()
        highwaters: Counter[TP] = Counter()
        try:
            await recovery._build_highwaters(_ListedEnds(consumer), tps, highwaters,
                                             "standby")
        finally:
            await consumer.stop()
        return highwaters

    highwaters = asyncio.run(run())
    # Faust's highwater is a partition's last offset: its end minus one.
    assert {tp.partition: h for tp, h in highwaters.items()} == {
        p: n - 1 for p, n in records.items()}

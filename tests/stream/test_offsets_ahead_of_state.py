"""Inputs are read from the state's own offsets, not the consumer group's committed
ones. Faust counts a jump in offsets as acknowledged, and after a rebalance records
fetched before it can cause one, so the committed offset may run past records nothing
applied. The ledger (R10: every allocation decided exactly once) and the pools (R1:
every login applied) must read those records again."""

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka_helpers import decisions
from worker_process import WorkerProcess

from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics

T0 = "2026-11-02T09:00:00Z"


def login_group(event_id: str, group: str, tokens: int) -> dict:
    return {"kind": "login_group", "event_id": event_id, "ts": T0,
            "group": group, "tokens": tokens}


async def produce(config: StreamConfig, values: list[dict], topic: str | None = None,
                  key: bytes = b"") -> tuple[int, int]:
    """Send in order (to `allocations` by default); the partition, and the offset
    after the last one."""
    producer = AIOKafkaProducer(bootstrap_servers=config.broker, acks="all")
    await producer.start()
    try:
        meta = None
        for value in values:
            meta = await producer.send_and_wait(topic or config.topics.allocations,
                                                json.dumps(value).encode(), key=key)
        assert meta is not None
        return meta.partition, meta.offset + 1
    finally:
        await producer.stop()


class AsFaust(RoundRobinPartitionAssignor):
    """The group protocol name Faust's members use: the broker keeps a group to one."""

    name = "faust"


async def commit_for_group(config: StreamConfig, tp: TopicPartition, offset: int) -> None:
    """Commit the worker group's offset of `tp` as a member of the group (the worker
    has left it, so this one gets the partition)."""
    consumer = AIOKafkaConsumer(tp.topic, bootstrap_servers=config.broker,
                                group_id=config.app_id, enable_auto_commit=False,
                                partition_assignment_strategy=(AsFaust,))
    await consumer.start()
    try:
        for _ in range(100):
            if tp in consumer.assignment():
                break
            await consumer.getmany(timeout_ms=200, max_records=1)
        await consumer.commit({tp: offset})
        assert await consumer.committed(tp) == offset
    finally:
        await consumer.stop()


@pytest.mark.parametrize("ahead", ["into the middle", "to the end"])
def test_r10_ledger_decides_allocations_a_committed_offset_skipped(
    stream_config, tmp_path: Path, ahead: str
) -> None:
    config = stream_config(mode="replay")
    asyncio.run(create_topics(config))
    before = [{"kind": "licence", "event_id": "licence", "ts": T0, "total_tokens": 20},
              login_group("a0", "g0", 1), login_group("a1", "g1", 1)]
    worker = WorkerProcess(config, tmp_path, name="a").start(config.partitions)
    try:
        asyncio.run(produce(config, before))
        granted, rejected = asyncio.run(decisions(config, {"a0", "a1"}))
        assert {"a0", "a1"} <= granted
    finally:
        worker.stop()

    # While no worker runs: ten more changes, and the group's offset moved past
    # some (or all) of them without any ledger deciding them.
    later = [login_group(f"b{n}", f"g{n % 3}", n % 4) for n in range(10)]
    _, end = asyncio.run(produce(config, later))
    tp = TopicPartition(config.topics.allocations, 0)
    asyncio.run(commit_for_group(config, tp, end - 5 if ahead == "into the middle" else end))

    worker = WorkerProcess(config, tmp_path, name="b").start(config.partitions)
    try:
        ids = {v["event_id"] for v in later}
        granted, rejected = asyncio.run(decisions(config, ids))
        log = worker.log_text()
    finally:
        worker.stop()
    assert ids <= granted | rejected, f"never decided: {sorted(ids - granted - rejected)}"
    assert not granted & rejected
    assert "past the state's offset, reading again" in log


def wait_for_in_use(worker: WorkerProcess, passes: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (now := worker.pool_state().get("g", {}).get("in_use")) != passes:
        assert time.monotonic() < deadline, f"{now} passes of g in use, not {passes}"
        time.sleep(0.3)


@pytest.mark.parametrize("ahead", ["into the middle", "to the end"])
def test_r1_pools_apply_logins_a_committed_offset_skipped(
    stream_config, tmp_path: Path, ahead: str
) -> None:
    config = stream_config(mode="replay")
    asyncio.run(create_topics(config))

    def start(n: int) -> dict:
        return {"event_id": f"s{n}", "ts": f"2026-11-02T09:{n:02d}:00Z", "group": "g",
                "session_id": f"s{n}", "user_id": f"u{n}"}

    worker = WorkerProcess(config, tmp_path, name="a").start(config.partitions)
    try:
        asyncio.run(produce(config, [
            {"kind": "licence", "event_id": "licence", "ts": T0, "total_tokens": 20},
            login_group("a0", "g", 2)]))
        asyncio.run(produce(config, [start(n) for n in range(3)],
                            config.topics.session_start, b"g"))
        wait_for_in_use(worker, 3)
    finally:
        worker.stop()

    partition, end = asyncio.run(produce(config, [start(n) for n in range(3, 9)],
                                         config.topics.session_start, b"g"))
    tp = TopicPartition(config.topics.session_start, partition)
    asyncio.run(commit_for_group(config, tp, end - 3 if ahead == "into the middle" else end))

    worker = WorkerProcess(config, tmp_path, name="b").start(config.partitions)
    try:
        wait_for_in_use(worker, 9)
    finally:
        worker.stop()

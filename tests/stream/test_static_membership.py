"""Static group membership (`--instance-id`, KIP-345): a worker restarted at once under
the same instance id takes its own partitions back, and the other workers carry on
without a rebalance, as a rolling deployment wants. Apache Kafka only: the group
protocol's static members are Kafka's."""

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
from stream_harness import OutputWatch, collect, diff_outputs, produce, replay_reference
from test_stream_equals_replay import random_workload
from worker_process import WorkerProcess

from stream_app.topics import create_topics

pytestmark = pytest.mark.kafka_only


def _revocations(worker: WorkerProcess) -> int:
    return worker.log_text().count("Revoking previously assigned partitions")


def test_a_static_member_restarted_at_once_gets_its_partitions_back_without_a_rebalance(
    stream_config, tmp_path: Path
) -> None:
    config = stream_config(mode="replay")
    asyncio.run(create_topics(config))
    records = random_workload(6000)
    expected, _ = replay_reference(records, tmp_path)
    a_config = msgspec.structs.replace(config, instance_id="worker-a")
    b_config = msgspec.structs.replace(config, instance_id="worker-b")
    a = WorkerProcess(a_config, tmp_path, name="a").start(config.partitions)
    b = WorkerProcess(b_config, tmp_path, name="b").start()
    workers = [a, b]
    try:
        deadline = time.monotonic() + 60
        while True:
            owned = [set((w.health() or {}).get("partitions") or ()) for w in workers]
            if all(owned) and not owned[0] & owned[1]:
                break
            assert time.monotonic() < deadline, f"partitions not split: {owned}"
            time.sleep(0.3)
        half = len(records) // 2  # the workload's allocations come first
        with OutputWatch(config) as watch:
            produce(config, records[:half])
            watch.wait_for(len(expected) // 5)
        revoked_before = _revocations(a)
        b.kill()
        b = WorkerProcess(b_config, tmp_path, name="b2")
        workers.append(b)
        b.start()
        b.wait_ready()
        deadline = time.monotonic() + 30
        while set((b.health() or {}).get("partitions") or ()) != owned[1]:
            assert time.monotonic() < deadline, "the restarted member did not get its partitions"
            time.sleep(0.2)
        produce(config, records[half:])
        got = collect(config, set(expected))
        assert set((a.health() or {}).get("partitions") or ()) == owned[0]
        assert _revocations(a) == revoked_before, a.log_tail()
    finally:
        for w in workers:
            w.stop()
    assert diff_outputs(got, expected) == {"extra": [], "missing": [], "different": []}

"""Static group membership (`--instance-id`, KIP-345): a worker restarted at once under
the same instance id takes its own partitions back, and the other workers carry on
without a rebalance, as a rolling deployment wants. The restart test is Apache Kafka's
only: static members are a Kafka group protocol feature."""

import asyncio
import re
import time
from pathlib import Path

import msgspec
import pytest
from stream_harness import OutputWatch, collect, diff_outputs, produce, replay_reference
from test_stream_equals_replay import random_workload
from worker_process import WorkerProcess, wait_split

from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics
from stream_app.worker.wiring import static_member_id


def _revocations(worker: WorkerProcess) -> int:
    return worker.log_text().count("Revoking previously assigned partitions")


@pytest.mark.kafka_only
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
        owned = wait_split(workers)
        half = len(records) // 2  # the workload's allocations come first
        with OutputWatch(config) as watch:
            produce(config, records[:half])
            watch.wait_for(len(expected) // 5)
        revoked_before = _revocations(a)
        b.kill()
        # The same name and the same address, as a restarted pod has them.
        b = WorkerProcess(b_config, tmp_path, name="b2", port=b.port)
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


@pytest.mark.parametrize("web_host", ["127.0.0.1", "0.0.0.0"])
def test_the_static_member_id_names_the_worker_and_its_address(web_host: str) -> None:
    """Faust puts each member's web address in its assignment and refuses a cached one
    naming another (its consumer would stop for good): a worker restarted on another
    address must join as another member. Kafka accepts [A-Za-z0-9._-] in the id."""
    config = StreamConfig(instance_id="pod/0", web_host=web_host, web_port=6066)
    member = static_member_id(config)
    assert member is not None and re.fullmatch(r"[A-Za-z0-9._-]+", member)
    assert member.startswith("pod_0-")
    moved = static_member_id(msgspec.structs.replace(config, web_port=6067))
    assert moved != member
    assert static_member_id(StreamConfig()) is None

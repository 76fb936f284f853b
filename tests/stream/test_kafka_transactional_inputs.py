"""Inputs written by transactional producers (Kafka Connect with exactly-once, Kafka
Streams, any `transactional.id` client): each transaction's commit marker takes an
offset of every partition it wrote, so an input's offsets have gaps and its end offset
is one past a marker, never one past a record. Apache Kafka only: Tansu has no
transactions."""

import asyncio
import json
from pathlib import Path

import pytest
from stream_harness import collect, produce, replay_reference, wait_for_state
from worker_process import WorkerProcess

from schemas import Topic
from stream_app.kafka.topics import create_topics

pytestmark = pytest.mark.kafka_only

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed-scenario.jsonl"


def test_inputs_with_transaction_markers_apply_as_in_a_replay_without_stalling(
    stream_config, tmp_path: Path
) -> None:
    """The ledger must know it has decided everything when the allocations partition
    ends in a marker, and the merge that a session topic ending in a marker has nothing
    left to fetch: otherwise the ledger sends no "nothing pending" mark, every
    partition's merge waits for grants for ever and no output comes (R1, SPEC §3)."""
    records = [json.loads(line) for line in SEED.read_text().splitlines()]
    config = stream_config(mode="replay")
    asyncio.run(create_topics(config))
    expected, state = replay_reference(records, tmp_path)
    worker = WorkerProcess(config, tmp_path).start(wait_partitions=config.partitions)
    try:
        allocations = [r for r in records if r["topic"] == Topic.ALLOCATIONS]
        produce(config, allocations, transactional_id=f"{config.app_id}-alloc")
        sessions = [r for r in records if r["topic"] != Topic.ALLOCATIONS]
        for i in range(0, len(sessions), 5):  # several transactions, several markers
            produce(config, sessions[i:i + 5], transactional_id=f"{config.app_id}-sess")
        got = collect(config, set(expected), timeout=60)  # not feed_and_check: transactions
        assert set(got) == set(expected), worker.log_tail()
        for event_id, copies in got.items():
            assert all(c == expected[event_id] for c in copies), event_id
        assert wait_for_state(worker, state) == state
        assert "merge: input still" not in worker.log_text(), worker.log_tail()
    finally:
        worker.stop()

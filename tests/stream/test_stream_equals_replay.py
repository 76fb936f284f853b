"""The stream and a replay of the same records agree (SPEC §3, §6): same output events
by id and content, same final state. Real broker, real worker process."""

import asyncio
import itertools
import json
from pathlib import Path

import pytest
from stream_harness import (
    collect,
    produce,
    replay_reference,
    wait_for_state,
)
from worker_process import WorkerProcess

from schemas import Topic
from stream_app.broker import create_topics
from stream_app.config import StreamConfig
from stream_app.synthetic import generate, to_jsonl_lines

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed-scenario.jsonl"


def random_workload(events: int = 5000) -> list[dict]:
    """A small synthetic site: allocations first, then sessions in event-time order."""
    stream = generate(users=120, groups=6, days=35, seed=7)
    lines = to_jsonl_lines(itertools.islice(stream, events))
    return [json.loads(line) for line in lines]


def run_and_compare(config: StreamConfig, tmp_path: Path, records: list[dict]) -> None:
    expected, state = replay_reference(records, tmp_path)
    asyncio.run(create_topics(config))
    worker = WorkerProcess(config, tmp_path).start(wait_partitions=config.partitions)
    try:
        allocations = [r for r in records if r["topic"] == Topic.ALLOCATIONS]
        produce(config, allocations)
        produce(config, [r for r in records if r["topic"] != Topic.ALLOCATIONS])
        got = collect(config, set(expected))
        assert set(got) == set(expected), worker.log_tail()
        for event_id, copies in got.items():
            assert all(c == expected[event_id] for c in copies), event_id
        assert wait_for_state(worker, state) == state
    finally:
        worker.stop()


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_seed_scenario_stream_equals_replay(stream_config, tmp_path: Path, store: str) -> None:
    records = [json.loads(line) for line in SEED.read_text().splitlines()]
    run_and_compare(stream_config(mode="replay", store=store), tmp_path, records)


def test_random_5000_event_workload_stream_equals_replay(stream_config, tmp_path: Path) -> None:
    records = random_workload(5000)
    assert len(records) == 5000
    run_and_compare(stream_config(mode="replay"), tmp_path, records)

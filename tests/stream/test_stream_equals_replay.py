"""The stream and a replay of the same records agree (SPEC §3, §6): same output events
by id and content, same final state. Real broker, real worker process."""

import asyncio
import itertools
import json
from pathlib import Path

import pytest
from stream_harness import (
    collect,
    feed_and_check,
    produce,
    replay_reference,
    wait_for_state,
)
from worker_process import WorkerProcess

from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics
from stream_app.site.synthetic import generate, to_jsonl_lines

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
        feed_and_check(config, worker, records, expected, state)
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


def _at(minutes: float) -> str:
    from datetime import UTC, datetime, timedelta

    t = datetime(2026, 11, 1, 8, tzinfo=UTC) + timedelta(minutes=minutes)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _alloc(n: int, minutes: float, **value: object) -> dict:
    return {"topic": "allocations", "value": {"event_id": f"a{n}", "ts": _at(minutes), **value}}


def _start(sid: str, minutes: float, user: str | None, group: str = "g") -> dict:
    return {"topic": "session-start", "value": {
        "event_id": f"s-{sid}", "ts": _at(minutes), "group": group, "session_id": sid,
        "user_id": user}}


def test_ledger_counts_lowered_groups_and_quarantined_uaps_like_replay(
    stream_config, tmp_path: Path
) -> None:
    """R10: a group lowered below its passes in use keeps counting ceil(in_use / 10)
    tokens; R9: a removed UAP used in the last 7 days stays quarantined. The ledger
    learns both from the group partitions, and decides as the replay does. Each phase
    is produced once the previous one is through, as allocations are made in time."""
    day = 24 * 60
    phases = [
        [
            _alloc(1, 0, kind="licence", total_tokens=3),
            _alloc(2, 0, kind="login_group", group="g", tokens=2),
            _alloc(3, 0, kind="user_access", user_id="u", action="assign"),
            _start("uap", 10, "u"),
            *(_start(f"anon-{i}", 20 + i, None) for i in range(15)),
        ],
        [
            _alloc(4, 60, kind="login_group", group="g", tokens=1),  # 15 in use: counts 2
            _alloc(5, 61, kind="login_group", group="h", tokens=1),  # rejected
            _alloc(6, 120, kind="user_access", user_id="u", action="remove"),  # quarantined
            _start("late", 121, None, "g"),
        ],
        [
            _alloc(7, 180, kind="user_access", user_id="v", action="assign"),  # rejected
            _alloc(8, 8 * day, kind="user_access", user_id="v", action="assign"),  # fits
            _start("day29", 29 * day, None),  # returns fire: g counts 1 again
        ],
        [
            _alloc(9, 29 * day + 60, kind="login_group", group="h", tokens=1),  # g 1 + v 1
            # + h 1 = 3: fits now that g's passes came back
        ],
    ]
    records = [r for phase in phases for r in phase]
    config = stream_config(mode="replay")
    asyncio.run(create_topics(config))
    expected, state = replay_reference(records, tmp_path)
    rejected = sorted(v["value"]["request"]["event_id"] for v in expected.values()
                      if v["topic"] == "allocation-rejected")
    assert rejected == ["a5", "a7"]
    # What each phase's decisions rest on, as the ledger says it learnt it: the next
    # phase goes in once it has (in time, allocations are made after such facts).
    learnt = [
        "group tokens counted group=g counted=2",  # lowered to 1, 15 passes in use
        "uap quarantine resolved user_id=u",  # every partition told its last use
        "group tokens counted group=g counted=1",  # the passes of day 1 came back
    ]
    worker = WorkerProcess(config, tmp_path).start(wait_partitions=config.partitions)
    try:
        for phase, fact in itertools.zip_longest(phases, learnt):
            produce(config, phase)
            if fact is not None:
                worker.wait_for_log(fact)
        got = collect(config, set(expected))
        assert set(got) == set(expected), worker.log_tail()
        for event_id, copies in got.items():
            assert all(c == expected[event_id] for c in copies), event_id
        assert wait_for_state(worker, state) == state
    finally:
        worker.stop()

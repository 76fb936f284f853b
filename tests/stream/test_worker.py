"""The worker on a real broker: backfill order, crash restart, rebalance, ticks and
bad input (SPEC §3, §4; the streaming service's must-haves)."""

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner
from kafka_helpers import consume_all
from kafka_helpers import produce as produce_values
from stream_harness import OutputWatch, collect, produce, replay_reference, wait_for_state
from test_stream_equals_replay import random_workload
from worker_process import WorkerProcess

from schemas import Topic
from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics

BACKFILL_ORDER = [Topic.ALLOCATIONS, Topic.SESSION_START, Topic.SESSION_HEARTBEAT,
                  Topic.SESSION_END]


def setup(config: StreamConfig) -> None:
    asyncio.run(create_topics(config))


def assert_matches_replay(got: dict, expected: dict, log: str) -> None:
    extra = sorted((c[0]["value"]["ts"], c[0]["topic"], c[0]["value"].get("group"),
                    c[0]["value"].get("reason"), c[0]["value"].get("session_id"))
                   for i, c in got.items() if i not in expected)
    missing = sorted((e["value"]["ts"], e["topic"], e["value"].get("group"),
                      e["value"].get("reason"), e["value"].get("session_id"))
                     for i, e in expected.items() if i not in got)
    assert not extra and not missing, (
        f"{len(extra)} extra, first {extra[:5]}; {len(missing)} missing, first {missing[:5]}"
        f"\n{log}")
    for event_id, copies in got.items():
        assert all(c == expected[event_id] for c in copies), event_id


def test_backfill_topic_by_topic_gives_the_replay_result(stream_config, tmp_path: Path) -> None:
    """Allocations first, then every start, every heartbeat, every end: the merge
    waits for inputs that still have records to fetch, so event time wins."""
    config = stream_config(mode="replay")
    setup(config)
    records = random_workload(4000)
    expected, state = replay_reference(records, tmp_path)
    for topic in BACKFILL_ORDER:  # written before the worker starts: a real backfill
        produce(config, [r for r in records if r["topic"] == topic])
    worker = WorkerProcess(config, tmp_path).start()
    try:
        got = collect(config, set(expected))
        assert_matches_replay(got, expected, worker.log_tail())
        assert wait_for_state(worker, state) == state
    finally:
        worker.stop()


def test_kill_9_mid_workload_then_restart_loses_and_doubles_nothing(
    stream_config, broker_kind, tmp_path: Path
) -> None:
    """Restarted at once, as an orchestrator does, on Apache Kafka: the new member waits
    for the dead one to leave the group, and recovery does the rest. On Tansu a member
    rejoining at once can be handed a stale generation and skip records, so there the
    restart waits out the 6 s session timeout."""
    config = stream_config(mode="replay")
    setup(config)
    records = random_workload(20_000)
    expected, state = replay_reference(records, tmp_path)
    worker = WorkerProcess(config, tmp_path, name="first").start(config.partitions)
    with OutputWatch(config) as watch:
        produce(config, [r for r in records if r["topic"] == Topic.ALLOCATIONS])
        produce(config, [r for r in records if r["topic"] != Topic.ALLOCATIONS])
        watch.wait_for(len(expected) // 10)  # kill once some, not all, outputs are out
        worker.kill()
        seen = len(watch.ids)
    assert seen < len(expected), "worker finished before the kill: grow the workload"
    if broker_kind.kind == "tansu":
        time.sleep(8)
    again = WorkerProcess(config, tmp_path, name="second").start()
    try:
        got = collect(config, set(expected))
        assert_matches_replay(got, expected, again.log_tail())
        assert wait_for_state(again, state) == state
    finally:
        again.stop()


def test_two_workers_split_partitions_and_one_takes_over(stream_config, tmp_path: Path) -> None:
    config = stream_config(mode="replay")
    setup(config)
    records = random_workload(6000)
    half = len(records) // 2
    expected, state = replay_reference(records, tmp_path)
    first = WorkerProcess(config, tmp_path, name="a").start()
    second = WorkerProcess(config, tmp_path, name="b").start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            owned = [first.health(), second.health()]
            if all(h and h["partitions"] for h in owned):
                break
            time.sleep(0.3)
        parts = [set(h["partitions"]) for h in owned if h]
        assert len(parts) == 2 and parts[0] and parts[1] and not parts[0] & parts[1]
        produce(config, records[:half])
        time.sleep(8)  # both work on the first half
        # SPEC §5: each exports the gauges of the groups on its own partitions only
        groups = {r["value"]["group"] for r in records if r["value"].get("kind") == "login_group"}
        for worker, owned in zip((first, second), parts, strict=True):
            assert set(worker.pool_state()) == {
                g for g in groups if partition_of(g, config.partitions) in owned
            }
        first.stop()
        second.wait_ready(partitions=config.partitions)
        produce(config, records[half:])
        got = collect(config, set(expected))
        assert_matches_replay(got, expected, second.log_tail())
        assert wait_for_state(second, state) == state
    finally:
        first.stop()
        second.stop()


def partition_of(group: str, partitions: int) -> int:
    """The partition a group's events go to: Kafka's default partitioner on its key."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(group.encode(), every, every))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def allocate_one_token(config: StreamConfig, ts: str) -> None:
    """A licence of 1 token, all of it to group `g` (10 passes), decided by the ledger."""
    produce(config, [
        {"topic": "allocations", "value": {"kind": "licence", "event_id": "l", "ts": ts,
                                           "total_tokens": 1}},
        {"topic": "allocations", "value": {"kind": "login_group", "event_id": "g",
                                           "ts": ts, "group": "g", "tokens": 1}},
    ])
    time.sleep(1.5)


def test_ticks_return_a_pass_on_time_with_no_input_traffic(stream_config, tmp_path: Path) -> None:
    tick = 1.0
    config = stream_config(mode="live")
    setup(config)
    worker = WorkerProcess(
        config, tmp_path, extra=["--tick-interval", f"{tick}s", "--pass-lifetime", "15s"]
    ).start(config.partitions)
    try:
        allocate_one_token(config, _now().isoformat().replace("+00:00", "Z"))
        t0 = _now()  # stamped as it is sent: live mode applies it at its own time
        produce(config, [{"topic": "session-start", "value": {
            "event_id": "s", "ts": t0.isoformat().replace("+00:00", "Z"), "group": "g",
            "session_id": "s1", "user_id": None}}])
        records = asyncio.run(consume_all(
            config.broker, config.topics.pass_returned, expect_count=1, timeout=30))
        arrived = datetime.now(UTC)  # no later than this: the consumer just returned it
        returned = json.loads(records[0].value)
        consumed = asyncio.run(consume_all(
            config.broker, config.topics.pass_consumed, expect_count=1, timeout=5))
        due = datetime.fromisoformat(json.loads(consumed[0].value)["returns_at"])
        assert returned["ts"] == json.loads(consumed[0].value)["returns_at"]
        assert due - t0 <= timedelta(seconds=16)  # consumed on arrival, back 15 s later
        assert returned["count"] == 1 and returned["available"] == 10
        # no input after the start: only a wall-clock tick can have fired the return
        lag = (arrived - due).total_seconds()
        assert lag <= 2 * tick + 1.0, f"returned {lag:.2f}s after its return time"
    finally:
        worker.stop()


def test_bad_input_is_dead_lettered_with_a_reason_and_good_input_still_applies(
    stream_config, tmp_path: Path
) -> None:
    config = stream_config(mode="live")
    setup(config)
    worker = WorkerProcess(config, tmp_path).start(config.partitions)
    try:
        ts = _now().isoformat().replace("+00:00", "Z")
        future = (_now() + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        allocate_one_token(config, ts)
        start = {"event_id": "e", "ts": ts, "group": "g", "session_id": "s", "user_id": "u"}
        asyncio.run(produce_values(config.broker, config.topics.session_start, "g", [
            b"\x00\xffgarbage",
            {**start, "event_id": "bad-type", "session_id": 42},
            {**start, "event_id": "future", "session_id": "f", "ts": future},
            {**start, "event_id": "naive", "session_id": "n", "ts": ts.rstrip("Z")},
            start,
            {**start, "event_id": "e2", "session_id": "s2", "user_id": None},
        ]))
        asyncio.run(produce_values(config.broker, config.topics.allocations, "", [
            {"kind": "bogus", "event_id": "x", "ts": ts},
        ]))
        letters = asyncio.run(consume_all(
            config.broker, config.topics.dead_letters, expect_count=5, timeout=30))
        reasons = Counter()
        for rec in letters:
            letter = json.loads(rec.value)
            assert letter["topic"] in (config.topics.session_start, config.topics.allocations)
            assert letter["offset"] >= 0 and letter["raw"]
            reasons[letter["error"].split(":")[0]] += 1
        assert reasons == Counter({"invalid": 4, "future timestamp": 1}), reasons
        consumed = asyncio.run(consume_all(
            config.broker, config.topics.pass_consumed, expect_count=2, timeout=30))
        assert sorted(json.loads(r.value)["session_id"] for r in consumed) == ["s", "s2"]
        metrics = worker.metrics()
        starts, allocations = config.topics.session_start, config.topics.allocations

        def rejected(topic: str, reason: str) -> float:
            key = (("reason", reason), ("topic", topic))
            return metrics.get(("tokenpool_events_rejected_total", key), 0.0)

        assert rejected(starts, "invalid") == 3
        assert rejected(starts, "future_timestamp") == 1
        assert rejected(allocations, "invalid") == 1
        events = metrics[("tokenpool_events_total", (("topic", starts),))]
        assert events == 6

        def offsets(topic: str) -> tuple[float, float]:
            """(durable, end) offsets of `topic`, summed over its partitions."""
            samples = worker.metrics().items()
            return tuple(  # type: ignore[return-value]
                sum(v for (n, labels), v in samples if n == name and ("topic", topic) in labels)
                for name in ("tokenpool_input_durable_offset", "tokenpool_input_end_offset")
            )

        deadline = time.monotonic() + 30
        while offsets(starts) != (6, 6) and time.monotonic() < deadline:
            time.sleep(0.2)
        # Dead letters count as handled: no lag is left, and a restart sends none again.
        assert offsets(starts) == (6, 6)
    finally:
        worker.stop()


def test_one_event_that_closes_thousands_of_sessions_is_checkpointed_whole(
    stream_config, tmp_path: Path
) -> None:
    """5 000 logins with long ids at one instant, then one event two hours later: that
    event times out every session and ends every window (R4), so its checkpoint updates
    10 000 records, a commit record of megabytes, over a broker's default 1 MB limit.
    The worker must not stop on it (SPEC §6)."""
    config = stream_config(mode="replay")
    setup(config)
    ts = "2026-11-02T09:00:00Z"
    pad = "x" * 200  # ids may be 256 characters long
    records = [
        {"topic": "allocations", "value": {"kind": "licence", "event_id": "l", "ts": ts,
                                           "total_tokens": 1_000}},
        {"topic": "allocations", "value": {"kind": "login_group", "event_id": "g", "ts": ts,
                                           "group": "big", "tokens": 1_000}},
    ] + [
        {"topic": "session-start", "value": {
            "event_id": f"s{i}", "ts": ts, "group": "big",
            "session_id": f"{pad}-s{i}", "user_id": f"{pad}-u{i}"}}
        for i in range(5000)
    ] + [
        {"topic": "session-start", "value": {
            "event_id": "late", "ts": "2026-11-02T11:00:00Z", "group": "big",
            "session_id": "after", "user_id": "someone-else"}},
    ]
    expected, state = replay_reference(records, tmp_path)
    produce(config, records)
    worker = WorkerProcess(config, tmp_path).start(config.partitions)
    try:
        got = collect(config, set(expected))
        assert_matches_replay(got, expected, worker.log_tail())
        assert wait_for_state(worker, state) == state
        assert state["big"]["open_sessions"] == 1
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
    finally:
        worker.stop()

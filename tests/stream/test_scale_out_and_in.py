"""Scale-out and scale-in during a workload: a second and a third worker join while a
site's sessions stream in and allocations change, then the first worker leaves.
Partitions move three times; the ledger moves with `allocations`. The stream still
equals `tokenpool replay`, and the single-writer ledger decides every allocation
change exactly once, never past the licence (R10): the group fences the old
generation's offset commits, and under `exactly_once` Kafka fences its writes too.

Joins come one after another, as an orchestrator scales a deployment.
"""

import asyncio
import random
import time
from pathlib import Path

import pytest
from kafka_helpers import consume_all, decisions
from stream_harness import (
    OutputWatch,
    SteadyProducer,
    check_against_replay,
    collect,
    produce,
    replay_reference,
)
from test_ledger_two_workers import assert_licence_held, produce_concurrently
from test_stream_equals_replay import random_workload
from worker_process import WorkerProcess

from schemas import Topic
from stream_app.kafka.topics import create_topics

EVENTS = 7_500
RATE = 500.0
"""Session records a second: the workload takes about fifteen seconds."""
SPARE_TOKENS = 20
"""Licence tokens beyond what the site's groups hold, for the changes to compete for."""
CHANGE_GROUPS = [f"x{i}" for i in range(4)]
"""Groups only the allocation changes name: no session uses them, so the changes
decide nothing the replay of the sessions has to agree with."""
CHANGE_USERS = [f"xu{i}" for i in range(4)]
"""Users only the changes name: their passes change no session's outcome."""
CHANGES = 60
SEED = 20261206


def _changes(rng: random.Random) -> list[dict]:
    out = []
    for n in range(CHANGES):
        ts = "2026-10-01T00:00:00Z"
        if rng.random() < 0.8:
            out.append({"kind": "login_group", "event_id": f"x-{n}", "ts": ts,
                        "group": rng.choice(CHANGE_GROUPS), "tokens": rng.randint(0, 8)})
        else:
            out.append({"kind": "user_access", "event_id": f"x-{n}", "ts": ts,
                        "user_id": rng.choice(CHANGE_USERS),
                        "action": rng.choice(["assign", "remove"])})
    return out


@pytest.mark.parametrize("guarantee", [
    "at_least_once", pytest.param("exactly_once", marks=pytest.mark.kafka_only)])
def test_workers_join_and_leave_mid_workload_and_the_stream_still_equals_the_replay(
    stream_config, tmp_path: Path, guarantee: str, capsys: pytest.CaptureFixture[str],
) -> None:
    rng = random.Random(SEED)
    config = stream_config(mode="replay", guarantee=guarantee)
    asyncio.run(create_topics(config))
    records = random_workload(EVENTS)
    assert len(records) == EVENTS
    licence = next(r for r in records if r["value"].get("kind") == "licence")
    licence["value"]["total_tokens"] += SPARE_TOKENS
    site_tokens = licence["value"]["total_tokens"]
    expected, state = replay_reference(records, tmp_path)
    allocations = [r for r in records if r["topic"] == Topic.ALLOCATIONS]
    sessions = [r for r in records if r["topic"] != Topic.ALLOCATIONS]
    changes = _changes(rng)

    workers = [WorkerProcess(config, tmp_path, name="a").start(config.partitions)]
    moves = []
    try:
        produce(config, allocations)
        with OutputWatch(config) as watch:
            producer = SteadyProducer(config, sessions, RATE).start()
            for i, (share, step) in enumerate(((0.15, "b joins"), (0.35, "c joins"),
                                               (0.55, "a leaves"))):
                watch.wait_for(int(len(expected) * share))
                third = changes[i * CHANGES // 3:(i + 1) * CHANGES // 3]
                asyncio.run(produce_concurrently(config, [third[0::2], third[1::2]]))
                if step == "a leaves":
                    workers[0].stop()
                else:
                    workers.append(WorkerProcess(config, tmp_path, name=step[0]).start())
                moves.append(f"{step} at {len(watch.ids)} outputs")
                # The next move once the group has settled, as an orchestrator waits
                # for readiness (Tansu's coordinator can stall a rebalance that another
                # member's join or leave interrupts).
                live = workers[1:] if step == "a leaves" else workers
                _wait_settled(live, config.partitions)
            producer.join()
            survivors = workers[1:]
            got = collect(config, set(expected))
        final: dict[str, dict[str, int]] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            final = {}
            for w in survivors:
                final.update({g: s for g, s in w.pool_state().items()
                              if g not in CHANGE_GROUPS})
            if final == state:
                break
            time.sleep(0.5)
        owned = [sorted((w.health() or {}).get("partitions") or ()) for w in survivors]
        change_ids = {c["event_id"] for c in changes}
        group_changes = {c["event_id"] for c in changes if c["kind"] == "login_group"}
        granted, rejected = asyncio.run(decisions(config, group_changes))
        in_topic = asyncio.run(consume_all(config.broker, config.topics.allocations,
                                           expect_count=len(allocations) + CHANGES))
    finally:
        for w in workers:
            w.stop()

    ours = {k: v for k, v in got.items() if not _is_change_rejection(v, change_ids)}
    check_against_replay(
        f"scale events={EVENTS} {'; '.join(moves)} partitions_after={owned} "
        f"changes={CHANGES} granted={len(granted)} rejected={len(rejected)}", ours, expected,
        final, state, guarantee=guarantee, show=capsys)
    assert sorted(p for ps in owned for p in ps) == list(range(config.partitions))
    # R10: every change decided once, the licence held at every step of the ledger's
    # order (the order of the allocations topic).
    assert group_changes <= granted | rejected and not granted & rejected
    assert_licence_held(in_topic, rejected, site_tokens)


def _wait_settled(workers: list[WorkerProcess], partitions: int) -> None:
    """Until the group's new generation holds: a joiner has taken its assignment, and
    the live workers own every partition once. Faust's sticky assignor may give a third
    worker none of four partitions (two each already fill the others' share): a member
    with nothing to do is still a member."""
    if len(workers) > 1:
        workers[-1].wait_for_log("Executing _on_partitions_assigned")
    deadline = time.monotonic() + 60
    steady = 0
    while steady < 3:
        owned = [set((w.health() or {}).get("partitions") or ()) for w in workers]  # type: ignore[arg-type]
        held = [p for ps in owned for p in ps]
        steady = steady + 1 if sorted(held) == list(range(partitions)) else 0
        assert time.monotonic() < deadline, f"partitions not owned once each: {owned}"
        time.sleep(0.3)


def _is_change_rejection(copies: list[dict], change_ids: set[str]) -> bool:
    value = copies[0]["value"]
    return (copies[0]["topic"] == "allocation-rejected"
            and value["request"]["event_id"] in change_ids)

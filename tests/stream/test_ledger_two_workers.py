"""R10 across processes: many producers change allocations at once while two workers
run (and the one deciding them is killed midway); the licence is never
over-allocated, every change is decided exactly once, and the group partitions end
with exactly the accepted tokens."""

import asyncio
import json
import random
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from kafka_helpers import consume_all, decisions
from worker_process import WorkerProcess, wait_split

from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics

SEED = 20261131
PRODUCERS = 8
CHANGES = 40
"""Allocation changes per producer."""
LICENCE = 20
GROUPS = [f"g{i}" for i in range(6)]
USERS = [f"u{i}" for i in range(4)]
T0 = "2026-11-02T09:00:00Z"


def changes(rng: random.Random, producer: int) -> list[dict]:
    out = []
    for n in range(CHANGES):
        event_id = f"p{producer}-{n}"
        if rng.random() < 0.8:
            out.append({"kind": "login_group", "event_id": event_id, "ts": T0,
                        "group": rng.choice(GROUPS), "tokens": rng.randint(0, 8)})
        else:
            out.append({"kind": "user_access", "event_id": event_id, "ts": T0,
                        "user_id": rng.choice(USERS),
                        "action": rng.choice(["assign", "remove"])})
    return out


async def produce_concurrently(config: StreamConfig, batches: list[list[dict]]) -> None:
    async def one(batch: list[dict]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=config.broker, acks="all")
        await producer.start()
        try:
            for value in batch:
                await producer.send_and_wait(config.topics.allocations,
                                             json.dumps(value).encode(), key=b"")
        finally:
            await producer.stop()

    await asyncio.gather(*(one(b) for b in batches))


def owner_of_allocations(workers: list[WorkerProcess]) -> WorkerProcess:
    """The worker whose log shows the latest allocation decision."""
    def latest(w: WorkerProcess) -> str:
        lines = [line for line in w.log_text().splitlines() if "allocation kind=" in line]
        return lines[-1][:24] if lines else ""
    owner = max(workers, key=latest)
    assert latest(owner), "no worker decided an allocation"
    return owner


def test_r10_concurrent_producers_and_two_workers_never_over_allocate(
    stream_config, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    config = stream_config(mode="replay")
    asyncio.run(create_topics(config))
    # One after the other: the second joins a settled group and takes half of it.
    quick = ["--session-timeout", "6s"]  # the survivor takes over sooner (Kafka's least)
    workers = [WorkerProcess(config, tmp_path, extra=quick, name="a").start(config.partitions)]
    try:
        workers.append(WorkerProcess(config, tmp_path, extra=quick, name="b").start())
        wait_split(workers)
        asyncio.run(produce_concurrently(config, [[{
            "kind": "licence", "event_id": "licence", "ts": T0, "total_tokens": LICENCE}]]))
        batches = [changes(rng, p) for p in range(PRODUCERS)]
        first = [b[: CHANGES // 2] for b in batches]
        asyncio.run(produce_concurrently(config, first))
        time.sleep(2)  # decisions under way on one worker ...
        owner = owner_of_allocations(workers)
        owner.kill()  # ... which dies: the other one takes the ledger over
        survivor = next(w for w in workers if w is not owner)
        asyncio.run(produce_concurrently(config, [b[CHANGES // 2:] for b in batches]))
        survivor.wait_ready(partitions=config.partitions)
        total = 1 + PRODUCERS * CHANGES
        allocations = asyncio.run(consume_all(config.broker, config.topics.allocations,
                                              expect_count=total, timeout=30))
        # Every login_group change ends as a grant or a rejection; wait for all.
        group_changes = {json.loads(r.value)["event_id"] for r in allocations
                         if b"login_group" in r.value}
        granted, rejected = asyncio.run(decisions(config, group_changes))
        decided = group_changes & (granted | rejected)
        capacities = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = survivor.pool_state()
            capacities = {g: s["capacity"] for g, s in state.items()}
            expected = expected_capacities(allocations, rejected)
            if capacities == expected:
                break
            time.sleep(0.5)
    finally:
        for w in workers:
            w.stop()

    assert decided == group_changes, "a login_group change was never decided"
    assert not granted & rejected, "a change both granted and rejected"
    assert_licence_held(allocations, rejected, LICENCE)
    assert capacities == expected_capacities(allocations, rejected)


def assert_licence_held(allocations: list, rejected: set[str], licence: int) -> None:
    """R10: the licence holds at every step of the ledger's order (the topic's)."""
    tokens: dict[str, int] = {}
    uaps: set[str] = set()
    for record in allocations:
        value = json.loads(record.value)
        if value["event_id"] in rejected or value["kind"] == "licence":
            continue
        if value["kind"] == "login_group":
            tokens[value["group"]] = value["tokens"]
        elif value["action"] == "assign":
            uaps.add(value["user_id"])
        else:
            uaps.discard(value["user_id"])
        held = len(uaps) + sum(tokens.values())
        assert held <= licence, (value, held)


def expected_capacities(allocations: list, rejected: set[str]) -> dict[str, int]:
    """10 passes per accepted token, from the last accepted change of each group."""
    tokens: dict[str, int] = {}
    for record in allocations:
        value = json.loads(record.value)
        if value["kind"] == "login_group" and value["event_id"] not in rejected:
            tokens[value["group"]] = value["tokens"]
    return {g: 10 * n for g, n in tokens.items()}

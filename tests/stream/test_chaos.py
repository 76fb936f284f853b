"""Chaos: the worker is killed with SIGKILL at five seeded random points of a 20 000
event workload and restarted each time; the final state and the deduplicated
outputs equal the replay reference exactly (exactly-once effect on state,
at-least-once outputs with deterministic ids; RELIABILITY.md).

On Apache Kafka the worker is restarted at once, as an orchestrator does, and the run
is made under both guarantees: under `exactly_once` a `read_committed` consumer of the
outputs sees each exactly once. On Tansu the restart waits out the session timeout (a
member rejoining at once can be handed a stale group generation there)."""

import asyncio
import itertools
import json
import random
import time
from pathlib import Path

import pytest
from stream_harness import (
    OutputWatch,
    check_against_replay,
    collect,
    produce,
    replay_reference,
    wait_for_state,
)
from worker_process import WorkerProcess

from schemas import Topic
from stream_app.kafka.topics import create_topics
from stream_app.site.synthetic import generate, to_jsonl_lines

SEED = 20261130
"""Fixes the kill points: the same seed cuts the workload at the same records."""
EVENTS = 20_000
KILLS = 5
SESSION_TIMEOUT = 6.0
"""The least Apache Kafka accepts (`group.min.session.timeout.ms`)."""


def workload(events: int) -> list[dict]:
    """A site of 400 users in 8 groups over 35 days, cut at `events` records."""
    stream = generate(users=400, groups=8, days=35, seed=SEED)
    return [json.loads(line) for line in to_jsonl_lines(itertools.islice(stream, events))]


@pytest.mark.parametrize("guarantee", [
    "at_least_once", pytest.param("exactly_once", marks=pytest.mark.kafka_only)])
def test_five_sigkills_at_seeded_points_give_exactly_the_replay_result(
    stream_config, broker_kind, guarantee: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rng = random.Random(SEED)
    config = stream_config(mode="replay", guarantee=guarantee)
    asyncio.run(create_topics(config))
    records = workload(EVENTS)
    assert len(records) == EVENTS
    expected, state = replay_reference(records, tmp_path)
    # The workload goes in KILLS + 1 slices cut at seeded random records; slice i is
    # produced after restart i. The replay of each prefix says how many outputs the
    # worker can have emitted once it has the slice, so kill i comes at a seeded
    # random point between the outputs of the previous prefix and of this one: while
    # the worker is busy with slice i, never after it finished the workload.
    allocations = [r for r in records if r["topic"] == Topic.ALLOCATIONS]
    sessions = [r for r in records if r["topic"] != Topic.ALLOCATIONS]
    cuts = [0, *sorted(rng.sample(range(1, len(sessions)), KILLS)), len(sessions)]
    ceilings = [0]
    for i, cut in enumerate(cuts[1:-1]):
        prefix, _ = replay_reference([*allocations, *sessions[:cut]], tmp_path / f"p{i}")
        ceilings.append(len(prefix))
    points = [lo + max(1, int(rng.uniform(0.05, 0.6) * (hi - lo)))
              for lo, hi in itertools.pairwise(ceilings)]
    # A long idle wait: on a loaded machine a slow fetch must not make the merge go on
    # without an input (that is a late event, not a crash effect).
    extra = ["--session-timeout", f"{SESSION_TIMEOUT}s", "--idle-wait", "10s"]

    worker = WorkerProcess(config, tmp_path, extra=extra, name="run0").start()
    produce(config, allocations)
    kills = restarts = 0
    seen_at_kill = []
    try:
        with OutputWatch(config) as watch:
            for i, point in enumerate(points):
                produce(config, sessions[cuts[i]:cuts[i + 1]])
                watch.wait_for(point)
                worker.kill()
                kills += 1
                seen_at_kill.append(len(watch.ids))
                if broker_kind.kind == "tansu":  # once the dead member left the group
                    time.sleep(SESSION_TIMEOUT + 1)
                worker = WorkerProcess(config, tmp_path, extra=extra, name=f"run{i + 1}")
                worker.start()
                restarts += 1
        produce(config, sessions[cuts[KILLS]:])
        got = collect(config, set(expected))
        final = wait_for_state(worker, state)
    finally:
        worker.stop()

    assert kills == restarts == KILLS
    check_against_replay(
        f"chaos broker={broker_kind.name} seed={SEED} events={EVENTS} kills={kills} "
        f"restarts={restarts} kill_points={points} outputs_seen_at_kills={seen_at_kill} "
        f"prefix_outputs={ceilings[1:]}", got, expected, final, state,
        guarantee=guarantee, show=capsys, log_tail=worker.log_tail())

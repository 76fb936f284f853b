"""Broker stall: the broker freezes (SIGSTOP) mid-workload for longer than the
consumer group's session timeout, then thaws (SIGCONT). The same worker process
recovers on its own, with no restart, and the outcome is the replay's: no event
lost, none applied twice (RELIABILITY.md)."""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stream_harness import (
    OutputWatch,
    collect,
    diff_outputs,
    produce,
    replay_reference,
    wait_for_state,
)
from test_stream_equals_replay import random_workload
from worker_process import WorkerProcess

from schemas import Topic
from stream_app.kafka.apache_kafka import KafkaCluster
from stream_app.kafka.broker import EmbeddedBroker
from stream_app.kafka.topics import create_topics

SESSION_TIMEOUT = 6.0
"""The least Apache Kafka accepts (`group.min.session.timeout.ms`)."""
STALL = SESSION_TIMEOUT + 4.0
"""Long enough that the group coordinator expires the worker's session."""
STEADY = 4.0
"""Seconds every partition keeps a leader before the test writes again."""


@pytest.fixture
def own_broker(tmp_path: Path, broker_kind) -> Iterator[EmbeddedBroker | KafkaCluster]:
    """A broker of this test's own, of the kind under test: freezing the session's
    broker would stall the other tests."""
    if broker_kind.kind == "tansu":
        with EmbeddedBroker(log_path=tmp_path / "tansu.log") as embedded:
            yield embedded
    else:
        with KafkaCluster(1, broker_kind.version, home=tmp_path / "kafka") as cluster:
            yield cluster


def _wait_serving(broker: EmbeddedBroker | KafkaCluster) -> None:
    """On Kafka, until the thawed node leads every partition again, steadily: its own
    controller fences it on waking (its heartbeats stopped for the stall) and unfences
    it a moment later. Records sent meanwhile wait in the producer's retries for
    seconds, some partitions longer than others, and reach the broker out of step
    with their timestamps across topics: no merge on arrival can order records not yet
    written (RELIABILITY.md, "Inputs out of event-time order in the broker"). The
    worker's recovery is what is under test, not that producer-side reorder."""
    if not isinstance(broker, KafkaCluster):
        return
    steady_since: float | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            behind = broker.out_of_sync()
        except Exception:  # a refused connection while it wakes
            behind = ["(no answer)"]
        now = time.monotonic()
        if behind:
            steady_since = None
        elif steady_since is None:
            steady_since = now
        elif now - steady_since >= STEADY:
            return
        time.sleep(0.25)
    raise AssertionError("the thawed broker did not lead its partitions again")


def test_worker_recovers_by_itself_from_a_broker_frozen_past_the_session_timeout(
    own_broker: EmbeddedBroker | KafkaCluster, stream_config, tmp_path: Path
) -> None:
    config = stream_config(broker=own_broker.bootstrap, mode="replay")
    asyncio.run(create_topics(config))
    records = random_workload(6000)
    expected, state = replay_reference(records, tmp_path)
    sessions = [r for r in records if r["topic"] != Topic.ALLOCATIONS]
    half = len(sessions) // 2
    worker = WorkerProcess(
        config, tmp_path, extra=["--session-timeout", f"{SESSION_TIMEOUT}s"]
    ).start(config.partitions)
    try:
        produce(config, [r for r in records if r["topic"] == Topic.ALLOCATIONS])
        produce(config, sessions[:half])
        with OutputWatch(config) as watch:
            watch.wait_for(len(expected) // 5)  # mid-workload
        own_broker.pause()
        time.sleep(STALL)
        own_broker.resume()
        _wait_serving(own_broker)
        produce(config, sessions[half:])
        got = collect(config, set(expected))
        final = wait_for_state(worker, state)
        assert worker.proc is not None and worker.proc.poll() is None, "worker exited"
    finally:
        worker.stop()
    assert diff_outputs(got, expected) == {"extra": [], "missing": [], "different": []}, (
        worker.log_tail())
    assert final == state

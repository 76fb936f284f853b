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
from stream_app.broker import EmbeddedBroker, create_topics

SESSION_TIMEOUT = 3.0
STALL = SESSION_TIMEOUT + 4.0
"""Long enough that the group coordinator expires the worker's session."""


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own: freezing the session's broker would stall others."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        yield broker


def test_worker_recovers_by_itself_from_a_broker_frozen_past_the_session_timeout(
    own_broker: EmbeddedBroker, stream_config, tmp_path: Path
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
        produce(config, sessions[half:])
        got = collect(config, set(expected))
        final = wait_for_state(worker, state)
        assert worker.proc is not None and worker.proc.poll() is None, "worker exited"
    finally:
        worker.stop()
    assert diff_outputs(got, expected) == {"extra": [], "missing": [], "different": []}, (
        worker.log_tail())
    assert final == state

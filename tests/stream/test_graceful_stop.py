"""A worker stopped with SIGTERM while a site's sessions stream in, as an orchestrator
stops it, exits with status 0: before Faust flushes and stops its producer, the worker
lets its partitions go, as in a rebalance, and delivers what it queued. (A checkpoint
written during the stop reached the stopped producer, and the stop failed with
status 1.) Nothing is lost by a stop that a revoke would not lose: what was not
checkpointed is applied again after the restart (`test_scale_out_and_in`)."""

import asyncio
import time
from pathlib import Path

import pytest
from stream_harness import OutputWatch, SteadyProducer, produce
from test_chaos import SESSION_TIMEOUT, workload
from worker_process import WorkerProcess

from schemas import Topic
from stream_app.kafka.topics import create_topics

STOPS = 3
RATE = 500.0
"""Session records a second: live, each partition checkpoints every few tens of ms."""
EVENTS = 40_000
"""More than the stops and restarts take at `RATE`: the rest is never sent."""


@pytest.mark.parametrize("guarantee", [
    "at_least_once", pytest.param("exactly_once", marks=pytest.mark.kafka_only)])
def test_sigterm_while_sessions_stream_in_exits_0_every_time(
    stream_config, broker_kind, guarantee: str, tmp_path: Path,
) -> None:
    config = stream_config(mode="live", guarantee=guarantee)
    asyncio.run(create_topics(config))
    records = workload(EVENTS)
    allocations = [r for r in records if r["topic"] == Topic.ALLOCATIONS]
    sessions = [r for r in records if r["topic"] != Topic.ALLOCATIONS]
    # As the demo runs it: a short merge wait and tick, so inputs are applied and
    # checkpointed as they arrive, right up to the stop.
    extra = ["--session-timeout", f"{SESSION_TIMEOUT}s", "--idle-wait", "200ms",
             "--tick-interval", "500ms"]

    worker = WorkerProcess(config, tmp_path, extra=extra, name="run0").start()
    produce(config, allocations)
    statuses: list[int | None] = []
    outputs_at_stops = []
    producer = SteadyProducer(config, sessions, RATE).start()
    try:
        with OutputWatch(config) as watch:
            for i in range(STOPS + 1):
                # Busy: outputs of this run's inputs are coming out.
                watch.wait_for(len(watch.ids) + 100)
                outputs_at_stops.append(len(watch.ids))
                if i == STOPS:
                    break
                assert producer.sent < len(sessions), "the workload ended before a stop"
                status = worker.stop()
                statuses.append(status)
                assert status == 0, f"stop {i + 1}: exit status {status}\n" + (
                    worker.log_errors())
                assert "stopping: partitions let go" in worker.log_text()
                if broker_kind.kind == "tansu":  # see RELIABILITY.md, "Broker quirks"
                    time.sleep(SESSION_TIMEOUT + 1)
                worker = WorkerProcess(config, tmp_path, extra=extra, name=f"run{i + 1}")
                worker.start(config.partitions)
    finally:
        statuses.append(worker.stop())
        producer.stop()
        producer.join()

    print(f"graceful stops broker={broker_kind.name} guarantee={guarantee} "
          f"statuses={statuses} outputs_at_stops={outputs_at_stops}")
    assert statuses == [0] * (STOPS + 1), statuses

"""A three-node Apache Kafka cluster, as users run it: replication factor 3,
`min.insync.replicas` 2, `acks=all` on everything the worker writes. A node fails, or
every node is restarted in turn, while a site's sessions stream in; the worker carries
on without a hand, and what it emitted and holds equals `tokenpool replay` of the same
records: nothing lost, nothing applied twice. Apache Kafka only: Tansu has no replicas.
"""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stream_harness import (
    OutputWatch,
    SteadyProducer,
    check_against_replay,
    collect,
    produce,
    replay_reference,
    wait_for_state,
)
from test_stream_equals_replay import random_workload
from worker_process import WorkerProcess

from schemas import Topic
from stream_app.kafka.apache_kafka import KafkaCluster
from stream_app.kafka.topics import changelog_topic, create_topics

pytestmark = pytest.mark.kafka_only

EVENTS = 7_500
RATE = 500.0
"""Session records a second, each acknowledged before the next (`SteadyProducer`,
ordered): the workload takes about fifteen seconds, the fault lands in it."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, broker_kind) -> Iterator[KafkaCluster]:
    home = tmp_path_factory.mktemp("cluster")
    with KafkaCluster(3, broker_kind.version, home=home) as started:
        yield started


def _run(cluster: KafkaCluster, stream_config, tmp_path: Path, guarantee: str,
         fault, capsys: pytest.CaptureFixture[str], name: str) -> None:
    # Every node registered and every replica in sync first: a node the controller
    # fenced for a missed heartbeat (a loaded machine) would leave `topics create`
    # counting two brokers. Three replicas are asked for outright.
    cluster.wait_ready()
    cluster.wait_in_sync()
    config = stream_config(broker=cluster.bootstrap, mode="replay", guarantee=guarantee,
                           replication_factor=3)
    report = asyncio.run(create_topics(config))
    assert report.replication == 3
    records = random_workload(EVENTS)
    assert len(records) == EVENTS
    expected, state = replay_reference(records, tmp_path)
    allocations = [r for r in records if r["topic"] == Topic.ALLOCATIONS]
    sessions = [r for r in records if r["topic"] != Topic.ALLOCATIONS]
    worker = WorkerProcess(config, tmp_path, name=name).start(config.partitions)
    try:
        produce(config, allocations)
        with OutputWatch(config) as watch:
            producer = SteadyProducer(config, sessions, RATE, ordered=True).start()
            watch.wait_for(len(expected) // 10)
            at = time.monotonic()
            detail = fault(config)
            producer.join()
            got = collect(config, set(expected))
            gap = watch.longest_gap(at)
        final = wait_for_state(worker, state)
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
    finally:
        worker.stop()
    check_against_replay(
        f"{name} events={EVENTS} {detail} longest_output_gap_s={gap:.1f}", got, expected,
        final, state, guarantee=guarantee, show=capsys, log_tail=worker.log_tail())


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_node_leading_the_ledger_and_state_is_killed_and_comes_back(
    cluster: KafkaCluster, stream_config, tmp_path: Path, guarantee: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGKILL of the node that leads `allocations` (the ledger's input) and the first
    partition of the state changelog, mid-workload; it is restarted ten seconds later.
    Its partitions' leadership moves to the two others, which still make a quorum of
    in-sync replicas."""

    def kill_leader(config) -> str:
        leader = cluster.leader(config.topics.allocations, 0)
        state_leader = cluster.leader(changelog_topic(config, "state"), 0)
        cluster.node(leader).kill()
        time.sleep(10)
        cluster.node(leader).start()
        cluster.wait_ready()
        return f"killed_node={leader} state_leader_was={state_leader}"

    _run(cluster, stream_config, tmp_path, guarantee, kill_leader, capsys, "failover")
    cluster.wait_in_sync()


def test_a_rolling_restart_of_every_node_during_a_workload(
    cluster: KafkaCluster, stream_config, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Each node in turn stopped as an operator upgrades it (controlled shutdown, so its
    leadership moves first), started again, and waited for until every replica is in
    sync before the next one goes."""

    def roll(config) -> str:
        order = [node.node_id for node in cluster.nodes]
        for node_id in order:
            cluster.restart(node_id, kill=False)
            cluster.wait_in_sync()
        return f"restarted_nodes={order}"

    _run(cluster, stream_config, tmp_path, "exactly_once", roll, capsys, "rolling-restart")

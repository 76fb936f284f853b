"""The compose deployment's Kafka, as configured there, serving the compose
deployment's `topics` and `worker` services, as configured there.

No Docker engine runs here, so the `kafka` service's `KAFKA_*` environment is turned
into server properties the way the `apache/kafka` image does it, the addresses moved
to loopback, and Apache Kafka is started from Maven Central with exactly that. Then
`tokenpool topics create` and `tokenpool worker` run with the `TOKENPOOL_*`
environment of their services (only the broker address, ports and data folder
changed), and the seed scenario goes in. Apache Kafka only.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from stream_harness import feed_and_check, replay_reference
from worker_process import ROOT, WorkerProcess

from stream_app.config import StreamConfig
from stream_app.kafka.apache_kafka import LATEST, KafkaCluster, KafkaNode, cluster_properties

pytestmark = pytest.mark.kafka_only

SEED = ROOT / "examples" / "seed-scenario.jsonl"
ADDRESSES = {"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs"}
"""Server properties that name hosts, ports or folders: the cluster's own on loopback."""


def image_properties(environment: dict[str, Any]) -> dict[str, str]:
    """`KAFKA_*` variables as the apache/kafka image turns them into server properties:
    the prefix dropped, lower case, `_` → `.`, `__` → `_`, `___` → `-`."""
    properties = {}
    for name, value in environment.items():
        if not name.startswith("KAFKA_"):
            continue
        key = name.removeprefix("KAFKA_").lower()
        key = key.replace("___", "\0").replace("__", "\1").replace("_", ".")
        properties[key.replace("\0", "-").replace("\1", "_")] = str(value).lower() \
            if isinstance(value, bool) else str(value)
    return properties


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded["services"]


def test_the_compose_kafka_settings_are_the_ones_the_tests_run_with(
    compose, tmp_path: Path
) -> None:
    """What the suite's one-node Kafka runs with is what the deployment runs with."""
    deployed = image_properties(compose["kafka"]["environment"])
    node = KafkaNode(1, tmp_path / "node-1", tmp_path / "lib", LATEST)
    tested = cluster_properties(node, [node])
    assert ({k: v for k, v in deployed.items() if k not in ADDRESSES}
            == {k: v for k, v in tested.items() if k not in ADDRESSES})


class ServiceWorker(WorkerProcess):
    """`tokenpool worker` with no flags: everything from the service's environment."""

    def args(self) -> list[str]:
        return [sys.executable, "-m", "stream_app", "--log-level", "info", "worker"]


def _service_env(service: dict[str, Any], **changed: str) -> dict[str, str]:
    env = {k: str(v) for k, v in service["environment"].items() if k.startswith("TOKENPOOL_")}
    assert set(changed) <= set(env) | {"TOKENPOOL_WEB_PORT"}, set(changed) - set(env)
    env.update(changed)
    return env


def test_compose_kafka_topics_and_worker_run_the_seed_scenario(
    compose, broker_kind, tmp_path: Path
) -> None:
    deployed = image_properties(compose["kafka"]["environment"])
    overrides = {k: v for k, v in deployed.items() if k not in ADDRESSES}
    with KafkaCluster(1, broker_kind.version, home=tmp_path / "kafka",
                      overrides=overrides) as cluster:
        for key, value in overrides.items():
            assert cluster.nodes[0].properties[key] == value
        topics_env = _service_env(compose["topics"], TOKENPOOL_BROKER=cluster.bootstrap)
        assert compose["topics"]["command"] == ["topics", "create"]
        created = subprocess.run(
            [sys.executable, "-m", "stream_app", "topics", "create"], cwd=ROOT,
            env={**_clean_env(), **topics_env}, capture_output=True, text=True, timeout=120,
        )
        assert created.returncode == 0, created.stderr

        worker_env = _service_env(
            compose["worker"], TOKENPOOL_BROKER=cluster.bootstrap,
            TOKENPOOL_DATA_DIR=str(tmp_path / "data"), TOKENPOOL_WEB_PORT="0",
        )
        config = StreamConfig(broker=cluster.bootstrap,
                              app_id=worker_env["TOKENPOOL_APP_ID"],
                              partitions=int(worker_env["TOKENPOOL_PARTITIONS"]))
        worker = ServiceWorker(config, tmp_path, name="compose")
        worker_env["TOKENPOOL_WEB_PORT"] = str(worker.port)
        worker.env = worker_env
        records = [json.loads(line) for line in SEED.read_text().splitlines()]
        # The service runs live (it sets no mode): wall-clock ticks fire every timer
        # due by now, as a replay until now does. (The seed's passes come back at five
        # instants; a run within a minute of one could see it on one side only.)
        now = int(time.time() * 1_000_000)
        expected, state = replay_reference(records, tmp_path, until=now)
        worker.start(wait_partitions=config.partitions)
        try:
            feed_and_check(config, worker, records, expected, state)
        finally:
            worker.stop()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL_")}

"""Apache Kafka on loopback: one KRaft node, or a cluster of three, from Maven Central.

The broker tokenpool's users run, for the tests and benchmarks that must hold on it
(Tansu, the embedded broker of the demo, is not Kafka). No Docker and no tarball: the
`org.apache.kafka:kafka_2.13` jars with their runtime dependencies are resolved by
Maven (`deploy/kafka/pom.xml`) into a cache outside the work tree, and each node is
`java -cp 'LIB/*' kafka.Kafka server.properties` in combined broker+controller mode.

Settings are a production cluster's, with two exceptions a test needs and a
production cluster may also choose: no initial rebalance delay, and internal topics
replicated as widely as the node count allows. Topic auto-creation is off, as it is on
most production clusters: every topic the service needs must be created by it.
"""

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from stream_app.kafka.broker import BrokerStartError, _accepts, _probe_metadata, _run_blocking
from stream_app.kafka.kafka_jars import (
    LATEST,
    LINE_3,
    POM,
    ROOT,
    VERSIONS,
    KafkaUnavailable,
    cache_dir,
    kafka_lib,
    pinned,
    random_cluster_id,
)
from stream_app.kafka.kafka_node import HEAP, KafkaNode, cluster_properties

__all__ = [
    "HEAP", "LATEST", "LINE_3", "POM", "ROOT", "VERSIONS", "KafkaCluster", "KafkaNode",
    "KafkaUnavailable", "cache_dir", "cluster_properties", "kafka_lib", "pinned",
    "random_cluster_id",
]
"""Versions and jars come from `kafka_jars`, one node from `kafka_node`; they are named
here too, where the tests and benchmarks look for everything about Apache Kafka."""

log = logging.getLogger(__name__)

READY_TIMEOUT = 90.0
"""Seconds a cluster may take to list every running node: JVM start on a loaded
machine, log recovery after a kill."""


class KafkaCluster:
    """`nodes` KRaft nodes (1 or 3) on loopback, each in its own process group.

    `overrides` replace or add server properties on every node (the compose file's
    settings, say); listener and quorum addresses stay the cluster's own. `protocol`
    is the clients' listener (`SASL_SSL` with its settings in `overrides`, say),
    `client` the aiokafka settings that reach it, and `scram_users` (name → password)
    the SCRAM-SHA-512 credentials written at format time. Data lives
    under `home` (a temporary folder by default) and is removed by `stop()` when the
    cluster made the folder itself.
    """

    def __init__(self, nodes: int = 1, version: str = LATEST, *,
                 home: Path | str | None = None,
                 overrides: Mapping[str, str] | None = None,
                 protocol: str = "PLAINTEXT", client: Mapping[str, Any] | None = None,
                 scram_users: Mapping[str, str] | None = None) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.version = pinned(version)
        self._own_home = home is None
        self.home = Path(home) if home is not None else Path(
            tempfile.mkdtemp(prefix=f"kafka-{self.version}-"))
        self.cluster_id = random_cluster_id()
        self._overrides = dict(overrides or {})
        self._protocol = protocol
        self._client = dict(client or {})
        self._scram = [arg for name, password in (scram_users or {}).items()
                       for arg in ("--add-scram",
                                   f"SCRAM-SHA-512=[name={name},password={password}]")]
        self._size = nodes
        self.nodes: list[KafkaNode] = []

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def start(self) -> "KafkaCluster":
        lib = kafka_lib(self.version)
        self.nodes = [KafkaNode(i, self.home / f"node-{i}", lib, self.version)
                      for i in range(1, self._size + 1)]
        try:
            for node in self.nodes:
                node.write_config({**cluster_properties(node, self.nodes, self._protocol),
                                   **self._overrides})
                node.format(self.cluster_id, self._scram)
            for node in self.nodes:
                node.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("kafka cluster ready version=%s nodes=%d bootstrap=%s", self.version,
                 len(self.nodes), self.bootstrap)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every running node is a broker the cluster's metadata lists."""
        deadline = time.monotonic() + timeout
        running = [n for n in self.nodes if n.running]
        wanted = {n.node_id for n in running}
        last: Any = None
        while time.monotonic() < deadline:
            for node in self.nodes:
                node.check_alive()
            if not all(_accepts(n.host, n.port) for n in running):
                time.sleep(0.1)
                continue
            try:
                # Asked of every node: a restarted one answers only once it is back.
                seen = [_run_blocking(_probe_metadata(n.address, **self._client), 5.0)
                        for n in running]
                last = [sorted(b["node_id"] for b in c.get("brokers", [])) for c in seen]
                if all(wanted <= {b["node_id"] for b in c.get("brokers", [])}
                       and c.get("controller_id", -1) != -1 for c in seen):
                    return
            except Exception as exc:  # not answering yet
                last = exc
            time.sleep(0.25)
        raise BrokerStartError(
            f"kafka cluster not ready in {timeout}s (last: {last!r}); node logs under "
            f"{self.home}"
        )

    def restart(self, node_id: int, *, kill: bool = True) -> None:
        """Kill (or stop) a node and start it again on the same ports and data."""
        node = self.node(node_id)
        if kill:
            node.kill()
        else:
            node.stop()
        node.start()
        self.wait_ready()

    def wait_in_sync(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every replica of every partition is in sync again (after a node came
        back): what an operator waits for before restarting the next node."""
        deadline = time.monotonic() + timeout
        behind: Any = None
        while time.monotonic() < deadline:
            behind = self.out_of_sync()
            if not behind:
                return
            time.sleep(0.5)
        raise BrokerStartError(f"replicas still out of sync after {timeout}s: {behind}")

    def out_of_sync(self) -> list[str]:
        """Partitions with no leader or a replica out of the in-sync set, now."""
        result: list[str] = _run_blocking(_out_of_sync(self.bootstrap, self._client), 15.0)
        return result

    def pause(self) -> None:
        """Freeze every node (SIGSTOP): connections stay open, nothing is answered."""
        for node in self.nodes:
            node.pause()

    def resume(self) -> None:
        for node in self.nodes:
            node.resume()

    def leader(self, topic: str, partition: int) -> int:
        """Node id leading a partition now."""
        return _run_blocking(_leader(self.bootstrap, topic, partition, self._client), 15.0)

    def stop(self) -> None:
        """Every node at once: one by one, the last ones would wait for a quorum that
        the first ones took away."""
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node.stop(timeout=3.0)
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


async def _out_of_sync(bootstrap: str, client: Mapping[str, Any]) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                                **client)
    try:
        await admin.start()
        topics = await admin.list_topics()
        behind = []
        for described in await admin.describe_topics(topics):
            for p in described["partitions"]:
                if set(p["isr"]) != set(p["replicas"]) or p["leader"] < 0:
                    behind.append(f"{described['topic']}[{p['partition']}]")
        return behind
    finally:
        await admin.close()


async def _leader(bootstrap: str, topic: str, partition: int,
                  client: Mapping[str, Any]) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                                **client)
    try:
        await admin.start()
        for described in await admin.describe_topics([topic]):
            for p in described["partitions"]:
                if p["partition"] == partition:
                    return int(p["leader"])
        raise KeyError(f"{topic}[{partition}]")
    finally:
        await admin.close()


def main() -> None:
    """`python -m stream_app.kafka.apache_kafka [--nodes N] [--version V]`: a cluster in the
    foreground until Ctrl-C, for trying the service on Kafka by hand."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--version", default=LATEST)
    parser.add_argument("--resolve-only", action="store_true",
                        help="fetch the jars into the cache and exit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.resolve_only:
        print(kafka_lib(args.version))
        return
    with KafkaCluster(args.nodes, args.version) as cluster:
        print(f"bootstrap: {cluster.bootstrap}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(asyncio.Event().wait())


if __name__ == "__main__":
    main()

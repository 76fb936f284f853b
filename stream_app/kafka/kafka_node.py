"""One Apache Kafka KRaft node: its process, its configuration files, its signals.

A node is `java -cp 'LIB/*' kafka.Kafka server.properties` in combined
broker+controller mode, in its own process group so that a kill reaches the JVM and
nothing it started. `cluster_properties` gives a node's server.properties as one of a
cluster on loopback; `apache_kafka.KafkaCluster` starts and watches the nodes.
"""

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from stream_app.kafka.broker import BrokerStartError, _die_with_parent, free_port

log = logging.getLogger(__name__)

HEAP = "512m"
"""Each node's JVM heap: three nodes, the workers and the suite share two cores."""


_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
"""
_LOG4J1 = """\
log4j.rootLogger=INFO, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
"""


class KafkaNode:
    """One combined broker+controller process. Ports are fixed at construction so a
    restarted node comes back where its clients and its peers expect it."""

    def __init__(self, node_id: int, home: Path, lib: Path, version: str,
                 host: str = "127.0.0.1") -> None:
        self.node_id = node_id
        self.home = home
        self.lib = lib
        self.version = version
        self.host = host
        self.port = free_port(host)
        self.controller_port = free_port(host)
        self.properties: dict[str, str] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _java(self, main: str, *args: str, heap: str = HEAP) -> list[str]:
        if self.version.startswith("4."):
            logging_flag = f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}"
        else:
            logging_flag = f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}"
        return ["java", f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true", logging_flag,
                "-cp", f"{self.lib}/*", main, *args]

    def write_config(self, properties: Mapping[str, str]) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        self.properties = dict(properties)
        path = self.home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties.items()))
        (self.home / "log4j2.properties").write_text(_LOG4J2)
        (self.home / "log4j.properties").write_text(_LOG4J1)
        return path

    def format(self, cluster_id: str, extra: Sequence[str] = ()) -> None:
        config = self.home / "server.properties"
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c",
                       str(config), *extra, heap="128m"),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise BrokerStartError(
                f"kafka-storage format failed on node {self.node_id}: "
                f"{(result.stdout + result.stderr)[-2000:]}"
            )

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"node {self.node_id} already running")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self._process = subprocess.Popen(
            self._java("kafka.Kafka", str(self.home / "server.properties")),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        log.info("kafka node started node=%d address=%s pid=%d", self.node_id,
                 self.address, self._process.pid)

    def _signal(self, sig: signal.Signals) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no controlled shutdown, no flush of the page cache to the log."""
        self._signal(signal.SIGKILL)
        self._reap(10.0)
        log.info("kafka node killed node=%d", self.node_id)

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM: leadership moves away first), SIGKILL after
        `timeout`."""
        if self._process is None:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("kafka node ignored SIGTERM for %.0fs, killing node=%d",
                        timeout, self.node_id)
        self._signal(signal.SIGKILL)
        self._reap(10.0)

    def terminate(self) -> None:
        """SIGTERM without waiting (see `stop`)."""
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _reap(self, timeout: float) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise BrokerStartError(
                f"kafka node {self.node_id} exited with status {self._process.returncode}; "
                f"see {self.log_path}: {self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def cluster_properties(node: KafkaNode, nodes: list[KafkaNode],
                       protocol: str = "PLAINTEXT") -> dict[str, str]:
    """A KRaft combined-mode node of a cluster of `len(nodes)` on loopback, its clients
    and its peers speaking `protocol` (the controllers speak PLAINTEXT among
    themselves)."""
    n = len(nodes)
    voters = ",".join(f"{m.node_id}@{m.host}:{m.controller_port}" for m in nodes)
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"{protocol}://{node.host}:{node.port},CONTROLLER://{node.host}:"
                     f"{node.controller_port}",
        "advertised.listeners": f"{protocol}://{node.address}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": f"{protocol}:{protocol},CONTROLLER:PLAINTEXT"
                                          if protocol != "PLAINTEXT"
                                          else "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": protocol,
        "log.dirs": str(node.home / "data"),
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.replication.factor": str(min(3, n)),
        "transaction.state.log.replication.factor": str(min(3, n)),
        "transaction.state.log.min.isr": str(min(2, n)),
        "default.replication.factor": str(min(3, n)),
        "min.insync.replicas": str(min(2, n)),
    }

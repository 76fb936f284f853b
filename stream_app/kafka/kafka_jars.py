"""Apache Kafka's jars: which versions the tests and benchmarks run, and their
resolution by Maven (`deploy/kafka/pom.xml`) into a cache outside the work tree, once
per version, safe against concurrent runs."""

import base64
import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

log = logging.getLogger("stream_app.kafka.apache_kafka")
"""Under the name of the module that starts Kafka: one logger for all of it."""

LATEST = "4.4.0"
"""The newest 4.x line that resolves from Maven Central here."""
LINE_3 = "3.9.2"
"""The 3.9 line: the last with ZooKeeper, which many clusters still run (here in KRaft)."""
VERSIONS = {"4": LATEST, "4.4": LATEST, LATEST: LATEST, "3.9": LINE_3, LINE_3: LINE_3}
"""Names a test run may ask for (`TOKENPOOL_TEST_BROKER=kafka-3.9`) → pinned versions."""

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "deploy" / "kafka" / "pom.xml"


class KafkaUnavailable(RuntimeError):
    """Java or Maven is missing, or Maven could not resolve the broker's jars."""


def pinned(version: str) -> str:
    try:
        return VERSIONS[version]
    except KeyError:
        raise ValueError(
            f"unknown Kafka version {version!r}; tested: {LATEST}, {LINE_3}"
        ) from None


def cache_dir() -> Path:
    """Where resolved jars live: `TOKENPOOL_KAFKA_CACHE`, else `~/.cache/tokenpool/kafka`."""
    configured = os.environ.get("TOKENPOOL_KAFKA_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tokenpool" / "kafka"


def kafka_lib(version: str = LATEST) -> Path:
    """The folder of the broker's jars for `version`, resolved by Maven on first use.

    Safe to call from several processes at once: one resolves, the others wait for it.
    """
    version = pinned(version)
    base = cache_dir() / version
    lib, done = base / "lib", base / ".complete"
    if done.exists():
        return lib
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise KafkaUnavailable(
                f"Apache Kafka's broker needs `{tool}` on PATH (Java 17 and Maven: "
                "apt-get install openjdk-17-jre-headless maven)"
            )
    if not POM.is_file():
        raise KafkaUnavailable(f"no {POM}: run from a checkout of the repository")
    base.mkdir(parents=True, exist_ok=True)
    with open(base.parent / f"{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return lib
        staging = Path(tempfile.mkdtemp(prefix="lib-", dir=base))
        profile = "kafka-4" if version.startswith("4.") else "kafka-3"
        command = [
            "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-Dkafka.version={version}", f"-P{profile}",
            f"-DoutputDirectory={staging}",
        ]
        log.info("resolving Apache Kafka %s with Maven into %s", version, lib)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        jars = list(staging.glob(f"kafka_2.13-{version}.jar"))
        if result.returncode != 0 or not jars:
            shutil.rmtree(staging, ignore_errors=True)
            raise KafkaUnavailable(
                f"Maven could not resolve org.apache.kafka:kafka_2.13:{version} "
                f"(exit {result.returncode}): {(result.stdout + result.stderr)[-2000:]}"
            )
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
        done.touch()
    return lib


def random_cluster_id() -> str:
    """A KRaft cluster id as `kafka-storage random-uuid` prints it (URL-safe base64 of
    16 random bytes, no padding), without starting a JVM for it. Like Kafka's own
    `Uuid.randomUuid`, never one that starts with "-": the tools would read it as a flag."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text

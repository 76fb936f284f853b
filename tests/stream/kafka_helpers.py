"""Small Kafka clients for tests: every wait is bounded and every client is stopped.

Also how to run `kcat` against Tansu (see `kcat_env`).
"""

import asyncio
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, RecordMetadata

from stream_app.config import StreamConfig
from stream_app.kafka.topics import grants_topic

log = logging.getLogger(__name__)

Record = ConsumerRecord[bytes, bytes]
StreamConfigFactory = Callable[..., StreamConfig]
"""Type of the `stream_config` fixture: keyword overrides in, a unique config out."""


def _as_bytes(value: Any) -> bytes:
    """bytes as they are, str as UTF-8, anything else (Structs, dicts) as JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return msgspec.json.encode(value)


async def produce(
    bootstrap: str,
    topic: str,
    key: str | bytes | None,
    values: Iterable[Any],
    *,
    timeout: float = 15.0,
) -> list[RecordMetadata]:
    """Send `values` in order under one key; return once the broker acked them all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    key_bytes = None if key is None else _as_bytes(key)

    async def run() -> list[RecordMetadata]:
        await producer.start()
        sent = [await producer.send(topic, _as_bytes(v), key=key_bytes) for v in values]
        return [await fut for fut in sent]

    try:
        return await asyncio.wait_for(run(), timeout)
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str,
    topic: str,
    *,
    expect_count: int | None = None,
    idle_timeout: float = 1.0,
    timeout: float = 20.0,
) -> list[Record]:
    """Read `topic` from the beginning of every partition, without a consumer group.

    Stops at `expect_count` records (fails if fewer arrive within `timeout`), or, when
    no count is given, once no record arrived for `idle_timeout` seconds.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records: list[Record] = []
    loop = asyncio.get_running_loop()

    async def run() -> None:
        await consumer.start()
        idle_until = loop.time() + idle_timeout
        while expect_count is None or len(records) < expect_count:
            batch = await consumer.getmany(timeout_ms=100)
            got = [record for part in batch.values() for record in part]
            if got:
                records.extend(got)
                idle_until = loop.time() + idle_timeout
            elif expect_count is None and loop.time() >= idle_until:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        raise AssertionError(
            f"topic={topic}: {len(records)} of {expect_count} records within {timeout}s"
        ) from None
    finally:
        await consumer.stop()
    log.debug("consumed topic=%s records=%d", topic, len(records))
    return records


async def partition_counts(bootstrap: str, topics: Iterable[str], *,
                           timeout: float = 15.0) -> dict[str, int]:
    """Partitions per existing topic as a client sees them once it asked for the topic
    (`AIOKafkaProducer.partitions_for`: what a producer partitions by)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    wanted = list(topics)

    async def run() -> dict[str, int]:
        await admin.start()
        existing = set(await admin.list_topics())
        await producer.start()
        return {t: len(await producer.partitions_for(t)) for t in wanted if t in existing}

    try:
        return await asyncio.wait_for(run(), timeout)
    finally:
        await producer.stop()
        await admin.close()


# --------------------------------------------------------------------------- kcat

KCAT_INSTALL = "apt-get install -y kcat"
LIBRDKAFKA_TAGS_FIXED = (2, 2, 0)
"""librdkafka before 2.2.0 skips tagged fields wrongly (confluentinc/librdkafka#4278).
Tansu sends four tagged fields in its ApiVersions v3 answer (Kafka sends none, so
the bug stays hidden there), and such a kcat fails every connection with
"ApiVersionRequest failed: Local: Read underflow". Debian 12's kcat links 2.0.2."""


def kcat_path() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail(f"kcat is not on PATH: run `{KCAT_INSTALL}` (CI's .ci/run does)")
    return path


def librdkafka_version(env: dict[str, str] | None = None) -> tuple[int, ...]:
    out = subprocess.run([kcat_path(), "-V"], capture_output=True, text=True, env=env,
                         timeout=10, check=False).stdout
    match = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        pytest.fail(f"cannot read the librdkafka version from `kcat -V`: {out!r}")
    return tuple(int(part) for part in match.groups())


def kcat_env(workdir: Path) -> dict[str, str]:
    """Environment that runs kcat on a librdkafka able to talk to Tansu.

    kcat links librdkafka dynamically (soname librdkafka.so.1, a stable ABI), so when
    the system's is too old, the newer one bundled in the confluent-kafka wheel is put
    first on LD_LIBRARY_PATH under that soname. kcat itself stays Debian's.
    """
    env = dict(os.environ)
    system = librdkafka_version(env)
    if system >= LIBRDKAFKA_TAGS_FIXED:
        return env
    spec = importlib.util.find_spec("confluent_kafka")
    bundled: list[Path] = []
    if spec is not None and spec.origin is not None:
        libs = Path(spec.origin).parent.parent / "confluent_kafka.libs"
        bundled = sorted(libs.glob("librdkafka*.so*"))
    if not bundled:
        pytest.fail(
            f"kcat links librdkafka {'.'.join(map(str, system))}, older than 2.2.0, which "
            "cannot read Tansu's ApiVersions answer; install the test extras "
            "(confluent-kafka>=2.2 bundles a newer librdkafka that kcat is run with)"
        )
    libdir = workdir / "librdkafka"
    libdir.mkdir(parents=True, exist_ok=True)
    link = libdir / "librdkafka.so.1"
    link.unlink(missing_ok=True)
    link.symlink_to(bundled[0])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(libdir), env.get("LD_LIBRARY_PATH", "")) if p
    )
    used = librdkafka_version(env)
    if used < LIBRDKAFKA_TAGS_FIXED:
        pytest.fail(f"kcat still runs librdkafka {used} with {bundled[0]}")
    return env


def kcat(args: list[str], env: dict[str, str], *, stdin: str | None = None,
         timeout: float = 30.0) -> str:
    """Run kcat; fail the test with its stderr when it exits non-zero."""
    result = subprocess.run([kcat_path(), *args], input=stdin, capture_output=True,
                            text=True, env=env, timeout=timeout, check=False)
    if result.returncode != 0:
        pytest.fail(f"kcat {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result.stdout


async def decisions(config: StreamConfig, changes: set[str]) -> tuple[set[str], set[str]]:
    """Event ids granted (grants topic) and rejected, read until every one of
    `changes` is one or the other (the grants topic never idles: ledger marks)."""
    consumer = AIOKafkaConsumer(grants_topic(config), config.topics.allocation_rejected,
                                bootstrap_servers=config.broker, group_id=None,
                                auto_offset_reset="earliest")
    granted: set[str] = set()
    rejected: set[str] = set()
    await consumer.start()
    try:
        deadline = time.monotonic() + 60
        while not changes <= granted | rejected and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                for m in messages:
                    value = json.loads(m.value)
                    if tp.topic == config.topics.allocation_rejected:
                        rejected.add(value["request"]["event_id"])
                    elif value.get("kind") == "group_tokens":
                        granted.add(value["event_id"])
    finally:
        await consumer.stop()
    return granted, rejected

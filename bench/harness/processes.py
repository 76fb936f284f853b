"""The processes a benchmark starts (workers, Faust apps), their logs, and their ends."""

import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from stream_app.config import StreamConfig
from stream_app.kafka.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE = 10.0
"""Seconds a process gets to stop on SIGTERM before its process group is killed."""
SESSION_TIMEOUT = 10.0
"""Consumer group session timeout of the benchmarks' workers and Faust apps,
aiokafka's default (the worker's is 30 s; Kafka accepts 6 s and more). Tansu holds the
first JoinGroup of a new group for half of it (seen: 15 s at 30 s, 5 s at 10 s), waiting
for more members; Kafka, with no initial rebalance delay, does not. The worker's
heartbeat interval is a sixth of it."""

_LOG_TIME = re.compile(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]? ")

log = logging.getLogger("bench.processes")


def work_dir(stack: contextlib.ExitStack, keep: str | None, prefix: str) -> Path:
    """`keep` (made if need be), or a temporary folder removed when `stack` closes."""
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphan if the bench is killed


def spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL_")}
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=ROOT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after STOP_GRACE; safe when it has exited."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        log.warning("pid %d ignored SIGTERM for %.0fs: killed", proc.pid, STOP_GRACE)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in the group
    proc.wait(STOP_GRACE)


def alive_check(proc: subprocess.Popen[bytes], log_path: Path) -> Callable[[], None]:
    def check() -> None:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError(f"pid {proc.pid} exited {proc.returncode}:\n" + "\n".join(tail))

    return check


def line_time(line: str) -> float | None:
    """Wall time of a log line (Faust's `[date time,ms]` prefix, local time)."""
    m = _LOG_TIME.match(line)
    if m is None:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def log_time(path: Path, marker: str) -> float | None:
    """Wall time of the first log line containing `marker`."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if marker in line:
                t = line_time(line)
                if t is not None:
                    return t
    return None


def worker_args(config: StreamConfig, tmp: Path, port: int | None = None) -> list[str]:
    """`python -m stream_app worker` on `config`'s broker, app id, topics and guarantee,
    with the benchmarks' session timeout and a memory store."""
    t = config.topics
    return [
        sys.executable, "-m", "stream_app", "--log-level", "info", "worker",
        "--broker", config.broker, "--app-id", config.app_id, "--mode", config.mode,
        "--partitions", str(config.partitions), "--store", "memory://",
        "--guarantee", config.guarantee,
        "--session-timeout", f"{SESSION_TIMEOUT:g}s",
        "--web-host", "127.0.0.1", "--web-port", str(port or free_port()),
        "--data-dir", str(tmp / f"data-{config.app_id}"),
        "--topic-session-start", t.session_start,
        "--topic-session-heartbeat", t.session_heartbeat,
        "--topic-session-end", t.session_end,
        "--topic-allocations", t.allocations,
        "--topic-pass-consumed", t.pass_consumed,
        "--topic-pass-returned", t.pass_returned,
        "--topic-access-denied", t.access_denied,
        "--topic-allocation-rejected", t.allocation_rejected,
        "--topic-dead-letters", t.dead_letters,
    ]

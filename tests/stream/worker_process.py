"""A real `tokenpool worker` process for integration tests, and what they read from it."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from stream_app.config import StreamConfig
from stream_app.kafka.broker import _die_with_parent

READY_TIMEOUT = 60.0
"""Seconds a worker may take to join its group and own partitions."""
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_split(workers: Sequence["WorkerProcess"], timeout: float = 60.0) -> list[set[int]]:
    """Until every worker owns partitions and no partition is owned twice; returns what
    each owns."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [set((w.health() or {}).get("partitions") or ()) for w in workers]  # type: ignore[arg-type]
        if all(owned) and all(not a & b for i, a in enumerate(owned) for b in owned[i + 1:]):
            return owned
        assert time.monotonic() < deadline, f"partitions not split: {owned}"
        time.sleep(0.3)


class WorkerProcess:
    """`python -m stream_app worker` with the test's config; stopped in `stop()`."""

    def __init__(
        self, config: StreamConfig, log_dir: Path, extra: Sequence[str] = (), name: str = "w",
        env: Mapping[str, str] | None = None, port: int | None = None,
    ) -> None:
        self.config = config
        self.env = dict(env or {})
        """`TOKENPOOL_*` variables for the worker (the test's own are never passed on)."""
        self.port = port or free_port()
        self.log_path = log_dir / f"worker-{name}-{self.port}.log"
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        c = self.config
        names = c.topics
        return [
            sys.executable, "-m", "stream_app", "--log-level", "info", "worker",
            "--broker", c.broker, "--app-id", c.app_id, "--mode", c.mode,
            "--guarantee", c.guarantee,
            *(["--instance-id", c.instance_id] if c.instance_id else []),
            "--partitions", str(c.partitions), "--store", c.store,
            "--web-port", str(self.port), "--web-host", "127.0.0.1",
            "--session-timeout", "6s", "--idle-wait", "3s",
            "--data-dir", str(self.log_path.parent / f"data-{self.port}"),
            "--topic-session-start", names.session_start,
            "--topic-session-heartbeat", names.session_heartbeat,
            "--topic-session-end", names.session_end,
            "--topic-allocations", names.allocations,
            "--topic-pass-consumed", names.pass_consumed,
            "--topic-pass-returned", names.pass_returned,
            "--topic-access-denied", names.access_denied,
            "--topic-allocation-rejected", names.allocation_rejected,
            "--topic-dead-letters", names.dead_letters,
            *self.extra,
        ]

    def start(self, wait_partitions: int | None = None) -> "WorkerProcess":
        self.launch()
        try:
            self.wait_ready(wait_partitions)
        except BaseException:
            self.stop()  # a worker that never got ready must not outlive its test
            raise
        return self

    def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL_")}
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            self.args(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            start_new_session=True,
            # Killed with the test run (a CI timeout, Ctrl-C): no worker outlives it.
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        log.close()

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                data: dict[str, object] = json.loads(r.read())
                return data
        except OSError:
            return None

    def wait_ready(self, partitions: int | None = None, timeout: float = READY_TIMEOUT) -> None:
        """Until the worker serves /health and owns `partitions` partitions (if given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_tail()}")
            h = self.health()
            if h is not None and (partitions is None or len(h["partitions"]) >= partitions):  # type: ignore[arg-type]
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready in {timeout}s: {self.log_tail()}")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Parsed /metrics samples: (name, labels) → value."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                        timeout=5) as r:
                text = r.read().decode()
        except OSError as exc:
            exited = self.proc.poll() if self.proc is not None else None
            raise RuntimeError(f"no /metrics from worker (exit status {exited}): {exc}\n"
                               f"{self.log_errors()}") from exc
        samples = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
            if not m:
                continue
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(3) or "")))
            samples[(m.group(1), labels)] = float(m.group(4))
        return samples

    def pool_state(self) -> dict[str, dict[str, int]]:
        """Per group {capacity, available, in_use, open_sessions} from /metrics."""
        names = {
            "tokenpool_pool_capacity_passes": "capacity",
            "tokenpool_pool_available_passes": "available",
            "tokenpool_pool_in_use_passes": "in_use",
            "tokenpool_open_sessions": "open_sessions",
        }
        state: dict[str, dict[str, int]] = {}
        for (name, labels), value in self.metrics().items():
            if name in names:
                state.setdefault(dict(labels)["group"], {})[names[name]] = int(value)
        return state

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL of the whole process group; the exit status (None if
        never started)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        """Until the worker's log says `text`, a whole word at its end (a fact it has
        learnt: `counted=1` is not `counted=15`)."""
        deadline = time.monotonic() + timeout
        said = re.compile(re.escape(text) + r"\b")
        while said.search(self.log_text()) is None:
            assert time.monotonic() < deadline, f"{text!r} not in the log: {self.log_tail()}"
            time.sleep(0.1)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_errors(self, lines: int = 10) -> str:
        """The log's last errors, where a crash says why (its tail is the shutdown)."""
        said = [line for line in self.log_text().splitlines()
                if "[ERROR]" in line or "[CRITICAL]" in line]
        return "\n".join(said[-lines:]) or "(no error in the log)"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

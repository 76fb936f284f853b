"""The demo's worker: `python -m stream_app worker` in its own process group, started,
watched through `/health` and stopped so that nothing is left running."""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger("tokenpool.demo")

WORKER_STOP_TIMEOUT = 5.0
"""Seconds the worker gets to stop after SIGTERM. Its state lives in the demo's
in-memory broker, so a slow graceful stop buys nothing."""


# --------------------------------------------------------------------------- worker


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on it now (SO_REUSEADDR, as the worker's web
    server does: connections of a previous run in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class WorkerProcess:
    """`python -m stream_app worker` in its own process group, logging to a file."""

    def __init__(self, args: list[str], log_path: Path, web_port: int) -> None:
        self.args = args
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{web_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        from stream_app.kafka.broker import _die_with_parent

        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL_")}
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        log.info("worker started pid=%d log=%s", self.proc.pid, self.log_path)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.base_url + "/health", timeout=2) as r:
                data: dict[str, Any] = msgspec.json.decode(r.read())
                return data
        except (OSError, msgspec.DecodeError):
            return None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no worker log)"
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, timeout: float = WORKER_STOP_TIMEOUT) -> None:
        """SIGTERM the process group, SIGKILL what is left after `timeout`, reap."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not self._has_exited():
            if time.monotonic() > deadline:
                log.warning("worker still running %.0fs after SIGTERM, killing its "
                            "process group pid=%d", timeout, proc.pid)
                break
            await asyncio.sleep(0.1)
        self._signal(signal.SIGKILL)  # whatever is left in its group
        await asyncio.to_thread(proc.wait, 10)
        log.info("worker stopped pid=%d status=%s", proc.pid, proc.returncode)

    def _signal(self, sig: signal.Signals) -> None:
        """Only while the leader is unreaped, so its group id cannot have been reused."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def _has_exited(self) -> bool:
        """Exited, without reaping it (see `_signal`)."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.proc.pid,
                             os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

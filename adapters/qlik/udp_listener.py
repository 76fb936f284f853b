"""UDP receiver for the proxy's log4net user events.

A dedicated thread does nothing but `recv` into batches and hand each batch to the
event loop, so the socket is drained at the kernel's pace while the loop parses and
produces: the receiving path never waits for Kafka, and a slow broker grows the
in-memory backlog (bounded by `max_backlog`, overflow counted) instead of the
kernel's drops. Drops the kernel made anyway (receive buffer full) are read from the
socket's own counter in /proc/net/udp, so every datagram sent is accounted for.
"""

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("tokenpool.qlik.udp")

Batch = list[tuple[int, bytes]]
"""(receive time in ns since the epoch, datagram)."""

DEFAULT_RCVBUF = 16 * 1024 * 1024
_DRAIN = 2048


class UdpListener:
    def __init__(self, host: str, port: int, *, rcvbuf: int = DEFAULT_RCVBUF,
                 max_backlog: int = 2_000_000) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self._grow_buffer(rcvbuf)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self.max_backlog = max_backlog
        self.received = 0
        self.overflowed = 0
        self._handed = 0  # written by the receiving thread only
        self._done = 0  # written by the loop only
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _grow_buffer(self, size: int) -> None:
        """Ask for `size` bytes; as root past `net.core.rmem_max` (SO_RCVBUFFORCE)."""
        force = getattr(socket, "SO_RCVBUFFORCE", None)
        if force is not None:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, force, size)
                return
            except PermissionError:
                pass
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    @property
    def receive_buffer(self) -> int:
        return int(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Batch], None]) -> None:
        """Start the receiving thread; `deliver` runs on `loop` with each batch."""
        self._thread = threading.Thread(target=self._run, args=(loop, deliver),
                                        name="qlik-udp-recv", daemon=True)
        self._thread.start()
        log.info("listening for Qlik user events on udp %s:%d (receive buffer %d bytes)",
                 *self.address, self.receive_buffer)

    def taken(self, count: int) -> None:
        """The loop finished `count` datagrams of the backlog (call on the loop)."""
        self._done += count

    @property
    def backlog(self) -> int:
        """Datagrams handed to the loop and not yet processed."""
        return self._handed - self._done

    def _run(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Batch], None]) -> None:
        recv, dontwait = self.sock.recv, socket.MSG_DONTWAIT
        while not self._stop.is_set():
            try:
                first = recv(65_535)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            batch: Batch = [(time.time_ns(), first)]
            while len(batch) < _DRAIN:
                try:
                    batch.append((time.time_ns(), recv(65_535, dontwait)))
                except (BlockingIOError, InterruptedError):
                    break
            self.received += len(batch)
            if self.backlog + len(batch) > self.max_backlog:
                self.overflowed += len(batch)
                log.warning("backlog full (%d datagrams): %d dropped", self.backlog, len(batch))
                continue
            self._handed += len(batch)
            try:
                loop.call_soon_threadsafe(deliver, batch)
            except RuntimeError:  # the loop is closed: we are shutting down
                return

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket (receive buffer full); None where
        /proc/net/udp is not available."""
        inode = os.fstat(self.sock.fileno()).st_ino
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                cols = line.split()
                if len(cols) >= 13 and cols[9] == str(inode):
                    return int(cols[-1])
        return None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sock.close()

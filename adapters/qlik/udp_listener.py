"""UDP listener for the proxy's log4net user events.

The socket is bound here and drained by a separate receiving process
(`udp_receiver`) that does nothing but `recv` and forward framed datagrams over a pipe,
keeping them in memory while this process is busy. So the receiving path never waits
for parsing or for Kafka: a slow broker grows that backlog (bounded, overflow
counted) instead of the kernel's drops. Drops the kernel made anyway (receive buffer
full) are read from the socket's own counter in /proc/net/udp, so every datagram
sent is accounted for: received, dropped by the kernel, or dropped by the backlog.
"""

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("tokenpool.qlik.udp")

Batch = list[tuple[int, bytes]]
"""(receive time in ns since the epoch, datagram)."""

DEFAULT_RCVBUF = 16 * 1024 * 1024
_HEADER = 13  # kind (1) + number (8) + length (4), see udp_receiver.FRAME


class UdpListener:
    def __init__(self, host: str, port: int, *, rcvbuf: int = DEFAULT_RCVBUF) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self._grow_buffer(rcvbuf)
        self.sock.bind((host, port))
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self.received = 0
        self.overflowed = 0
        self._final_drops: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None

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

    @property
    def started(self) -> bool:
        return self._pump is not None

    async def start(self, deliver: Callable[[Batch], None]) -> None:
        """Start the receiving process; `deliver` gets each batch of datagrams."""
        fd = self.sock.fileno()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "adapters.qlik.udp_receiver", str(fd),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            pass_fds=(fd,), limit=1 << 20)
        self._pump = asyncio.create_task(self._read(deliver), name="qlik-udp-pump")
        log.info("listening for Qlik user events on udp %s:%d (receive buffer %d bytes, "
                 "receiver pid %d)", *self.address, self.receive_buffer, self._process.pid)

    async def _read(self, deliver: Callable[[Batch], None]) -> None:
        assert self._process is not None and self._process.stdout is not None
        stream = self._process.stdout
        buffer = b""
        while chunk := await stream.read(1 << 20):
            buffer += chunk
            batch: Batch = []
            at = 0
            while len(buffer) - at >= _HEADER:
                kind = buffer[at:at + 1]
                number = int.from_bytes(buffer[at + 1:at + 9], "big")
                length = int.from_bytes(buffer[at + 9:at + 13], "big")
                if len(buffer) - at - _HEADER < length:
                    break
                start = at + _HEADER
                if kind == b"D":
                    batch.append((number, buffer[start:start + length]))
                elif kind == b"O":
                    self.overflowed += number
                at = start + length
            buffer = buffer[at:]
            if batch:
                self.received += len(batch)
                deliver(batch)

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket (receive buffer full); None where
        /proc/net/udp is not available."""
        if self.sock.fileno() < 0:  # closed: the count taken when it was
            return self._final_drops
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

    async def stop(self) -> None:
        """Stop receiving; every datagram already received is delivered first."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
        if self._pump is not None:
            await self._pump
        if self._process is not None:
            code = await self._process.wait()
            if code != 0:
                log.warning("udp receiver exited with %d", code)
        if self.sock.fileno() >= 0:
            self._final_drops = self.kernel_drops()
            self.sock.close()

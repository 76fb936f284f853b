"""The receiving process of `UdpListener`: drains the UDP socket, nothing else.

Run as `python -m adapters.qlik.udp_receiver FD` with the bound socket inherited as
FD. A separate process because a receiving *thread* shares the interpreter lock with
the parsing and producing loop and waits for it after every datagram, which under a
burst is when the kernel buffer overflows. Here the socket is read as fast as the
kernel hands datagrams over; they are framed onto stdout (a pipe to the parent), and
kept in memory while the parent is busy, so the socket never waits for the parent.

Frames: kind (1 byte), 8-byte big-endian number, 4-byte length, payload. `D`: a
datagram, number = receive time in ns since the epoch. `O`: at exit, number =
datagrams dropped because the in-memory backlog was full. Standard library only.
"""

import contextlib
import os
import select
import signal
import socket
import struct
import sys
import time

FRAME = struct.Struct(">cQI")
MAX_BACKLOG = 512 * 1024 * 1024
_WRITE = 1 << 20


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.setblocking(False)
    out = sys.stdout.fileno()
    os.set_blocking(out, False)
    with contextlib.suppress(OSError, AttributeError):
        import fcntl

        fcntl.fcntl(out, fcntl.F_SETPIPE_SZ, _WRITE)
    parent = os.getppid()
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    backlog = bytearray()
    overflowed = 0
    pack, recv, now = FRAME.pack, sock.recv, time.time_ns
    while not (stopping and not backlog):
        if os.getppid() != parent:
            return 1  # the parent is gone: nobody to hand datagrams to
        readable, writable, _ = select.select([] if stopping else [sock],
                                              [out] if backlog else [], [], 0.5)
        if readable:
            for _ in range(8192):
                try:
                    data = recv(65_535)
                except (BlockingIOError, InterruptedError):
                    break
                if len(backlog) > MAX_BACKLOG:
                    overflowed += 1
                    continue
                backlog += pack(b"D", now(), len(data))
                backlog += data
        if writable:
            try:
                written = os.write(out, backlog[:_WRITE])
            except BlockingIOError:
                continue
            except BrokenPipeError:
                return 1
            del backlog[:written]
    os.set_blocking(out, True)
    with contextlib.suppress(BrokenPipeError):
        os.write(out, pack(b"O", overflowed, 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())

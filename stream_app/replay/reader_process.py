"""The replay's second process: it reads, validates and orders the file while the
first applies, sending batches of lines in merge order through a pipe."""

import gc
import multiprocessing
import threading
from array import array
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from schemas import InputEvent
from stream_app.replay.lines import _typed
from stream_app.replay.merge_order import _ordered
from stream_app.replay.report import ReplayReport


class _Batch(msgspec.Struct, array_like=True, tag=0):
    """Records released in merge order: their µs as int64s and their lines."""

    read: int
    times: bytes
    lines: bytes


class _Done(msgspec.Struct, array_like=True, tag=1):
    lines: int
    errors: list[tuple[int, str]]


class _Failed(msgspec.Struct, array_like=True, tag=2):
    error: str


_messages = msgspec.msgpack.Decoder(_Batch | _Done | _Failed)


def _read_ordered(path: str, conn: Connection) -> None:
    """The reader process: every record of `path`, validated and in merge order."""
    gc.disable()
    encode = msgspec.msgpack.Encoder().encode
    send = conn.send_bytes
    report = ReplayReport()
    try:
        for offset, released in _ordered(path, report, raw=True):
            times = array("q")
            lines = []
            for ts, line in released:
                times.append(ts)
                lines.append(line)
            if lines:
                send(encode(_Batch(offset, times.tobytes(), b"\n".join(lines))))
        send(encode(_Done(report.lines, report.errors)))
    except BaseException as exc:  # the applying process raises it
        send(encode(_Failed(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _apply_from_reader(
    path: str,
    bar: Any,
    report: ReplayReport,
    run: Callable[[list[tuple[int, InputEvent]]], None],
) -> None:
    with open(path, "rb"):  # a file that cannot be read fails here, as without a reader
        pass
    # fork is the cheap start; a process with threads (a test runner, a worker) gets
    # a fresh interpreter instead, since a fork copies locks other threads may hold.
    method = "fork" if threading.active_count() == 1 else "spawn"
    context: Any = multiprocessing.get_context(method)
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_read_ordered, args=(path, send), daemon=True,
                              name="tokenpool-replay-reader")
    process.start()
    send.close()
    decode_lines = _typed.decode_lines
    done = 0
    try:
        while True:
            try:
                message = _messages.decode(receive.recv_bytes())
            except EOFError:
                raise RuntimeError("the replay's reader process ended early") from None
            if isinstance(message, _Batch):
                times = array("q")
                times.frombytes(message.times)
                run(list(zip(times, [line.value for line in decode_lines(message.lines)],
                             strict=True)))
                if bar is not None and message.read > done:
                    bar.update(message.read - done)
                    done = message.read
            elif isinstance(message, _Done):
                report.lines += message.lines
                report.errors.extend((n, reason) for n, reason in message.errors)
                return
            else:
                raise RuntimeError(f"replay of {path} failed: {message.error}")
    finally:
        receive.close()
        if process.is_alive():
            process.terminate()
        process.join()

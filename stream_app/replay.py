"""`tokenpool replay`: run a JSON Lines history through the engine, without Kafka.

Records are merged across topics in event-time order exactly as the stream merges
them (`rules.TimestampMerge`; here a chunk at a time, `rules.BatchMerge`), so
a replay is the reference the stream must match.
A topic found to have no more records in the file is closed so that it stops
holding the merge back (`_TopicEnds`), which keeps memory bounded for time-ordered
files without a first pass over the file.
"""

import gc
import multiprocessing
import os
import sys
import threading
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import IO, Any

import msgspec

from rules import BatchMerge, Engine
from schemas import (
    INPUT_TOPICS,
    AccessDenied,
    AllocationRejected,
    InputEvent,
    PassConsumed,
    PassReturned,
    ReplayRecord,
    StateFile,
    Topic,
    from_micros,
    input_decoder,
)
from schemas.replay import AllocationLine, EndLine, HeartbeatLine, StartLine, TypedReplayLine
from schemas.timestamps import EARLIEST, EPOCH, LATEST, to_micros

NEVER = 1 << 62
"""Later than any event: the bound when there is no --until."""

OUTPUT_TOPIC: dict[type, str] = {
    PassConsumed: Topic.PASS_CONSUMED,
    PassReturned: Topic.PASS_RETURNED,
    AccessDenied: Topic.ACCESS_DENIED,
    AllocationRejected: Topic.ALLOCATION_REJECTED,
}
_RANK = {str(topic): rank for rank, topic in enumerate(INPUT_TOPICS)}
_DECODERS = [input_decoder(topic) for topic in INPUT_TOPICS]
_envelope = msgspec.json.Decoder(ReplayRecord)
_typed = msgspec.json.Decoder(TypedReplayLine)
_LINE_RANK: dict[type, int] = {
    line: _RANK[line.__struct_config__.tag]  # type: ignore[index]
    for line in (AllocationLine, StartLine, HeartbeatLine, EndLine)
}
_LINE_TYPE = sorted(_LINE_RANK, key=_LINE_RANK.__getitem__)
"""The line type of each topic rank."""
_json = msgspec.json.Encoder()
_FIRST_US = to_micros(EARLIEST)
_END_US = to_micros(LATEST)
"""Input times must lie in [_FIRST_US, _END_US) (`schemas.timestamps.out_of_range`)."""

CHUNK = 64 << 10
"""Bytes read at a time. A chunk whose lines are all `{...}` is decoded by one
`decode_lines` call (no Python work per line); any other chunk (a malformed or blank
line) is decoded line by line, so errors still name their line."""

READER_MIN_BYTES = 8 << 20
"""Files this large are read and ordered in a second process (see `replay`)."""

HOLD = 10_000
"""Records the merge may hold for a starved topic before the replay looks whether that
topic has any record left in the file (`_TopicEnds`)."""


class _TopicOnly(msgspec.Struct):
    topic: str


_topics = msgspec.json.Decoder(_TopicOnly)


class OutputLine(msgspec.Struct):
    topic: str
    value: Any


@dataclass
class ReplayReport:
    lines: int = 0
    applied: int = 0
    after_until: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    outputs: Counter[str] = field(default_factory=Counter)


def encode_outputs(events: list[Any]) -> bytes:
    """Outputs as replay-output lines, each ending in a newline (one encoder call)."""
    topic = OUTPUT_TOPIC
    return _json.encode_lines([OutputLine(topic[type(e)], e) for e in events])


def _chunks(path: str, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(file offset just past the chunk, whole lines of the file), about CHUNK bytes,
    from `start`, the first byte of a line."""
    offset = start
    rest = b""
    with open(path, "rb") as f:
        f.seek(start)
        while True:
            block = f.read(CHUNK)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                rest = block
                continue
            rest = block[cut:]
            offset += cut
            yield offset, block[:cut]
    if rest:
        yield offset + len(rest), rest


def _numbered(first: int, chunk: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of the chunk's lines that are not blank."""
    for number, line in enumerate(chunk.split(b"\n"), first):
        if line.strip():
            yield number, line


def _one_object_per_line(chunk: bytes) -> int:
    """The chunk's line count if every line starts with `{` and ends with `}`, else 0.

    `decode_lines` reads whitespace-separated values, not lines: `{..} {..}` on one line
    would be two records, and a value may span lines. When every line starts with `{`
    and ends with `}`, no value can span lines (a `}` then `{` inside a value is not
    JSON), so as many values as lines means exactly one per line. Checked with one
    count of newlines and one of `}`-newline-`{` (CRLF lines fail it: they take the
    line-by-line way, which is as correct)."""
    newlines = chunk.count(b"\n")
    if chunk.endswith(b"}\n"):
        lines = newlines
    elif chunk.endswith(b"}"):  # the file's last line, without a newline
        lines = newlines + 1
    else:
        return 0
    if chunk.startswith(b"{") and chunk.count(b"}\n{") == lines - 1:
        return lines
    return 0


def _decode_lines(
    decoder: msgspec.json.Decoder[Any], chunk: bytes, lines: int
) -> list[Any] | None:
    """Every line of the chunk decoded in one call, or None: decode line by line.
    `lines` is `_one_object_per_line(chunk)`."""
    if not lines:
        return None
    try:
        values: list[Any] = decoder.decode_lines(chunk)
    except (msgspec.DecodeError, RecursionError):  # line by line finds the bad one
        return None
    return values if len(values) == lines else None


_ESCAPE = len(INPUT_TOPICS)
"""Index of `\\u` among `_TopicEnds`'s needles, after the topic names."""


class _TopicEnds:
    """Tells whether a topic has a record past a file offset, without a pass over the
    file in the common case.

    A line of topic `t` holds the JSON string `"t"`, written out or with `\\u` escapes
    (the only way to escape a letter or `-`). So if neither the topic's name nor `\\u`
    occurs past the offset, no record of `t` does: one search from the file's end, for
    every name and the escape at once, done the first time it is asked. If an escape
    or the name (in some other string) stands in the way, the topics of the rest of
    the file are decoded once, from where the replay is."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._last: list[int] | None = None
        """Offset of the last occurrence of each topic name, then of `\\u` (-1: none)."""
        self._exact: list[int] | None = None
        """End offset of the last chunk holding each topic, from `_index`."""
        self._exact_from = 0

    def none_after(self, rank: int, offset: int) -> bool:
        if self._exact is not None and offset >= self._exact_from:
            return self._exact[rank] <= offset
        if self._last is None:
            self._last = self._rfind([str(t).encode() for t in INPUT_TOPICS] + [b"\\u"])
        if self._last[rank] < offset and self._last[_ESCAPE] < offset:
            return True
        self._index(offset)
        assert self._exact is not None
        return self._exact[rank] <= offset

    def _rfind(self, needles: list[bytes]) -> list[int]:
        """Offset of the last occurrence of each needle in the file, -1 if none: read
        once from the end, in blocks that overlap by the longest needle (not mapped:
        that would count the whole file in the process's memory)."""
        found = [-1] * len(needles)
        todo = set(range(len(needles)))
        block = 1 << 20
        overlap = max(map(len, needles)) - 1
        with open(self._path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            while end > 0 and todo:
                start = max(0, end - block)
                f.seek(start)
                data = f.read(end + overlap - start)
                backslash = b"\\" in data  # one byte: far quicker to look for first
                for i in list(todo):
                    needle = needles[i]
                    if needle.startswith(b"\\") and not backslash:
                        continue
                    at = data.rfind(needle)
                    if at >= 0:
                        found[i] = start + at
                        todo.discard(i)
                end = start
        return found

    def _index(self, offset: int) -> None:
        last = [0] * len(INPUT_TOPICS)
        rank = _RANK.get
        for end, chunk in _chunks(self._path, start=offset):
            records = _decode_lines(_topics, chunk, _one_object_per_line(chunk))
            if records is None:
                records = []
                for _, line in _numbered(0, chunk):
                    try:
                        records.append(_topics.decode(line))
                    except (msgspec.DecodeError, RecursionError):
                        continue
            for record in records:
                r = rank(record.topic)
                if r is not None:
                    last[r] = end
        self._exact, self._exact_from = last, offset


def _progress(path: str, stream: IO[str]) -> Any:
    """A progress bar over the file's bytes, on a terminal only and for large files."""
    size = os.path.getsize(path)
    if not stream.isatty() or size < 8 << 20:
        return None
    from tqdm import tqdm

    return tqdm(total=size, unit="B", unit_scale=True, desc="replay", file=stream, leave=False)


Entry = tuple[int, int, tuple[int, Any]]
"""(topic rank, µs, (µs, record)): what the merge takes; it releases the (µs, record)."""


def _typed_events(chunk: bytes, lines: int, raw: bool) -> list[Entry] | None:
    """The entries of every line of a regular chunk, decoded in one call; None if any
    line is not a valid record (the caller goes line by line). A record is the event,
    or with `raw` its line."""
    decoded: list[Any] | None = _decode_lines(_typed, chunk, lines)
    if decoded is None:
        return None
    rank_of = _LINE_RANK
    first, end = _FIRST_US, _END_US
    entries: list[Entry] = []
    append = entries.append
    for line, text in zip(decoded, chunk.split(b"\n") if raw else decoded, strict=False):
        event = line.value
        d = event.ts - EPOCH  # `to_micros`, inlined
        ts = (d.days * 86400 + d.seconds) * 1000000 + d.microseconds
        if ts < first or ts >= end:
            return None  # out of range: the line-by-line way reports it
        append((rank_of[type(line)], ts, (ts, text if raw else event)))
    return entries


def _events_by_line(first: int, chunk: bytes, report: ReplayReport, raw: bool) -> list[Entry]:
    """The entries of a chunk's valid lines, each malformed line reported with its
    number. With `raw`, a record is its line encoded again from the event."""
    events: list[Entry] = []
    rank_of = _RANK.get
    errors = report.errors
    for number, line in _numbered(first, chunk):
        report.lines += 1
        try:
            record = _envelope.decode(line)
        except RecursionError:
            errors.append((number, "not a replay record: JSON is nested too deeply"))
            continue
        except msgspec.DecodeError as exc:
            errors.append((number, f"not a replay record: {exc}"))
            continue
        rank = rank_of(record.topic)
        if rank is None:
            errors.append((number, f"unknown topic {record.topic!r}"))
            continue
        try:
            event = _DECODERS[rank].decode(record.value)
        except msgspec.DecodeError as exc:
            errors.append((number, f"invalid {record.topic} value: {exc}"))
            continue
        ts = to_micros(event.ts)
        events.append((rank, ts, (ts, _json.encode(_LINE_TYPE[rank](event)) if raw else event)))
    return events


def replay(
    path: str,
    engine: Engine,
    emit: Callable[[bytes], object],
    until: int | None = None,
    progress: IO[str] | None = None,
    reader: bool | None = None,
) -> ReplayReport:
    """Apply every record of `path` in merge order; outputs go to `emit` as blocks of
    replay-output lines, each line ending in a newline.

    With `reader` (by default: files of READER_MIN_BYTES or more, on a machine with
    more than one CPU) a second process reads, validates and orders the file while
    this one applies: the engine's half of the work no longer waits for the other.
    Both ways give the same outputs, state and report."""
    if reader is None:
        reader = (os.cpu_count() or 1) > 1 and os.path.getsize(path) >= READER_MIN_BYTES
    report = ReplayReport()
    out: list[Any] = []
    apply_all = engine.apply_all
    outputs = report.outputs

    def run(events: list[tuple[int, InputEvent]]) -> None:
        if until is not None:
            kept = [pair for pair in events if pair[0] <= until]
            report.after_until += len(events) - len(kept)
            events = kept
        apply_all(events, out)
        report.applied += len(events)
        if out:
            emit(encode_outputs(out))
            for kind, count in Counter(map(type, out)).items():
                outputs[OUTPUT_TOPIC[kind]] += count
            out.clear()

    bar = _progress(path, progress) if progress is not None else None
    # The engine's state is long-lived and makes no reference cycles; the cyclic
    # collector would only rescan it, more often as it grows (a quarter of the time on
    # a million-event replay). Reference counting still frees everything that dies.
    collecting = gc.isenabled()
    gc.disable()
    try:
        if reader:
            _apply_from_reader(path, bar, report, run)
        else:
            done = 0
            for offset, released in _ordered(path, report, raw=False):
                run(released)
                if bar is not None and offset > done:
                    bar.update(offset - done)
                    done = offset
    finally:
        if collecting:
            gc.enable()
    if until is not None:
        engine.advance(until, out)
        run([])
    if bar is not None:
        bar.close()
    report.errors.sort()
    return report


def _ordered(path: str, report: ReplayReport, raw: bool) -> Iterator[tuple[int, list[Any]]]:
    """(bytes of the file read, the (µs, record) pairs the merge releases), chunk by
    chunk. A record is its event, or with `raw` one line of JSON that `_typed`
    decodes to it."""
    merge: BatchMerge[tuple[int, Any]] = BatchMerge(len(INPUT_TOPICS))
    ends = _TopicEnds(path)
    offset = 0
    first = 1  # the chunk's first line number
    for offset, chunk in _chunks(path):
        lines = _one_object_per_line(chunk)
        entries = _typed_events(chunk, lines, raw)
        if entries is None:
            entries = _events_by_line(first, chunk, report, raw)
        else:
            report.lines += lines
        # `lines` counted the newlines of a regular chunk: its last line may have none.
        first += lines - (not chunk.endswith(b"\n")) if lines else chunk.count(b"\n")
        merge.extend(entries)
        # Releasing once a chunk gives the same order as after every line: the merge
        # only ever releases the lowest head, and later lines only add to tails.
        yield offset, merge.ready()
        if merge.pending() > HOLD:  # a topic may have ended: it must stop holding on
            for rank in merge.starved():
                if ends.none_after(rank, offset):
                    merge.close(rank)
            yield offset, merge.ready()
    yield offset, merge.flush()


# -- the reader process -----------------------------------------------------------


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


def state_file(engine: Engine, until: int | None) -> StateFile:
    as_of = until if until is not None else engine.clock()
    return StateFile(
        as_of=None if as_of is None else from_micros(as_of),
        groups=engine.summary(),
    )


def print_summary(engine: Engine, report: ReplayReport, stream: IO[str]) -> None:
    """A short human summary: what was read, what came out, where each pool stands."""
    w = stream.write
    w(
        f"replayed {report.applied} events from {report.lines} lines"
        f" ({len(report.errors)} malformed"
        + (f", {report.after_until} after --until" if report.after_until else "")
        + ")\n"
    )
    if report.outputs:
        w("outputs: " + ", ".join(f"{n} {t}" for t, n in sorted(report.outputs.items())) + "\n")
    summary = engine.summary()
    if summary:
        w(f"{'group':<24} {'capacity':>9} {'available':>10} {'in use':>8} {'open':>6}\n")
        for name, g in summary.items():
            w(f"{name:<24} {g.capacity:>9} {g.available:>10} {g.in_use:>8} {g.open_sessions:>6}\n")
    if engine.unknown_group_events:
        w(f"events for groups with no allocation: {engine.unknown_group_events}\n")


def write_state(path: str, engine: Engine, until: int | None) -> None:
    with open(path, "wb") as f:
        f.write(msgspec.json.format(msgspec.json.encode(state_file(engine, until))) + b"\n")


def default_progress() -> IO[str]:
    return sys.stderr

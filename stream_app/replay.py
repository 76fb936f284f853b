"""`tokenpool replay`: run a JSON Lines history through the engine, without Kafka.

Records are merged across topics in event-time order exactly as the stream merges
them (`rules.TimestampMerge`), so a replay is the reference the stream must match.
A first pass counts each topic's records, so a topic that has no more records stops
holding the merge back and memory stays bounded for time-ordered files.
"""

import gc
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import msgspec

from rules import Engine, TimestampMerge
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
from schemas.timestamps import EPOCH

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
_line_encoder = msgspec.json.Encoder()

CHUNK = 64 << 10
"""Bytes read at a time. A chunk whose lines are all `{...}` is decoded by one
`decode_lines` call (no Python work per line); any other chunk (a malformed or blank
line) is decoded line by line, so errors still name their line."""


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


def encode_output(event: object) -> bytes:
    """One output as a replay-output line (no newline)."""
    return _line_encoder.encode(OutputLine(OUTPUT_TOPIC[type(event)], event))


def _chunks(path: str, bar: Any = None) -> Iterator[tuple[int, bytes]]:
    """(number of the chunk's first line, whole lines of the file), about CHUNK bytes."""
    line = 1
    rest = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if bar is not None:
                bar.update(len(block))
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                rest = block
                continue
            rest = block[cut:]
            yield line, block[:cut]
            line += block.count(b"\n", 0, cut)
    if rest:
        yield line, rest


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


def _count_topics(path: str) -> tuple[list[int], list[int]]:
    """Records per input topic, and `_one_object_per_line` of each chunk (the second
    pass reads the same chunks and need not check them again)."""
    counts = [0] * len(INPUT_TOPICS)
    checked: list[int] = []
    rank = _RANK.get
    for first, chunk in _chunks(path):
        lines = _one_object_per_line(chunk)
        checked.append(lines)
        records = _decode_lines(_topics, chunk, lines)
        if records is not None:
            topics = [r.topic for r in records]
        else:
            topics = []
            for _, line in _numbered(first, chunk):
                try:
                    topics.append(_topics.decode(line).topic)
                except (msgspec.DecodeError, RecursionError):
                    continue
        for topic in topics:
            r = rank(topic)
            if r is not None:
                counts[r] += 1
    return counts, checked


def _progress(path: str, stream: IO[str]) -> Any:
    """A progress bar over the file's bytes, on a terminal only and for large files."""
    size = os.path.getsize(path)
    if not stream.isatty() or size < 8 << 20:
        return None
    from tqdm import tqdm

    return tqdm(total=size, unit="B", unit_scale=True, desc="replay", file=stream, leave=False)


def _records(
    first: int, chunk: bytes, lines: int, report: ReplayReport
) -> tuple[list[ReplayRecord], list[int] | None]:
    """The chunk's replay records and, when a line was malformed (reported here), the
    line number of each record; None means one record per line. Counts the non-blank
    lines in `report.lines`."""
    fast: list[ReplayRecord] | None = _decode_lines(_envelope, chunk, lines)
    if fast is not None:
        report.lines += len(fast)
        return fast, None
    records = []
    numbers: list[int] = []
    for number, line in _numbered(first, chunk):
        report.lines += 1
        try:
            records.append(_envelope.decode(line))
        except RecursionError:
            report.errors.append((number, "not a replay record: JSON is nested too deeply"))
            continue
        except msgspec.DecodeError as exc:
            report.errors.append((number, f"not a replay record: {exc}"))
            continue
        numbers.append(number)
    return records, numbers


def replay(
    path: str,
    engine: Engine,
    emit: Callable[[bytes], None],
    until: int | None = None,
    progress: IO[str] | None = None,
) -> ReplayReport:
    """Apply every record of `path` in merge order; outputs go to `emit` as lines."""
    report = ReplayReport()
    remaining, checked = _count_topics(path)
    merge: TimestampMerge[tuple[int, InputEvent]] = TimestampMerge(len(INPUT_TOPICS))
    for rank, count in enumerate(remaining):
        if count == 0:
            merge.close(rank)
    out: list[Any] = []
    apply = engine.apply
    last = until if until is not None else NEVER

    def run(events: Iterator[tuple[int, InputEvent]]) -> None:
        applied = 0
        for ts, event in events:
            if ts > last:
                report.after_until += 1
                continue
            apply(event, out)
            applied += 1
        report.applied += applied
        if out:
            outputs = report.outputs
            for o in out:
                emit(encode_output(o))
                outputs[OUTPUT_TOPIC[type(o)]] += 1
            out.clear()

    bar = _progress(path, progress) if progress is not None else None
    # The engine's state is long-lived and makes no reference cycles; the cyclic
    # collector would only rescan it, more often as it grows (a quarter of the time on
    # a million-event replay). Reference counting still frees everything that dies.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _replay_chunks(path, bar, report, remaining, merge, run, checked)
    finally:
        if collecting:
            gc.enable()
    if until is not None:
        engine.advance(until, out)
        run(iter(()))
    if bar is not None:
        bar.close()
    report.errors.sort()
    return report


def _replay_chunks(
    path: str,
    bar: Any,
    report: ReplayReport,
    remaining: list[int],
    merge: "TimestampMerge[tuple[int, InputEvent]]",
    run: Callable[[Iterator[tuple[int, InputEvent]]], None],
    checked: list[int],
) -> None:
    rank_of = _RANK.get
    decoders = _DECODERS
    push = merge.push
    for index, (first, chunk) in enumerate(_chunks(path, bar)):
        lines = checked[index] if index < len(checked) else _one_object_per_line(chunk)
        records, numbers = _records(first, chunk, lines, report)
        for i, record in enumerate(records):
            rank = rank_of(record.topic)
            if rank is None:
                number = _line_number(first, numbers, i)
                report.errors.append((number, f"unknown topic {record.topic!r}"))
                continue
            try:
                event = decoders[rank].decode(record.value)
            except msgspec.DecodeError as exc:
                number = _line_number(first, numbers, i)
                report.errors.append((number, f"invalid {record.topic} value: {exc}"))
            else:
                d = event.ts - EPOCH  # `to_micros`, inlined
                ts = (d.days * 86400 + d.seconds) * 1000000 + d.microseconds
                push(rank, ts, (ts, event))
            remaining[rank] -= 1
            if remaining[rank] == 0:
                merge.close(rank)
        # Draining once a chunk releases the same order as after every line: the
        # merge only ever releases the lowest head, and later lines only add to tails.
        run(merge.ready())
    run(merge.flush())


def _line_number(first: int, numbers: list[int] | None, index: int) -> int:
    return first + index if numbers is None else numbers[index]


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

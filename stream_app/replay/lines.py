"""Reading a JSON Lines history a chunk at a time, into entries for the merge.

A chunk of well-formed lines is decoded by one msgspec call; any other chunk goes line
by line, so that each malformed line is reported with its own number.
"""

from collections.abc import Iterator
from typing import Any

import msgspec

from schemas import INPUT_TOPICS, ReplayRecord, input_decoder
from schemas.replay import AllocationLine, EndLine, HeartbeatLine, StartLine, TypedReplayLine
from schemas.timestamps import EARLIEST, EPOCH, LATEST, to_micros
from stream_app.replay.report import ReplayReport

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

"""`tokenpool replay`: run a JSON Lines history through the engine, without Kafka.

Records are merged across topics in event-time order exactly as the stream merges
them (`rules.TimestampMerge`), so a replay is the reference the stream must match.
A first pass counts each topic's records, so a topic that has no more records stops
holding the merge back and memory stays bounded for time-ordered files.
"""

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
    to_micros,
)

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


def _count_topics(path: str) -> list[int]:
    counts = [0] * len(INPUT_TOPICS)
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rank = _RANK.get(_envelope.decode(line).topic)
            except (msgspec.DecodeError, RecursionError):
                continue
            if rank is not None:
                counts[rank] += 1
    return counts


def _progress(path: str, stream: IO[str]) -> Any:
    """A progress bar over the file's bytes, on a terminal only and for large files."""
    size = os.path.getsize(path)
    if not stream.isatty() or size < 8 << 20:
        return None
    from tqdm import tqdm

    return tqdm(total=size, unit="B", unit_scale=True, desc="replay", file=stream, leave=False)


def replay(
    path: str,
    engine: Engine,
    emit: Callable[[bytes], None],
    until: int | None = None,
    progress: IO[str] | None = None,
) -> ReplayReport:
    """Apply every record of `path` in merge order; outputs go to `emit` as lines."""
    report = ReplayReport()
    remaining = _count_topics(path)
    merge: TimestampMerge[InputEvent] = TimestampMerge(len(INPUT_TOPICS))
    for rank, count in enumerate(remaining):
        if count == 0:
            merge.close(rank)
    out: list[Any] = []
    apply = engine.apply

    def run(events: Iterator[InputEvent]) -> None:
        for event in events:
            if until is not None and to_micros(event.ts) > until:
                report.after_until += 1
                continue
            apply(event, out)
            report.applied += 1
        if out:
            for o in out:
                emit(encode_output(o))
                report.outputs[OUTPUT_TOPIC[type(o)]] += 1
            out.clear()

    bar = _progress(path, progress) if progress is not None else None
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if bar is not None:
                bar.update(len(line))
            if not line.strip():
                continue
            report.lines += 1
            try:
                record = _envelope.decode(line)
            except RecursionError:
                report.errors.append((number, "not a replay record: JSON is nested too deeply"))
                continue
            except msgspec.DecodeError as exc:
                report.errors.append((number, f"not a replay record: {exc}"))
                continue
            rank = _RANK.get(record.topic)
            if rank is None:
                report.errors.append((number, f"unknown topic {record.topic!r}"))
                continue
            remaining[rank] -= 1
            try:
                event = _DECODERS[rank].decode(record.value)
            except msgspec.DecodeError as exc:
                report.errors.append((number, f"invalid {record.topic} value: {exc}"))
            else:
                merge.push(rank, to_micros(event.ts), event)
            if remaining[rank] == 0:
                merge.close(rank)
            run(merge.ready())
    run(merge.flush())
    if until is not None:
        engine.advance(until, out)
        run(iter(()))
    if bar is not None:
        bar.close()
    return report


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

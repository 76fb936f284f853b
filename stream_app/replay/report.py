"""What a replay reports, and the files and lines it writes from the engine."""

from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

import msgspec

from rules import Engine
from schemas import (
    AccessDenied,
    AllocationRejected,
    PassConsumed,
    PassReturned,
    StateFile,
    Topic,
    from_micros,
)

OUTPUT_TOPIC: dict[type, str] = {
    PassConsumed: Topic.PASS_CONSUMED,
    PassReturned: Topic.PASS_RETURNED,
    AccessDenied: Topic.ACCESS_DENIED,
    AllocationRejected: Topic.ALLOCATION_REJECTED,
}
_json = msgspec.json.Encoder()


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

"""`tokenpool replay`: run a JSON Lines history through the engine, without Kafka.

Records are merged across topics in event-time order exactly as the stream merges
them (`rules.TimestampMerge`; here a chunk at a time, `rules.BatchMerge`), so
a replay is the reference the stream must match.

`lines` decodes the file a chunk at a time, `merge_order` puts its records in merge
order, `reader_process` does both in a second process for large files, and `report`
says what was read and what came out.
"""

import gc
import os
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

from rules import Engine
from schemas import InputEvent
from stream_app.replay.merge_order import _ordered
from stream_app.replay.reader_process import _apply_from_reader
from stream_app.replay.report import (
    OUTPUT_TOPIC,
    ReplayReport,
    encode_outputs,
    print_summary,
    state_file,
    write_state,
)

__all__ = ["ReplayReport", "print_summary", "replay", "state_file", "write_state"]

READER_MIN_BYTES = 8 << 20
"""Files this large are read and ordered in a second process (see `replay`)."""


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

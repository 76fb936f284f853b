"""How `replay` reads a file: the reader process, and topics that end early (SPEC §3).

Reading is an optimisation only: whichever way a file is read, every good line is
applied once, in the merge order of SPEC §3, with the same outputs, state and report.
"""

import json
import multiprocessing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from rules import BatchMerge, Engine
from stream_app import replay
from stream_app.replay import lines as replay_lines
from stream_app.replay import merge_order, reader_process
from stream_app.site.synthetic import generate, to_jsonl_lines


def site_file(tmp_path: Path, users: int = 300, days: int = 10) -> Path:
    """A synthetic site, with lines that must be skipped and one whose topic is escaped."""
    lines = [
        line.rstrip(b"\n")
        for line in to_jsonl_lines(generate(users=users, groups=5, days=days, seed=7))
    ]
    lines.insert(60, b"{not json")
    lines.insert(61, b"")
    lines.insert(500, json.dumps({"topic": "session-start", "value": {"event_id": "x"}}).encode())
    lines.insert(900, json.dumps({"topic": "nope", "value": {}}).encode())
    # `json.dumps` escapes nothing in a topic name; this line spells one with \u escapes.
    escaped = lines[1000].replace(b'"topic":"session-', b'"topic":"\\u0073ession-', 1)
    assert escaped != lines[1000]
    lines[1000] = escaped
    path = tmp_path / "site.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def run(path: Path, **kwargs: Any) -> tuple[bytes, replay.ReplayReport, bytes]:
    engine = Engine()
    emitted: list[bytes] = []
    report = replay.replay(str(path), engine, emitted.append, **kwargs)
    return b"".join(emitted), report, engine.snapshot()


def same(a: tuple[bytes, replay.ReplayReport, bytes],
         b: tuple[bytes, replay.ReplayReport, bytes]) -> None:
    assert a[0] == b[0]  # every output, ids included, in the same order
    assert a[1] == b[1]  # lines, applied, errors with their line numbers, output counts
    assert a[2] == b[2]  # the engine's whole state


@pytest.mark.parametrize("chunk", [97, 1 << 16])
def test_reader_process_gives_the_single_process_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """A second process reads, validates and orders the file; this one applies. The
    lines it sends are the file's own (or, for a chunk read line by line, the record
    encoded again), so the applied events are the same ones."""
    path = site_file(tmp_path)
    monkeypatch.setattr(replay_lines, "CHUNK", chunk)
    one = run(path, reader=False)
    two = run(path, reader=True)
    same(one, two)
    assert [n for n, _ in one[1].errors] == [61, 501, 901]
    assert one[1].applied > 4_000 and one[0]


def test_large_files_are_read_by_a_reader_process_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = site_file(tmp_path)
    started: list[str] = []
    real = replay._apply_from_reader

    def spy(*args: Any) -> None:
        started.append("reader")
        real(*args)

    monkeypatch.setattr(replay, "_apply_from_reader", spy)
    monkeypatch.setattr(replay, "READER_MIN_BYTES", path.stat().st_size + 1)
    single = run(path)
    assert started == []
    monkeypatch.setattr(replay, "READER_MIN_BYTES", path.stat().st_size)
    same(run(path), single)
    assert started == ["reader"] or multiprocessing.cpu_count() == 1


def test_a_missing_file_fails_the_same_way_with_or_without_a_reader(tmp_path: Path) -> None:
    for reader in (False, True):
        with pytest.raises(FileNotFoundError):
            run(tmp_path / "missing.jsonl", reader=reader)


def test_a_failing_reader_reports_why(tmp_path: Path) -> None:
    """The reader process sends what went wrong; the applying process raises it."""
    receive, send = multiprocessing.Pipe(duplex=False)
    reader_process._read_ordered(str(tmp_path), send)  # a directory cannot be read as a file
    message = reader_process._messages.decode(receive.recv_bytes())
    assert isinstance(message, reader_process._Failed)
    assert "IsADirectoryError" in message.error


class RecordingMerge(BatchMerge[Any]):
    most = 0

    def ready(self) -> Any:
        RecordingMerge.most = max(RecordingMerge.most, self.pending())
        return super().ready()


def backfill_file(tmp_path: Path) -> tuple[Path, int]:
    """Allocations first, then a time-ordered site: the allocations topic has nothing
    left after the first lines, and must not hold back everything after them."""
    lines = list(to_jsonl_lines(generate(users=200, groups=4, days=6, seed=3)))
    allocations = [line for line in lines if line.startswith(b'{"topic":"allocations"')]
    rest = [line for line in lines if not line.startswith(b'{"topic":"allocations"')]
    path = tmp_path / "backfill.jsonl"
    path.write_bytes(b"".join(allocations + rest))
    return path, len(lines)


@pytest.mark.parametrize("reader", [False, True])
def test_a_topic_that_has_ended_stops_holding_the_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: bool
) -> None:
    """SPEC §3: the merge waits while an open topic has nothing buffered. A topic with
    no record left in the file is closed once the merge holds HOLD records, so memory
    stays bounded; the order, and so every output, is the same as holding everything."""
    path, lines = backfill_file(tmp_path)
    monkeypatch.setattr(replay_lines, "CHUNK", 4096)
    monkeypatch.setattr(merge_order, "HOLD", lines + 1)  # never looks: holds to the end
    held = run(path, reader=False)
    monkeypatch.setattr(merge_order, "BatchMerge", RecordingMerge)
    monkeypatch.setattr(merge_order, "HOLD", 200)
    RecordingMerge.most = 0
    bounded = run(path, reader=reader)
    same(held, bounded)
    if not reader:  # the reader process's merge is not this process's to watch
        assert RecordingMerge.most < 200 + 2 * 4096 // 50  # HOLD and two chunks of lines
        assert lines > 10 * RecordingMerge.most


def ends_of(tmp_path: Path, lines: list[bytes]) -> tuple[merge_order._TopicEnds, int]:
    """`_TopicEnds` of a file whose first line is an allocation; offset past it."""
    first = b'{"topic":"allocations","value":{}}\n'
    path = tmp_path / "ends.jsonl"
    path.write_bytes(first + b"".join(line + b"\n" for line in lines))
    return merge_order._TopicEnds(str(path)), len(first)


def test_topic_ends_when_its_name_is_nowhere_after(tmp_path: Path) -> None:
    ends, offset = ends_of(tmp_path, [b'{"topic":"session-start","value":{}}'])
    assert ends.none_after(0, offset)  # allocations: none after the first line
    assert not ends.none_after(1, offset)  # session-start: one more
    assert ends.none_after(1, offset + 38)


def test_topic_name_inside_another_record_is_looked_at_exactly(tmp_path: Path) -> None:
    """The name in some other string only sends the question to the exact way: the
    topics of the rest of the file, decoded."""
    ends, offset = ends_of(tmp_path, [b'{"topic":"session-start","value":{"group":"allocations"}}'])
    assert ends.none_after(0, offset)


def test_an_escaped_topic_name_is_still_a_record_of_that_topic(tmp_path: Path) -> None:
    ends, offset = ends_of(tmp_path, [
        b'{"topic":"session-start","value":{}}',
        b'{"topic":"\\u0061llocations","value":{}}',
    ])
    assert msgspec.json.decode(b'"\\u0061llocations"') == "allocations"
    assert not ends.none_after(0, offset)

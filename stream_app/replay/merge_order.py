"""A history file's records in the stream's event-time merge order (SPEC §3).

A topic found to have no more records in the file is closed so that it stops holding
the merge back (`_TopicEnds`), which keeps memory bounded for time-ordered files
without a first pass over the file.
"""

import os
from collections.abc import Iterator
from typing import Any

import msgspec

from rules import BatchMerge
from schemas import INPUT_TOPICS
from stream_app.replay.lines import (
    _RANK,
    _chunks,
    _decode_lines,
    _events_by_line,
    _numbered,
    _one_object_per_line,
    _typed_events,
)
from stream_app.replay.report import ReplayReport

HOLD = 10_000
"""Records the merge may hold for a starved topic before the replay looks whether that
topic has any record left in the file (`_TopicEnds`)."""


class _TopicOnly(msgspec.Struct):
    topic: str


_topics = msgspec.json.Decoder(_TopicOnly)


_topics = msgspec.json.Decoder(_TopicOnly)


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

"""Event-time order across input topics, the way Kafka Streams synchronises inputs.

Each topic is its own log, so a backfill can deliver days of heartbeats before the
starts they belong to. The merge keeps one FIFO per source and releases the head with
the lowest timestamp, but only once every open source has a head (or the caller
decides a source has idled long enough). Ties go to the lower source rank, then to
arrival order. The stream and `replay` both use it, so they agree.
"""

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class TimestampMerge(Generic[T]):
    __slots__ = ("_closed", "_indexed", "_queues", "_waiting")

    def __init__(self, sources: int) -> None:
        self._queues: list[deque[tuple[int, T]]] = [deque() for _ in range(sources)]
        self._indexed = list(enumerate(self._queues))
        """(source, queue) pairs, made once: `ready` scans them for every item."""
        self._closed = [False] * sources
        self._waiting = sources
        """Open sources with an empty queue: nothing is released while any exists."""

    def push(self, source: int, ts: int, item: T) -> None:
        queue = self._queues[source]
        if not queue and not self._closed[source]:
            self._waiting -= 1
        queue.append((ts, item))

    def close(self, source: int) -> None:
        """No more items will come from `source`."""
        if not self._closed[source]:
            self._closed[source] = True
            if not self._queues[source]:
                self._waiting -= 1

    def starved(self) -> list[int]:
        """Open sources with nothing buffered: the ones the merge is waiting for."""
        return [i for i, q in enumerate(self._queues) if not q and not self._closed[i]]

    def pending(self) -> int:
        return sum(len(q) for q in self._queues)

    def ready(self) -> Iterator[T]:
        """Release items while every open source has a head."""
        queues, closed, indexed = self._queues, self._closed, self._indexed
        while self._waiting == 0:
            # `_pop`, inlined: this loop runs once per event of a replay.
            best = -1
            best_ts = 0
            for i, queue in indexed:
                if queue:
                    ts = queue[0][0]
                    if best < 0 or ts < best_ts:
                        best, best_ts = i, ts
            if best < 0:
                return
            queue = queues[best]
            head = queue.popleft()
            if not queue and not closed[best]:
                self._waiting += 1
            yield head[1]

    def flush(self) -> Iterator[T]:
        """Release everything buffered in merge order (end of input in a replay)."""
        while True:
            item = self._pop()
            if item is None:
                return
            yield item[1]

    def release_idle(self, idle: frozenset[int]) -> Iterator[T]:
        """Release as if the `idle` sources were closed, while every other open source
        still has a head: an idle timeout in a stream skips only the idle inputs."""
        queues, closed = self._queues, self._closed
        while True:
            for i, queue in enumerate(queues):
                if not queue and not closed[i] and i not in idle:
                    return
            item = self._pop()
            if item is None:
                return
            yield item[1]

    def lowest(self) -> int | None:
        """The lowest buffered timestamp, if any."""
        heads = [q[0][0] for q in self._queues if q]
        return min(heads) if heads else None

    def _pop(self) -> tuple[int, T] | None:
        best = -1
        best_ts = 0
        for i, queue in enumerate(self._queues):
            if queue and (best < 0 or queue[0][0] < best_ts):
                best, best_ts = i, queue[0][0]
        if best < 0:
            return None
        queue = self._queues[best]
        head = queue.popleft()
        if not queue and not self._closed[best]:
            self._waiting += 1
        return head

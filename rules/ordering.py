"""Event-time order across input topics, the way Kafka Streams synchronises inputs.

Each topic is its own log, so a backfill can deliver days of heartbeats before the
starts they belong to. The merge keeps one FIFO per source and releases the head with
the lowest timestamp, but only once every open source has a head (or the caller
decides a source has idled long enough). Ties go to the lower source rank, then to
arrival order. The stream and `replay` both use it, so they agree.
"""

from bisect import bisect_right
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


class BatchMerge(Generic[T]):
    """`TimestampMerge` fed a batch at a time, with the same release order, by sorting.

    While no source goes back in time, the merge's greedy release (lowest head first,
    ties to the lower source, then arrival) is a stable sort of the buffered items by
    (timestamp, source), cut after the last item of the first open source to run
    out: at the lowest of the open sources' last keys. So a batch costs one sort, not
    a scan of the heads for every item. The first item stamped before its source's
    previous one hands every queue, as it stands, to a `TimestampMerge`, which goes on
    item by item from there."""

    __slots__ = ("_closed", "_counts", "_last", "_merge", "_pending", "_sources")

    def __init__(self, sources: int) -> None:
        self._sources = sources
        self._pending: list[tuple[int, T]] = []
        """(key, item), key = ts * sources + source: sorted only when released."""
        self._last: list[int | None] = [None] * sources
        """The key of each source's latest item: its highest, while in time order."""
        self._counts = [0] * sources
        """Items buffered per source."""
        self._closed = [False] * sources
        self._merge: TimestampMerge[T] | None = None

    def extend(self, items: list[tuple[int, int, T]]) -> None:
        """Add (source, ts, item) triples, in arrival order."""
        if self._merge is not None:
            push = self._merge.push
            for source, ts, item in items:
                push(source, ts, item)
            return
        n = self._sources
        last, counts = self._last, self._counts
        append = self._pending.append
        for i, (source, ts, item) in enumerate(items):
            key = ts * n + source
            previous = last[source]
            if previous is not None and key < previous:  # back in time: item by item
                self._to_merge()
                self.extend(items[i:])
                return
            last[source] = key
            counts[source] += 1
            append((key, item))

    def close(self, source: int) -> None:
        if self._merge is not None:
            self._merge.close(source)
        self._closed[source] = True

    def starved(self) -> list[int]:
        if self._merge is not None:
            return self._merge.starved()
        closed = self._closed
        return [s for s, count in enumerate(self._counts) if not count and not closed[s]]

    def pending(self) -> int:
        return len(self._pending) if self._merge is None else self._merge.pending()

    def ready(self) -> list[T]:
        """Release items while every open source has a head."""
        if self._merge is not None:
            return list(self._merge.ready())
        bound: int | None = None
        closed, counts, last = self._closed, self._counts, self._last
        for source in range(self._sources):
            if not closed[source]:
                if not counts[source]:
                    return []  # an open source has nothing buffered: wait for it
                key = last[source]
                if bound is None or (key is not None and key < bound):
                    bound = key
        if bound is None:  # every source closed
            return self.flush()
        pending = self._pending
        pending.sort(key=_key)
        cut = bisect_right(pending, bound, key=_key)
        released = [item for _, item in pending[:cut]]
        del pending[:cut]
        n = self._sources
        counts[:] = [0] * n
        for key, _ in pending:
            counts[key % n] += 1
        return released

    def flush(self) -> list[T]:
        """Release everything buffered in merge order."""
        if self._merge is not None:
            return list(self._merge.flush())
        pending = self._pending
        pending.sort(key=_key)
        released = [item for _, item in pending]
        pending.clear()
        self._counts[:] = [0] * self._sources
        return released

    def _to_merge(self) -> None:
        merge: TimestampMerge[T] = TimestampMerge(self._sources)
        n = self._sources
        self._pending.sort(key=_key)  # stable: each source's items keep arrival order
        for key, item in self._pending:
            merge.push(key % n, key // n, item)
        self._pending.clear()
        for source, closed in enumerate(self._closed):
            if closed:
                merge.close(source)
        self._merge = merge


def _key(entry: tuple[int, object]) -> int:
    return entry[0]

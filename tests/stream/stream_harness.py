"""Feed a workload to the real worker and read back what it emitted, next to what
`tokenpool replay` gives for the same records (the reference, SPEC §6)."""

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from rules import Engine
from stream_app.config import StreamConfig
from stream_app.kafka.client import client_kwargs
from stream_app.replay import replay, state_file

OUTPUT_TOPICS = ("pass_consumed", "pass_returned", "access_denied", "allocation_rejected")
RECEIVE_TIMEOUT = 90.0
"""Seconds to wait for the worker's outputs before the test fails."""

Record = dict[str, Any]


def topic_name(config: StreamConfig, logical: str) -> str:
    return str(getattr(config.topics, logical.replace("-", "_")))


def replay_reference(records: list[Record], tmp: Path, until: int | None = None
                     ) -> tuple[dict[str, Record], dict[str, Any]]:
    """Outputs by id and final state of `tokenpool replay` on the same records (with
    `--until`, in µs: what a live worker has done by then)."""
    tmp.mkdir(parents=True, exist_ok=True)
    src = tmp / "reference.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    engine = Engine()
    lines: list[bytes] = []
    replay(str(src), engine, lines.append, until)
    outputs = {}
    for line in b"".join(lines).splitlines():
        rec = json.loads(line)
        outputs[rec["value"]["event_id"]] = rec
    return outputs, msgspec.to_builtins(state_file(engine, until).groups)


async def _produce(config: StreamConfig, records: Iterable[Record],
                   transactional_id: str | None) -> None:
    if transactional_id is None:
        producer = AIOKafkaProducer(**client_kwargs(config), linger_ms=5, acks="all")
    else:
        producer = AIOKafkaProducer(**client_kwargs(config), linger_ms=5, acks="all",
                                    transactional_id=transactional_id)
    await producer.start()
    try:
        if transactional_id is not None:
            await producer.begin_transaction()
        futures = []
        for r in records:
            value = r["value"]
            key = (value.get("group") or value.get("user_id") or "").encode()
            futures.append(await producer.send(
                topic_name(config, r["topic"]), json.dumps(value).encode(), key=key
            ))
        if transactional_id is not None:
            await producer.commit_transaction()
        for f in futures:
            await f
    finally:
        await producer.stop()


def produce(config: StreamConfig, records: Iterable[Record], *,
            transactional_id: str | None = None) -> None:
    """Produce replay-file records to their topics, keyed by group (Kafka's partitioner);
    with `transactional_id`, in one Kafka transaction (its commit marker takes an offset
    of each partition written)."""
    asyncio.run(_produce(config, list(records), transactional_id))


async def _collect(
    config: StreamConfig, expected: set[str], timeout: float, settle: float,
    read_committed: bool,
) -> dict[str, list[Record]]:
    names = {topic_name(config, t): t.replace("_", "-") for t in OUTPUT_TOPICS}
    consumer = AIOKafkaConsumer(
        *names, **client_kwargs(config), auto_offset_reset="earliest",
        group_id=None, enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    await consumer.start()
    seen: dict[str, list[Record]] = {}
    try:
        deadline = time.monotonic() + timeout
        quiet_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=250)
            for tp, messages in batch.items():
                for m in messages:
                    value = json.loads(m.value)
                    rec = {"topic": names[tp.topic], "value": value}
                    seen.setdefault(value["event_id"], []).append(rec)
            if expected <= set(seen):
                if quiet_until is None:
                    quiet_until = time.monotonic() + settle
                if not batch and time.monotonic() >= quiet_until:
                    break
    finally:
        await consumer.stop()
    return seen


def collect(
    config: StreamConfig, expected: set[str], timeout: float = RECEIVE_TIMEOUT,
    settle: float = 2.0, *, read_committed: bool | None = None,
) -> dict[str, list[Record]]:
    """Every output by id (duplicates kept), once all `expected` ids arrived and the
    topics stayed quiet for `settle` seconds more. Read as a `read_committed` consumer
    when the worker runs `exactly_once` (unless told otherwise)."""
    if read_committed is None:
        read_committed = config.guarantee == "exactly_once"
    return asyncio.run(_collect(config, expected, timeout, settle, read_committed))


def diff_outputs(got: dict, expected: dict) -> dict[str, list]:
    """What the stream emitted beyond, short of, or unlike the replay (by event id)."""
    return {
        "extra": sorted(i for i in got if i not in expected),
        "missing": sorted(i for i in expected if i not in got),
        "different": sorted(i for i, copies in got.items()
                            if i in expected and any(c != expected[i] for c in copies)),
    }


def feed_and_check(config: StreamConfig, worker: Any, records: list[Record],
                   expected: dict[str, Record], state: Any) -> None:
    """Allocations first, then the session records; every expected output arrives with
    the replay's content, and the worker ends in the replay's state."""
    produce(config, [r for r in records if r["topic"] == "allocations"])
    produce(config, [r for r in records if r["topic"] != "allocations"])
    got = collect(config, set(expected))
    assert set(got) == set(expected), worker.log_tail()
    for event_id, copies in got.items():
        assert all(c == expected[event_id] for c in copies), event_id
    assert wait_for_state(worker, state) == state


def check_against_replay(
    title: str, got: dict[str, list[Record]], expected: dict[str, Record], final: Any,
    state: Any, *, guarantee: str, show: Any, log_tail: str = "",
) -> None:
    """The run's verdict, printed on one line (`show`: pytest's capsys, so the line
    reaches the log of a passing run too), then asserted: outputs and final state equal
    to the replay's, and no output twice under exactly_once."""
    duplicates = sum(len(copies) - 1 for copies in got.values())
    diff = diff_outputs(got, expected)
    with show.disabled():
        print(f"\n{title} guarantee={guarantee} outputs={len(expected)} "
              f"duplicates_downstream={duplicates} "
              f"diff={{extra: {len(diff['extra'])}, missing: {len(diff['missing'])}, "
              f"different: {len(diff['different'])}}} state_equal={final == state}")
    examples = [f"extra {i}: {got[i][0]}" for i in diff["extra"][:3]]
    examples += [f"missing {i}: {expected[i]}" for i in diff["missing"][:3]]
    examples += [f"different {i}: {got[i]} vs {expected[i]}" for i in diff["different"][:3]]
    assert diff == {"extra": [], "missing": [], "different": []}, "\n".join(
        [*examples, log_tail])
    assert final == state
    if guarantee == "exactly_once":
        assert duplicates == 0


def wait_for_state(worker: Any, expected: dict[str, Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = worker.pool_state()
        if state == expected:
            return state
        time.sleep(0.3)
    return state


class OutputWatch:
    """Counts the distinct output ids on the output topics, from a background thread,
    so the test can kill the worker once its work reached a given point."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.ids: set[str] = set()
        self.arrivals: list[float] = []
        """Monotonic time at which each new id was seen, in order."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        topics = [topic_name(self.config, t) for t in OUTPUT_TOPICS]
        consumer = AIOKafkaConsumer(*topics, **client_kwargs(self.config),
                                    group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=50)
                now = time.monotonic()
                for messages in batch.values():
                    for m in messages:
                        event_id = json.loads(m.value)["event_id"]
                        if event_id not in self.ids:
                            self.ids.add(event_id)
                            self.arrivals.append(now)
        finally:
            await consumer.stop()

    def __enter__(self) -> "OutputWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_for(self, count: int, timeout: float = 90.0) -> int:
        deadline = time.monotonic() + timeout
        while len(self.ids) < count:
            assert time.monotonic() < deadline, f"{len(self.ids)} of {count} outputs"
            time.sleep(0.01)
        return len(self.ids)

    def longest_gap(self, since: float, until: float | None = None) -> float:
        """Longest time without a new output between `since` and the last arrival (or
        `until`): how long outputs stopped."""
        times = [t for t in self.arrivals if t >= since and (until is None or t <= until)]
        points = [since, *times]
        return max((b - a for a, b in itertools.pairwise(points)), default=0.0)


class SteadyProducer:
    """Produces records at a steady rate from a background thread, as a live site does,
    so that a fault in the middle of it lands mid-workload.

    `ordered`: each record is acknowledged before the next is sent, so the topics hold
    the records in the order sent even while a partition's leader moves. (Batched, a
    record for a partition whose leader is down waits while later records of other
    topics land: the broker then holds them out of event-time order, and the worker
    applies the waiting one late, as it must; no consumer can tell.)"""

    def __init__(self, config: StreamConfig, records: list[Record], per_second: float,
                 *, ordered: bool = False) -> None:
        self.config = config
        self.records = records
        self.per_second = per_second
        self.ordered = ordered
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._stop = threading.Event()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by join()
            self.error = exc

    async def _run(self) -> None:
        producer = AIOKafkaProducer(**client_kwargs(self.config), linger_ms=5, acks="all",
                                    request_timeout_ms=120_000)
        await producer.start()
        try:
            start = time.monotonic()
            futures = []
            for i, r in enumerate(self.records):
                if self._stop.is_set():
                    break
                wait = start + i / self.per_second - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                value = r["value"]
                key = (value.get("group") or value.get("user_id") or "").encode()
                sent = await producer.send(
                    topic_name(self.config, r["topic"]), json.dumps(value).encode(), key=key)
                if self.ordered:
                    await sent
                else:
                    futures.append(sent)
                self.sent = i + 1
            for f in futures:
                await f
        finally:
            await producer.stop()

    def start(self) -> "SteadyProducer":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Send no more records (those sent are still awaited by `join`)."""
        self._stop.set()

    def join(self, timeout: float = 300.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"producer still running after {timeout}s"
        if self.error is not None:
            raise self.error

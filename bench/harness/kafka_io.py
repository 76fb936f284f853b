"""Reading and writing the broker, and reading a worker's progress.

End offsets of what a benchmark writes come from the producer's acknowledgements, and
a topic is read to its end by the high watermark of the fetch responses (`drain`):
Tansu 0.6 answers ListOffsets(latest) with the base offset of the last batch + 1, not
the high watermark, so `consumer.end_offsets` is not used, on any broker, so that a
run does the same on each.
"""

import asyncio
import statistics
import time
import urllib.request
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.harness.cpu import CpuLog
from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics, topic_specs
from stream_app.worker.partition_task import ENDS, HEARTBEATS, STARTS, Commit, record_key

POLL = 0.2
"""Seconds between checks of committed offsets while a path runs."""

_commit = msgspec.msgpack.Decoder(Commit)


async def produce(bootstrap: str, records: Iterable[tuple[str, bytes, bytes]],
                  timeout: float) -> dict[TopicPartition, int]:
    """Write (topic, key, value) records, partitioned by key (murmur2, as Kafka's own
    clients do); return the end offset of every partition written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")

    async def run() -> dict[TopicPartition, int]:
        await producer.start()
        futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
        ends: dict[TopicPartition, int] = {}
        for meta in await asyncio.gather(*futures):
            tp = TopicPartition(meta.topic, meta.partition)
            ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
        return ends

    try:
        return await asyncio.wait_for(run(), timeout)
    finally:
        await producer.stop()


async def create_plain_topic(bootstrap: str, name: str, partitions: int) -> None:
    """A topic with the broker's default settings (a benchmark's own sink)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    await _writable(bootstrap, [name], 60.0)


async def one_record_batches(bootstrap: str, topic: str, count: int = 50) -> float:
    """Median seconds to have a one-record batch acknowledged (acks=all, linger 5 ms, as
    the worker's producer sends): what a fence record adds to a checkpoint."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        times = []
        for i in range(count):
            t0 = time.perf_counter()
            await (await producer.send(topic, b"f", key=b"%d" % i))
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        await producer.stop()


async def _writable(bootstrap: str, names: Sequence[str], timeout: float) -> None:
    """Until every partition of `names` answers ListOffsets, which its leader answers
    once it can take writes: Kafka lists a new topic's leader a moment before that, and
    a producer that comes first is answered NOT_LEADER_OR_FOLLOWER and retries. (The
    offsets answered are not used.)"""
    tps = await partitions(bootstrap, names)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await consumer.start()
        await asyncio.wait_for(consumer.end_offsets(tps), timeout)
    finally:
        await consumer.stop()


async def create_service_topics(config: StreamConfig, timeout: float = 60.0) -> None:
    """`tokenpool topics create` for `config`, then until every partition can be written."""
    await create_topics(config)
    await _writable(config.broker, [spec.name for spec in topic_specs(config)], timeout)


async def partitions(bootstrap: str, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of `topics`, from the broker's metadata of those topics (a
    consumer's metadata holds only the topics it was told of: all of them on Tansu,
    none on Kafka)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    tps = sorted(TopicPartition(d["topic"], p["partition"])
                 for d in described for p in d["partitions"])
    if {tp.topic for tp in tps} != set(topics):
        raise RuntimeError(f"no partitions of {set(topics) - {tp.topic for tp in tps}}")
    return tps


async def drain(bootstrap: str, topics: Sequence[str], timeout: float, *,
                committed: bool = False, tps: list[TopicPartition] | None = None
                ) -> list[Any]:
    """Every record now on `topics`, read from the start (no consumer group), up to each
    partition's high watermark as the fetch responses give it; call it once nothing
    writes to the topics any more. `committed`: read_committed, up to the last stable
    offset (records of aborted transactions and transaction markers left out). `tps`:
    the partitions of `topics`, when the caller has asked the broker already."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        max_poll_records=5000,
        isolation_level="read_committed" if committed else "read_uncommitted",
    )
    end = consumer.last_stable_offset if committed else consumer.highwater
    records: list[Any] = []

    async def run() -> None:
        assigned = tps or await partitions(bootstrap, topics)
        await consumer.start()
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        while True:
            batch = await consumer.getmany(timeout_ms=300)
            for messages in batch.values():
                records.extend(messages)
            behind = False
            for tp in assigned:
                last = end(tp)
                if last is None or await consumer.position(tp) < last:
                    behind = True
                    break
            if not behind and not batch:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await consumer.stop()
    return records


def scrape(port: int) -> list[Any]:
    """The samples of a worker's `/metrics`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def durable_offsets(port: int) -> dict[TopicPartition, int]:
    """The worker's `tokenpool_input_durable_offset` series: how far its durable state
    has applied each session-topic partition it owns."""
    return {TopicPartition(s.labels["topic"], int(s.labels["partition"])): int(s.value)
            for s in scrape(port) if s.name == "tokenpool_input_durable_offset"}


def checkpoint_totals(port: int) -> dict[str, float]:
    """The worker's checkpoint counters so far: `count` and `seconds` (the duration
    histogram's count and sum), `state` and `outputs` (records written)."""
    totals = {"count": 0.0, "seconds": 0.0, "state": 0.0, "outputs": 0.0}
    for s in scrape(port):
        if s.name == "tokenpool_checkpoint_duration_seconds_count":
            totals["count"] = s.value
        elif s.name == "tokenpool_checkpoint_duration_seconds_sum":
            totals["seconds"] = s.value
        elif s.name == "tokenpool_checkpoint_records_total":
            totals[s.labels["kind"]] = s.value
    return totals


async def committed_reach(
    bootstrap: str, group: str, ends: dict[TopicPartition, int], deadline: float,
    alive: Callable[[], None], cpu: CpuLog, extra: Callable[[], Awaitable[bool]] | None = None,
    worker: tuple[int, Collection[str]] | None = None, poll: float = POLL,
) -> float:
    """Wall time at which `group`'s committed offsets were first seen at `ends` (and
    `extra()`, if given, returned true). Checks every `poll` seconds until `deadline`,
    sampling `cpu` each time. With `worker` (its web port and session topic names),
    the session topics' offsets are the tokenpool worker's durable ones (it reads them
    outside the group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    port, names = worker if worker is not None else (0, ())
    sessions = {tp: e for tp, e in ends.items() if tp.topic in names}
    ends = {tp: e for tp, e in ends.items() if tp not in sessions}
    try:
        while True:
            alive()
            cpu.sample()
            done = True
            if sessions:
                try:
                    durable = await asyncio.to_thread(durable_offsets, port)
                except OSError:
                    durable = {}
                done = all(durable.get(tp, -1) >= end for tp, end in sessions.items())
            for tp, end in ends.items() if done else ():
                offset = await asyncio.wait_for(consumer.committed(tp), 10)
                if offset is None or offset < end:
                    done = False
                    break
            if done and (extra is None or await extra()):
                return time.time()
            if time.time() > deadline:
                raise TimeoutError(f"group {group}: inputs not all committed in time")
            await asyncio.sleep(poll)
    finally:
        await consumer.stop()


async def all_applied_at(cfg: StreamConfig, session_ends: dict[TopicPartition, int],
                         timeout: float) -> float:
    """Wall time of the last partition's first commit record covering every session
    input (the changelog's own timestamps: no commit-interval delay). Under
    exactly_once the changelog is read read_committed, and a record's timestamp is when
    it was sent in its transaction, a few milliseconds before the transaction
    committed."""
    want: dict[int, dict[int, int]] = {p: {} for p in range(cfg.partitions)}
    source = {cfg.topics.session_start: STARTS, cfg.topics.session_heartbeat: HEARTBEATS,
              cfg.topics.session_end: ENDS}
    for tp, end in session_ends.items():
        want[tp.partition][source[tp.topic]] = end - 1
    keys = {record_key(p, "C", "", ""): p for p in want}
    covered: dict[int, float] = {}
    changelog = await drain(cfg.broker, [f"{cfg.app_id}-state-changelog"], timeout,
                            committed=cfg.guarantee == "exactly_once")
    for m in sorted(changelog, key=lambda m: (m.partition, m.offset)):
        p = keys.get(m.key)
        if p is None or p in covered or m.value is None:
            continue
        offsets = _commit.decode(m.value).offsets
        if all(offsets.get(s, -1) >= last for s, last in want[p].items()):
            covered[p] = m.timestamp / 1000
    if len(covered) < len(want):
        raise RuntimeError(f"changelog of {cfg.app_id} lacks a final commit for partitions "
                           f"{sorted(set(want) - set(covered))}")
    return max(covered.values())

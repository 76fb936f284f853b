"""Recovery of the worker's state from its changelog vs a raw read of the same topic.

`--records` changelog records (1 000 000 by default) are made by the worker's own
checkpoint code (`PartitionTask` on the synthetic site, the writes a worker makes) and
produced to a fresh app's state changelog. Then, in the same run and on the same
broker: (a) a raw aiokafka consumer reads the topic from the start to its end, and (w)
a worker starts on it: recovery is the time from its start to its last `partition
loaded` line (restored table, engine rebuilt), minus the same for an identical app with
an empty changelog (process start, imports and group join). Goal: (w) ≤ 3x (a).

Part of `bench.state_bench` (which runs it); the records are made once and sent to
every broker of a run.
"""

import asyncio
import statistics
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.harness.cpu import cpu_seconds
from bench.harness.kafka_io import create_service_topics, drain, partitions
from bench.harness.processes import alive_check, line_time, spawn, stop, worker_args
from bench.harness.workload import unique_topics
from rules import Config
from schemas import LoginGroup, Topic
from schemas.internal import GroupTokens
from stream_app.config import StreamConfig
from stream_app.site.synthetic import DEFAULT_SEED, generate
from stream_app.worker.partition_task import ENDS, HEARTBEATS, STARTS, PartitionTask

GOAL = 3.0
PARTITIONS = 4
Records = list[tuple[int, bytes, bytes | None]]
"""(partition, key, value) of changelog writes."""


def _part(group: str, partitions: int) -> int:
    return sum(group.encode()) % partitions


def changelog_records(count: int, partitions: int = PARTITIONS) -> Records:
    """The first `count` changelog writes a worker makes on the synthetic site: each
    partition's checkpoint every 2 000 inputs, its commit record then its updates,
    exactly as `PartitionTask.checkpoint` gives them."""
    config = Config()
    tasks = [PartitionTask(p, config) for p in range(partitions)]
    source = {Topic.SESSION_START: STARTS, Topic.SESSION_HEARTBEAT: HEARTBEATS,
              Topic.SESSION_END: ENDS}
    offsets = [[0] * 4 for _ in range(partitions)]
    since = [0] * partitions
    out: Records = []
    seed = DEFAULT_SEED
    while len(out) < count:
        for topic, ev in generate(users=20_000, groups=50, days=29, seed=seed):
            if topic == Topic.ALLOCATIONS:
                if isinstance(ev, LoginGroup):  # the grant the ledger would send
                    p = _part(ev.group, partitions)
                    grant = GroupTokens(event_id=ev.event_id, ts=ev.ts, group=ev.group,
                                        tokens=ev.tokens)
                    tasks[p].offer(0, offsets[p][0], grant, None)
                    offsets[p][0] += 1
                continue
            p = _part(ev.group, partitions)
            s = source[topic]
            tasks[p].offer(s, offsets[p][s], ev, None)
            offsets[p][s] += 1
            since[p] += 1
            if since[p] >= 2000:
                since[p] = 0
                tasks[p].flush_merge()  # the grants input is idle: go on without it
                cp = tasks[p].checkpoint()
                out.append((p, *cp.commit))
                out.extend((p, k, v) for k, v in cp.updates)
                if len(out) >= count:
                    return out[:count]
        seed += 1
        tasks = [PartitionTask(p, config) for p in range(partitions)]
    return out[:count]


async def _produce_raw(broker: str, topic: str, records: Records) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=20, acks=1,
                                max_batch_size=1 << 20)
    await producer.start()
    try:
        pending = []
        for p, key, value in records:
            pending.append(await producer.send(topic, value, key=key, partition=p))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _worker_ready(cfg: StreamConfig, tmp: Path, timeout: float) -> tuple[float, float]:
    """Seconds from spawning a worker to its last partition loaded, and the CPU seconds
    it used by then."""
    log_path = tmp / f"worker-{cfg.app_id}.log"
    spawned = time.time()
    proc = spawn(worker_args(cfg, tmp), log_path)
    alive = alive_check(proc, log_path)
    try:
        while True:
            alive()
            text = log_path.read_text(errors="replace")
            if text.count("partition loaded") >= cfg.partitions:
                cpu = cpu_seconds(proc.pid)
                break
            if time.time() - spawned > timeout:
                raise TimeoutError(f"{cfg.app_id}: partitions not loaded in {timeout:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        stop(proc)
    last = 0.0
    for line in log_path.read_text(errors="replace").splitlines():
        if "partition loaded" in line:
            last = max(last, line_time(line) or 0.0)
    return last - spawned, cpu


async def recovery(broker: str, records: Records, tmp: Path,
                   timeout: float) -> dict[str, float]:
    """One run: the records on a fresh changelog, read raw, then restored by a worker."""
    tag = uuid.uuid4().hex[:8]
    full, empty = (StreamConfig(broker=broker, app_id=f"bench-{kind}-{tag}",
                                topics=unique_topics(f"{kind}-{tag}"),
                                partitions=PARTITIONS, mode="replay")
                   for kind in ("rec", "empty"))
    await create_service_topics(full)
    await create_service_topics(empty)
    topic = f"{full.app_id}-state-changelog"  # made as a worker's is
    t0 = time.perf_counter()
    await _produce_raw(broker, topic, records)
    produced = time.perf_counter() - t0
    tps = await partitions(broker, [topic])
    t0 = time.perf_counter()
    read = await drain(broker, [topic], timeout, tps=tps)
    raw = time.perf_counter() - t0
    if len(read) != len(records):
        raise RuntimeError(f"raw read got {len(read)} of {len(records)} records")
    del read
    base, base_cpu = await _worker_ready(empty, tmp, timeout)
    restored, cpu = await _worker_ready(full, tmp, timeout)
    return {"raw": raw, "startup": base, "ready": restored, "recovery": restored - base,
            "recovery_cpu": cpu - base_cpu, "produced": produced}


def report(broker_label: str, records: Records, made: float,
           runs: list[dict[str, float]]) -> tuple[list[str], float]:
    """The section's lines and (w) / (a)."""
    size = sum(len(k) + len(v or b"") for _, k, v in records)
    raw = statistics.median(r["raw"] for r in runs)
    rec = statistics.median(r["recovery"] for r in runs)
    startup = statistics.median(r["startup"] for r in runs)
    ratio = rec / raw
    return [
        f"## Recovery on {broker_label}: restoring state from the changelog vs a raw read",
        "",
        f"{len(records):,} changelog records ({size / 1e6:.1f} MB, {PARTITIONS} partitions) "
        f"made by the worker's checkpoint code in {made:.0f} s; median of "
        f"{len(runs)} runs.",
        "",
        "| path | seconds | records/s |",
        "|---|---:|---:|",
        f"| (a) raw aiokafka read of the topic | {raw:.2f} | {len(records) / raw:,.0f} |",
        f"| (w) worker recovery (ready {statistics.median(r['ready'] for r in runs):.2f}"
        f" s - empty-changelog startup {startup:.2f} s) | {rec:.2f} | "
        f"{len(records) / rec:,.0f} |",
        "",
        f"(w) / (a): **{ratio:.2f}x** (goal ≤ {GOAL:g}x): "
        f"{'met' if ratio <= GOAL else 'NOT met'}.",
        "",
    ], ratio


"""State cost in one run: changelog bytes per event, recovery time, memory per session.

1. Changelog. For pool capacities of 10, 1 000 and 100 000 passes, one group is filled
   to ~90 % (the pre-fill of `bench.engine_bench`), then the same fixed mix of starts,
   heartbeats and ends is applied (`pool_mix`). Both go through the real worker
   (`python -m stream_app worker --mode replay`, one partition) on the embedded Tansu
   broker. The changelog topics are read back after the pre-fill and again after the
   mix; the figure is the key + value bytes the mix added, divided by its events.
   Goal: under 512 bytes per event and flat (largest / smallest within 1.3x). The
   pre-fill is sent at once, a backfill the worker checkpoints in many steps.
2. Recovery. `--records` changelog records (1 000 000 by default) are made by the
   worker's own checkpoint code (`PartitionTask` on the synthetic site, the writes a
   worker makes) and produced to a fresh app's state changelog. Then, in the same run:
   (a) a raw aiokafka consumer reads the topic from the start to its end, and (w) a
   worker starts on it: recovery is the time from its start to its first `partition
   loaded` line (restored table, engine rebuilt), minus the same for an identical app
   with an empty changelog (process start, imports and group join). Goal: (w) ≤ 3x (a).
3. Memory. The engine's bytes per open session (its session, holder and the pass it
   consumed) and per pass in use (after the sessions closed and were forgotten), by
   `tracemalloc` over 20 000 of each; beside them the bytes of the same state in a
   snapshot (what a checkpoint or the changelog holds).
"""

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.engine_bench import DAY, pool_mix, pool_prefill
from bench.stream_bench import (
    CpuLog,
    alive_check,
    committed_reach,
    cpu_seconds,
    drain,
    spawn,
    stop,
    unique_topics,
    worker_args,
)
from rules import Config, Engine
from schemas import (
    InputEvent,
    Licence,
    LoginGroup,
    SessionEnd,
    SessionStart,
    Topic,
    encode,
    from_micros,
    to_micros,
)
from schemas.internal import GroupTokens
from stream_app.broker import EmbeddedBroker, free_port
from stream_app.config import StreamConfig
from stream_app.partition_task import ENDS, HEARTBEATS, STARTS, PartitionTask
from stream_app.synthetic import DEFAULT_SEED, DEFAULT_START, generate
from stream_app.topics import create_topics, session_topic_names

CHANGELOG_GOAL = 512
FLATNESS_GOAL = 1.3
RECOVERY_GOAL = 3.0

_TOPIC_OF = {SessionStart: Topic.SESSION_START, SessionEnd: Topic.SESSION_END}


def _topic(ev: InputEvent) -> str:
    if isinstance(ev, Licence | LoginGroup):
        return str(Topic.ALLOCATIONS)
    return str(_TOPIC_OF.get(type(ev), Topic.SESSION_HEARTBEAT))


async def _produce(cfg: StreamConfig, events: Sequence[InputEvent]) -> dict[Any, int]:
    """Write events keyed by group; return the end offset of every partition written."""
    producer = AIOKafkaProducer(bootstrap_servers=cfg.broker, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = []
        for ev in events:
            name = getattr(cfg.topics, _topic(ev).replace("-", "_"))
            key = (getattr(ev, "group", None) or "").encode()
            futures.append(await producer.send(name, encode(ev), key=key))
        ends: dict[Any, int] = {}
        for meta in await asyncio.gather(*futures):
            tp = (meta.topic, meta.partition)
            ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
        return ends
    finally:
        await producer.stop()


async def _changelog_bytes(cfg: StreamConfig, timeout: float) -> tuple[int, int]:
    """(records, key + value bytes) on the worker's changelog topics now."""
    names = [f"{cfg.app_id}-state-changelog", f"{cfg.app_id}-ledger-changelog"]
    records = await drain(cfg.broker, names, timeout)
    return len(records), sum(len(m.key or b"") + len(m.value or b"") for m in records)


IDLE = 5.0
"""Seconds with no input before the live events: what an idle worker writes a second
(ticks checkpoint their acknowledgements) is measured then and deducted."""
PREFILL_SLICE = 10_000
"""Pre-fill events per produce call; the worker gets them as one backfill (its
checkpoints are cut at `CHECKPOINT_UPDATES` record updates, so a burst of logins
into one group makes many checkpoints, none too large)."""


async def changelog_size(broker: str, capacity: int, mix_per_consumer: int, paced: int,
                         tmp: Path, timeout: float) -> dict[str, Any]:
    from aiokafka.structs import TopicPartition

    tag = f"cl{capacity}-{uuid.uuid4().hex[:8]}"
    cfg = StreamConfig(broker=broker, app_id=f"bench-{tag}", topics=unique_topics(tag),
                       partitions=1, mode="replay")
    await create_topics(cfg)
    group = "bench"
    m0 = to_micros(DEFAULT_START) + 40 * DAY
    prefill = pool_prefill(group, capacity, m0)
    mix = pool_mix(group, m0, mix_per_consumer)
    log_path = tmp / f"worker-{cfg.app_id}.log"
    port = free_port()
    proc = spawn(worker_args(cfg, tmp, port), log_path)
    cpu = CpuLog({"worker": proc.pid})
    worker = (port, session_topic_names(cfg))
    alive = alive_check(proc, log_path)
    try:
        ends: dict[Any, int] = {}
        for i in range(0, len(prefill), PREFILL_SLICE):
            ends.update(await _produce(cfg, prefill[i:i + PREFILL_SLICE]))
        tps = {TopicPartition(t, p): e for (t, p), e in ends.items()}
        await committed_reach(broker, cfg.app_id, tps, time.time() + timeout, alive, cpu,
                              worker=worker)
        idle0 = await _changelog_bytes(cfg, timeout)
        t_idle = time.time()
        await asyncio.sleep(IDLE)
        before = await _changelog_bytes(cfg, timeout)
        t_before = time.time()
        idle_rate = (before[1] - idle0[1]) / (t_before - t_idle)
        for ev in mix[:paced]:  # live traffic: each event applied and checkpointed alone
            ends.update(await _produce(cfg, [ev]))
            tps = {TopicPartition(t, p): e for (t, p), e in ends.items()}
            await committed_reach(broker, cfg.app_id, tps, time.time() + timeout, alive, cpu,
                              worker=worker)
        middle = await _changelog_bytes(cfg, timeout)
        paced_seconds = time.time() - t_before
        ends.update(await _produce(cfg, mix[paced:]))  # a backfill: large batches
        tps = {TopicPartition(t, p): e for (t, p), e in ends.items()}
        await committed_reach(broker, cfg.app_id, tps, time.time() + timeout, alive, cpu,
                              worker=worker)
        after = await _changelog_bytes(cfg, timeout)
    finally:
        stop(proc)
    n = len(mix) - paced
    return {
        "capacity": capacity,
        "prefill": len(prefill),
        "prefill_bytes": before[1],
        "paced": paced,
        "paced_records": middle[0] - before[0],
        "idle_rate": idle_rate,
        "live": (middle[1] - before[1] - idle_rate * paced_seconds) / paced,
        "events": n,
        "records": after[0] - middle[0],
        "backfill": (after[1] - middle[1]) / n,
    }


# -- recovery ------------------------------------------------------------------------


def _part(group: str, partitions: int) -> int:
    return sum(group.encode()) % partitions


def changelog_records(count: int, partitions: int) -> list[tuple[int, bytes, bytes | None]]:
    """(partition, key, value) of the first `count` changelog writes a worker makes on
    the synthetic site: each partition's checkpoint every 2 000 inputs, its commit
    record then its updates, exactly as `PartitionTask.checkpoint` gives them."""
    config = Config()
    tasks = [PartitionTask(p, config) for p in range(partitions)]
    source = {Topic.SESSION_START: STARTS, Topic.SESSION_HEARTBEAT: HEARTBEATS,
              Topic.SESSION_END: ENDS}
    offsets = [[0] * 4 for _ in range(partitions)]
    since = [0] * partitions
    out: list[tuple[int, bytes, bytes | None]] = []
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


async def _produce_raw(broker: str, topic: str, records: list[tuple[int, bytes, bytes | None]],
                       partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
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
            t = log_time_line(line)
            if t is not None:
                last = max(last, t)
    return last - spawned, cpu


def log_time_line(line: str) -> float | None:
    from bench.stream_bench import _LOG_TIME

    m = _LOG_TIME.match(line)
    if m is None:
        return None
    from datetime import datetime

    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


async def recovery(broker: str, records: list[tuple[int, bytes, bytes | None]],
                   partitions: int, tmp: Path, timeout: float) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    full = StreamConfig(broker=broker, app_id=f"bench-rec-{tag}",
                        topics=unique_topics(f"rec-{tag}"), partitions=partitions,
                        mode="replay")
    empty = StreamConfig(broker=broker, app_id=f"bench-empty-{tag}",
                         topics=unique_topics(f"empty-{tag}"), partitions=partitions,
                         mode="replay")
    await create_topics(full)
    await create_topics(empty)
    topic = f"{full.app_id}-state-changelog"
    t0 = time.perf_counter()
    await _produce_raw(broker, topic, records, partitions)
    produced = time.perf_counter() - t0
    t0 = time.perf_counter()
    read = await drain(broker, [topic], timeout)
    raw = time.perf_counter() - t0
    if len(read) != len(records):
        raise RuntimeError(f"raw read got {len(read)} of {len(records)} records")
    del read
    base, base_cpu = await _worker_ready(empty, tmp, timeout)
    restored, cpu = await _worker_ready(full, tmp, timeout)
    return {"raw": raw, "startup": base, "ready": restored, "recovery": restored - base,
            "recovery_cpu": cpu - base_cpu, "produced": produced}


# -- memory --------------------------------------------------------------------------


def memory(n: int = 20_000) -> dict[str, float]:
    """Bytes per open session and per pass in use, in memory and in a snapshot."""
    t0 = to_micros(DEFAULT_START)
    out: list[Any] = []

    def fresh() -> Engine:
        e = Engine()
        e.apply(Licence(event_id="l", ts=from_micros(t0), total_tokens=n), out)
        e.apply(LoginGroup(event_id="g", ts=from_micros(t0), group="g", tokens=n), out)
        return e

    starts = [SessionStart(event_id=f"e{i}", ts=from_micros(t0 + i), group="g",
                           session_id=f"session-{i:08d}", user_id=f"user-{i:08d}")
              for i in range(n)]
    figures: dict[str, float] = {}
    for what in ("session", "pass"):
        engine = fresh()
        empty_snapshot = len(engine.snapshot())
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for ev in starts:
            engine.apply(ev, out)
        out.clear()
        if what == "pass":  # sessions time out, windows end, closed sessions forgotten
            engine.advance(t0 + n + 2 * DAY, out)
            out.clear()
            assert engine.pools["g"].record.in_use == n and not engine.pools["g"].sessions
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        figures[f"{what}_memory"] = (after - before) / n
        figures[f"{what}_snapshot"] = (len(engine.snapshot()) - empty_snapshot) / n
    return figures


# -- report --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[list[str], dict[str, float]]:
    """The report's lines and its headline figures."""
    lines: list[str] = []
    mem = memory()
    lines += [
        "## Memory: worker state per open session and per pass in use",
        "",
        "Engine state measured with tracemalloc over 20 000 of each; snapshot = the "
        "same state as stored (msgpack).",
        "",
        "| what | bytes in memory | bytes in a snapshot |",
        "|---|---:|---:|",
        f"| one open session (its session, holder and the pass it consumed) | "
        f"{mem['session_memory']:,.0f} | {mem['session_snapshot']:,.0f} |",
        f"| one pass in use (sessions closed and forgotten, the pass not yet back) | "
        f"{mem['pass_memory']:,.0f} | {mem['pass_snapshot']:,.0f} |",
        "",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory(prefix="state-bench-") as d:
        tmp = Path(d)
        with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
            rows = []
            live: list[float] = []
            backfill: list[float] = []
            for capacity in args.sizes:
                runs = [asyncio.run(changelog_size(broker.bootstrap, capacity,
                                                   args.mix_per_consumer, args.paced, tmp,
                                                   args.timeout))
                        for _ in range(args.changelog_runs)]
                r = runs[0]
                live.append(statistics.median(x["live"] for x in runs))
                backfill.append(statistics.median(x["backfill"] for x in runs))
                rows.append(f"| {capacity:,} | {r['prefill']:,} | {r['prefill_bytes']:,} | "
                            f"{r['idle_rate']:,.0f} | "
                            f"{r['paced']:,} | {r['paced_records']:,} | **{live[-1]:,.0f}** | "
                            f"{r['events']:,} | {r['records']:,} | **{backfill[-1]:,.0f}** |")
                print(rows[-1], flush=True)
            spread = max(max(live) / min(live), max(backfill) / min(backfill))
            worst = max(live + backfill)
            part = [
                "## Changelog: bytes written per input event vs pool size",
                "",
                "The real worker on the embedded Tansu broker, one partition; key + value "
                "bytes read back from its changelog topics (state and ledger) after the "
                "pre-fill, after the first events of the mix sent one at a time (live "
                "traffic: each sent once the previous one is committed, so one "
                "checkpoint per event; what the idle worker writes meanwhile, measured "
                f"over {IDLE:g} s before, is deducted) and after the rest "
                "of the mix sent at once (a backfill: a checkpoint writes each touched "
                "record once per batch). The mix is the same at every size.",
                "",
                "| capacity (passes) | pre-fill events | pre-fill changelog bytes | "
                "idle bytes/s | live events | records | bytes / event | backfill events | "
                "records | bytes / event |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                *rows,
                "",
                f"Largest {worst:,.0f} bytes per event (goal < {CHANGELOG_GOAL}): "
                f"{'met' if worst < CHANGELOG_GOAL else 'NOT met'}; largest / smallest "
                f"**{spread:.2f}x** (flat: ≤ {FLATNESS_GOAL}x): "
                f"{'met' if spread <= FLATNESS_GOAL else 'NOT met'}.",
                "",
            ]
            lines += part
            t0 = time.perf_counter()
            records = changelog_records(args.records, 4)
            made = time.perf_counter() - t0
            size = sum(len(k) + len(v or b"") for _, k, v in records)
            recs = [asyncio.run(recovery(broker.bootstrap, records, 4, tmp, args.timeout))
                    for _ in range(args.recovery_runs)]
            raw = statistics.median(r["raw"] for r in recs)
            rec = statistics.median(r["recovery"] for r in recs)
            startup = statistics.median(r["startup"] for r in recs)
            ratio = rec / raw
            part = [
                "## Recovery: restoring state from the changelog vs a raw read",
                "",
                f"{len(records):,} changelog records ({size / 1e6:.1f} MB, 4 partitions) "
                f"made by the worker's checkpoint code in {made:.0f} s; median of "
                f"{len(recs)} runs.",
                "",
                "| path | seconds | records/s |",
                "|---|---:|---:|",
                f"| (a) raw aiokafka read of the topic | {raw:.2f} | {len(records) / raw:,.0f} |",
                f"| (w) worker recovery (ready {statistics.median(r['ready'] for r in recs):.2f}"
                f" s - empty-changelog startup {startup:.2f} s) | {rec:.2f} | "
                f"{len(records) / rec:,.0f} |",
                "",
                f"(w) / (a): **{ratio:.2f}x** (goal ≤ {RECOVERY_GOAL:g}x): "
                f"{'met' if ratio <= RECOVERY_GOAL else 'NOT met'}.",
                "",
            ]
            lines += part
            print("\n".join(part), flush=True)
    figures = {"worst": worst, "spread": spread, "recovery": ratio,
               "session": mem["session_memory"], "pass": mem["pass_memory"]}
    return lines, figures


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                    default=[10, 1_000, 100_000], help="pool capacities in passes")
    ap.add_argument("--mix-per-consumer", type=int, default=600,
                    help="changelog mix events per consuming holder (8 holders)")
    ap.add_argument("--paced", type=int, default=50,
                    help="mix events sent one at a time (live traffic)")
    ap.add_argument("--changelog-runs", type=int, default=1)
    ap.add_argument("--records", type=int, default=1_000_000,
                    help="changelog records for the recovery benchmark")
    ap.add_argument("--recovery-runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600.0)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.state_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(ap)
    ap.add_argument("--out", help="also write the markdown report to this file")
    args = ap.parse_args(argv)
    lines, _ = run(args)
    if args.out:
        Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

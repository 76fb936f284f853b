"""State cost in one run: changelog bytes per event, checkpoint cost, recovery time,
memory per session, on one broker (`--broker tansu|kafka|kafka-3.9`).

1. Changelog. For pool capacities of 10, 1 000 and 100 000 passes, one group is filled
   to ~90 % (the pre-fill of `bench.engine_bench`), then the same fixed mix of starts,
   heartbeats and ends is applied (`pool_mix`). Both go through the real worker
   (`python -m stream_app worker --mode replay`, one partition). The changelog topics
   are read back after the pre-fill and again after the mix; the figure is the key +
   value bytes the mix added, divided by its events. Goal: under 512 bytes per event
   and flat (largest / smallest within 1.3x). The pre-fill is sent at once, a backfill
   the worker checkpoints in many steps.
2. Checkpoint cost, from the same runs: the worker's `/metrics` before and after each
   part of the mix (`tokenpool_checkpoint_duration_seconds`,
   `tokenpool_checkpoint_records_total{kind="state"}`) give the checkpoints, their mean
   duration and the state records (commit and updates) each wrote; the records and
   bytes read back from the changelogs per checkpoint show what else a checkpoint adds
   there (on Tansu the worker ends each one with a one-record fence batch; not on
   Kafka). On Kafka the smallest size runs once more under `--guarantee exactly_once`
   (one transaction per checkpoint; the changelogs read read_committed).
3. Recovery (`bench.recovery_bench`): a worker restoring a 1 000 000-record changelog
   vs a raw aiokafka read of the same topic. Goal: ≤ 3x.
4. Memory (broker-independent). The engine's bytes per open session (its session,
   holder and the pass it consumed) and per pass in use (after the sessions closed and
   were forgotten), by `tracemalloc` over 20 000 of each; beside them the bytes of the
   same state in a snapshot (what a checkpoint or the changelog holds).
"""

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka.structs import TopicPartition

from bench import recovery_bench
from bench.harness import brokers
from bench.harness.cpu import CpuLog
from bench.harness.kafka_io import (
    checkpoint_totals,
    committed_reach,
    create_plain_topic,
    create_service_topics,
    drain,
    one_record_batches,
    produce,
)
from bench.harness.pool_workload import DAY, pool_mix, pool_prefill
from bench.harness.processes import alive_check, spawn, stop, work_dir, worker_args
from bench.harness.workload import topic_name, unique_topics
from bench.state_report import changelog_lines, checkpoint_lines, memory_lines
from rules import Engine
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
from stream_app.config import Guarantee, StreamConfig
from stream_app.kafka.broker import free_port
from stream_app.kafka.topics import session_topic_names
from stream_app.site.synthetic import DEFAULT_START
from stream_app.worker.checkpoints import FENCE_KEY_KIND
from stream_app.worker.partition_task import record_key

_TOPIC_OF = {SessionStart: Topic.SESSION_START, SessionEnd: Topic.SESSION_END}
IDLE = 5.0
"""Seconds with no input before the live events: what an idle worker writes a second
(ticks checkpoint their acknowledgements) is measured then and deducted."""
PREFILL_SLICE = 10_000
"""Pre-fill events per produce call; the worker gets them as one backfill (its
checkpoints are cut at `CHECKPOINT_UPDATES` record updates, so a burst of logins
into one group makes many checkpoints, none too large)."""


def _topic(ev: InputEvent) -> str:
    if isinstance(ev, Licence | LoginGroup):
        return str(Topic.ALLOCATIONS)
    return str(_TOPIC_OF.get(type(ev), Topic.SESSION_HEARTBEAT))


async def _produce(cfg: StreamConfig, events: Sequence[InputEvent],
                   timeout: float) -> dict[TopicPartition, int]:
    """Write events keyed by group; return the end offset of every partition written."""
    return await produce(cfg.broker, [
        (topic_name(cfg, _topic(ev)), (getattr(ev, "group", None) or "").encode(), encode(ev))
        for ev in events], timeout)


class Changelog(NamedTuple):
    """What the worker's changelog topics (state and ledger) hold: records, key + value
    bytes, and among the records the commit records and the fence records."""

    records: int
    bytes: int
    commits: int
    fences: int

    def __sub__(self, other: "Changelog") -> "Changelog":
        return Changelog(*(a - b for a, b in zip(self, other, strict=True)))


async def _changelog(cfg: StreamConfig, timeout: float) -> Changelog:
    names = [f"{cfg.app_id}-state-changelog", f"{cfg.app_id}-ledger-changelog"]
    records = await drain(cfg.broker, names, timeout,
                          committed=cfg.guarantee == "exactly_once")
    keys = Counter(m.key for m in records)
    return Changelog(len(records), sum(len(m.key or b"") + len(m.value or b"") for m in records),
                     keys[record_key(0, "C", "", "")], keys[record_key(0, FENCE_KEY_KIND, "", "")])


def _checkpoints(before: dict[str, float], after: dict[str, float],
                 changelog: Changelog) -> dict[str, float]:
    """The checkpoints that wrote state between two `checkpoint_totals` (one commit
    record each), and their cost. The duration histogram also counts checkpoints with
    nothing to write (ticks acknowledged, no state changed), which return at once."""
    n = changelog.commits
    per = 1 / n if n else float("nan")
    return {"all": after["count"] - before["count"], "checkpoints": n,
            "seconds": (after["seconds"] - before["seconds"]) * per,
            "state": (after["state"] - before["state"]) * per,
            "fences": changelog.fences * per, "records": changelog.records * per,
            "bytes": changelog.bytes * per}


async def changelog_size(broker: str, capacity: int, mix_per_consumer: int, paced: int,
                         tmp: Path, timeout: float,
                         guarantee: Guarantee = "at_least_once") -> dict[str, Any]:
    tag = f"cl{capacity}-{uuid.uuid4().hex[:8]}"
    cfg = StreamConfig(broker=broker, app_id=f"bench-{tag}", topics=unique_topics(tag),
                       partitions=1, mode="replay", guarantee=guarantee)
    await create_service_topics(cfg)
    group = "bench"
    m0 = to_micros(DEFAULT_START) + 40 * DAY
    prefill = pool_prefill(group, capacity, m0)
    mix = pool_mix(group, m0, mix_per_consumer)
    log_path = tmp / f"worker-{cfg.app_id}.log"
    port = free_port()
    proc = spawn(worker_args(cfg, tmp, port), log_path)
    cpu = CpuLog({"worker": proc.pid})
    alive = alive_check(proc, log_path)
    ends: dict[TopicPartition, int] = {}

    async def applied() -> None:
        await committed_reach(broker, cfg.app_id, ends, time.time() + timeout, alive, cpu,
                              worker=(port, session_topic_names(cfg)))

    try:
        for i in range(0, len(prefill), PREFILL_SLICE):
            ends.update(await _produce(cfg, prefill[i:i + PREFILL_SLICE], timeout))
        await applied()
        idle0 = await _changelog(cfg, timeout)
        t_idle = time.time()
        await asyncio.sleep(IDLE)
        before = await _changelog(cfg, timeout)
        t_before = time.time()
        idle_rate = (before.bytes - idle0.bytes) / (t_before - t_idle)
        totals0 = checkpoint_totals(port)
        for ev in mix[:paced]:  # live traffic: each event applied and checkpointed alone
            ends.update(await _produce(cfg, [ev], timeout))
            await applied()
        middle = await _changelog(cfg, timeout)
        totals1 = checkpoint_totals(port)
        paced_seconds = time.time() - t_before
        ends.update(await _produce(cfg, mix[paced:], timeout))  # a backfill: large batches
        await applied()
        after = await _changelog(cfg, timeout)
        totals2 = checkpoint_totals(port)
    finally:
        stop(proc)
    n = len(mix) - paced
    return {
        "capacity": capacity,
        "guarantee": guarantee,
        "prefill": len(prefill),
        "prefill_bytes": before.bytes,
        "paced": paced,
        "paced_records": (middle - before).records,
        "idle_rate": idle_rate,
        "live": ((middle - before).bytes - idle_rate * paced_seconds) / paced,
        "events": n,
        "records": (after - middle).records,
        "backfill": (after - middle).bytes / n,
        "live_checkpoints": _checkpoints(totals0, totals1, middle - before),
        "backfill_checkpoints": _checkpoints(totals1, totals2, after - middle),
    }


def changelog_part(args: argparse.Namespace, broker: brokers.Broker,
                   tmp: Path) -> tuple[list[str], dict[str, float]]:
    """Changelog bytes and checkpoint cost on `broker`, every size (and exactly_once at
    the smallest, on Kafka)."""
    rows = []
    for capacity in args.sizes:
        runs = [asyncio.run(changelog_size(broker.bootstrap, capacity, args.mix_per_consumer,
                                           args.paced, tmp, args.timeout))
                for _ in range(args.changelog_runs)]
        rows.append(runs)
        print(f"capacity {capacity:,}: {statistics.median(r['live'] for r in runs):,.0f} "
              "bytes/event live", flush=True)
    if broker.is_kafka:
        rows.append([asyncio.run(changelog_size(
            broker.bootstrap, args.sizes[0], args.mix_per_consumer, args.paced, tmp,
            args.timeout, guarantee="exactly_once"))])
    topic = f"bench-fence-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_plain_topic(broker.bootstrap, topic, 1))
    fence = asyncio.run(one_record_batches(broker.bootstrap, topic))
    lines, figures = changelog_lines(broker.label, rows)
    more, cost = checkpoint_lines(broker.label, rows, fence)
    return lines + more, figures | cost | {"fence_seconds": fence}


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


# -- the parts -----------------------------------------------------------------------


def memory_part() -> tuple[list[str], dict[str, float]]:
    mem = memory()
    lines = memory_lines(mem)
    print("\n".join(lines), flush=True)
    return lines, {"session": mem["session_memory"], "pass": mem["pass_memory"]}


def recovery_records(args: argparse.Namespace) -> tuple[recovery_bench.Records, float]:
    """The changelog records of the recovery benchmark, and the seconds to make them."""
    t0 = time.perf_counter()
    records = recovery_bench.changelog_records(args.records)
    return records, time.perf_counter() - t0


def broker_part(args: argparse.Namespace, choice: str, records: recovery_bench.Records,
                made: float) -> tuple[list[str], dict[str, float]]:
    """Changelog, checkpoint cost and recovery on the broker `choice`, started for them."""
    with contextlib.ExitStack() as stack:
        tmp = work_dir(stack, args.keep, "state-bench-")
        broker = stack.enter_context(brokers.running(choice, tmp))
        lines, figures = changelog_part(args, broker, tmp)
        print("\n".join(lines), flush=True)
        runs = [asyncio.run(recovery_bench.recovery(broker.bootstrap, records, tmp,
                                                    args.timeout))
                for _ in range(args.recovery_runs)]
        part, figures["recovery"] = recovery_bench.report(broker.label, records, made, runs)
        print("\n".join(part), flush=True)
    return lines + part, figures


def run(args: argparse.Namespace) -> tuple[list[str], dict[str, float]]:
    """Memory, then everything on `args.broker`: the report's lines and its figures."""
    lines, figures = memory_part()
    records, made = recovery_records(args)
    more, on_broker = broker_part(args, args.broker, records, made)
    return lines + more, figures | on_broker


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
    ap.add_argument("--keep", help="keep worker logs and the broker's logs in this directory")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.state_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(ap)
    brokers.add_arg(ap)
    ap.add_argument("--out", help="also write the markdown report to this file")
    args = ap.parse_args(argv)
    lines, _ = run(args)
    if args.out:
        Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

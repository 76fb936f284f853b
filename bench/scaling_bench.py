"""How throughput grows with workers: the same traffic through 1 and 2 workers.

A synthetic site (as in `bench.stream_bench`, keyed by group) goes to fresh topics
with `--partitions` partitions AFTER the workers have joined the group and split the
partitions between them, so no rebalance falls inside the measurement (on Tansu the
workers start one after the other: members joining at the same moment can be handed
the same generation). Measured per run and worker count: from the first record sent
until every session partition's changelog holds a commit record covering its last
input; the CPU seconds of each worker over that span. The order of the worker counts
rotates from run to run; the figure is the median.

`python -m bench.scaling_bench [--broker B] [--events N] [--runs K] [--partitions P]
[--out FILE]`, on the embedded Tansu or on one Apache Kafka node (`--broker kafka`).
"""

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import brokers
from bench.harness.cpu import cpu_seconds
from bench.harness.kafka_io import all_applied_at, create_service_topics
from bench.harness.processes import alive_check, spawn, stop, work_dir, worker_args
from bench.harness.report import machine_line
from bench.harness.workload import Workload, build_workload, produce_workload, unique_topics
from bench.harness.workload import add_args as add_workload_args
from stream_app.config import StreamConfig
from stream_app.kafka.topics import session_topic_names

log = logging.getLogger("bench.scaling")
WORKER_COUNTS = (1, 2)


def _health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            health: dict[str, Any] = json.loads(r.read())
            return health
    except OSError:
        return None


def _port(args: list[str]) -> int:
    return int(args[args.index("--web-port") + 1])


async def _wait_split(ports: list[int], partitions: int, alive: list[Any],
                      timeout: float) -> None:
    """Until the workers own disjoint partitions that together are all of them."""
    deadline = time.monotonic() + timeout
    while True:
        for check in alive:
            check()
        owned = [set((_health(p) or {}).get("partitions") or ()) for p in ports]
        union = set().union(*owned)
        if (all(owned) and len(union) == partitions
                and sum(len(o) for o in owned) == partitions):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"partitions not split between the workers: {owned}")
        await asyncio.sleep(0.3)


async def one(broker: str, work: Workload, workers: int, partitions: int, tmp: Path,
              timeout: float) -> dict[str, float]:
    tag = uuid.uuid4().hex[:10]
    cfg = StreamConfig(broker=broker, app_id=f"scale-{tag}", topics=unique_topics(tag),
                       partitions=partitions, mode="replay")
    await create_service_topics(cfg)
    procs = []
    try:
        ports: list[int] = []
        checks: list[Any] = []
        for n in range(workers):
            args = worker_args(cfg, tmp)
            log_path = tmp / f"worker-{cfg.app_id}-{n}.log"
            procs.append(spawn(args, log_path))
            ports.append(_port(args))
            checks.append(alive_check(procs[-1], log_path))
            # One after the other: each joins a settled group.
            await _wait_split(ports, partitions, checks, timeout)
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        t0 = time.time()
        ends = await produce_workload(cfg, work, timeout)
        sent = time.time() - t0
        names = set(session_topic_names(cfg))
        session_ends = {tp: e for tp, e in ends.items() if tp.topic in names}
        deadline = time.monotonic() + timeout
        while True:
            for check in checks:
                check()
            try:
                done = await all_applied_at(cfg, session_ends, 30)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
        cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
    finally:
        for p in procs:
            stop(p)
    return {"seconds": done - t0, "send": sent, "cpu": sum(cpu), "cpu_max": max(cpu)}


def report(args: argparse.Namespace, work: Workload,
           results: dict[int, list[dict[str, float]]],
           orders: list[list[int]]) -> tuple[list[str], dict[str, float]]:
    lines = [
        f"## Scaling on {brokers.label(args.broker)}: 1 and 2 workers",
        "",
        machine_line(args.runs, args.broker),
        "",
        f"{work.sessions:,} session records ({sum(work.counts.values()):,} records in all, "
        f"{work.users:,} users, {args.groups} groups) on {args.partitions} partitions, sent "
        "once the workers have split the partitions; median of "
        f"{args.runs} runs (orders {', '.join(''.join(map(str, o)) for o in orders)}).",
        "",
        "| workers | seconds, first record sent → all applied | session events/s | "
        "sending alone, s | worker CPU s (sum) | busiest worker CPU s | vs 1 worker |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = statistics.median(r["seconds"] for r in results[1])
    figures: dict[str, float] = {}
    for workers in WORKER_COUNTS:
        rs = results[workers]
        secs = statistics.median(r["seconds"] for r in rs)
        figures[f"{workers}"] = work.sessions / secs
        figures[f"{workers}x"] = base / secs
        lines.append(
            f"| {workers} | {secs:.2f} | {work.sessions / secs:,.0f} | "
            f"{statistics.median(r['send'] for r in rs):.2f} | "
            f"{statistics.median(r['cpu'] for r in rs):.1f} | "
            f"{statistics.median(r['cpu_max'] for r in rs):.1f} | {base / secs:.2f}x |"
        )
    return lines, figures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.scaling_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_args(ap, events=50_000)
    brokers.add_arg(ap)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--out", help="also write the markdown report to this file")
    ap.add_argument("--keep", help="keep worker logs and the broker's logs in this directory")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[list[str], dict[str, float]]:
    """The report's lines and its figures: session events/s with `1` and `2` workers,
    and `1x`, `2x` against one worker."""
    with contextlib.ExitStack() as stack:
        tmp = work_dir(stack, args.keep, "scaling-bench-")
        work = build_workload(args, tmp)
        broker = stack.enter_context(brokers.running(args.broker, tmp))
        results: dict[int, list[dict[str, float]]] = {n: [] for n in WORKER_COUNTS}
        orders: list[list[int]] = []
        for i in range(args.runs):
            order = list(WORKER_COUNTS[i % 2:] + WORKER_COUNTS[:i % 2])
            orders.append(order)
            for workers in order:
                r = asyncio.run(one(broker.bootstrap, work, workers, args.partitions, tmp,
                                    args.timeout))
                results[workers].append(r)
                print(f"run {i + 1}: {workers} worker(s): {r['seconds']:.2f} s, "
                      f"{work.sessions / r['seconds']:,.0f} ev/s, CPU {r['cpu']:.1f} s",
                      flush=True)
    return report(args, work, results, orders)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    lines, _ = run(args)
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Streaming cost in one run: the tokenpool worker beside a forward-only Faust agent and
a raw aiokafka loop, on one broker (`--broker tansu|kafka|kafka-3.9`), for the same
backfill.

A synthetic site (`stream_app.site.synthetic.generate`, ~`--events` events, 50 groups, four
weeks) is written to fresh topics with 4 partitions, keyed by group, BEFORE any consumer
starts (a backfill). In every run the paths then read the same session records, one
after the other (the order rotates from run to run); meanwhile this process only checks
how far each has got: the group's committed offsets every 0.2 s, and for the worker's
session topics (which it reads outside the group) the durable offsets on its `/metrics`
every second:

(w) the tokenpool worker, `python -m stream_app worker --mode replay`, a subprocess with
    a fresh app id (so a fresh consumer group, tables and internal topics) and fresh
    source and sink topics per run. It also reads the allocations (51 records).
(e) on Apache Kafka: the same worker with `--guarantee exactly_once` (a Kafka
    transaction per checkpoint), its own app id and output topics, on the same inputs;
    its changelog and outputs are read read_committed.
(b) a Faust agent that only forwards each session record to a sink topic, in a
    subprocess worker with the worker's Faust settings (`bench.forward_app`): Faust's
    own per-event cost.
(a) a raw aiokafka consume→produce loop over the same records, in this process.

Events are the session records (starts, heartbeats, ends), the same count for every path.

When a path starts and when it is done (nothing is subtracted; startup is its own
column):

- spawn: just before the subprocess starts (for (a), before its clients start).
- first input: (w, e) the worker's first `partition loaded` log line, written when the
  pools agent gets the first record of a partition it owns (a session record or one of
  its own ticks, which it sends only to partitions it owns); (b) the agent's log line
  for its first event; (a) the first non-empty fetch. Startup = first input - spawn:
  process start, imports, group join, assignment, first fetch.
- done: (w, e) the CreateTime of the first checkpoint commit record in the state
  changelog (`<app id>-state-changelog`) that, for every partition, holds applied
  offsets at the last offset of each of the three session topics. A checkpoint flushes
  its outputs before it writes that record (or writes them in its transaction), so at
  that instant every input was applied and every output durable. The other candidates
  are unsound or loose: the last expected output can come before the last inputs
  (heartbeats that change nothing visible), and the polls trail completion by up to
  their interval (and the allocations' committed offset by up to Faust's commit
  interval, 2.8 s). Both are still shown (`last output`, `committed seen`) to show the
  spread. (b) the CreateTime of the last record on the sink; (a) when the last produce
  is acknowledged.

A run waits (bounded by `--timeout`) until those offsets reach the end of every input
partition (and, for (b), every record is on the sink), then stops the worker and reads
the changelog and outputs back (`bench.harness.kafka_io`: end offsets from the
producers' acknowledgements and the fetch responses, the same way on every broker).
The worker's outputs are checked against `tokenpool replay` of the same records (same
ids, same content, no copies); dead letters are counted.

The figures: events / (done - first input) ("processing") and events / (done - spawn)
("incl. startup"), each from the median of `--runs` runs (default 3), and the ratios
w/b, w/a and, on Kafka, e/w and e/a. Beside them, the CPU the consumer process and the
broker used between first input and done (/proc, sampled with the offset checks and
interpolated), which tells a CPU-bound consumer from one that waits. Everything runs on
one machine: broker, consumer and this process share its cores, so the machine line in
the report matters.
"""

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from bench import forward_app, stream_report
from bench.harness import brokers, kafka_io, workload
from bench.harness.cpu import CpuLog
from bench.harness.processes import alive_check, log_time, spawn, stop, work_dir, worker_args
from bench.harness.workload import Workload
from stream_app.config import StreamConfig, TopicNames
from stream_app.kafka.broker import free_port
from stream_app.kafka.topics import output_topic_names, session_topic_names

PARTITIONS = forward_app.PARTITIONS
WORKER_POLL = 1.0
"""Seconds between reads of the worker's durable offsets while (w) runs: each is a
`/metrics` scrape (about 10 ms of the worker's CPU), and "done" comes from the changelog,
not from when the poll saw it."""
GUARANTEE = {"w": "at_least_once", "e": "exactly_once"}

log = logging.getLogger("bench.stream")


@dataclass
class Result:
    spawn: float
    first: float
    done: float
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def startup(self) -> float:
        return self.first - self.spawn

    @property
    def processing(self) -> float:
        return self.done - self.first

    @property
    def total(self) -> float:
        return self.done - self.spawn


@dataclass
class Run:
    config: StreamConfig
    work: Workload
    ends: dict[TopicPartition, int]
    """End offsets of the session topics and allocations, from the producer."""
    tmp: Path
    timeout: float
    broker_pid: int

    @property
    def session_ends(self) -> dict[TopicPartition, int]:
        names = set(session_topic_names(self.config))
        return {tp: e for tp, e in self.ends.items() if tp.topic in names}


def _cpu_notes(cpu: CpuLog, first: float, done: float) -> dict[str, float]:
    return {"cpu": cpu.share("self", first, done),
            "broker_cpu": cpu.share("broker", first, done),
            "other_cpu": cpu.others(first, done)}


def worker_config(run: Run, key: str) -> StreamConfig:
    """(w): the run's config; (e): exactly_once, with its own app id and outputs on the
    same inputs."""
    cfg = run.config
    if key == "w":
        return cfg
    outputs = {f: f"eos-{getattr(cfg.topics, f)}" for f in TopicNames.__struct_fields__
               if getattr(cfg.topics, f) in output_topic_names(cfg)}
    return msgspec.structs.replace(
        cfg, app_id=f"{cfg.app_id}-eos", guarantee=GUARANTEE[key],
        topics=msgspec.structs.replace(cfg.topics, **outputs))


async def run_worker(run: Run, key: str) -> Result:
    """(w) or (e): the tokenpool worker until its changelog shows every input applied."""
    cfg = worker_config(run, key)
    await kafka_io.create_service_topics(cfg)  # inputs exist: its internal and output topics
    log_path = run.tmp / f"worker-{cfg.app_id}.log"
    spawned = time.time()
    port = free_port()
    proc = spawn(worker_args(cfg, run.tmp, port), log_path)
    cpu = CpuLog({"self": proc.pid, "broker": run.broker_pid, "bench": os.getpid()})
    try:
        committed = await kafka_io.committed_reach(
            cfg.broker, cfg.app_id, run.ends, spawned + run.timeout,
            alive_check(proc, log_path), cpu,
            worker=(port, session_topic_names(cfg)), poll=WORKER_POLL,
        )
        cpu.sample()
    finally:
        stop(proc)
    first = log_time(log_path, "partition loaded")
    if first is None:
        raise RuntimeError(f"no 'partition loaded' line in {log_path}")

    done = await kafka_io.all_applied_at(cfg, run.session_ends, run.timeout)

    # Outputs against the replay reference.
    t = cfg.topics
    eos = cfg.guarantee == "exactly_once"
    outputs = await kafka_io.drain(
        cfg.broker, [t.pass_consumed, t.pass_returned, t.access_denied, t.allocation_rejected],
        run.timeout, committed=eos)
    letters = await kafka_io.drain(cfg.broker, [t.dead_letters], run.timeout, committed=eos)
    seen: dict[str, tuple[str, Any]] = {}
    first_copy_at: dict[str, float] = {}
    for m in outputs:
        value = workload.decode_output(m.value)
        eid = value["event_id"]
        seen.setdefault(eid, (workload.logical_topic(cfg, m.topic), value))
        first_copy_at[eid] = min(first_copy_at.get(eid, float("inf")), m.timestamp / 1000)
    expected = run.work.expected
    differ = sum(1 for eid, rec in expected.items() if eid in seen and seen[eid] != rec)
    return Result(spawned, first, done, {
        "outputs": len(outputs),
        "copies": len(outputs) - len(seen),
        "missing": len(set(expected) - set(seen)),
        "unexpected": len(set(seen) - set(expected)),
        "differ": differ,
        "dead_letters": len(letters),
        "last_output": max(first_copy_at.values(), default=first) - first,
        "committed_seen": committed - first,
        **_cpu_notes(cpu, first, done),
    })


async def run_forward(run: Run, tag: str) -> Result:
    """(b): the forward-only Faust agent until every record is on the sink."""
    cfg = run.config
    app_id = f"bench-forward-{tag}"
    sink = f"{tag}-forwarded"
    await kafka_io.create_plain_topic(cfg.broker, sink, PARTITIONS)
    spec = {"app_id": app_id, "broker": cfg.broker, "web_port": free_port(),
            "data_dir": str(run.tmp / f"data-{app_id}"),
            "sources": session_topic_names(cfg), "sink": sink}
    log_path = run.tmp / f"forward-{app_id}.log"
    n = run.work.sessions
    counted = 0
    probe = AIOKafkaConsumer(sink, bootstrap_servers=cfg.broker, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=5000)

    async def all_forwarded() -> bool:
        nonlocal counted
        while counted < n:
            batch = await probe.getmany(timeout_ms=50)
            if not batch:
                return False
            counted += sum(len(v) for v in batch.values())
        return True

    await probe.start()
    spawned = time.time()
    proc = spawn([sys.executable, "-m", "bench.forward_app", json.dumps(spec)], log_path)
    cpu = CpuLog({"self": proc.pid, "broker": run.broker_pid, "bench": os.getpid()})
    try:
        committed = await kafka_io.committed_reach(
            cfg.broker, app_id, run.session_ends, spawned + run.timeout,
            alive_check(proc, log_path), cpu, all_forwarded,
        )
        cpu.sample()
    finally:
        stop(proc)
        await probe.stop()
    first = log_time(log_path, forward_app.FIRST_EVENT)
    if first is None:
        raise RuntimeError(f"no '{forward_app.FIRST_EVENT}' line in {log_path}")
    records = await kafka_io.drain(cfg.broker, [sink], run.timeout)
    done = max(m.timestamp for m in records) / 1000
    return Result(spawned, first, done, {
        "forwarded": len(records), "committed_seen": committed - first,
        **_cpu_notes(cpu, first, done),
    })


async def run_raw(run: Run, tag: str) -> Result:
    """(a): consume → produce with plain aiokafka clients, in this process."""
    cfg = run.config
    sink = f"{tag}-raw-forwarded"
    await kafka_io.create_plain_topic(cfg.broker, sink, PARTITIONS)
    n = run.work.sessions
    consumer = AIOKafkaConsumer(
        *session_topic_names(cfg), bootstrap_servers=cfg.broker, group_id=f"bench-raw-{tag}",
        auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=2000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=cfg.broker, linger_ms=5)
    spawned = time.time()
    first = 0.0
    cpu = CpuLog({"self": os.getpid(), "broker": run.broker_pid})

    async def loop() -> float:
        nonlocal first
        await producer.start()
        await consumer.start()
        count = 0
        futures = []
        while count < n:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                if messages and not first:
                    first = time.time()
                    cpu.sample()
                for m in messages:
                    futures.append(await producer.send(sink, m.value, key=m.key))
                count += len(messages)
        await asyncio.gather(*futures)
        done = time.time()
        cpu.sample()
        await consumer.commit()
        return done

    try:
        done = await asyncio.wait_for(loop(), run.timeout)
    finally:
        await consumer.stop()
        await producer.stop()
    return Result(spawned, first, done, {"forwarded": n, **_cpu_notes(cpu, first, done)})


async def one_run(broker: brokers.Broker, work: Workload, order: str, tmp: Path,
                  timeout: float) -> tuple[dict[str, Result], float]:
    tag = uuid.uuid4().hex[:10]
    config = StreamConfig(broker=broker.bootstrap, app_id=f"bench-{tag}",
                          topics=workload.unique_topics(tag), partitions=PARTITIONS,
                          mode="replay")
    await kafka_io.create_service_topics(config)
    t0 = time.perf_counter()
    ends = await workload.produce_workload(config, work, timeout)
    produced = time.perf_counter() - t0
    run = Run(config, work, ends, tmp, timeout, broker.pid)
    results: dict[str, Result] = {}
    for key in order:
        if key in GUARANTEE:
            results[key] = await run_worker(run, key)
        elif key == "b":
            results[key] = await run_forward(run, tag)
        else:
            results[key] = await run_raw(run, tag)
        r = results[key]
        print(f"  {key}: startup {r.startup:.2f} s, processing {r.processing:.2f} s "
              f"({work.sessions / r.processing:,.0f} ev/s)", flush=True)
    return results, produced


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.stream_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    workload.add_args(ap, events=100_000)
    brokers.add_arg(ap)
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--paths", help="which paths to run, w required (default: wba on "
                    "Tansu, wbae on Kafka; e needs Kafka)")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds any one path may take")
    ap.add_argument("--out", help="also write the markdown report to this file")
    ap.add_argument("--keep", help="keep worker logs and the broker's logs in this directory")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    kafka = brokers.kafka_version(args.broker) is not None
    if args.paths is None:
        args.paths = "wbae" if kafka else "wba"
    if "w" not in args.paths or set(args.paths) - set("wbae"):
        ap.error("--paths: letters of w, b, a, e, with w")
    if "e" in args.paths and not kafka:
        ap.error("--paths e: exactly_once needs Kafka transactions (--broker kafka)")
    return args


def run(args: argparse.Namespace) -> tuple[list[str], dict[str, float]]:
    """The report's lines and its headline figures (`stream_report.figures`)."""
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp = work_dir(stack, args.keep, "stream-bench-")
        work = workload.build_workload(args, tmp)
        print(f"workload: {sum(work.counts.values()):,} records, {work.sessions:,} session "
              f"records, {len(work.expected):,} expected outputs", flush=True)
        broker = stack.enter_context(brokers.running(args.broker, tmp))
        results: dict[str, list[Result]] = {}
        orders: list[str] = []
        produced: list[float] = []
        base = args.paths
        for i in range(args.runs):
            order = base[i % len(base):] + base[:i % len(base)]
            print(f"run {i + 1}/{args.runs} (order {order})", flush=True)
            res, secs = asyncio.run(one_run(broker, work, order, tmp, args.timeout))
            orders.append(order)
            produced.append(secs)
            for key, r in res.items():
                results.setdefault(key, []).append(r)
    elapsed = time.perf_counter() - started
    return stream_report.report(args, work, results, orders, produced, elapsed)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    lines, _ = run(args)
    print()
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

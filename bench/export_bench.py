"""`tokenpool export` beside `tokenpool replay` of the same events, and what the input
topics take on the broker's disk per event (the README's disk per 1 000 users).

A synthetic site (`stream_app.site.synthetic.generate`: --users users in 50 groups over
--days days, the seed's profile) is produced to fresh input topics on a broker the
bench starts (Apache Kafka, one KRaft node, as the test suite runs it; `--broker
tansu` for the embedded one): one producer, batched, keyed by group, no compression,
each record stamped with its event time. Then, alternating, --runs times (median):

(x) `python -m stream_app export --out FILE`, a subprocess: read the four topics
    (read_committed, to the end offsets), merge in event-time order, write the lines.
(r) `python -m stream_app replay FILE --out OUT`, a subprocess, of the file (x) wrote.

Disk (Apache Kafka only): the size of the input topics' log segments (`*.log` in the
node's data folder, one replica, index files left out: Kafka preallocates them) over
the events: bytes per event as the broker stores them. Per 1 000 users a year and a
pass lifetime (the default retention, 400 days): bytes per event x events per user per
day of the synthetic site x 400 x 1 000, for each replica.
"""

import argparse
import asyncio
import logging
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream_app.config import StreamConfig, TopicNames
from stream_app.kafka import apache_kafka
from stream_app.kafka.broker import EmbeddedBroker
from stream_app.kafka.topics import create_topics
from stream_app.site.history_producer import event_time, send_history
from stream_app.site.synthetic import DEFAULT_SEED, generate, to_jsonl_lines

ROOT = Path(__file__).resolve().parents[1]
RETENTION_DAYS = 400


def config_on(bootstrap: str) -> StreamConfig:
    tag = uuid.uuid4().hex[:8]
    default = TopicNames()
    topics = TopicNames(**{f: f"bench-{tag}-{getattr(default, f)}"
                           for f in TopicNames.__struct_fields__})
    return StreamConfig(broker=bootstrap, app_id=f"bench-{tag}", topics=topics)


def topic_flags(config: StreamConfig) -> list[str]:
    out = ["--broker", config.broker]
    for f in TopicNames.__struct_fields__:
        out += ["--topic-" + f.replace("_", "-"), getattr(config.topics, f)]
    return out


def timed(cmd: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def log_bytes(data: Path, config: StreamConfig) -> int:
    names = [config.topics.allocations, config.topics.session_start,
             config.topics.session_heartbeat, config.topics.session_end]
    return sum(f.stat().st_size for name in names for f in data.glob(f"{name}-*/*.log"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    lines = [line.rstrip(b"\n") for line in to_jsonl_lines(
        generate(users=args.users, groups=50, days=args.days, seed=args.seed))]
    events = len(lines)
    with tempfile.TemporaryDirectory(prefix="tokenpool-export-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.broker == "tansu":
            broker: Any = EmbeddedBroker()
            broker.start()
            data = None
        else:
            broker = apache_kafka.KafkaCluster(1, apache_kafka.LATEST, home=tmp / "kafka")
            broker.start()
            data = broker.nodes[0].home / "data"
        try:
            config = config_on(broker.bootstrap)
            asyncio.run(create_topics(config))
            began = time.perf_counter()
            asyncio.run(send_history(config, lines, event_time))
            produced = time.perf_counter() - began
            time.sleep(2)  # let the broker flush its segments' sizes
            disk = log_bytes(data, config) if data is not None else None
            out, replayed = tmp / "export.jsonl", tmp / "outputs.jsonl"
            py = [sys.executable, "-m", "stream_app"]
            export_s, replay_s = [], []
            for _ in range(args.runs):
                export_s.append(timed([*py, "export", *topic_flags(config), "--out",
                                       str(out)]))
                replay_s.append(timed([*py, "replay", str(out), "--out", str(replayed)]))
            exported = sum(1 for _ in out.open("rb"))
        finally:
            broker.stop()
    assert exported == events, (exported, events)
    per_day = events / args.users / args.days
    result: dict[str, Any] = {
        "broker": args.broker, "users": args.users, "days": args.days, "events": events,
        "events_per_user_per_day": round(per_day, 3),
        "produce_events_per_s": round(events / produced),
        "export_s": round(statistics.median(export_s), 3),
        "export_events_per_s": round(events / statistics.median(export_s)),
        "replay_s": round(statistics.median(replay_s), 3),
        "replay_events_per_s": round(events / statistics.median(replay_s)),
    }
    if disk is not None:
        per_event = disk / events
        result.update({
            "log_bytes": disk, "bytes_per_event": round(per_event, 1),
            "gb_per_1000_users_400d": round(
                per_event * per_day * RETENTION_DAYS * 1000 / 1e9, 2),
        })
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.export_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=29)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--broker", choices=["kafka", "tansu"], default="kafka")
    args = ap.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # leader moves while producing
    result = run(args)
    for name, value in result.items():
        print(f"{name:<28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

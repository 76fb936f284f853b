"""The synthetic site the stream and scaling benchmarks send, and what it must give.

`stream_app.site.synthetic.generate` makes a site of `--users` users (by default as many as
give about `--events` records), `--groups` groups, `--days` days; `tokenpool replay` of
the same records is the reference the worker's outputs are checked against.
"""

import argparse
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiokafka.structs import TopicPartition

from bench.harness.kafka_io import produce
from rules import Engine
from schemas import Topic, encode
from stream_app.config import StreamConfig, TopicNames
from stream_app.replay import replay
from stream_app.site.synthetic import DEFAULT_SEED, generate, to_jsonl_lines

_event_id = msgspec.json.Decoder(dict[str, Any])


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


def add_args(ap: argparse.ArgumentParser, events: int) -> None:
    ap.add_argument("--events", type=int, default=events,
                    help="about this many records (a whole site is generated)")
    ap.add_argument("--users", type=int, help="users of the site (default: from --events)")
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--days", type=int, default=29)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)


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


def topic_name(config: StreamConfig, logical: str) -> str:
    """`config`'s name of the logical topic `logical` (`session-start`, ...)."""
    return str(getattr(config.topics, logical.replace("-", "_")))


async def produce_workload(config: StreamConfig, work: Workload,
                           timeout: float) -> dict[TopicPartition, int]:
    """Write the workload, keyed by group; return end offsets per partition."""
    records = ((topic_name(config, t), key, value) for t, key, value in work.records)
    return await produce(config.broker, records, timeout)


def decode_output(value: bytes) -> Any:
    return _event_id.decode(value)

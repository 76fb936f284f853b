"""`tokenpool load` against a real broker: the allocations first, then session events
keyed by group (the key every worker partitions pools by), at wall-clock pace."""

import asyncio
import json
import subprocess
import sys
from collections import Counter

from kafka_helpers import consume_all
from worker_process import ROOT

from stream_app.kafka.topics import create_topics


def test_load_allocates_then_sends_sessions_keyed_by_group(stream_config) -> None:
    config = stream_config()
    asyncio.run(create_topics(config))
    names = config.topics
    topic_flags = [f"--topic-{field.replace('_', '-')}" for field in names.__struct_fields__]
    flags = [x for flag, field in zip(topic_flags, names.__struct_fields__, strict=True)
             for x in (flag, getattr(names, field))]
    done = subprocess.run(
        [sys.executable, "-m", "stream_app", "load", "--broker", config.broker,
         "--users", "40", "--groups", "3", "--time-scale", "200000", "--duration", "4",
         *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    allocations = asyncio.run(consume_all(config.broker, names.allocations))
    kinds = [json.loads(r.value)["kind"] for r in allocations]
    assert kinds[0] == "licence" and kinds.count("login_group") == 3
    licence = json.loads(allocations[0].value)["total_tokens"]
    tokens = sum(json.loads(r.value)["tokens"] for r in allocations[1:])
    assert licence == tokens > 0
    starts = asyncio.run(consume_all(config.broker, names.session_start))
    assert len(starts) > 20  # 40 users over days of compressed time
    groups = Counter()
    for record in starts:
        value = json.loads(record.value)
        assert record.key == value["group"].encode()
        groups[value["group"]] += 1
    assert len(groups) == 3
    ends = asyncio.run(consume_all(config.broker, names.session_end))
    assert ends, "sessions also end"
    assert "load stopped events_sent=" in done.stderr

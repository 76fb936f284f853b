"""Hostile input against the live worker, fuzzed with hypothesis: random bytes, deep
nesting, 1 MiB values, wrong types, huge integers, NaN, empty strings, unknown enum
values, timestamps without offset, far in the past or future, interleaved with
valid events (duplicate event ids and unknown groups among them, which are valid).

Nothing crashes; every rejected record reaches the dead-letter topic with a reason
and is counted in `tokenpool_events_rejected_total`; every valid event is applied.
"""

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka_helpers import consume_all
from stream_harness import produce
from worker_process import WorkerProcess

from schemas import DecodeError, Topic, decode_input
from stream_app.config import StreamConfig
from stream_app.kafka.topics import create_topics

HOSTILE = 50
"""Hostile records hypothesis draws for the run, besides `REQUIRED`."""
MIB = 1 << 20
BIG = MIB - 4096
"""A value near the size limit of a broker's defaults: Apache Kafka refuses a record
batch over 1 MiB on a topic that does not raise `max.message.bytes`, so larger ones
never reach a worker there."""
NOW = datetime.now(UTC).replace(microsecond=0)
TS = NOW.isoformat().replace("+00:00", "Z")
SESSION_TOPICS = [Topic.SESSION_START, Topic.SESSION_HEARTBEAT, Topic.SESSION_END]
VALID = {
    Topic.SESSION_START: {"event_id": "e", "ts": TS, "group": "g", "session_id": "s",
                          "user_id": None},
    Topic.SESSION_HEARTBEAT: {"event_id": "e", "ts": TS, "group": "g", "session_id": "s",
                              "user_id": None},
    Topic.SESSION_END: {"event_id": "e", "ts": TS, "group": "g", "session_id": "s",
                        "user_id": None, "reason": "logout"},
    Topic.ALLOCATIONS: {"kind": "login_group", "event_id": "e", "ts": TS, "group": "g",
                        "tokens": 5},
}
hostile_values = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=2**64, max_value=2**300), st.integers(max_value=-(2**64)),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers()),
    st.sampled_from(["", "x" * 300, "bogus_kind", "LOGOUT", "2026-11-01T09:00:00",
                     "0001-01-01T00:00:00Z", "1969-07-20T20:17:00Z", "3000-01-01T00:00:00Z",
                     (NOW + timedelta(days=1)).isoformat(), "not a time"]),
)


@st.composite
def hostile_record(draw: st.DrawFn) -> tuple[str, bytes]:
    """(logical topic, raw value) of a record the worker must reject."""
    topic = draw(st.sampled_from([*SESSION_TOPICS, Topic.ALLOCATIONS]))
    kind = draw(st.sampled_from(["bytes", "nested", "big", "nan", "field", "field"]))
    if kind == "bytes":
        return topic, draw(st.binary(max_size=300))
    if kind == "nested":
        depth = draw(st.sampled_from([2_000, 50_000]))
        return topic, b'{"a":' * depth + b"1" + b"}" * depth
    value = dict(VALID[topic], event_id=f"h{draw(st.integers(0, 10**9))}")
    field = draw(st.sampled_from(sorted(value)))
    if kind == "big":
        value[field] = "x" * BIG
        return topic, json.dumps(value).encode()
    if kind == "nan":
        return topic, json.dumps(value).encode().replace(b'"' + field.encode() + b'": ',
                                                         b'"' + field.encode() + b'": NaN, "_": ')
    value[field] = draw(hostile_values)
    return topic, json.dumps(value).encode()


def _with(topic: str, **fields: object) -> tuple[str, bytes]:
    return topic, json.dumps(dict(VALID[topic], event_id="req", **fields)).encode()


REQUIRED = [
    (Topic.SESSION_START, b"\x00\xff not json"),
    (Topic.SESSION_HEARTBEAT, b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    _with(Topic.SESSION_START, group="x" * BIG),
    (Topic.SESSION_END, json.dumps(VALID[Topic.SESSION_END]).encode().replace(
        b'"logout"', b"NaN")),
    _with(Topic.SESSION_START, session_id=42),
    _with(Topic.ALLOCATIONS, tokens=2**70),
    _with(Topic.SESSION_START, group=""),
    _with(Topic.SESSION_END, reason="crashed"),
    _with(Topic.ALLOCATIONS, kind="pool"),
    _with(Topic.SESSION_START, ts="2026-11-01T09:00:00"),
    _with(Topic.SESSION_HEARTBEAT, ts="1969-12-31T23:59:59Z"),
    _with(Topic.SESSION_START, ts="9999-12-31T23:59:59Z"),
    _with(Topic.SESSION_START, ts=(NOW + timedelta(days=1)).isoformat()),
    _with(Topic.ALLOCATIONS, ts=(NOW + timedelta(days=28)).isoformat()),
]
"""One of each kind the issue names, besides what hypothesis draws."""


def rejected(record: tuple[str, bytes]) -> bool:
    """Would the live worker turn it away? Undecodable, or beyond the clock skew."""
    topic, raw = record
    try:
        event = decode_input(topic, raw)
    except DecodeError:
        return True
    return event.ts > datetime.now(UTC) + timedelta(minutes=2)


async def _send(config: StreamConfig, records: list[tuple[str, bytes]]) -> None:
    """One producer, records in this order, keyed by the group the valid ones use."""
    producer = AIOKafkaProducer(bootstrap_servers=config.broker, acks="all",
                                max_request_size=4 * MIB)
    await producer.start()
    try:
        sent = [await producer.send(getattr(config.topics, t.replace("-", "_")), raw,
                                    key=b"g" if t != Topic.ALLOCATIONS else b"")
                for t, raw in records]
        for fut in sent:
            await fut
    finally:
        await producer.stop()


def valid_start(n: int, group: str = "g", event_id: str | None = None) -> tuple[str, bytes]:
    value = dict(VALID[Topic.SESSION_START], event_id=event_id or f"v{n}", group=group,
                 session_id=f"v{n}", ts=datetime.now(UTC).isoformat())
    return Topic.SESSION_START, json.dumps(value).encode()


@given(hostile=st.lists(hostile_record().filter(rejected), min_size=HOSTILE,
                        max_size=HOSTILE))
@settings(max_examples=1, derandomize=True, database=None, deadline=None,
          phases=[Phase.generate], suppress_health_check=list(HealthCheck))
def test_hostile_records_are_dead_lettered_counted_and_valid_ones_all_apply(
    stream_config, tmp_path_factory, hostile: list[tuple[str, bytes]]
) -> None:
    config = stream_config(mode="live")
    asyncio.run(create_topics(config))
    tmp_path: Path = tmp_path_factory.mktemp("hostile")
    worker = WorkerProcess(config, tmp_path).start(config.partitions)
    try:
        produce(config, [
            {"topic": "allocations", "value": {"kind": "licence", "event_id": "l", "ts": TS,
                                               "total_tokens": 10}},
            {"topic": "allocations", "value": {"kind": "login_group", "event_id": "g",
                                               "ts": TS, "group": "g", "tokens": 10}},
        ])
        time.sleep(1.5)  # the ledger decides before the sessions arrive
        records: list[tuple[str, bytes]] = []
        hostile = [*REQUIRED, *hostile]
        assert all(rejected(r) for r in REQUIRED)
        for i, bad in enumerate(hostile):
            records.append(valid_start(i))
            records.append(bad)
        valid = len(hostile)
        records.append(valid_start(0))  # a redelivery: same event, applied once (R13)
        records.append(valid_start(valid, event_id="v0"))  # a reused event id: valid
        records.append(valid_start(valid + 1, group="nobody"))  # unknown group (R11)
        asyncio.run(_send(config, records))

        letters = asyncio.run(consume_all(config.broker, config.topics.dead_letters,
                                          expect_count=len(hostile), timeout=60))
        consumed = asyncio.run(consume_all(config.broker, config.topics.pass_consumed,
                                           expect_count=valid + 1, timeout=60))
        denied = asyncio.run(consume_all(config.broker, config.topics.access_denied,
                                         expect_count=1, timeout=30))
        time.sleep(1.0)  # let any wrongly doubled output arrive before counting
        metrics = worker.metrics()
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        extra = asyncio.run(consume_all(config.broker, config.topics.dead_letters))
    finally:
        worker.stop()

    names = {getattr(config.topics, t.replace("-", "_")): t for t in
             [*SESSION_TOPICS, Topic.ALLOCATIONS]}
    assert len(extra) == len(hostile), "a record was dead-lettered twice"
    got: Counter[str] = Counter()
    for rec in letters:
        letter = json.loads(rec.value)
        assert letter["error"].split(":")[0] in ("invalid", "future timestamp"), letter["error"]
        assert len(letter["error"]) > len("invalid: ")  # a reason, not just a verdict
        got[names[letter["topic"]]] += 1
    assert got == Counter(t for t, _ in hostile)
    rejected_total = sum(v for (name, _), v in metrics.items()
                         if name == "tokenpool_events_rejected_total")
    assert rejected_total == len(hostile), metrics
    sessions = sorted(json.loads(r.value)["session_id"] for r in consumed)
    assert sessions == sorted(f"v{i}" for i in range(valid + 1))
    assert [json.loads(r.value)["reason"] for r in denied] == ["no_allocation"]

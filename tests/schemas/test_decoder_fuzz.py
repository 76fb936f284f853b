"""Hostile input against the input decoders (issue: reliability, hostile input).

Whatever bytes arrive on an input topic, decoding either gives a valid event or
raises `DecodeError` with a reason: never another exception, which would stop the
worker's agent. An event that decodes is one the engine can apply: its timestamp is
within the range the engine computes with.
"""

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import Engine
from schemas import INPUT_TOPICS, DecodeError, Topic, decode_input, decode_output, encode
from schemas.timestamps import EARLIEST, LATEST
from schemas.topics import OUTPUT_TOPICS

TS = "2026-11-01T09:00:00Z"
VALID: dict[str, dict[str, Any]] = {
    Topic.SESSION_START: {"event_id": "e1", "ts": TS, "group": "g", "session_id": "s1",
                          "user_id": "alice", "device_id": "ipad"},
    Topic.SESSION_HEARTBEAT: {"event_id": "e2", "ts": TS, "group": "g", "session_id": "s1",
                              "user_id": None},
    Topic.SESSION_END: {"event_id": "e3", "ts": TS, "group": "g", "session_id": "s1",
                        "user_id": "alice", "reason": "logout"},
    Topic.ALLOCATIONS: {"kind": "login_group", "event_id": "e4", "ts": TS, "group": "g",
                        "tokens": 3},
}
MIB = 1 << 20

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
hostile_values = st.one_of(
    json_values,
    st.integers(min_value=2**63, max_value=2**200) | st.integers(max_value=-(2**63)),
    st.sampled_from(["", " ", "\x00", "NaN", "x" * 300, "2026-11-01T09:00:00",
                     "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z",
                     "3000-01-01T00:00:00Z", "not a time", "bogus_kind", "LOGOUT"]),
)


def accepted_or_reasoned(topic: str, data: bytes) -> Any:
    """Decode; a rejection must be a DecodeError with a non-empty reason."""
    try:
        return decode_input(topic, data)
    except DecodeError as exc:
        assert str(exc).strip(), "a rejection must say why"
        return None


def assert_engine_applies(event: Any) -> None:
    """An accepted event is within the engine's range: applying it cannot crash."""
    assert EARLIEST <= event.ts < LATEST
    engine = Engine()
    outputs: list[Any] = []
    engine.apply(event, outputs)
    for o in outputs:
        encode(o)


@pytest.mark.parametrize("topic", INPUT_TOPICS)
@given(data=st.binary(max_size=512))
@settings(max_examples=300, deadline=None)
def test_random_bytes_decode_or_are_rejected_with_a_reason(topic: str, data: bytes) -> None:
    event = accepted_or_reasoned(topic, data)
    if event is not None:
        assert_engine_applies(event)


@pytest.mark.parametrize("topic", INPUT_TOPICS)
@given(value=json_values)
@settings(max_examples=200, deadline=None)
def test_random_json_decodes_or_is_rejected_with_a_reason(topic: str, value: Any) -> None:
    event = accepted_or_reasoned(topic, json.dumps(value).encode())
    if event is not None:
        assert_engine_applies(event)


@pytest.mark.parametrize("topic", INPUT_TOPICS)
@given(data=st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_valid_event_with_one_hostile_field_is_rejected_naming_it_or_applies(
    topic: str, data: st.DataObject
) -> None:
    """Wrong types, huge integers, empty strings, unknown enum values, naive or
    out-of-range timestamps: each rejection names the field, or the event is valid."""
    value = dict(VALID[topic])
    field = data.draw(st.sampled_from(sorted(value)), label="field")
    value[field] = data.draw(hostile_values, label="value")
    try:
        event = decode_input(topic, json.dumps(value).encode())
    except DecodeError as exc:
        reason = str(exc)  # json.dumps writes inf as Infinity: not JSON at all
        assert f"$.{field}" in reason or "$.kind" in reason or "malformed" in reason, reason
        return
    assert_engine_applies(event)


@pytest.mark.parametrize("topic", INPUT_TOPICS)
@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_rejected_not_a_recursion_crash(topic: str, depth: int) -> None:
    for nested in (b"[" * depth + b"]" * depth,
                   b'{"a":' * depth + b"1" + b"}" * depth):
        with pytest.raises(DecodeError):
            decode_input(topic, nested)
        value = dict(VALID[topic])
        value["event_id"] = "__NESTED__"
        doc = json.dumps(value).encode().replace(b'"__NESTED__"', nested)
        with pytest.raises(DecodeError):
            decode_input(topic, doc)


@pytest.mark.parametrize("topic", OUTPUT_TOPICS)
def test_deeply_nested_output_is_rejected_not_a_recursion_crash(topic: str) -> None:
    with pytest.raises(DecodeError):
        decode_output(topic, b'{"a":' * 100_000 + b"1" + b"}" * 100_000)


@pytest.mark.parametrize("field", ["event_id", "group", "session_id", "user_id"])
def test_a_one_mebibyte_value_is_rejected_naming_the_field(field: str) -> None:
    value = dict(VALID[Topic.SESSION_START], **{field: "x" * MIB})
    with pytest.raises(DecodeError, match=rf"\$\.{field}"):
        decode_input(Topic.SESSION_START, json.dumps(value).encode())


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"nan"])
def test_nan_and_infinite_numbers_are_rejected(literal: bytes) -> None:
    doc = json.dumps(VALID[Topic.ALLOCATIONS]).encode().replace(b"3", literal, 1)
    with pytest.raises(DecodeError):
        decode_input(Topic.ALLOCATIONS, doc)


@pytest.mark.parametrize("ts", [
    "2026-11-01T09:00:00",  # no offset
    "2026-11-01 09:00",
    "0001-01-01T00:00:00Z",  # far past
    "1969-12-31T23:59:59.999999Z",
    "3000-01-01T00:00:00Z",  # far future
    "9999-12-31T23:59:59-14:00",
])
def test_timestamps_without_offset_or_out_of_range_are_rejected_naming_ts(ts: str) -> None:
    value = dict(VALID[Topic.SESSION_START], ts=ts)
    with pytest.raises(DecodeError, match=r"\$\.ts"):
        decode_input(Topic.SESSION_START, json.dumps(value).encode())


@given(ts=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2999, 12, 31),
                       timezones=st.just(UTC)))
@settings(max_examples=200, deadline=None)
def test_every_in_range_timestamp_applies_and_its_pass_returns(ts: datetime) -> None:
    """The far edge of the range still leaves room for the pass lifetime (R7)."""
    engine = Engine()
    alloc = {"kind": "licence", "event_id": "l", "ts": ts.isoformat(), "total_tokens": 1}
    group = dict(VALID[Topic.ALLOCATIONS], ts=ts.isoformat(), tokens=1)
    start = dict(VALID[Topic.SESSION_START], ts=ts.isoformat())
    outputs: list[Any] = []
    for topic, value in ((Topic.ALLOCATIONS, alloc), (Topic.ALLOCATIONS, group),
                         (Topic.SESSION_START, start)):
        engine.apply(decode_input(topic, json.dumps(value).encode()), outputs)
    later = ts + timedelta(days=400)
    engine.advance(math.floor((later - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
                   * 1_000_000, outputs)
    kinds = [type(o).__name__ for o in outputs]
    assert kinds.count("PassConsumed") >= 1 and "PassReturned" in kinds
    for o in outputs:
        encode(o)


@pytest.mark.parametrize("kind", ["", "Licence", "login-group", "user_access "])
def test_unknown_allocation_kinds_are_rejected_naming_kind(kind: str) -> None:
    value = dict(VALID[Topic.ALLOCATIONS], kind=kind)
    with pytest.raises(DecodeError, match="kind"):
        decode_input(Topic.ALLOCATIONS, json.dumps(value).encode())

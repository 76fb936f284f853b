"""SPEC §4: the JSON wire contract. Strict decoding, RFC 3339 with offsets, exact
round-trips, and the `allocations` union tagged by `kind`."""

import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    AccessDenied,
    AllocationRejected,
    DeadLetter,
    DecodeError,
    Licence,
    LoginGroup,
    PassConsumed,
    PassReturned,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
    Topic,
    UserAccess,
    decode_allocation,
    decode_input,
    decode_output,
    encode,
    to_micros,
)

TS = "2026-11-01T09:00:00Z"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

VALID_INPUTS = {
    Topic.SESSION_START: {
        "event_id": "e1", "ts": TS, "group": "sales", "session_id": "s1",
        "user_id": "alice", "device_id": "ipad",
    },
    Topic.SESSION_HEARTBEAT: {
        "event_id": "e2", "ts": TS, "group": "sales", "session_id": "s1", "user_id": None,
    },
    Topic.SESSION_END: {
        "event_id": "e3", "ts": TS, "group": "sales", "session_id": "s1",
        "user_id": "alice", "reason": "browser_closed",
    },
    Topic.ALLOCATIONS: {"kind": "licence", "event_id": "e4", "ts": TS, "total_tokens": 50},
}


def dumps(value: dict) -> bytes:
    return json.dumps(value).encode()


def decode_error(topic: str, value: dict) -> str:
    with pytest.raises(DecodeError) as info:
        decode_input(topic, dumps(value))
    return str(info.value)


# -- decoding valid records ---------------------------------------------------------


def test_wire_session_start_decodes_to_its_struct():
    event = decode_input(Topic.SESSION_START, dumps(VALID_INPUTS[Topic.SESSION_START]))

    assert event == SessionStart(
        event_id="e1", ts=T0, group="sales", session_id="s1", user_id="alice", device_id="ipad"
    )


def test_wire_session_start_device_id_is_optional_and_user_id_may_be_null():
    value = {k: v for k, v in VALID_INPUTS[Topic.SESSION_START].items() if k != "device_id"}
    value["user_id"] = None

    event = decode_input(Topic.SESSION_START, dumps(value))

    assert (event.user_id, event.device_id) == (None, None)


def test_wire_heartbeat_and_end_decode_to_their_structs():
    hb = decode_input(Topic.SESSION_HEARTBEAT, dumps(VALID_INPUTS[Topic.SESSION_HEARTBEAT]))
    end = decode_input(Topic.SESSION_END, dumps(VALID_INPUTS[Topic.SESSION_END]))

    assert hb == SessionHeartbeat(
        event_id="e2", ts=T0, group="sales", session_id="s1", user_id=None
    )
    assert end == SessionEnd(
        event_id="e3", ts=T0, group="sales", session_id="s1", user_id="alice",
        reason="browser_closed",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"kind": "licence", "event_id": "a", "ts": TS, "total_tokens": 50},
            Licence(event_id="a", ts=T0, total_tokens=50),
        ),
        (
            {"kind": "login_group", "event_id": "b", "ts": TS, "group": "sales", "tokens": 3},
            LoginGroup(event_id="b", ts=T0, group="sales", tokens=3),
        ),
        (
            {"kind": "user_access", "event_id": "c", "ts": TS, "user_id": "al",
             "action": "remove"},
            UserAccess(event_id="c", ts=T0, user_id="al", action="remove"),
        ),
    ],
)
def test_wire_allocations_union_is_tagged_by_kind(value, expected):
    assert decode_input(Topic.ALLOCATIONS, dumps(value)) == expected
    assert decode_allocation(dumps(value)) == expected
    assert json.loads(encode(expected))["kind"] == value["kind"]


# -- strict decoding: errors name the field -------------------------------------------


def test_wire_unknown_allocation_kind_is_an_error_naming_kind():
    value = {"kind": "site_licence", "event_id": "e", "ts": TS, "total_tokens": 1}

    assert "$.kind" in decode_error(Topic.ALLOCATIONS, value)


def test_wire_allocation_without_kind_is_an_error_naming_kind():
    value = {"event_id": "e", "ts": TS, "total_tokens": 1}

    assert "kind" in decode_error(Topic.ALLOCATIONS, value)


@pytest.mark.parametrize(
    ("topic", "field", "bad"),
    [
        (Topic.ALLOCATIONS, "total_tokens", "50"),
        (Topic.ALLOCATIONS, "total_tokens", 1.5),
        (Topic.ALLOCATIONS, "total_tokens", -1),
        (Topic.ALLOCATIONS, "ts", 1793523600),
        (Topic.SESSION_START, "session_id", 7),
        (Topic.SESSION_START, "session_id", ""),
        (Topic.SESSION_START, "user_id", 42),
        (Topic.SESSION_START, "group", None),
        (Topic.SESSION_HEARTBEAT, "event_id", ["e"]),
        (Topic.SESSION_END, "reason", "crashed"),
        (Topic.SESSION_END, "ts", "yesterday"),
    ],
)
def test_wire_wrong_type_or_value_is_an_error_naming_the_field_path(topic, field, bad):
    value = {**VALID_INPUTS[topic], field: bad}

    assert f"$.{field}" in decode_error(topic, value)


def test_wire_negative_login_group_tokens_is_an_error_naming_tokens():
    value = {"kind": "login_group", "event_id": "e", "ts": TS, "group": "g", "tokens": -3}

    assert "$.tokens" in decode_error(Topic.ALLOCATIONS, value)


def test_wire_user_access_action_must_be_assign_or_remove():
    value = {"kind": "user_access", "event_id": "e", "ts": TS, "user_id": "u", "action": "grant"}

    assert "$.action" in decode_error(Topic.ALLOCATIONS, value)


@pytest.mark.parametrize(
    ("topic", "field"),
    [
        (Topic.SESSION_START, "event_id"),
        (Topic.SESSION_START, "ts"),
        (Topic.SESSION_START, "group"),
        (Topic.SESSION_START, "session_id"),
        (Topic.SESSION_START, "user_id"),  # nullable, but must be present
        (Topic.SESSION_HEARTBEAT, "session_id"),
        (Topic.SESSION_END, "reason"),
        (Topic.ALLOCATIONS, "total_tokens"),
    ],
)
def test_wire_missing_required_field_is_an_error_naming_it(topic, field):
    value = {k: v for k, v in VALID_INPUTS[topic].items() if k != field}

    assert f"`{field}`" in decode_error(topic, value)


@pytest.mark.parametrize(
    "ts", ["2026-11-01T09:00:00", "2026-11-01T09:00:00.123456", "2026-11-01 09:00:00"]
)
def test_wire_naive_timestamp_is_an_error_naming_ts(ts):
    value = {**VALID_INPUTS[Topic.SESSION_START], "ts": ts}

    assert "$.ts" in decode_error(Topic.SESSION_START, value)


def test_wire_error_in_a_nested_request_names_the_nested_path():
    bad = {
        "event_id": "o", "ts": TS, "reason": "r",
        "request": {"kind": "licence", "event_id": "e", "ts": "2026-11-01T09:00:00",
                    "total_tokens": 1},
    }
    with pytest.raises(DecodeError) as info:
        decode_output(Topic.ALLOCATION_REJECTED, dumps(bad))

    assert "$.request.ts" in str(info.value)


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b"null", b"\xff\xfe"])
def test_wire_non_object_or_garbage_is_a_decode_error(data):
    with pytest.raises(DecodeError):
        decode_input(Topic.SESSION_START, data)


def test_wire_unknown_input_topic_is_a_decode_error():
    with pytest.raises(DecodeError):
        decode_input("session-restart", b"{}")


# -- RFC 3339 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-01T09:00:00Z",
        "2026-11-01T09:00:00+00:00",
        "2026-11-01T10:00:00+01:00",
        "2026-11-01T14:30:00+05:30",
        "2026-11-01T04:00:00-05:00",
        "2026-11-01T09:00:00.000000Z",
    ],
)
def test_wire_rfc3339_offsets_denote_the_same_instant(ts):
    value = {**VALID_INPUTS[Topic.SESSION_START], "ts": ts}

    event = decode_input(Topic.SESSION_START, dumps(value))

    assert to_micros(event.ts) == to_micros(T0)


def test_wire_fractional_seconds_are_kept_to_the_microsecond():
    value = {**VALID_INPUTS[Topic.SESSION_START], "ts": "2026-11-01T09:00:00.000001+02:00"}

    event = decode_input(Topic.SESSION_START, dumps(value))

    assert to_micros(event.ts) == to_micros(T0 - timedelta(hours=2)) + 1


def test_wire_encoded_timestamps_carry_an_offset():
    out = json.loads(encode(Licence(event_id="e", ts=T0, total_tokens=1)))

    assert out["ts"] in {"2026-11-01T09:00:00Z", "2026-11-01T09:00:00+00:00"}


# -- round trips ----------------------------------------------------------------------

ids = st.text(min_size=1, max_size=24)
users = st.none() | ids
counts = st.integers(0, 10_000_000)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
stamps = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=offsets
)

session_starts = st.builds(
    SessionStart, event_id=ids, ts=stamps, group=ids, session_id=ids, user_id=users,
    device_id=st.none() | ids,
)
heartbeats = st.builds(
    SessionHeartbeat, event_id=ids, ts=stamps, group=ids, session_id=ids, user_id=users
)
ends = st.builds(
    SessionEnd, event_id=ids, ts=stamps, group=ids, session_id=ids, user_id=users,
    reason=st.sampled_from(["logout", "browser_closed"]),
)
licences = st.builds(Licence, event_id=ids, ts=stamps, total_tokens=counts)
login_groups = st.builds(LoginGroup, event_id=ids, ts=stamps, group=ids, tokens=counts)
user_accesses = st.builds(
    UserAccess, event_id=ids, ts=stamps, user_id=ids,
    action=st.sampled_from(["assign", "remove"]),
)
allocations = licences | login_groups | user_accesses

INPUT_CASES = [
    (Topic.SESSION_START, session_starts),
    (Topic.SESSION_HEARTBEAT, heartbeats),
    (Topic.SESSION_END, ends),
    (Topic.ALLOCATIONS, allocations),
]

passes_consumed = st.builds(
    PassConsumed, event_id=ids, ts=stamps, group=ids, user_id=users, session_id=ids,
    reason=st.sampled_from(["login", "renewal"]), returns_at=stamps,
    available=st.integers(0, 10**8), capacity=st.integers(0, 10**8),
)
passes_returned = st.builds(
    PassReturned, event_id=ids, ts=stamps, group=ids, count=st.integers(1, 10**6),
    consumed_at=stamps, available=st.integers(0, 10**8), capacity=st.integers(0, 10**8),
)
denials = st.builds(
    AccessDenied, event_id=ids, ts=stamps, group=ids, user_id=users, session_id=ids,
    reason=st.sampled_from(["pool_exhausted", "too_many_sessions", "no_allocation"]),
    renewal=st.booleans(),
)
rejections = st.builds(
    AllocationRejected, event_id=ids, ts=stamps, reason=st.text(max_size=80),
    request=allocations,
)
dead_letters = st.builds(
    DeadLetter, raw=st.binary(max_size=64), topic=ids, partition=st.integers(0, 1000),
    offset=st.integers(0, 2**62), error=st.text(max_size=80),
)

OUTPUT_CASES = [
    (Topic.PASS_CONSUMED, passes_consumed),
    (Topic.PASS_RETURNED, passes_returned),
    (Topic.ACCESS_DENIED, denials),
    (Topic.ALLOCATION_REJECTED, rejections),
    (Topic.DEAD_LETTERS, dead_letters),
]


def assert_exact(decoded: object, original: object) -> None:
    assert decoded == original
    assert type(decoded) is type(original)
    for field in original.__struct_fields__:
        a, b = getattr(decoded, field), getattr(original, field)
        if isinstance(b, datetime):
            assert a.utcoffset() == b.utcoffset(), field  # the offset survives too


@pytest.mark.parametrize(("topic", "strategy"), INPUT_CASES, ids=[c[0] for c in INPUT_CASES])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_wire_every_input_type_round_trips_exactly(topic, strategy, data):
    event = data.draw(strategy)
    wire = encode(event)

    decoded = decode_input(topic, wire)

    assert_exact(decoded, event)
    assert encode(decoded) == wire


@pytest.mark.parametrize(("topic", "strategy"), OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_wire_every_output_type_round_trips_exactly(topic, strategy, data):
    event = data.draw(strategy)
    wire = encode(event)

    decoded = decode_output(topic, wire)

    assert_exact(decoded, event)
    assert encode(decoded) == wire


def test_wire_output_field_names_match_the_contract():
    consumed = PassConsumed(
        event_id="o", ts=T0, group="g", user_id=None, session_id="s", reason="login",
        returns_at=T0, available=9, capacity=10,
    )
    returned = PassReturned(
        event_id="o", ts=T0, group="g", count=1, consumed_at=T0, available=10, capacity=10
    )
    denied = AccessDenied(
        event_id="o", ts=T0, group="g", user_id="u", session_id="s", reason="no_allocation",
        renewal=False,
    )
    rejected = AllocationRejected(
        event_id="o", ts=T0, reason="r", request=Licence(event_id="e", ts=T0, total_tokens=1)
    )

    assert set(json.loads(encode(consumed))) == {
        "event_id", "ts", "group", "user_id", "session_id", "reason", "returns_at",
        "available", "capacity",
    }
    assert set(json.loads(encode(returned))) == {
        "event_id", "ts", "group", "count", "consumed_at", "available", "capacity",
    }
    assert set(json.loads(encode(denied))) == {
        "event_id", "ts", "group", "user_id", "session_id", "reason", "renewal",
    }
    assert set(json.loads(encode(rejected))) == {"event_id", "ts", "reason", "request"}
    assert json.loads(encode(rejected))["request"]["kind"] == "licence"


def test_wire_structs_are_frozen():
    event = Licence(event_id="e", ts=T0, total_tokens=1)

    with pytest.raises(AttributeError):
        event.total_tokens = 2  # type: ignore[misc]


def test_wire_decode_error_is_a_value_error_not_a_msgspec_type():
    with pytest.raises(ValueError) as info:
        decode_input(Topic.SESSION_START, b"{}")

    assert not isinstance(info.value, msgspec.DecodeError)

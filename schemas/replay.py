"""Shapes of the replay file (JSON Lines) and of the final-state file."""

import msgspec

from schemas.inputs import Allocation, SessionEnd, SessionHeartbeat, SessionStart
from schemas.timestamps import Timestamp
from schemas.topics import Topic


class ReplayRecord(msgspec.Struct, frozen=True):
    """One line: the topic a record travels on and its wire value, decoded later."""

    topic: str
    value: msgspec.Raw


class AllocationLine(
    msgspec.Struct, frozen=True, tag_field="topic", tag=Topic.ALLOCATIONS.value
):
    """A replay line decoded in one step: its topic selects the value's type, so a whole
    block of lines is one decoder call with no second decode of each value."""

    value: Allocation


class StartLine(msgspec.Struct, frozen=True, tag_field="topic", tag=Topic.SESSION_START.value):
    value: SessionStart


class HeartbeatLine(
    msgspec.Struct, frozen=True, tag_field="topic", tag=Topic.SESSION_HEARTBEAT.value
):
    value: SessionHeartbeat


class EndLine(msgspec.Struct, frozen=True, tag_field="topic", tag=Topic.SESSION_END.value):
    value: SessionEnd


TypedReplayLine = AllocationLine | StartLine | HeartbeatLine | EndLine
"""`ReplayRecord` with its value decoded for the topic it names."""


class GroupSummary(msgspec.Struct, frozen=True):
    capacity: int
    available: int
    in_use: int
    open_sessions: int


class StateFile(msgspec.Struct, frozen=True):
    as_of: Timestamp | None
    groups: dict[str, GroupSummary]

"""Shapes of the replay file (JSON Lines) and of the final-state file."""

import msgspec

from schemas.timestamps import Timestamp


class ReplayRecord(msgspec.Struct, frozen=True):
    """One line: the topic a record travels on and its wire value, decoded later."""

    topic: str
    value: msgspec.Raw


class GroupSummary(msgspec.Struct, frozen=True):
    capacity: int
    available: int
    in_use: int
    open_sessions: int


class StateFile(msgspec.Struct, frozen=True):
    as_of: Timestamp | None
    groups: dict[str, GroupSummary]

"""Default topic names: the logical name each wire type travels on."""

from enum import StrEnum


class Topic(StrEnum):
    SESSION_START = "session-start"
    SESSION_HEARTBEAT = "session-heartbeat"
    SESSION_END = "session-end"
    ALLOCATIONS = "allocations"
    PASS_CONSUMED = "pass-consumed"
    PASS_RETURNED = "pass-returned"
    ACCESS_DENIED = "access-denied"
    ALLOCATION_REJECTED = "allocation-rejected"
    DEAD_LETTERS = "dead-letters"


INPUT_TOPICS: tuple[Topic, ...] = (
    Topic.ALLOCATIONS,
    Topic.SESSION_START,
    Topic.SESSION_HEARTBEAT,
    Topic.SESSION_END,
)
"""Input topics, in the order that breaks timestamp ties between them."""

OUTPUT_TOPICS: tuple[Topic, ...] = (
    Topic.PASS_CONSUMED,
    Topic.PASS_RETURNED,
    Topic.ACCESS_DENIED,
    Topic.ALLOCATION_REJECTED,
    Topic.DEAD_LETTERS,
)

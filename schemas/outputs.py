"""Output wire types. `available` and `capacity` are the pool's figures right after."""

from typing import Literal

import msgspec

from schemas.inputs import Allocation
from schemas.timestamps import Timestamp

DenialReason = Literal["pool_exhausted", "too_many_sessions", "no_allocation"]


class PassConsumed(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    ts: Timestamp
    group: str
    user_id: str | None
    session_id: str
    reason: Literal["login", "renewal"]
    returns_at: Timestamp
    available: int
    capacity: int


class PassReturned(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    ts: Timestamp
    group: str
    count: int
    consumed_at: Timestamp
    available: int
    capacity: int


class AccessDenied(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    ts: Timestamp
    group: str
    user_id: str | None
    session_id: str
    reason: DenialReason
    renewal: bool


class AllocationRejected(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    ts: Timestamp
    reason: str
    request: Allocation


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """An input that could not be decoded or validated; `raw` is base64 on the wire."""

    raw: bytes
    topic: str
    partition: int
    offset: int
    error: str


OutputEvent = PassConsumed | PassReturned | AccessDenied | AllocationRejected

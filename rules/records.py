"""State records: what the engine keeps, as small records a store can key one by one.

A pool's state is never one growing blob: the pool record, one record per session,
one per holder and one per return instant are each small and keyed on their own, so a
stream can persist exactly the records an event touched.
"""

from enum import IntEnum

import msgspec

from rules.ledger import LedgerRecord


class SessionState(IntEnum):
    OPEN = 0
    ENDED = 1
    TIMED_OUT = 2
    DISCONTINUED = 3


class Session(msgspec.Struct, array_like=True):
    """One browser or device connection, keyed by `session_id` within its group."""

    holder: str
    """Key of the holder the session belongs to (see `holder_key`)."""
    user_id: str | None
    last_activity: int
    state: SessionState = SessionState.OPEN
    closed_at: int = 0
    seq: int = 0
    """Open order within the group: sorts sessions when one outcome names several."""


class Holder(msgspec.Struct, array_like=True):
    """Whoever a pass covers: an identified user, or one anonymous session (R6)."""

    user_id: str | None
    window_end: int
    """End of the access window; 0 while the holder needs none (a UAP covers it)."""
    window_seq: int
    """When the window was opened, in group order: renewals at one instant go by it."""
    sessions: list[str]
    """Open session ids, in the order they opened."""


class PoolRecord(msgspec.Struct, array_like=True):
    """A group's figures and clock: small, fixed size, whatever the pool holds."""

    tokens: int = 0
    allocated: bool = False
    in_use: int = 0
    clock: int | None = None
    seq: int = 0
    open_sessions: int = 0
    late_events: int = 0
    ignored_events: int = 0
    consumed_login: int = 0
    consumed_renewal: int = 0
    returned: int = 0
    denied_pool_exhausted: int = 0
    denied_too_many_sessions: int = 0
    denied_no_allocation: int = 0
    grant_seq: int = 0
    """`seq` of the latest single-writer grant applied (stream only; 0 in replay)."""


def user_holder(user_id: str) -> str:
    return "u:" + user_id


def anonymous_holder(session_id: str) -> str:
    return "s:" + session_id


class PoolSnapshot(msgspec.Struct, array_like=True):
    """One group's records, as a snapshot holds them."""

    record: PoolRecord
    sessions: dict[str, Session]
    holders: dict[str, Holder]
    returns: list[tuple[int, int]]


class Snapshot(msgspec.Struct):
    """Everything the engine knows; restoring it and going on equals never stopping."""

    ledger: LedgerRecord
    pools: dict[str, PoolSnapshot]
    unknown_group_events: int = 0

"""Wire types of the worker's internal topics.

Allocation changes are decided once, by the single-writer ledger, and only then
reach the group partitions as grants: pools never decide them twice.
"""

import msgspec

from schemas.timestamps import Timestamp


class GroupTokens(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="group_tokens"):
    """An accepted login_group allocation for one group."""

    event_id: str
    ts: Timestamp
    group: str
    tokens: int
    seq: int = 0
    """Increases with every grant the ledger sends; the partition reports it back."""


class UserAccessChange(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="user_access"
):
    """An accepted UAP assign or remove, sent to every group partition."""

    event_id: str
    ts: Timestamp
    user_id: str
    assigned: bool


class LedgerMark(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="ledger_mark"):
    """The ledger has decided every allocation written so far: a group partition may go
    on without waiting for grants (a watermark, not an allocation)."""

    ts: Timestamp


Grant = GroupTokens | UserAccessChange
GrantsRecord = GroupTokens | UserAccessChange | LedgerMark


class Tick(msgspec.Struct, frozen=True, kw_only=True):
    """Wall-clock time reaching one partition, so timers fire with no traffic."""

    ts: Timestamp
    advance: bool
    """False in replay mode: the tick only wakes the merge's idle wait."""


class GroupUsage(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="group_usage"):
    """A group partition's tokens still counted for a group: more than its allocation
    while passes in use exceed a lowered capacity (R10)."""

    ts: Timestamp
    group: str
    counted_tokens: int
    grant_seq: int = 0
    """`seq` of the latest grant the partition applied for the group: the ledger
    ignores a report about a grant it has since superseded."""


class UapLastUse(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="uap_last_use"):
    """A group partition's last use of a removed UAP, so the ledger can quarantine its
    token exactly (R9); `last_used` is µs since the epoch, None if never used there."""

    ts: Timestamp
    user_id: str
    partition: int
    last_used: int | None


Feedback = GroupUsage | UapLastUse

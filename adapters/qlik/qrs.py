"""The Qlik Repository Service's licence answers, decoded and counted. Pure.

- `GET /qrs/license/loginaccessusage/full`: one record per login access pass in use,
  with `useStartTime` (when it was consumed), `latestActivity`, `useStopTime`, the
  user, the sessions it covers and (on current versions) the login access group
  (`loginAccessType`).
- `GET /qrs/license/accesstypeoverview`: the site's token figures (`loginAccess`,
  `userAccess`).
- `GET /qrs/license/useraccesstype/full`: user access pass holders.

A record counts as a pass in use until `useStartTime + pass lifetime` (28 days, R7),
the same rule tokenpool applies, so both sides count the same thing.

The API reference makes every field of these records optional (`user` included), so
records are decoded one by one: a record with a null or unreadable field that is
needed is skipped with its reason (`Skipped`), and the rest of the answer is used.
Only an answer that is not a JSON list at all fails the poll.
"""

from datetime import datetime, timedelta
from typing import Generic, Literal, TypeVar

import msgspec

from adapters.qlik.activity import qualified_user
from adapters.qlik.group_mapping import GroupMapping
from schemas.timestamps import Timestamp

NO_USER = "(no user)"
"""How a pass Qlik counts without a user (`"user": null`) is listed among a group's users."""

SkipReason = Literal["invalid", "no_use_start_time", "no_user_or_group", "no_user",
                     "quarantined", "deleted_user"]
"""Why a record was left out; a closed set, used as a metric label. `quarantined` and
`deleted_user` are Qlik's own states, not faults."""


class QrsFormatError(ValueError):
    """A QRS answer that is not the documented shape; the message names the field."""


class Skipped(msgspec.Struct, frozen=True):
    """A record of a QRS answer left out, and why (`detail` is for the log)."""

    index: int
    reason: SkipReason
    detail: str


class QrsUser(msgspec.Struct, frozen=True, rename="camel"):
    """`UserCondensed`: every field optional."""

    user_directory: str | None = None
    user_id: str | None = None

    def qualified(self) -> str | None:
        """`DIRECTORY\\userid`, or None when either part is missing."""
        if not self.user_directory or not self.user_id:
            return None
        return qualified_user(self.user_directory, self.user_id)


class QrsSession(msgspec.Struct, frozen=True,
                 rename={"session_id": "sessionID", "latest_activity": "latestActivity"}):
    session_id: str | None = None
    latest_activity: Timestamp | None = None


class QrsAccessType(msgspec.Struct, frozen=True, rename="camel"):
    name: str | None = None
    id: str | None = None


class LoginAccessUsage(msgspec.Struct, frozen=True, rename="camel"):
    """`LicenseLoginAccessUsage`; `use_start_time` is checked when decoding."""

    use_start_time: Timestamp | None = None
    user: QrsUser | None = None
    latest_activity: Timestamp | None = None
    use_stop_time: Timestamp | None = None
    sessions: list[QrsSession] | None = None
    login_access_type: QrsAccessType | None = None


T = TypeVar("T")


class UserAccessRecord(msgspec.Struct, frozen=True, rename="camel"):
    """`LicenseUserAccessType`: a user access allocation. Qlik keeps the record while
    the pass is in quarantine (`quarantined`, until `quarantineEnd`) after it was
    removed from its user or the user was deleted (`deletedUserId`,
    `deletedUserDirectory`)."""

    user: QrsUser | None = None
    last_used: Timestamp | None = None
    quarantined: bool | None = None
    quarantine_end: Timestamp | None = None
    deleted_user_id: str | None = None
    deleted_user_directory: str | None = None


class Decoded(msgspec.Struct, Generic[T]):
    """The usable records of an answer (with their positions in it), and the skipped."""

    records: list[T]
    indexes: list[int]
    skipped: list[Skipped]


class LoginAccessDetails(msgspec.Struct, frozen=True, rename="camel"):
    """`AccessTypeOverview.LoginAccessDetails` of the QRS API reference."""

    enabled: bool = False
    token_cost: float = 0.1
    allocated_tokens: float = 0
    used_tokens: float = 0
    unavailable_tokens: float = 0


class UserAccessDetails(msgspec.Struct, frozen=True, rename="camel"):
    """`AccessTypeOverview.UserAccessDetails` of the QRS API reference."""

    enabled: bool = False
    token_cost: float = 1.0
    allocated_tokens: float = 0
    used_tokens: float = 0
    quarantined_tokens: float = 0


class AccessTypeOverview(msgspec.Struct, frozen=True, rename="camel"):
    """"License: Get access type overview". The sections are `loginAccess` and
    `userAccess`; `loginAccessType` / `userAccessType` are the names of the
    deprecated `accesstypeinfo` and are not read here. A section the answer lacks
    stays None, so its figures are missing, never a silent 0."""

    total_tokens: float = 0
    available_tokens: float = 0
    tokens_enabled: bool = False
    login_access: LoginAccessDetails | None = None
    user_access: UserAccessDetails | None = None

    def missing_sections(self) -> list[str]:
        return [name for name, section in (("loginAccess", self.login_access),
                                           ("userAccess", self.user_access))
                if section is None]


_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_usage = msgspec.json.Decoder(LoginAccessUsage)
_user_access = msgspec.json.Decoder(UserAccessRecord)
_overview = msgspec.json.Decoder(AccessTypeOverview)


def _records(body: bytes, what: str) -> list[msgspec.Raw]:
    try:
        return _raw_list.decode(body)
    except msgspec.DecodeError as exc:
        raise QrsFormatError(f"{what}: {exc}") from None


def decode_usage(body: bytes) -> Decoded[LoginAccessUsage]:
    """`loginaccessusage/full`, record by record."""
    out: Decoded[LoginAccessUsage] = Decoded([], [], [])
    for i, raw in enumerate(_records(body, "loginaccessusage/full")):
        try:
            record = _usage.decode(raw)
        except msgspec.DecodeError as exc:
            out.skipped.append(Skipped(i, "invalid", str(exc)))
            continue
        if record.use_start_time is None:
            out.skipped.append(Skipped(i, "no_use_start_time", "useStartTime is null or "
                                       "absent: when the pass was consumed is unknown"))
            continue
        out.records.append(record)
        out.indexes.append(i)
    return out


def decode_user_access(body: bytes) -> Decoded[UserAccessRecord]:
    """`useraccesstype/full`, record by record."""
    out: Decoded[UserAccessRecord] = Decoded([], [], [])
    for i, raw in enumerate(_records(body, "useraccesstype/full")):
        try:
            out.records.append(_user_access.decode(raw))
            out.indexes.append(i)
        except msgspec.DecodeError as exc:
            out.skipped.append(Skipped(i, "invalid", str(exc)))
    return out


class UapHolders(msgspec.Struct):
    """Users who hold a user access pass now, and the records that make no holder."""

    holders: set[str]
    not_held: list[Skipped]


def holders_from_qrs(records: Decoded[UserAccessRecord]) -> UapHolders:
    """UAP holders: records of a present user whose pass is not in quarantine.

    A quarantined pass was removed from its user (or its user deleted); it still
    costs a token, but nobody holds it: tokenpool is sent a `remove` and R9 decides
    the quarantine from the pass's own use.
    """
    out = UapHolders(holders=set(), not_held=list(records.skipped))
    for i, rec in zip(records.indexes, records.records, strict=True):
        user = rec.user.qualified() if rec.user is not None else None
        if rec.deleted_user_id or rec.deleted_user_directory:
            deleted = qualified_user(rec.deleted_user_directory or "?", rec.deleted_user_id or "?")
            out.not_held.append(Skipped(i, "deleted_user", f"user {deleted} was deleted"))
        elif rec.quarantined:
            end = rec.quarantine_end.isoformat() if rec.quarantine_end else "unknown"
            out.not_held.append(Skipped(i, "quarantined", f"the pass of {user or NO_USER} is "
                                        f"in quarantine until {end}"))
        elif user is None:
            out.not_held.append(Skipped(i, "no_user", "no user (null, or without userDirectory "
                                        "or userId) and not a deleted user's pass"))
        else:
            out.holders.add(user)
    out.not_held.sort(key=lambda s: s.index)
    return out


def decode_overview(body: bytes) -> AccessTypeOverview:
    try:
        return _overview.decode(body)
    except msgspec.DecodeError as exc:
        raise QrsFormatError(f"accesstypeoverview: {exc}") from None


class GroupUsage(msgspec.Struct):
    """Passes Qlik counts in use in one group, and whose they are."""

    in_use: int = 0
    users: dict[str, int] = {}


class InUse(msgspec.Struct):
    """Passes in use per group, the users no group was found for, the records skipped."""

    groups: dict[str, GroupUsage]
    unmapped: set[str]
    skipped: list[Skipped]


def passes_in_use(
    usage: Decoded[LoginAccessUsage],
    mapping: GroupMapping,
    as_of: datetime,
    pass_lifetime: timedelta = timedelta(days=28),
) -> InUse:
    """Passes in use per group at `as_of`.

    The group is Qlik's own (`loginAccessType.name`) when the record has one, else the
    mapping file's answer for the user, the same as the adapters use. A pass without a
    user still counts in its group (Qlik counts it), listed as `NO_USER`; one with
    neither user nor group cannot be placed and is skipped.
    """
    out = InUse(groups={}, unmapped=set(), skipped=[])
    for i, rec in zip(usage.indexes, usage.records, strict=True):
        start = rec.use_start_time
        if start is None or not start + pass_lifetime > as_of >= start:
            continue
        user = rec.user.qualified() if rec.user is not None else None
        group = rec.login_access_type.name if rec.login_access_type is not None else None
        if not group:
            if user is None or rec.user is None:
                out.skipped.append(Skipped(i, "no_user_or_group", "neither user nor "
                                           "loginAccessType: the pass cannot be placed in "
                                           "a group"))
                continue
            decided = mapping.decide(rec.user.user_directory or "", rec.user.user_id or "")
            if decided.group is None:
                out.unmapped.add(user)
                continue
            group = decided.group
        counted = out.groups.setdefault(group, GroupUsage(users={}))
        counted.in_use += 1
        holder = user or NO_USER
        counted.users[holder] = counted.users.get(holder, 0) + 1
    return out


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
"""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec

from adapters.qlik.activity import qualified_user
from adapters.qlik.group_mapping import GroupMapping
from schemas.timestamps import Timestamp


class QrsFormatError(ValueError):
    """A QRS answer that is not the documented shape; the message names the field."""


class QrsUser(msgspec.Struct, frozen=True, rename="camel"):
    user_directory: str
    user_id: str


class QrsSession(msgspec.Struct, frozen=True,
                 rename={"session_id": "sessionID", "latest_activity": "latestActivity"}):
    session_id: str = ""
    latest_activity: Timestamp | None = None


class QrsAccessType(msgspec.Struct, frozen=True, rename="camel"):
    name: str = ""
    id: str = ""


class LoginAccessUsage(msgspec.Struct, frozen=True, rename="camel"):
    user: QrsUser
    use_start_time: Timestamp
    latest_activity: Timestamp | None = None
    use_stop_time: Timestamp | None = None
    sessions: list[QrsSession] = []
    login_access_type: QrsAccessType | None = None


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


_usage = msgspec.json.Decoder(list[LoginAccessUsage])
_overview = msgspec.json.Decoder(AccessTypeOverview)
_any_list = msgspec.json.Decoder(list[dict[str, Any]])


def decode_usage(body: bytes) -> list[LoginAccessUsage]:
    try:
        return _usage.decode(body)
    except msgspec.DecodeError as exc:
        raise QrsFormatError(f"loginaccessusage/full: {exc}") from None


def decode_overview(body: bytes) -> AccessTypeOverview:
    try:
        return _overview.decode(body)
    except msgspec.DecodeError as exc:
        raise QrsFormatError(f"accesstypeoverview: {exc}") from None


def decode_list(body: bytes, what: str) -> list[dict[str, Any]]:
    try:
        return _any_list.decode(body)
    except msgspec.DecodeError as exc:
        raise QrsFormatError(f"{what}: {exc}") from None


class GroupUsage(msgspec.Struct):
    """Passes Qlik counts in use in one group, and whose they are."""

    in_use: int = 0
    users: dict[str, int] = {}


def passes_in_use(
    records: list[LoginAccessUsage],
    mapping: GroupMapping,
    as_of: datetime,
    pass_lifetime: timedelta = timedelta(days=28),
) -> tuple[dict[str, GroupUsage], set[str]]:
    """Passes in use per group at `as_of`, and the users no group could be found for.

    The group is Qlik's own (`loginAccessType.name`) when the record has one, else the
    mapping file's answer for the user, the same as the adapters use.
    """
    groups: dict[str, GroupUsage] = {}
    unmapped: set[str] = set()
    for rec in records:
        if not rec.use_start_time + pass_lifetime > as_of >= rec.use_start_time:
            continue
        user = qualified_user(rec.user.user_directory, rec.user.user_id)
        group = rec.login_access_type.name if rec.login_access_type is not None else ""
        if not group:
            decided = mapping.decide(rec.user.user_directory, rec.user.user_id)
            if decided.group is None:
                unmapped.add(user)
                continue
            group = decided.group
        usage = groups.setdefault(group, GroupUsage(users={}))
        usage.in_use += 1
        usage.users[user] = usage.users.get(user, 0) + 1
    return groups, unmapped


def as_plain(groups: Mapping[str, GroupUsage]) -> dict[str, int]:
    return {g: u.in_use for g, u in groups.items()}

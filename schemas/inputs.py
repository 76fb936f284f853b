"""Input wire types: session events and allocation changes."""

from typing import Annotated, Literal

import msgspec

from schemas.timestamps import Timestamp

# Bounds keep hostile input from costing memory: ids are short, counts are sane.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
TokenCount = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]


class SessionStart(msgspec.Struct, frozen=True, kw_only=True):
    """A browser or device connected; `user_id` null means anonymous access (R6)."""

    event_id: Id
    ts: Timestamp
    group: Id
    session_id: Id
    user_id: Id | None
    device_id: Id | None = None


class SessionHeartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Activity on an open session: pushes its inactivity timeout back (R4)."""

    event_id: Id
    ts: Timestamp
    group: Id
    session_id: Id
    user_id: Id | None


class SessionEnd(msgspec.Struct, frozen=True, kw_only=True):
    """Logout or browser closed: the session is no longer open (R4)."""

    event_id: Id
    ts: Timestamp
    group: Id
    session_id: Id
    user_id: Id | None
    reason: Literal["logout", "browser_closed"]


class Licence(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="licence"):
    """The licence size: how many tokens the customer bought (R10)."""

    event_id: Id
    ts: Timestamp
    total_tokens: TokenCount


class LoginGroup(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="login_group"):
    """Tokens allocated to a login access group: capacity is 10 passes a token."""

    event_id: Id
    ts: Timestamp
    group: Id
    tokens: TokenCount


class UserAccess(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="user_access"):
    """Assign or remove a user access pass (R9)."""

    event_id: Id
    ts: Timestamp
    user_id: Id
    action: Literal["assign", "remove"]


Allocation = Licence | LoginGroup | UserAccess
SessionEvent = SessionStart | SessionHeartbeat | SessionEnd
InputEvent = SessionStart | SessionHeartbeat | SessionEnd | Licence | LoginGroup | UserAccess

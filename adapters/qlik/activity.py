"""What every Qlik source says about a session, and how it becomes a wire event.

Each source (UDP user events, audit log lines) parses into an `Activity`; one mapping
turns an activity plus a group into `SessionStart`, `SessionHeartbeat` or `SessionEnd`.
Anything a source cannot use is a `Rejected` with a reason: nothing is dropped silently.
"""

import hashlib
import re
from datetime import datetime
from typing import Literal

import msgspec

from schemas.inputs import SessionEnd, SessionEvent, SessionHeartbeat, SessionStart

ActivityKind = Literal["start", "activity", "stop"]
EndReason = Literal["logout", "timeout", "silent"]
"""`silent`: ended by tokenpool's keep-alive bound, not by the proxy (see keepalive)."""
Connection = Literal["open", "close"]

COMMANDS: dict[str, tuple[ActivityKind, Connection | None]] = {
    "start session": ("start", None),
    "stop session": ("stop", None),
    "open connection": ("activity", "open"),
    "close connection": ("activity", "close"),
}
"""The proxy's session and connection commands (lower-cased), as Butler SOS lists them."""

# Qlik ends a session either on logout or when the proxy's inactivity timeout fires.
# ASSUMPTION, to confirm on a live site: no public source shows the wording of a
# "Stop session" line for a timeout as against a logout (Butler SOS filters on "Stop
# session for user" only; Qlik's help pages list the Command, not the message). These
# words are a guess; see `end_reason` and the README's table of sources.
_TIMEOUT_WORDS = re.compile(r"time[ds]?[ -]?out|inactiv|expire|idle", re.IGNORECASE)


class Activity(msgspec.Struct, frozen=True, kw_only=True):
    """One thing a Qlik proxy saw a session do."""

    kind: ActivityKind
    ts: datetime
    host: str
    user_directory: str
    user_id: str
    session_id: str
    end_reason: EndReason | None = None
    connection: Connection | None = None
    """A websocket connection of the session opened or closed (activity only)."""
    synthetic: bool = False
    """Made by the keep-alive (a heartbeat, or a silent session's end), not the proxy."""
    ref: str
    """What identifies the source record (datagram bytes, file line): its hash is the
    event id, so the same record read twice gives the same event (R13)."""


class Rejected(msgspec.Struct, frozen=True, kw_only=True):
    """A record that yields no event, and why. `skipped` records are expected (internal
    calls, blank lines); the others are malformed and reported as such."""

    reason: str
    skipped: bool = False


def end_reason(message: str) -> EndReason:
    """`timeout` when the proxy's message speaks of a timeout or inactivity, else
    `logout`.

    A guess, not a published format: no public source shows how a "Stop session"
    message for a timeout differs from one for a logout. Both end the session at the
    same instant, so passes are counted alike either way; only the wire `reason`
    (`browser_closed` / `logout`) rests on this guess.
    """
    return "timeout" if _TIMEOUT_WORDS.search(message) else "logout"


def qualified_user(user_directory: str, user_id: str) -> str:
    """Qlik's own spelling of a user, `DIRECTORY\\userid`: the wire `user_id`."""
    return f"{user_directory}\\{user_id}"


def event_id(prefix: str, ref: str, kind: str) -> str:
    digest = hashlib.blake2b(f"{kind}\x00{ref}".encode(), digest_size=12).hexdigest()
    return f"{prefix}-{digest}"


def to_session_event(activity: Activity, group: str, user_id: str | None) -> SessionEvent:
    """The wire event for `activity` in `group`; `user_id` None means anonymous (R6).

    A timed-out session ends as `browser_closed`: in Qlik, closing the browser ends
    nothing by itself, the proxy's inactivity timeout does, so a timeout is exactly how
    a browser close shows. A session the keep-alive ended for silence ends the same way.
    """
    eid = event_id("qlik", activity.ref, activity.kind)
    match activity.kind:
        case "start":
            return SessionStart(event_id=eid, ts=activity.ts, group=group,
                                session_id=activity.session_id, user_id=user_id)
        case "activity":
            return SessionHeartbeat(event_id=eid, ts=activity.ts, group=group,
                                    session_id=activity.session_id, user_id=user_id)
        case "stop":
            reason: Literal["logout", "browser_closed"] = (
                "browser_closed" if activity.end_reason in ("timeout", "silent") else "logout"
            )
            return SessionEnd(event_id=eid, ts=activity.ts, group=group,
                              session_id=activity.session_id, user_id=user_id, reason=reason)

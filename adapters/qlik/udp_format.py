"""log4net UDP user events of the Qlik Sense proxy: datagram → `Activity`.

Two layouts are accepted (see `deploy/qlik/LocalLogConfig.xml`):

- stock: `/qseow-proxy-session/;host;Command;UserDirectory;UserId;Origin;Context;message`
  (and `/qseow-proxy-connection/;...`). It has no session id and no timestamp: the
  timestamp is the receive time, and the session id is derived from user, host and
  start time, so stops and connections are matched to the user's open sessions on that
  host (`UdpCorrelator`).
- extended: the same, followed by `;ProxySessionId=<id>;Timestamp=<ISO-8601>`. The
  message may itself contain `;`, so the two trailing fields are recognised by their
  names, from the right.

log4net's PatternLayout writes `(null)` (its `SystemInfo.NullText`) for a property
that is not set: such a field is empty. An extended datagram whose ProxySessionId is
`(null)` or empty is correlated like the stock layout (it has no session id) but
keeps its own timestamp; a `(null)` user is no user.
"""

import hashlib
from collections import deque
from datetime import datetime, timedelta

import msgspec

from adapters.qlik.activity import (
    COMMANDS,
    Activity,
    ActivityKind,
    Connection,
    EndReason,
    Rejected,
    end_reason,
)

SESSION_TYPE = "/qseow-proxy-session/"
CONNECTION_TYPE = "/qseow-proxy-connection/"
SESSION_ID_FIELD = "ProxySessionId="
TIMESTAMP_FIELD = "Timestamp="
LOG4NET_NULL = "(null)"
"""What log4net writes for a property that is not set (SystemInfo.NullText)."""
INTERNAL_DIRECTORY = "INTERNAL"
"""Qlik's service accounts (sa_proxy, sa_repository, ...): never licensed users."""

_TYPES = (SESSION_TYPE, CONNECTION_TYPE)
MAX_DATAGRAM = 65_507


class Datagram(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of one user-event datagram; the last two only in the extended layout."""

    msg_type: str
    host: str
    command: str
    user_directory: str
    user_id: str
    origin: str
    context: str
    message: str
    proxy_session_id: str | None = None
    ts: datetime | None = None


def field(text: str) -> str:
    """A field's value: stripped, and empty where log4net wrote its null text."""
    value = text.strip()
    return "" if value == LOG4NET_NULL else value


def parse_timestamp(text: str) -> datetime | None:
    """An ISO-8601 instant with an offset; None if it is not one."""
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else None


def parse_datagram(data: bytes) -> Datagram | Rejected:
    """Split one datagram into its fields; a Rejected names what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(reason=f"not UTF-8 at byte {exc.start}")
    text = text.rstrip("\r\n")
    parts = text.split(";", 7)
    if len(parts) < 8:
        return Rejected(reason=f"{len(parts)} fields, a user event has 8: {text[:80]!r}")
    msg_type, host, command, directory, user, origin, context, message = parts
    if msg_type not in _TYPES:
        return Rejected(reason=f"message type {msg_type[:40]!r} is not a proxy user event")
    session_id: str | None = None
    ts: datetime | None = None
    tail = message.rsplit(";", 2)
    if len(tail) == 3 and tail[1].startswith(SESSION_ID_FIELD) and tail[2].startswith(
        TIMESTAMP_FIELD
    ):
        message = tail[0]
        session_id = field(tail[1][len(SESSION_ID_FIELD):]) or None
        raw_ts = tail[2][len(TIMESTAMP_FIELD):]
        ts = parse_timestamp(raw_ts)
        if ts is None:
            return Rejected(reason=f"Timestamp {raw_ts[:40]!r} is not ISO-8601 with an offset")
    return Datagram(msg_type=msg_type, host=field(host), command=field(command),
                    user_directory=field(directory), user_id=field(user), origin=origin,
                    context=context, message=message, proxy_session_id=session_id, ts=ts)


class _Open(msgspec.Struct):
    session_id: str
    last_seen: datetime


class UdpCorrelator:
    """Datagrams → activities. Pure: the caller passes each datagram's receive time,
    the event time of a datagram without its own Timestamp.

    For the stock layout it remembers each user's open sessions per host (oldest
    first): a stop ends the oldest, a connection counts as activity of the newest.
    With several sessions of one user on one host the pairing is a guess; the
    extended layout, which carries the session id, has no such limit.
    """

    def __init__(self, forget_after: timedelta = timedelta(hours=24)) -> None:
        self.forget_after = forget_after
        self._open: dict[tuple[str, str, str], deque[_Open]] = {}

    def open_sessions(self) -> int:
        return sum(len(q) for q in self._open.values())

    def accept(self, data: bytes, received_at: datetime) -> Activity | Rejected:
        parsed = parse_datagram(data)
        if isinstance(parsed, Rejected):
            return parsed
        command = COMMANDS.get(parsed.command.lower())
        if command is None:
            return Rejected(reason=f"command {parsed.command[:40]!r} is not a session or "
                            "connection event")
        kind, connection = command
        if not parsed.user_directory or not parsed.user_id:
            return Rejected(reason="no user directory or user id")
        if parsed.user_directory.upper() == INTERNAL_DIRECTORY:
            return Rejected(reason="internal service account", skipped=True)
        # Timeout or logout: guessed from the wording (no published example; see end_reason).
        reason = end_reason(parsed.message) if kind == "stop" else None
        ref = data.decode("utf-8", "replace")
        if parsed.proxy_session_id == "0":
            return Rejected(reason="proxy session id 0: an internal call", skipped=True)
        if parsed.proxy_session_id is not None and parsed.ts is not None:
            return Activity(kind=kind, ts=parsed.ts, host=parsed.host,
                            user_directory=parsed.user_directory, user_id=parsed.user_id,
                            session_id=parsed.proxy_session_id, end_reason=reason,
                            connection=connection, ref=ref)
        # Stock layout, or extended with ProxySessionId `(null)`: no session id.
        return self._stock(parsed, kind, connection, reason, parsed.ts or received_at, ref)

    def _stock(self, d: Datagram, kind: ActivityKind, connection: Connection | None,
               reason: EndReason | None, at: datetime, ref: str) -> Activity | Rejected:
        key = (d.host.lower(), d.user_directory.lower(), d.user_id.lower())
        sessions = self._open.get(key)
        if sessions is not None:
            while sessions and sessions[0].last_seen + self.forget_after <= at:
                sessions.popleft()
        ref = f"{ref}\x00{at.isoformat()}"
        if kind == "start":
            seed = f"{key[0]}\x00{key[1]}\x00{key[2]}\x00{at.isoformat()}"
            sid = "stock-" + hashlib.blake2b(seed.encode(), digest_size=10).hexdigest()
            self._open.setdefault(key, deque()).append(_Open(sid, at))
            return Activity(kind="start", ts=at, host=d.host, user_directory=d.user_directory,
                            user_id=d.user_id, session_id=sid, ref=ref)
        if not sessions:
            self._open.pop(key, None)
            what = "stop" if kind == "stop" else "connection"
            return Rejected(reason=f"{what} of {d.user_directory}\\{d.user_id} on {d.host}: no "
                            "session of theirs started since the listener began (stock layout "
                            "has no session id)")
        if kind == "stop":
            ended = sessions.popleft()
            if not sessions:
                del self._open[key]
            return Activity(kind="stop", ts=at, host=d.host, user_directory=d.user_directory,
                            user_id=d.user_id, session_id=ended.session_id,
                            end_reason=reason, ref=ref)
        newest = sessions[-1]
        newest.last_seen = at
        return Activity(kind="activity", ts=at, host=d.host, user_directory=d.user_directory,
                        user_id=d.user_id, session_id=newest.session_id,
                        connection=connection, ref=ref)

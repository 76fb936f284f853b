"""Keeps a session alive while it sits in one app with its connection open. Pure.

The proxy writes a session's websocket connections only when one opens or closes. A
user who works for two hours in one app sends nothing in between, so tokenpool's
inactivity timeout (R4, 30 min) would close a session Qlik still holds and miss its
hourly renewals (R3). While a session has an open connection and no stop, this adds
a heartbeat `interval` after each of its records (and after each heartbeat), until
the proxy's own Stop session or last Close connection: when Qlik times a session out
the proxy says so, and that stop is what ends it here too.

Bound: the proxy may restart without writing stops. A session with an open
connection that sent nothing for `max_silence` (default 8 h: longer than a working
day's session in one app, short enough to cap what a proxy restart over-counts) is
ended at `last record + max_silence` with end reason `silent`, which the shells count
and log.

Time is per proxy node (`Activity.host`): the latest event time from that node.
A record is preceded by every heartbeat its node owes before the record's time, so a
file read after the fact gives exactly the heartbeats it gives when followed live,
whatever the read batches, and nodes read at different speeds do not drive each
other. Live shells also call `advance(now)`: each node's clock then moves on by the
time elapsed since its last record was received, less `lag`, so a quiet node's open
sessions stay alive; the heartbeats are the same ones, only sent sooner. Heartbeat
times and ids depend on the records alone.
"""

import heapq
from datetime import datetime, timedelta

import msgspec

from adapters.qlik.activity import Activity

DEFAULT_INTERVAL = timedelta(minutes=5)
"""Well under the 30-minute session inactivity timeout (Qlik's default, and R4's)."""
DEFAULT_MAX_SILENCE = timedelta(hours=8)
LIVE_LAG = timedelta(minutes=1)
"""How far behind the receive clock live shells keep a node's clock: a record written
(or sent) up to this late still comes before the heartbeats after it."""


class KeepAliveSettings(msgspec.Struct, frozen=True):
    """The limits an operator may set (`--keepalive-interval`,
    `--connection-max-silence`), and the live lag."""

    interval: timedelta = DEFAULT_INTERVAL
    max_silence: timedelta = DEFAULT_MAX_SILENCE
    lag: timedelta = LIVE_LAG


KEEPALIVE_DEFAULTS = KeepAliveSettings()


class OpenSession(msgspec.Struct):
    """A session with at least one open connection: the only ones kept alive."""

    host: str
    user_directory: str
    user_id: str
    open_connections: int
    last_seen: datetime
    """The session's latest record from the proxy (never a heartbeat)."""
    last_beat: datetime | None = None


class NodeClock(msgspec.Struct):
    event_ts: datetime
    """The latest event time from this node."""
    received_at: datetime
    """When the record of `event_ts` was received (datagram) or read (file line)."""


class KeepAliveState(msgspec.Struct):
    """Everything needed to resume after a restart (saved with file positions)."""

    sessions: dict[str, OpenSession] = {}
    nodes: dict[str, NodeClock] = {}


class KeepAlive:
    """Each node's sessions sit in a heap by when they next owe something, so a record
    costs the events it makes due, not a scan of every open session."""

    def __init__(self, interval: timedelta = DEFAULT_INTERVAL,
                 max_silence: timedelta = DEFAULT_MAX_SILENCE, lag: timedelta = LIVE_LAG,
                 state: KeepAliveState | None = None) -> None:
        if not timedelta(0) < interval < max_silence:
            raise ValueError(f"keep-alive interval {interval} must be positive and shorter "
                             f"than the silence bound {max_silence}")
        self.interval = interval
        self.max_silence = max_silence
        self.lag = lag
        self.state = state if state is not None else KeepAliveState(sessions={}, nodes={})
        self._due: dict[str, list[tuple[datetime, str]]] = {}
        for sid, session in self.state.sessions.items():
            self._schedule(sid, session)

    def open_connections(self) -> int:
        return sum(s.open_connections for s in self.state.sessions.values())

    def accept(self, item: Activity, received_at: datetime) -> list[Activity]:
        """What the item's node owes before `item.ts`, then `item` itself."""
        out = self._catch_up(item.host, item.ts)
        node = self.state.nodes.get(item.host)
        if node is None or item.ts >= node.event_ts:
            self.state.nodes[item.host] = NodeClock(item.ts, received_at)
        self._apply(item)
        out.append(item)
        return out

    def advance(self, now: datetime) -> list[Activity]:
        """Live: heartbeats (and silent ends) each node owes by `now` on the receive clock."""
        out: list[Activity] = []
        for host, node in sorted(self.state.nodes.items()):
            clock = node.event_ts + (now - node.received_at) - self.lag
            if clock > node.event_ts:
                out += self._catch_up(host, clock)
        return out

    def _apply(self, item: Activity) -> None:
        sessions = self.state.sessions
        session = sessions.get(item.session_id)
        if item.kind == "stop":
            sessions.pop(item.session_id, None)
            return
        if session is None:
            if item.connection != "open":
                return  # no open connection known: nothing to keep alive
            session = sessions[item.session_id] = OpenSession(
                host=item.host, user_directory=item.user_directory, user_id=item.user_id,
                open_connections=0, last_seen=item.ts)
        session.last_seen = max(session.last_seen, item.ts)
        if item.connection == "open":
            session.open_connections += 1
        elif item.connection == "close":
            session.open_connections -= 1
            if session.open_connections <= 0:
                del sessions[item.session_id]  # the engine's own timeout takes it from here
                return
        self._schedule(item.session_id, session)

    def _next_beat(self, session: OpenSession) -> datetime:
        if session.last_beat is not None and session.last_beat >= session.last_seen:
            return session.last_beat + self.interval
        return session.last_seen + self.interval

    def _next_due(self, session: OpenSession) -> datetime:
        return min(self._next_beat(session), session.last_seen + self.max_silence)

    def _schedule(self, sid: str, session: OpenSession) -> None:
        heapq.heappush(self._due.setdefault(session.host, []), (self._next_due(session), sid))

    def _catch_up(self, host: str, until: datetime) -> list[Activity]:
        """Every heartbeat and silent end of `host`'s sessions due before `until`, in
        time order (ties by session id)."""
        heap = self._due.get(host)
        made: list[tuple[datetime, str, Activity]] = []
        while heap and heap[0][0] < until:
            due, sid = heapq.heappop(heap)
            session = self.state.sessions.get(sid)
            if session is None or session.host != host or self._next_due(session) != due:
                continue  # ended, or rescheduled by a later record: a stale entry
            expiry = session.last_seen + self.max_silence
            beat = self._next_beat(session)
            while beat < until and beat < expiry:
                made.append((beat, sid, self._made(sid, session, beat, stop=False)))
                session.last_beat = beat
                beat += self.interval
            if expiry < until:
                made.append((expiry, sid, self._made(sid, session, expiry, stop=True)))
                del self.state.sessions[sid]
            else:
                self._schedule(sid, session)
        return [activity for _, _, activity in sorted(made, key=lambda m: (m[0], m[1]))]

    @staticmethod
    def _made(sid: str, session: OpenSession, ts: datetime, *, stop: bool) -> Activity:
        return Activity(kind="stop" if stop else "activity", ts=ts, host=session.host,
                        user_directory=session.user_directory, user_id=session.user_id,
                        session_id=sid, end_reason="silent" if stop else None,
                        synthetic=True, ref=f"keepalive\x00{sid}\x00{ts.isoformat()}")

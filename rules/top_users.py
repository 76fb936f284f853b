"""Who burns login access passes now: `tokenpool plan --top N` (R12).

Per group, the identified users who consumed the most passes in the last pass lifetime
(28 days) of a history, with how they used the site in that window: sessions started
per day, hours with at least one session open (devices open at once count once), and
whether a user access pass would cost less than their passes (more than one token's
worth of passes per lifetime, R12).

`Activity` follows each identified user's sessions the way the engine opens and closes
them: a start opens a session (R1), a heartbeat or repeated start is activity, an end
closes it, and so does the inactivity timeout after its last activity (R4); a denied
start never opens (R5, R8, R11), a renewal denied discontinues it (R8), and a closed
session's id is ignored within the dedupe horizon (R13). Pure: events in, figures out.
"""

from bisect import bisect_right
from dataclasses import dataclass
from fractions import Fraction

from rules.planning import DAY, Usage
from schemas.inputs import InputEvent, SessionEnd, SessionHeartbeat, SessionStart
from schemas.outputs import AccessDenied, OutputEvent
from schemas.timestamps import to_micros

HOUR = 3_600_000_000
"""One hour in microseconds."""
SWEEP_EVERY = 1 << 14
"""Inputs between two sweeps of sessions timed out and intervals no window can reach."""


@dataclass(slots=True)
class _Session:
    user: str
    start: int
    last: int
    """Latest activity: the start, a heartbeat or a repeated start (R4)."""


class Activity:
    """The sessions of identified users, per group, as `(start, close)` intervals."""

    __slots__ = ("_clock", "_closed", "_horizon", "_inputs", "_lifetime", "_open",
                 "_timeout", "intervals")

    def __init__(self, inactivity_timeout: int, dedupe_horizon: int, lifetime: int) -> None:
        """Durations in µs; `lifetime` bounds how far back a figure looks (one pass
        lifetime), so older intervals are dropped as the history goes on."""
        self._timeout = inactivity_timeout
        self._horizon = dedupe_horizon
        self._lifetime = lifetime
        self._open: dict[tuple[str, str], _Session] = {}
        """(group, session id) → a session open as of its last event."""
        self._closed: dict[tuple[str, str], int] = {}
        """(group, session id) → when it closed, kept for the dedupe horizon (R13)."""
        self._clock: dict[str, int] = {}
        """Each group's clock: an event older than it counts at the clock (late)."""
        self._inputs = 0
        self.intervals: dict[tuple[str, str], list[tuple[int, int]]] = {}
        """(group, user) → (start, close) of each closed session, in closing order."""

    def observe_input(self, event: InputEvent) -> None:
        if not isinstance(event, SessionStart | SessionHeartbeat | SessionEnd):
            return
        user = event.user_id
        if user is None:  # anonymous: every session is its own holder (R6), not a person
            return
        group = event.group
        t = to_micros(event.ts)
        clock = self._clock.get(group)
        if clock is not None and t < clock:
            t = clock
        self._clock[group] = t
        key = (group, event.session_id)
        session = self._open.get(key)
        if session is not None and t >= session.last + self._timeout:
            self._close(key, session, session.last + self._timeout)  # timed out (R4)
            session = None
        if isinstance(event, SessionStart):
            if session is not None:
                session.last = max(session.last, t)  # a repeated start is activity (R13)
            else:
                closed = self._closed.get(key)
                if closed is None or t >= closed + self._horizon:
                    self._open[key] = _Session(user, t, t)
        elif session is not None:
            if isinstance(event, SessionHeartbeat):
                session.last = max(session.last, t)
            else:
                self._close(key, session, t)
        self._inputs += 1
        if self._inputs % SWEEP_EVERY == 0:
            self._sweep(t)

    def observe_output(self, o: OutputEvent) -> None:
        """Denials: a start denied never opened; a renewal denied closes (R8)."""
        if not isinstance(o, AccessDenied) or o.user_id is None:
            return
        key = (o.group, o.session_id)
        session = self._open.pop(key, None)
        if session is not None and o.renewal:
            self._open[key] = session
            self._close(key, session, to_micros(o.ts))

    def sessions(self, group: str, user: str) -> list[tuple[int, int]]:
        """(start, close) of every session of `user` in `group` still known, sorted by
        start; a session still open closes at its inactivity deadline."""
        spans = list(self.intervals.get((group, user), ()))
        spans += [(s.start, s.last + self._timeout) for (g, _), s in self._open.items()
                  if g == group and s.user == user]
        return sorted(spans)

    def _close(self, key: tuple[str, str], session: _Session, at: int) -> None:
        del self._open[key]
        self._closed[key] = at
        self.intervals.setdefault((key[0], session.user), []).append((session.start, at))

    def _sweep(self, now: int) -> None:
        """Close sessions timed out by `now`, forget closed ids past the dedupe horizon
        and intervals that ended a lifetime ago: no window ending at or after `now`
        reaches them."""
        timeout = self._timeout
        for key, session in list(self._open.items()):
            if session.last + timeout <= now:
                self._close(key, session, session.last + timeout)
        horizon = self._horizon
        self._closed = {k: at for k, at in self._closed.items() if at + horizon > now}
        oldest = now - self._lifetime
        for key, spans in list(self.intervals.items()):
            kept = [s for s in spans if s[1] > oldest]
            if not kept:
                del self.intervals[key]
            elif len(kept) < len(spans):
                self.intervals[key] = kept


@dataclass(frozen=True, slots=True)
class TopUser:
    user_id: str
    group: str
    passes: int
    """Login access passes consumed in the window."""
    per_lifetime: Fraction
    """`passes` per pass lifetime: the same number when the window is a whole lifetime,
    scaled up when the history is shorter."""
    sessions: int
    """Sessions started in the window."""
    sessions_per_day: Fraction
    hours: Fraction
    """Hours in the window with at least one of the user's sessions open."""
    uap_cheaper: bool
    """More than one token's worth of passes per lifetime: a UAP costs less (R12)."""


def open_time(spans: list[tuple[int, int]], lo: int, hi: int) -> int:
    """µs within [lo, hi) covered by at least one of the (start, close) spans, which are
    sorted by start: overlapping sessions (several devices) count once."""
    total = 0
    reach = lo
    for start, close in spans:
        a, b = max(start, reach), min(close, hi)
        if b > a:
            total += b - a
        reach = max(reach, min(close, hi))
    return total


def top_users(
    usage: Usage,
    activity: Activity,
    start: int,
    end: int,
    lifetime: int,
    n: int,
    passes_per_token: int = 10,
) -> dict[str, tuple[TopUser, ...]]:
    """Per group, the `n` identified users with the most passes consumed in the window
    (end - lifetime, end] of a history that runs from `start` to `end`, most first, ties
    by user id; users with no pass in the window are not listed. A history shorter than
    a lifetime is the window: passes are scaled up to a lifetime, and sessions per day
    count at least one day."""
    length = min(lifetime, end - start)
    since = end - lifetime
    days = Fraction(max(length, DAY), DAY)
    result: dict[str, tuple[TopUser, ...]] = {}
    for group, g in sorted(usage.groups.items()):
        counts: dict[str, int] = {}
        for t, user in g.passes[bisect_right(g.passes, since, key=_instant):]:
            if user is not None and t <= end:
                counts[user] = counts.get(user, 0) + 1
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]
        rows = []
        for user, count in ranked:
            spans = activity.sessions(group, user)
            started = sum(1 for s, _ in spans if since < s <= end)
            per_lifetime = (Fraction(count * lifetime, length) if 0 < length < lifetime
                            else Fraction(count))
            rows.append(TopUser(
                user_id=user,
                group=group,
                passes=count,
                per_lifetime=per_lifetime,
                sessions=started,
                sessions_per_day=started / days,
                hours=Fraction(open_time(spans, since, end), HOUR),
                uap_cheaper=per_lifetime > passes_per_token,
            ))
        if rows:
            result[group] = tuple(rows)
    return result


def _instant(p: tuple[int, str | None]) -> int:
    return p[0]

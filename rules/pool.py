"""One login access group: its passes, holders, sessions and timers (R1-R8, R13).

A group's clock never goes back, so return instants, window ends and dedupe
deadlines are appended in time order: FIFO queues, O(1) each. Activity is stamped with
the clock too, so open sessions kept in order of their latest activity are in order
of their inactivity deadlines: an ordered dict, moved to its end on activity and
removed from on close, O(1) each, whose first entry is always the next real timeout.
Nothing is queued for a session that ended or was active since (a heap of deadlines
re-armed when due kept one entry per session and fired for each of them). One event
therefore costs the same whatever the pool's capacity or passes in use.
"""

from collections import OrderedDict, deque
from datetime import UTC, timedelta

from rules.config import Config, Durations
from rules.ids import output_id
from rules.records import (
    Holder,
    PoolRecord,
    Session,
    SessionState,
    user_holder,
)
from schemas.inputs import SessionEnd, SessionHeartbeat, SessionStart
from schemas.outputs import AccessDenied, DenialReason, OutputEvent, PassConsumed, PassReturned
from schemas.timestamps import Timestamp, from_micros

NEVER = 1 << 62
"""An instant later than any timer."""

OPEN = SessionState.OPEN

# Journal entry kinds: which keyed record an event touched.
TOUCH_SESSION = 0
TOUCH_HOLDER = 1
TOUCH_RETURN = 2
TOUCH_UAP = 3

Journal = list[tuple[int, str, str | int]]
"""(what, group, key) of every keyed record an event touched."""


def _deadline_seq(entry: tuple[int, int, str, Session]) -> tuple[int, int]:
    return entry[0], entry[1]


class Pool:
    """The state and rules of one group. Mutated in place by `start`, `heartbeat`, `end`
    and `advance`; outputs are appended to the list passed in."""

    __slots__ = (
        "_active",
        "_horizon",
        "_idle",
        "_lifetime",
        "_lifetime_delta",
        "_max_devices",
        "_next_due",
        "_passes_per_token",
        "_purges",
        "_returning",
        "_returns",
        "_timeout",
        "_uncovered",
        "_window",
        "_windows",
        "group",
        "holders",
        "journal",
        "record",
        "sessions",
        "uap",
    )

    def __init__(
        self,
        group: str,
        config: Config,
        uap: dict[str, int],
        journal: Journal | None = None,
    ) -> None:
        d = Durations.of(config)
        self.group = group
        self._window = d.window
        self._lifetime = d.pass_lifetime
        self._lifetime_delta = timedelta(microseconds=d.pass_lifetime)
        """The lifetime as a timedelta: `returns_at` is `ts` plus it, no second
        from_micros (a third of an output's cost)."""
        self._timeout = d.inactivity_timeout
        self._horizon = d.dedupe_horizon
        self._max_devices = config.max_devices
        self._passes_per_token = config.passes_per_token
        self.uap = uap
        """User access pass holders → last use (shared with the ledger, R9)."""
        self.journal = journal
        self.record = PoolRecord()
        self.sessions: dict[str, Session] = {}
        self.holders: dict[str, Holder] = {}
        self._returns: deque[list[int]] = deque()
        self._returning: dict[int, list[int]] = {}
        """The entries of `_returns` by instant: a checkpoint reads the count of each
        instant an event touched, in any order, without a scan of the calendar."""
        self._windows: deque[tuple[int, int, str]] = deque()
        self._idle: OrderedDict[str, Session] = OrderedDict()
        """Open sessions, least recently active first: in deadline order."""
        self._active = self._idle.move_to_end
        """Marks a session as the most recently active (bound once: a heartbeat's cost)."""
        self._uncovered: set[str] = set()
        """Holders whose user access pass was removed while their sessions were open."""
        self._purges: deque[tuple[int, str]] = deque()
        self._next_due = NEVER

    # -- figures -----------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.record.tokens * self._passes_per_token

    @property
    def available(self) -> int:
        return max(0, self.record.tokens * self._passes_per_token - self.record.in_use)

    @property
    def counted_tokens(self) -> int:
        """Tokens the ledger counts for this group: passes still in use keep theirs (R10)."""
        ppt = self._passes_per_token
        return max(self.record.tokens, -(-self.record.in_use // ppt))

    def counted_tokens_at(self, t: int) -> int:
        """`counted_tokens` as of `t`, with the returns due by `t` deducted, without firing
        them: the ledger reads other groups at an allocation's instant."""
        in_use = self.record.in_use
        for instant, count in self._returns:
            if instant > t:
                break
            in_use -= count
        return max(self.record.tokens, -(-in_use // self._passes_per_token))

    def returning_at(self, instant: int) -> int:
        """Passes due back at `instant` (0 once they have returned)."""
        entry = self._returning.get(instant)
        return 0 if entry is None else entry[1]

    def returns_calendar(self) -> list[tuple[int, int]]:
        """(instant, passes returning then), soonest first."""
        return [(instant, count) for instant, count in self._returns]

    def returning_within(self, now: int, horizon: int) -> int:
        """Passes that return in (now, now + horizon]."""
        end = now + horizon
        total = 0
        for instant, count in self._returns:
            if instant > end:
                break
            if instant > now:
                total += count
        return total

    # -- time --------------------------------------------------------------------

    def at(self, ts: int, out: list[OutputEvent]) -> int:
        """Fire the timers due by `ts` and move the clock there; returns the instant the
        event applies at: `ts`, or the clock for a late event (SPEC §3)."""
        rec = self.record
        clock = rec.clock
        if clock is not None and ts < clock:
            rec.late_events += 1
            return clock
        if ts >= self._next_due:
            self._fire(ts, out)
        rec.clock = ts
        return ts

    def advance(self, ts: int, out: list[OutputEvent]) -> None:
        """A clock tick: timers due by `ts` fire even when no event arrives."""
        rec = self.record
        if rec.clock is not None and ts <= rec.clock:
            return
        if ts >= self._next_due:
            self._fire(ts, out)
        rec.clock = ts

    @property
    def next_due(self) -> int | None:
        """No timer is due before this instant (None: nothing queued). It can be early:
        the first open session may have been active since, then nothing is due at it."""
        return None if self._next_due == NEVER else self._next_due

    def _fire(self, until: int, out: list[OutputEvent]) -> None:
        """Fire timers in time order. At one instant: returns, then inactivity timeouts
        (a session whose deadline is `w` is not open at `w`, R4), then renewals in
        window-open order. Timeouts and forgetting closed sessions emit nothing, so
        they are only drained up to the next renewal and in bulk at the end."""
        returns, windows, idle = self._returns, self._windows, self._idle
        holders, journal, timeout = self.holders, self.journal, self._timeout
        r = returns[0][0] if returns else NEVER
        w = windows[0][0] if windows else NEVER
        while r <= until or w <= until:
            if r <= w:
                self._return(returns.popleft(), out)
            else:
                if idle and idle[next(iter(idle))].last_activity + timeout <= w:
                    self._expire(w)
                while windows and windows[0][0] == w:
                    _, seq, key = windows.popleft()
                    holder = holders.get(key)
                    if holder is None or holder.window_end != w or holder.window_seq != seq:
                        continue  # stale: the window was replaced or its holder is gone
                    if not holder.sessions:  # window over, nobody left: forget it (R2)
                        del holders[key]
                        if journal is not None:
                            journal.append((TOUCH_HOLDER, self.group, key))
                        continue
                    self._renew(key, holder, w, out)
                w = windows[0][0] if windows else NEVER
            r = returns[0][0] if returns else NEVER  # a renewal may have queued one
        e = idle[next(iter(idle))].last_activity + timeout if idle else NEVER
        if e <= until:
            self._expire(until)
            e = idle[next(iter(idle))].last_activity + timeout if idle else NEVER
        # Forgetting closed sessions is no timer of its own: `start` checks the horizon
        # itself, so the records only need to go some time after it, here.
        purges = self._purges
        if purges and purges[0][0] <= until:
            self._forget(until)
        due = r
        if w < due:
            due = w
        if e < due:
            due = e
        self._next_due = due

    def _reschedule(self) -> None:
        """The next instant anything is due, from the queue heads."""
        returns, windows, idle = self._returns, self._windows, self._idle
        due = returns[0][0] if returns else NEVER
        if windows and windows[0][0] < due:
            due = windows[0][0]
        if idle:
            e = idle[next(iter(idle))].last_activity + self._timeout
            if e < due:
                due = e
        self._next_due = due

    # -- inputs ------------------------------------------------------------------

    def start(self, ev: SessionStart, ts: int, out: list[OutputEvent]) -> None:
        rec = self.record
        clock = rec.clock
        if clock is not None and ts < clock:  # `at`, inlined
            rec.late_events += 1
            t = clock
        else:
            if ts >= self._next_due:
                self._fire(ts, out)
            rec.clock = t = ts
        sid = ev.session_id
        known = self.sessions.get(sid)
        if known is not None and known.state != OPEN and t >= known.closed_at + self._horizon:
            del self.sessions[sid]  # closed longer ago than the dedupe horizon: a new session
            known = None
        if known is not None:
            if known.state == OPEN and ts > known.last_activity:
                self._activity(known, sid, t)  # a repeated start of an open session (R13)
            else:  # a closed session id inside the dedupe horizon, or a redelivery (R13)
                rec.ignored_events += 1
            return
        uid = ev.user_id
        holder: Holder | None
        if uid is None:  # anonymous: the session is the holder (R6)
            key = "s:" + sid  # anonymous_holder, inlined
            holder = None
        else:
            key = "u:" + uid  # user_holder, inlined
            holder = self.holders.get(key)
            if holder is not None and len(holder.sessions) >= self._max_devices:
                self._deny(ev.group, uid, sid, t, "too_many_sessions", False, out)  # R5
                return
            if uid in self.uap:  # a user access pass covers the user everywhere (R9)
                self.uap[uid] = t
                self._touch(TOUCH_UAP, uid)
                if holder is None:
                    holder = self.holders[key] = Holder(uid, 0, 0, [])
                self._open(sid, key, holder, uid, t)
                return
            if holder is not None and t < holder.window_end:  # inside the window (R1, R2)
                self._open(sid, key, holder, uid, t)
                return
        if rec.tokens == 0:
            self._deny(ev.group, uid, sid, t, "no_allocation", False, out)  # R11
            return
        if rec.tokens * self._passes_per_token <= rec.in_use:  # nothing available
            self._deny(ev.group, uid, sid, t, "pool_exhausted", False, out)  # R8
            return
        if holder is None:
            holder = self.holders[key] = Holder(uid, 0, 0, [])
        # An on-time event in UTC carries the output's `ts` already: no from_micros.
        when = ev.ts if t == ts and ev.ts.tzinfo is UTC else None
        self._consume(key, holder, sid, t, "login", out, when)  # R1
        self._open(sid, key, holder, uid, t)

    def heartbeat(self, ev: SessionHeartbeat, ts: int, out: list[OutputEvent]) -> None:
        # The hot path (most events are heartbeats): `at` and `_activity` inlined.
        rec = self.record
        clock = rec.clock
        if clock is not None and ts < clock:
            rec.late_events += 1
            t = clock
        else:
            if ts >= self._next_due:
                self._fire(ts, out)
            rec.clock = t = ts
        sid = ev.session_id
        session = self._idle.get(sid)  # open sessions only
        if session is None or ts <= session.last_activity:
            # not open (R4), or no newer than activity already applied: a repeat (R13)
            rec.ignored_events += 1
            return
        session.last_activity = t
        self._active(sid)
        journal = self.journal
        if journal is not None:
            journal.append((TOUCH_SESSION, self.group, sid))
        if self.uap or self._uncovered:  # most sites: no user access pass, nothing more
            uid = session.user_id
            if uid is not None:
                uap = self.uap
                if uid in uap:
                    uap[uid] = t
                    if journal is not None:
                        journal.append((TOUCH_UAP, self.group, uid))
                elif self._uncovered and session.holder in self._uncovered:
                    # The user access pass that covered these sessions was removed:
                    # continued use needs a login pass from now on (R3, R9).
                    self._cover(session.holder, self.holders[session.holder], t, out)

    def end(self, ev: SessionEnd, ts: int, out: list[OutputEvent]) -> None:
        rec = self.record
        clock = rec.clock
        if clock is not None and ts < clock:  # `at`, inlined
            rec.late_events += 1
            t = clock
        else:
            if ts >= self._next_due:
                self._fire(ts, out)
            rec.clock = t = ts
        sid = ev.session_id
        session = self._idle.get(sid)  # open sessions only
        if session is None:  # not open (R4), or ended already (R13)
            rec.ignored_events += 1
            return
        self._close(session, sid, SessionState.ENDED, t)

    # -- rule steps --------------------------------------------------------------

    def _activity(self, session: Session, sid: str, t: int) -> None:
        session.last_activity = t
        self._active(sid)
        self._touch(TOUCH_SESSION, sid)
        uid = session.user_id
        if uid is not None and uid in self.uap:
            self.uap[uid] = t
            self._touch(TOUCH_UAP, uid)

    def _open(self, sid: str, key: str, holder: Holder, uid: str | None, t: int) -> None:
        rec = self.record
        rec.seq += 1
        self.sessions[sid] = self._idle[sid] = Session(key, uid, t, OPEN, 0, rec.seq)
        holder.sessions.append(sid)
        rec.open_sessions += 1
        deadline = t + self._timeout
        if deadline < self._next_due:
            self._next_due = deadline
        journal = self.journal
        if journal is not None:
            journal.append((TOUCH_SESSION, self.group, sid))
            journal.append((TOUCH_HOLDER, self.group, key))

    def _close(self, session: Session, sid: str, state: SessionState, t: int) -> None:
        session.state = state
        session.closed_at = t
        self.record.open_sessions -= 1
        del self._idle[sid]
        self._purges.append((t + self._horizon, sid))  # drained lazily, see _fire
        key = session.holder
        holder = self.holders[key]
        sessions = holder.sessions
        sessions.remove(sid)
        if not sessions and holder.window_end == 0:
            del self.holders[key]  # covered by a UAP, nothing left to renew
            self._uncovered.discard(key)
        journal = self.journal
        if journal is not None:
            journal.append((TOUCH_SESSION, self.group, sid))
            journal.append((TOUCH_HOLDER, self.group, key))

    def _consume(
        self,
        key: str,
        holder: Holder,
        sid: str,
        t: int,
        reason: str,
        out: list[OutputEvent],
        when: Timestamp | None = None,
    ) -> None:
        """Consume a pass at `t` (`when` is `from_micros(t)`, if the caller has it)."""
        rec = self.record
        rec.in_use += 1
        back = t + self._lifetime
        returns = self._returns
        if returns and returns[-1][0] == back:
            returns[-1][1] += 1
        else:
            returns.append(entry := [back, 1])
            self._returning[back] = entry
        rec.seq += 1
        end = holder.window_end = t + self._window
        holder.window_seq = rec.seq
        self._windows.append((end, rec.seq, key))
        due = end if end < back else back
        if due < self._next_due:
            self._next_due = due
        if self._uncovered:
            self._uncovered.discard(key)
        journal = self.journal
        if journal is not None:
            journal.append((TOUCH_RETURN, self.group, back))
            journal.append((TOUCH_HOLDER, self.group, key))
        login = reason == "login"
        if login:
            rec.consumed_login += 1
        else:
            rec.consumed_renewal += 1
        capacity = rec.tokens * self._passes_per_token
        if when is None:
            when = from_micros(t)
        out.append(
            PassConsumed(
                event_id=output_id("pc", self.group, key, t),
                ts=when,
                group=self.group,
                user_id=holder.user_id,
                session_id=sid,
                reason="login" if login else "renewal",
                returns_at=when + self._lifetime_delta,
                available=capacity - rec.in_use if capacity > rec.in_use else 0,
                capacity=capacity,
            )
        )

    def _cover(self, key: str, holder: Holder, t: int, out: list[OutputEvent]) -> None:
        """Continued use at `t` needs a pass: consume one, or discontinue (R3, R8)."""
        if self.available > 0:
            self._consume(key, holder, holder.sessions[0], t, "renewal", out)
            return
        for sid in list(holder.sessions):
            self._deny(self.group, holder.user_id, sid, t, "pool_exhausted", True, out)
            self._close(self.sessions[sid], sid, SessionState.DISCONTINUED, t)
        if key in self.holders:
            del self.holders[key]
            self._touch(TOUCH_HOLDER, key)
        self._uncovered.discard(key)

    def _deny(
        self,
        group: str,
        uid: str | None,
        sid: str,
        t: int,
        reason: DenialReason,
        renewal: bool,
        out: list[OutputEvent],
    ) -> None:
        rec = self.record
        if reason == "pool_exhausted":
            rec.denied_pool_exhausted += 1
        elif reason == "too_many_sessions":
            rec.denied_too_many_sessions += 1
        else:
            rec.denied_no_allocation += 1
        out.append(
            AccessDenied(
                event_id=output_id("ad", group, sid, t, reason, renewal),
                ts=from_micros(t),
                group=group,
                user_id=uid,
                session_id=sid,
                reason=reason,
                renewal=renewal,
            )
        )

    # -- timers ------------------------------------------------------------------

    def _return(self, entry: list[int], out: list[OutputEvent]) -> None:
        instant, count = entry
        del self._returning[instant]
        rec = self.record
        rec.in_use -= count
        rec.returned += count
        self._touch(TOUCH_RETURN, instant)
        when = from_micros(instant)
        out.append(
            PassReturned(
                event_id=output_id("pr", self.group, instant),
                ts=when,
                group=self.group,
                count=count,
                consumed_at=when - self._lifetime_delta,
                available=self.available,
                capacity=self.capacity,
            )
        )

    def _expire(self, until: int) -> None:
        """Close the sessions whose inactivity deadline is due by `until` (R4), in
        deadline order, those due at one instant in the order they opened."""
        idle = self._idle
        timeout = self._timeout
        due: list[tuple[int, int, str, Session]] = []
        for sid, session in idle.items():
            deadline = session.last_activity + timeout
            if deadline > until:
                break
            due.append((deadline, session.seq, sid, session))
        if len(due) > 1:
            due.sort(key=_deadline_seq)
        for deadline, _, sid, session in due:
            self._close(session, sid, SessionState.TIMED_OUT, deadline)

    def _renew(self, key: str, holder: Holder, w: int, out: list[OutputEvent]) -> None:
        """The window of `holder`, which still has open sessions, ended at `w`."""
        uid = holder.user_id
        if uid is not None and uid in self.uap:  # a UAP was assigned meanwhile (R9)
            holder.window_end = 0
            self._touch(TOUCH_HOLDER, key)
            return
        self._cover(key, holder, w, out)  # R3, R8

    def _forget(self, until: int) -> None:
        """Drop closed sessions remembered past the dedupe horizon by `until` (R13)."""
        purges = self._purges
        sessions = self.sessions
        horizon = self._horizon
        journal = self.journal
        while purges and purges[0][0] <= until:
            instant, sid = purges.popleft()
            session = sessions.get(sid)
            if (
                session is not None
                and session.state != OPEN
                and session.closed_at + horizon == instant
            ):
                del sessions[sid]
                if journal is not None:
                    journal.append((TOUCH_SESSION, self.group, sid))

    # -- records -----------------------------------------------------------------

    def set_tokens(self, tokens: int) -> None:
        self.record.tokens = tokens

    def _touch(self, kind: int, key: str | int) -> None:
        if self.journal is not None:
            self.journal.append((kind, self.group, key))

    def uap_removed(self, user_id: str) -> None:
        """The user's access pass is gone: open sessions it covered need a pass at their
        next activity (R9)."""
        key = user_holder(user_id)
        holder = self.holders.get(key)
        if holder is not None and holder.window_end == 0:
            self._uncovered.add(key)

    def load(
        self,
        record: PoolRecord,
        sessions: dict[str, Session],
        holders: dict[str, Holder],
        returns: list[tuple[int, int]],
    ) -> None:
        """Install persisted records and rebuild the timer queues from them."""
        self.record = record
        self.sessions = sessions
        self.holders = holders
        self._returns = deque([instant, count] for instant, count in sorted(returns))
        self._returning = {entry[0]: entry for entry in self._returns}
        self._windows = deque(
            sorted(
                (h.window_end, h.window_seq, key) for key, h in holders.items() if h.window_end
            )
        )
        self._idle = idle = OrderedDict(
            (sid, sess)
            for sid, sess in sorted(
                (item for item in sessions.items() if item[1].state == OPEN),
                key=lambda item: (item[1].last_activity, item[1].seq),
            )
        )
        forget = sorted(
            (sess.closed_at + self._horizon, sess.seq, sid)
            for sid, sess in sessions.items()
            if sess.state != OPEN
        )
        self._active = idle.move_to_end
        self._purges = deque((at, sid) for at, _, sid in forget)
        self._uncovered = {
            key
            for key, h in holders.items()
            if h.window_end == 0 and (h.user_id is None or h.user_id not in self.uap)
        }
        self._reschedule()


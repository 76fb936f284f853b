"""The rules of one login access group (R1-R8, R13), and its timers fired in time order.

The records and queues they move are `rules.pool_state.PoolState`'s.
"""

from datetime import UTC

from rules.ids import output_id
from rules.pool_state import (
    NEVER,
    OPEN,
    TOUCH_HOLDER,
    TOUCH_RETURN,
    TOUCH_SESSION,
    TOUCH_UAP,
    Journal,
    PoolState,
)
from rules.records import Holder, Session, SessionState
from schemas.inputs import SessionEnd, SessionHeartbeat, SessionStart
from schemas.outputs import AccessDenied, DenialReason, OutputEvent, PassConsumed, PassReturned
from schemas.timestamps import Timestamp, from_micros

__all__ = [
    "NEVER",
    "OPEN",
    "TOUCH_HOLDER",
    "TOUCH_RETURN",
    "TOUCH_SESSION",
    "TOUCH_UAP",
    "Journal",
    "Pool",
]


def _deadline_seq(entry: tuple[int, int, str, Session]) -> tuple[int, int]:
    return entry[0], entry[1]


class Pool(PoolState):
    """The state and rules of one group. Mutated in place by `start`, `heartbeat`, `end`
    and `advance`; outputs are appended to the list passed in."""

    __slots__ = ()

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

"""The records and timer queues of one login access group, and what keeps them in step.

A group's clock never goes back, so return instants, window ends and dedupe
deadlines are appended in time order: FIFO queues, O(1) each. Activity is stamped with
the clock too, so open sessions kept in order of their latest activity are in order
of their inactivity deadlines: an ordered dict, moved to its end on activity and
removed from on close, O(1) each, whose first entry is always the next real timeout.
Nothing is queued for a session that ended or was active since (a heap of deadlines
re-armed when due kept one entry per session and fired for each of them). One event
therefore costs the same whatever the pool's capacity or passes in use. The rules
that move this state are `rules.pool.Pool`'s.
"""

from collections import OrderedDict, deque
from datetime import timedelta

from rules.config import Config, Durations
from rules.records import (
    Holder,
    PoolRecord,
    Session,
    SessionState,
    user_holder,
)

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


class PoolState:
    """What one group holds: its records, the timer queues rebuilt from them, and the
    bookkeeping that keeps both in step as sessions open, close and are active."""

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

    # -- timer queues ------------------------------------------------------------

    @property
    def next_due(self) -> int | None:
        """No timer is due before this instant (None: nothing queued). It can be early:
        the first open session may have been active since, then nothing is due at it."""
        return None if self._next_due == NEVER else self._next_due

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

    # -- sessions ----------------------------------------------------------------

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

    def _touch(self, kind: int, key: str | int) -> None:
        if self.journal is not None:
            self.journal.append((kind, self.group, key))

    # -- records -----------------------------------------------------------------

    def set_tokens(self, tokens: int) -> None:
        self.record.tokens = tokens

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

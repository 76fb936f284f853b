"""The engine: routes each input event to its group's pool or to the ledger.

`Engine.apply` is the whole rule set as one pure step: state + event → new state +
outputs. It reads no clock and does no I/O; time comes only from event timestamps
and from `advance`, which a live shell calls with wall-clock ticks.
"""

from collections.abc import Iterable, Iterator

import msgspec

from rules.config import Config
from rules.ids import output_id
from rules.ledger import NEVER_USED, Ledger
from rules.pool import Journal, Pool
from rules.records import PoolSnapshot, Snapshot
from schemas.inputs import (
    Allocation,
    InputEvent,
    Licence,
    LoginGroup,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
    UserAccess,
)
from schemas.internal import Grant, GroupTokens
from schemas.outputs import AccessDenied, AllocationRejected, OutputEvent
from schemas.replay import GroupSummary
from schemas.timestamps import EPOCH, from_micros, to_micros

_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)


class Engine:
    __slots__ = ("_dispatch", "config", "journal", "ledger", "pools", "unknown_group_events")

    def __init__(self, config: Config | None = None, journal: Journal | None = None) -> None:
        self.config = config if config is not None else Config()
        self.journal = journal
        """When given, every keyed record an event touches is listed here (for stores
        that persist record by record)."""
        self.ledger = Ledger(self.config)
        self.pools: dict[str, Pool] = {}
        self.unknown_group_events = 0
        """Session events for groups that were never allocated: counted, no state kept."""
        self._dispatch = {
            SessionStart: self._start,
            SessionHeartbeat: self._heartbeat,
            SessionEnd: self._end,
            Licence: self._licence,
            LoginGroup: self._login_group,
            UserAccess: self._user_access,
        }

    def apply(self, event: InputEvent, out: list[OutputEvent]) -> None:
        """Apply one input event; its outputs (and those of timers it fires) go to `out`."""
        # Session events of allocated groups (nearly all events) skip the dispatch, and
        # `to_micros` is inlined: a call is a fifth of a heartbeat's cost.
        if type(event) is SessionHeartbeat:
            pool = self.pools.get(event.group)
            if pool is not None:
                d = event.ts - EPOCH
                pool.heartbeat(event, (d.days * 86400 + d.seconds) * 1000000 + d.microseconds, out)
                return
        elif type(event) is SessionStart:
            pool = self.pools.get(event.group)
            if pool is not None:
                d = event.ts - EPOCH
                pool.start(event, (d.days * 86400 + d.seconds) * 1000000 + d.microseconds, out)
                return
        elif type(event) is SessionEnd:
            pool = self.pools.get(event.group)
            if pool is not None:
                d = event.ts - EPOCH
                pool.end(event, (d.days * 86400 + d.seconds) * 1000000 + d.microseconds, out)
                return
        self._dispatch[type(event)](event, out)  # type: ignore[operator]

    def apply_all(self, events: Iterable[tuple[int, InputEvent]], out: list[OutputEvent]) -> None:
        """`apply` of every (µs, event) pair in order, the µs being `to_micros(event.ts)`
        (a replay's merge has it): the routing of `apply` without a call of `apply`
        for each, as a call is a fifth of a heartbeat's cost and so is the µs."""
        pools = self.pools
        apply = self.apply
        for ts, event in events:
            if type(event) is SessionHeartbeat:
                pool = pools.get(event.group)
                if pool is not None:
                    pool.heartbeat(event, ts, out)
                    continue
            elif type(event) is SessionStart:
                pool = pools.get(event.group)
                if pool is not None:
                    pool.start(event, ts, out)
                    continue
            elif type(event) is SessionEnd:
                pool = pools.get(event.group)
                if pool is not None:
                    pool.end(event, ts, out)
                    continue
            apply(event, out)  # allocations and unallocated groups: rare

    def apply_grant(self, grant: Grant, out: list[OutputEvent]) -> None:
        """Apply an allocation the ledger already accepted elsewhere (a stream's group
        partitions): no check, the same effect as the accepted allocation here."""
        t = to_micros(grant.ts)
        if isinstance(grant, GroupTokens):
            pool = self.pool(grant.group)
            pool.at(t, out)
            pool.set_tokens(grant.tokens)
            pool.record.grant_seq = grant.seq
            return
        uap = self.ledger.uap
        if grant.assigned:
            uap.setdefault(grant.user_id, NEVER_USED)
        elif uap.pop(grant.user_id, None) is not None:
            for pool in self.pools.values():
                pool.uap_removed(grant.user_id)

    def advance(self, ts: int, out: list[OutputEvent]) -> None:
        """Move every group's clock to `ts` (µs), firing the timers due by then."""
        for pool in self.pools.values():
            pool.advance(ts, out)

    def pool(self, group: str) -> Pool:
        pool = self.pools.get(group)
        if pool is None:
            pool = self.pools[group] = Pool(group, self.config, self.ledger.uap, self.journal)
        return pool

    # -- session events ----------------------------------------------------------

    def _start(self, ev: SessionStart, out: list[OutputEvent]) -> None:
        pool = self.pools.get(ev.group)
        if pool is not None:
            pool.start(ev, to_micros(ev.ts), out)
            return
        # Never allocated: deny without keeping state for a name anyone can invent (R11).
        if ev.user_id is not None and ev.user_id in self.ledger.uap:
            # A UAP holder needs no pool; the group is created to track the session.
            self.pool(ev.group).start(ev, to_micros(ev.ts), out)
            return
        self.unknown_group_events += 1
        out.append(
            AccessDenied(
                event_id=output_id("ad", ev.group, ev.session_id, to_micros(ev.ts),
                                   "no_allocation", False),
                ts=ev.ts,
                group=ev.group,
                user_id=ev.user_id,
                session_id=ev.session_id,
                reason="no_allocation",
                renewal=False,
            )
        )

    def _heartbeat(self, ev: SessionHeartbeat, out: list[OutputEvent]) -> None:
        pool = self.pools.get(ev.group)
        if pool is None:
            self.unknown_group_events += 1
            return
        pool.heartbeat(ev, to_micros(ev.ts), out)

    def _end(self, ev: SessionEnd, out: list[OutputEvent]) -> None:
        pool = self.pools.get(ev.group)
        if pool is None:
            self.unknown_group_events += 1
            return
        pool.end(ev, to_micros(ev.ts), out)

    # -- allocations (R9, R10) ---------------------------------------------------

    def _counted(self, t: int, skip: str | None = None) -> Iterator[int]:
        """Each group's counted tokens at `t`, returns due by then deducted (SPEC §2)."""
        for name, pool in self.pools.items():
            if name != skip:
                yield pool.counted_tokens_at(t)

    def _reject(self, ev: Allocation, t: int, reason: str, out: list[OutputEvent]) -> None:
        out.append(
            AllocationRejected(
                event_id=output_id("ar", ev.event_id, t),
                ts=from_micros(t),
                reason=reason,
                request=ev,
            )
        )

    def _licence(self, ev: Licence, out: list[OutputEvent]) -> None:
        t = self.ledger.at(to_micros(ev.ts))
        reason = self.ledger.set_licence(ev.total_tokens, t, self._counted(t))
        if reason is not None:
            self._reject(ev, t, reason, out)

    def _login_group(self, ev: LoginGroup, out: list[OutputEvent]) -> None:
        created = ev.group not in self.pools
        pool = self.pool(ev.group)
        t = pool.at(to_micros(ev.ts), out)
        self.ledger.at(t)
        before = pool.counted_tokens
        old_tokens = pool.record.tokens
        pool.set_tokens(ev.tokens)
        if pool.counted_tokens > before:  # lowering is always accepted (R10)
            reason = self.ledger.fits(pool.counted_tokens, t, self._counted(t, skip=ev.group))
            if reason is not None:
                pool.set_tokens(old_tokens)
                if created:  # a rejected allocation changes nothing, not even the group list
                    del self.pools[ev.group]
                self._reject(ev, t, reason, out)

    def _user_access(self, ev: UserAccess, out: list[OutputEvent]) -> None:
        t = self.ledger.at(to_micros(ev.ts))
        if ev.action == "assign":
            reason = self.ledger.assign(ev.user_id, t, self._counted(t))
            if reason is not None:
                self._reject(ev, t, reason, out)
        elif ev.user_id in self.ledger.uap:
            self.ledger.remove(ev.user_id, t)
            for pool in self.pools.values():
                pool.uap_removed(ev.user_id)

    # -- views -------------------------------------------------------------------

    def summary(self) -> dict[str, GroupSummary]:
        return {
            name: GroupSummary(
                capacity=pool.capacity,
                available=pool.available,
                in_use=pool.record.in_use,
                open_sessions=pool.record.open_sessions,
            )
            for name, pool in sorted(self.pools.items())
        }

    def clock(self) -> int | None:
        clocks = [p.record.clock for p in self.pools.values() if p.record.clock is not None]
        if self.ledger.record.clock is not None:
            clocks.append(self.ledger.record.clock)
        return max(clocks) if clocks else None

    def snapshot(self) -> bytes:
        snap = Snapshot(
            ledger=self.ledger.record,
            pools={
                name: PoolSnapshot(p.record, p.sessions, p.holders, p.returns_calendar())
                for name, p in self.pools.items()
            },
            unknown_group_events=self.unknown_group_events,
        )
        return _snapshot_encoder.encode(snap)

    @classmethod
    def restore(
        cls, data: bytes, config: Config | None = None, journal: Journal | None = None
    ) -> "Engine":
        snap = _snapshot_decoder.decode(data)
        engine = cls(config, journal)
        engine.ledger = Ledger(engine.config, snap.ledger)
        engine.unknown_group_events = snap.unknown_group_events
        for name, ps in snap.pools.items():
            engine.pool(name).load(ps.record, ps.sessions, ps.holders, ps.returns)
        return engine

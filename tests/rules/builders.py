"""A tiny fluent builder so rule tests read like the specification.

    s = Scenario.with_pool(tokens=1)          # licence + one group, day 1 00:00
    s.at(1, 9, 0).start("laptop", user="alice")
    s.at(1, 9, 25).heartbeat("laptop")        # activity within the 30 min timeout
    s.at(1, 9, 50).heartbeat("laptop")
    s.advance(1, 10, 0)                       # a clock tick: timers fire
    assert [c.reason for c in s.consumed()] == ["login", "renewal"]

Every step applies its event to the engine at once, so a test can look at the pool
between steps. `s.inputs` keeps the inputs, `s.script` the inputs and ticks (so
`s.run()` replays the scenario on a fresh engine), `s.outputs` every output and
`s.last` the outputs of the latest step only. Day 1 is 2026-11-01 (UTC);
`at(day, hh, mm)` is that day's wall time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Self, TypeVar

from rules import Config, Engine
from rules.pool import Pool
from schemas import (
    AccessDenied,
    AllocationRejected,
    InputEvent,
    Licence,
    LoginGroup,
    OutputEvent,
    PassConsumed,
    PassReturned,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
    UserAccess,
    to_micros,
)

_O = TypeVar("_O", PassConsumed, PassReturned, AccessDenied)

GROUP = "sales"
DAY_ONE = datetime(2026, 11, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def when(day: int, hh: int = 0, mm: int = 0, ss: int = 0, us: int = 0) -> datetime:
    """Wall time `hh:mm:ss.us` on scenario day `day` (day 1 = 2026-11-01 UTC)."""
    return DAY_ONE + timedelta(days=day - 1, hours=hh, minutes=mm, seconds=ss, microseconds=us)


def micros_at(day: int, hh: int = 0, mm: int = 0, ss: int = 0, us: int = 0) -> int:
    return to_micros(when(day, hh, mm, ss, us))


@dataclass(frozen=True)
class Tick:
    """A wall-clock tick in a script: `Engine.advance(ts)` (µs)."""

    ts: int


def feed(engine: Engine, item: InputEvent | Tick, out: list[OutputEvent]) -> None:
    if isinstance(item, Tick):
        engine.advance(item.ts, out)
    else:
        engine.apply(item, out)


def run(
    script: Iterable[InputEvent | Tick],
    config: Config | None = None,
    *,
    until: datetime | None = None,
) -> list[OutputEvent]:
    """A fresh engine fed `script` in order (then ticked to `until`): its outputs."""
    engine = Engine(config)
    out: list[OutputEvent] = []
    for item in script:
        feed(engine, item, out)
    if until is not None:
        engine.advance(to_micros(until), out)
    return out


class Scenario:
    """A scripted stream of input events against one engine."""

    def __init__(self, config: Config | None = None, *, id_prefix: str = "in") -> None:
        self.config = config if config is not None else Config()
        self.engine = Engine(self.config)
        self.now = DAY_ONE
        self.inputs: list[InputEvent] = []
        self.script: list[InputEvent | Tick] = []
        """Inputs and ticks, in order: `run(s.script, s.config)` replays the scenario."""
        self.outputs: list[OutputEvent] = []
        self.last: list[OutputEvent] = []
        self._users: dict[tuple[str, str], str | None] = {}
        self._seq = 0
        self._id_prefix = id_prefix

    @classmethod
    def with_pool(
        cls,
        tokens: int = 1,
        *,
        licence: int = 100,
        group: str = GROUP,
        config: Config | None = None,
        id_prefix: str = "in",
    ) -> Scenario:
        """A licence and one allocated group, at day 1 00:00."""
        return cls(config, id_prefix=id_prefix).licence(licence).group(group, tokens)

    # -- time --------------------------------------------------------------------

    def at(self, day: int, hh: int = 0, mm: int = 0, ss: int = 0, us: int = 0) -> Self:
        """Stamp the next events `day hh:mm:ss.us` (it may go back: a late event)."""
        self.now = when(day, hh, mm, ss, us)
        return self

    def later(
        self, *, days: int = 0, hours: int = 0, minutes: int = 0, seconds: int = 0, us: int = 0
    ) -> Self:
        self.now += timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds, microseconds=us
        )
        return self

    def advance(self, day: int, hh: int = 0, mm: int = 0, ss: int = 0, us: int = 0) -> Self:
        """A clock tick to `day hh:mm:ss.us`: timers due by then fire, no event needed."""
        self.now = when(day, hh, mm, ss, us)
        return self.tick()

    def tick(self) -> Self:
        """A clock tick to the scenario's current time."""
        self.last = []
        self.script.append(Tick(to_micros(self.now)))
        self.engine.advance(to_micros(self.now), self.last)
        self.outputs.extend(self.last)
        return self

    # -- allocations -------------------------------------------------------------

    def licence(self, total_tokens: int) -> Self:
        return self.apply(Licence(event_id=self._id(), ts=self.now, total_tokens=total_tokens))

    def group(self, name: str = GROUP, tokens: int = 1) -> Self:
        return self.apply(LoginGroup(event_id=self._id(), ts=self.now, group=name, tokens=tokens))

    def uap_assign(self, user: str) -> Self:
        return self.apply(
            UserAccess(event_id=self._id(), ts=self.now, user_id=user, action="assign")
        )

    def uap_remove(self, user: str) -> Self:
        return self.apply(
            UserAccess(event_id=self._id(), ts=self.now, user_id=user, action="remove")
        )

    # -- sessions ----------------------------------------------------------------

    def start(
        self,
        session: str,
        user: str | None = None,
        *,
        group: str = GROUP,
        device: str | None = None,
    ) -> Self:
        """A session start; `user=None` is anonymous access (R6)."""
        self._users[(group, session)] = user
        return self.apply(
            SessionStart(
                event_id=self._id(),
                ts=self.now,
                group=group,
                session_id=session,
                user_id=user,
                device_id=device,
            )
        )

    def heartbeat(self, session: str, *, group: str = GROUP) -> Self:
        return self.apply(
            SessionHeartbeat(
                event_id=self._id(),
                ts=self.now,
                group=group,
                session_id=session,
                user_id=self._users.get((group, session)),
            )
        )

    def end(
        self,
        session: str,
        *,
        group: str = GROUP,
        reason: Literal["logout", "browser_closed"] = "logout",
    ) -> Self:
        return self.apply(
            SessionEnd(
                event_id=self._id(),
                ts=self.now,
                group=group,
                session_id=session,
                user_id=self._users.get((group, session)),
                reason=reason,
            )
        )

    def keep_alive(
        self, *sessions: str, minutes: int, every: int = 10, group: str = GROUP
    ) -> Self:
        """Heartbeat `sessions` every `every` minutes for the next `minutes` minutes
        (moving the scenario's time along)."""
        for _ in range(minutes // every):
            self.later(minutes=every)
            for session in sessions:
                self.heartbeat(session, group=group)
        return self

    def apply(self, event: InputEvent) -> Self:
        self.inputs.append(event)
        self.script.append(event)
        self.last = []
        self.engine.apply(event, self.last)
        self.outputs.extend(self.last)
        return self

    def run(self) -> list[OutputEvent]:
        """Replay this scenario's script on a fresh engine: its outputs."""
        return run(self.script, self.config)

    # -- views -------------------------------------------------------------------

    def pool(self, group: str = GROUP) -> Pool:
        return self.engine.pools[group]

    def consumed(self, group: str | None = None) -> list[PassConsumed]:
        return _of(PassConsumed, self.outputs, group)

    def returned(self, group: str | None = None) -> list[PassReturned]:
        return _of(PassReturned, self.outputs, group)

    def denied(self, group: str | None = None) -> list[AccessDenied]:
        return _of(AccessDenied, self.outputs, group)

    def rejected(self) -> list[AllocationRejected]:
        return [o for o in self.outputs if isinstance(o, AllocationRejected)]

    def in_use(self, group: str = GROUP) -> int:
        return self.pool(group).record.in_use

    def open_sessions(self, group: str = GROUP) -> int:
        return self.pool(group).record.open_sessions

    def _id(self) -> str:
        self._seq += 1
        return f"{self._id_prefix}-{self._seq}"


def _of(kind: type[_O], outputs: list[OutputEvent], group: str | None) -> list[_O]:
    return [
        o
        for o in outputs
        if isinstance(o, kind) and (group is None or getattr(o, "group", None) == group)
    ]

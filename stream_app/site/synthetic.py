"""A deterministic synthetic workload: weeks of a site's session events, as wire Structs.

The benchmark, load tests and the live demo need traffic that looks like a real
token-licensed site (the seed's profile: a user logs in a few times per 28 days, now
and then on two devices, sometimes just walks away) without a real site. Everything
here is a pure function of its arguments: one seeded `random.Random`, no clock, no
I/O, so the same call always yields the same events, ids included, and a benchmark
or a failing test can be rerun exactly.

`generate` yields `(topic, event)` in event-time order, the order a replay applies
them in: first the allocations (a licence and one login group per group, sized so
most pools have headroom and a few get tight), then every session's start,
heartbeats and end. The plan of visits is made up front (one small record per
visit); their events are made lazily, so only the sessions active at one moment are
held as events in memory. `time_scale` compresses time for
a live demo (28 days in 28 minutes is `time_scale=1440`); the engine then needs the
same compression of its durations, which `scaled_config` gives.
"""

import heapq
import math
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import msgspec

from rules.config import Config
from schemas.codec import encode
from schemas.inputs import (
    InputEvent,
    Licence,
    LoginGroup,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
)
from schemas.replay import ReplayRecord
from schemas.topics import Topic

DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)
"""A Monday at midnight UTC: visit times of day and weekends line up with it."""

DEFAULT_SEED = 20261102

DAY = 86_400
HOUR = 3_600
MINUTE = 60

# Kinds of planned session events (internal; the topic is derived from them).
_START, _HEARTBEAT, _END = 0, 1, 2
_TIMEOUT = "timeout"
"""A session that ends by just stopping its heartbeats (the inactivity timeout)."""


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """How the simulated people behave; the defaults follow the seed's profile."""

    heavy_share: float = 0.1
    """Users who log in far more often and stay longer (UAP candidates, R12)."""
    visits_per_28d: float = 3.0
    """Regular users: about 4 passes per 28 days once hour-long visits renew (R3)."""
    heavy_visits_per_28d: float = 12.0
    visit_minutes_median: float = 25.0
    heavy_visit_minutes_median: float = 50.0
    visit_minutes_sigma: float = 0.7
    """Spread of the log-normal visit length."""
    max_visit_minutes: int = 8 * 60
    anonymous_minutes_median: float = 15.0
    heartbeat_seconds: int = 300
    heartbeat_jitter_seconds: int = 20
    devices: tuple[float, float, float] = (0.85, 0.12, 0.03)
    """Chance that a visit uses 1, 2 or 3 devices at once (R5)."""
    endings: tuple[float, float, float] = (0.45, 0.25, 0.30)
    """Chance a session ends by logout, browser closed, or timeout (no end event, R4)."""
    relogin_share: float = 0.1
    """Visits followed by a quick log-in-again minutes later (seed Day 25, R2)."""
    weekend_factor: float = 0.3
    """Weekend traffic relative to a weekday."""
    tight_group_share: float = 0.1
    """Groups given about as many tokens as their demand, so they run dry sometimes."""
    headroom: tuple[float, float] = (1.2, 1.6)
    """Tokens per expected demand of the other groups (the seed's buffer is 20 %)."""
    tight_headroom: tuple[float, float] = (0.8, 1.0)
    licence_spare: float = 0.1
    """Licence tokens left unallocated, as a share of the groups' tokens."""


class _Visit(msgspec.Struct, array_like=True):
    """One person's sitting: one to three device sessions that start together."""

    start: int
    """Seconds after the workload start."""
    serial: int
    user_id: str | None
    group: str
    duration: int
    devices: int
    ending: str


def generate(
    users: int = 10_000,
    groups: int = 50,
    days: int = 29,
    seed: int = DEFAULT_SEED,
    anonymous_share: float = 0.05,
    start: datetime = DEFAULT_START,
    time_scale: float = 1.0,
    profile: Profile | None = None,
) -> Iterator[tuple[str, InputEvent]]:
    """Yield `(topic, event)` in event-time order (ties in a fixed order).

    `anonymous_share` is the share of visits without a user (R6). Visits start within
    `days` days of `start`; their last heartbeats may spill a little past it.
    `time_scale` > 1 compresses every offset and duration by that factor.
    """
    if users < 0 or groups < 1 or days < 1:
        raise ValueError("need users >= 0, groups >= 1 and days >= 1")
    if not 0 <= anonymous_share < 1:
        raise ValueError("anonymous_share must be in [0, 1)")
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    if start.tzinfo is None:
        raise ValueError("start must carry a UTC offset")
    p = profile if profile is not None else Profile()
    rng = random.Random(seed)
    names = [f"g{i + 1:0{len(str(groups))}d}" for i in range(groups)]
    visits = _plan(rng, p, users, names, days, anonymous_share, start)
    tokens = _size_groups(rng, p, visits, names, days)
    clock = _Clock(start, time_scale)

    ts = clock.at(0)
    licence = sum(tokens.values())
    licence += math.ceil(licence * p.licence_spare)
    yield Topic.ALLOCATIONS, Licence(event_id="alloc-000000", ts=ts, total_tokens=licence)
    for i, name in enumerate(names, 1):
        yield (
            Topic.ALLOCATIONS,
            LoginGroup(event_id=f"alloc-{i:06d}", ts=ts, group=name, tokens=tokens[name]),
        )

    # Merge the visits' events lazily: a visit's events all come at or after its
    # start, so everything earlier than the next visit's start is final.
    pending: list[tuple[int, int, int, str, str | None, str, str | None]] = []
    seq = 0
    n = 0
    for visit in visits:
        while pending and pending[0][0] < visit.start:
            n += 1
            yield _event(heapq.heappop(pending), n, clock)
        for item in _expand(rng, p, visit):
            seq += 1
            heapq.heappush(pending, (item[0], seq, *item[1:]))
    while pending:
        n += 1
        yield _event(heapq.heappop(pending), n, clock)


def to_jsonl_lines(events: Iterable[tuple[str, InputEvent]]) -> Iterator[bytes]:
    """Replay-file lines `{"topic": ..., "value": ...}`, each ending in a newline, ready
    for `file.writelines` (the format `tokenpool replay` reads, SPEC §4)."""
    for topic, event in events:
        yield encode(ReplayRecord(str(topic), msgspec.Raw(encode(event)))) + b"\n"


def scaled_config(time_scale: float, base: Config | None = None) -> Config:
    """The engine configuration for a workload generated with `time_scale`: every
    duration shrinks by the same factor, so the rules see the same story faster."""
    c = base if base is not None else Config()
    return msgspec.structs.replace(
        c,
        window=c.window / time_scale,
        pass_lifetime=c.pass_lifetime / time_scale,
        inactivity_timeout=c.inactivity_timeout / time_scale,
        dedupe_horizon=c.dedupe_horizon / time_scale,
        uap_quarantine=c.uap_quarantine / time_scale,
    )


# -- planning ---------------------------------------------------------------------


class _Clock:
    """Seconds after the start → (compressed) wire timestamps, exact in microseconds."""

    __slots__ = ("_scale", "_start")

    def __init__(self, start: datetime, time_scale: float) -> None:
        self._start = start
        self._scale = time_scale

    def at(self, seconds: int) -> datetime:
        if self._scale == 1:
            return self._start + timedelta(seconds=seconds)
        return self._start + timedelta(microseconds=round(seconds * 1_000_000 / self._scale))


def _plan(
    rng: random.Random,
    p: Profile,
    users: int,
    names: list[str],
    days: int,
    anonymous_share: float,
    start: datetime,
) -> list[_Visit]:
    """Every visit of the run, sorted by start: who, where, when, how long, how it ends."""
    weights = [rng.uniform(0.4, 2.0) for _ in names]
    membership = rng.choices(names, weights, k=users)
    # Raise weekday rates so the weekend dip keeps the weekly mean as configured.
    week = 7 / (5 + 2 * p.weekend_factor)
    first_weekday = start.weekday()
    visits: list[_Visit] = []

    def sitting(user_id: str | None, group: str, median: float, at: int) -> None:
        minutes = min(
            p.max_visit_minutes, rng.lognormvariate(math.log(median), p.visit_minutes_sigma)
        )
        duration = max(MINUTE, int(minutes * MINUTE))
        devices = 1 if user_id is None else rng.choices((1, 2, 3), p.devices)[0]
        ending = rng.choices(("logout", "browser_closed", _TIMEOUT), p.endings)[0]
        visits.append(_Visit(at, len(visits), user_id, group, duration, devices, ending))
        if user_id is not None and rng.random() < p.relogin_share:
            again = at + duration + rng.randint(2 * MINUTE, 20 * MINUTE)
            visits.append(
                _Visit(
                    again,
                    len(visits),
                    user_id,
                    group,
                    rng.randint(MINUTE, 10 * MINUTE),
                    1,
                    "logout",
                )
            )

    def time_of_visit(day: int) -> int:
        hour = min(21.0, max(6.0, rng.gauss(13.0, 2.5)))
        return day * DAY + int(hour * HOUR)

    for u in range(users):
        user_id = f"u{u + 1:06d}"
        group = membership[u]
        heavy = rng.random() < p.heavy_share
        rate = (p.heavy_visits_per_28d if heavy else p.visits_per_28d) * week / 28
        median = p.heavy_visit_minutes_median if heavy else p.visit_minutes_median
        t = rng.expovariate(rate)
        while t < days:
            day = int(t)
            weekend = (first_weekday + day) % 7 >= 5
            if not weekend or rng.random() < p.weekend_factor:
                sitting(user_id, group, median, time_of_visit(day))
            t += rng.expovariate(rate)

    identified = len(visits)
    for _ in range(round(identified * anonymous_share / (1 - anonymous_share))):
        group = rng.choices(names, weights)[0]
        sitting(None, group, p.anonymous_minutes_median, time_of_visit(rng.randrange(days)))

    visits.sort(key=lambda v: (v.start, v.serial))
    return visits


def _size_groups(
    rng: random.Random, p: Profile, visits: list[_Visit], names: list[str], days: int
) -> dict[str, int]:
    """Tokens per group from the plan's own demand: passes per 28 days times a headroom,
    near 1 for a few tight groups (they see `pool_exhausted`), comfortable elsewhere."""
    passes = dict.fromkeys(names, 0)
    for v in visits:
        held = v.duration + (30 * MINUTE if v.ending == _TIMEOUT else 0)
        passes[v.group] += 1 + held // HOUR
    tokens = {}
    for name in names:
        tight = rng.random() < p.tight_group_share
        low, high = p.tight_headroom if tight else p.headroom
        demand = passes[name] * 28 / max(days, 28)
        tokens[name] = max(1, math.ceil(demand * rng.uniform(low, high) / 10))
    return tokens


def _expand(
    rng: random.Random, p: Profile, v: _Visit
) -> Iterator[tuple[int, int, str, str | None, str, str | None]]:
    """A visit's events as `(second, kind, session_id, user_id, group, extra)`; `extra`
    is the device id of a start and the reason of an end."""
    beat, jitter = p.heartbeat_seconds, p.heartbeat_jitter_seconds
    for d in range(v.devices):
        sid = f"s{v.serial:07d}-{d + 1}"
        if d == 0:
            begin, duration, ending = v.start, v.duration, v.ending
        else:  # another device joins a little later and may leave earlier
            begin = v.start + rng.randint(30, 10 * MINUTE)
            duration = max(MINUTE, int(v.duration * rng.uniform(0.3, 1.0)))
            ending = rng.choices(("logout", "browser_closed", _TIMEOUT), p.endings)[0]
        device = None if v.user_id is None else f"{v.user_id}-d{d + 1}"
        yield begin, _START, sid, v.user_id, v.group, device
        last = begin + duration
        t = begin + beat + rng.randint(-jitter, jitter)
        while t < last:
            yield t, _HEARTBEAT, sid, v.user_id, v.group, None
            t += beat + rng.randint(-jitter, jitter)
        if ending != _TIMEOUT:
            yield last, _END, sid, v.user_id, v.group, ending


def _event(
    item: tuple[int, int, int, str, str | None, str, str | None], n: int, clock: _Clock
) -> tuple[str, InputEvent]:
    second, _, kind, sid, uid, group, extra = item
    ts = clock.at(second)
    eid = f"ev-{n:09d}"
    if kind == _HEARTBEAT:
        return Topic.SESSION_HEARTBEAT, SessionHeartbeat(
            event_id=eid, ts=ts, group=group, session_id=sid, user_id=uid
        )
    if kind == _START:
        return Topic.SESSION_START, SessionStart(
            event_id=eid, ts=ts, group=group, session_id=sid, user_id=uid, device_id=extra
        )
    return Topic.SESSION_END, SessionEnd(
        event_id=eid,
        ts=ts,
        group=group,
        session_id=sid,
        user_id=uid,
        reason="logout" if extra == "logout" else "browser_closed",
    )

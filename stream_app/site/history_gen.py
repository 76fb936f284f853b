"""The bundled example history: 90 days of a site with five kinds of users.

`examples/history-90d.jsonl.gz` is made by this module and nothing else:

    python -m stream_app.site.history_gen --out examples/history-90d.jsonl.gz

(no `tokenpool` command needed; the same seed always gives the same bytes). The
planning tests and the README use the file, and the tests regenerate it to prove it
is this script's output.

Every visit is planned so that the passes it consumes are known in advance: a visit
lasts a whole number of minutes plus 1-59 seconds, so it never closes on an hour
boundary, and a user has at most one visit a day (seed-month users: a few days
apart), so visits never share an access window. A visit open for X seconds
(start to its last session's close) consumes exactly ceil(X / 3600) passes (R1, R3).
That makes the plan's figures checkable against `Visit.passes`, the ground truth.

Profiles (groups), after the seed's list of user kinds; tokens allocated at the start:

- knowledge-workers, 103 people, 50 tokens: the seed's month, repeated every 28 days
  at each person's own phase (day 1: two passes, day 15: one on two devices, day 25:
  one with a re-login inside the hour): exactly 4 passes in every 28-day span, so
  the seed's formula gives 103 x 4 x 1.2 / 10 = 49.44 -> 50 tokens, and so does the
  peak (412 passes in use) plus 20 %.
- managers, 40 people, 29 tokens: each weekday a 0.25 chance of one 5-25 minute
  visit, always one pass: 5 passes per 28 days on average (20 weekdays x 0.25).
- analysts, 50 people, 84 tokens: 40 regular (0.15 a weekday, 20-100 minutes) and
  10 power users (0.5 a weekday, 100-230 minutes, over 30 passes per 28 days: a UAP
  each is cheaper).
- data-engineers, 15 people, 30 tokens: 0.4 a weekday, 3-6 hour sessions (about 40
  passes per 28 days): the pool is far too small and runs dry after two weeks.
- executives, 12 people with user access passes and no login tokens: 9 visit about
  twice per 28 days (login access would be cheaper), 3 nearly every weekday.
"""

import argparse
import gzip
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.inputs import (
    InputEvent,
    Licence,
    LoginGroup,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
    UserAccess,
)
from schemas.topics import Topic
from stream_app.site.synthetic import to_jsonl_lines

START = datetime(2026, 9, 7, tzinfo=UTC)
"""A Monday, midnight UTC: every 28-day period from here holds exactly 20 weekdays."""
DAYS = 90
SEED = 28_090
HOUR = 3600
MINUTE = 60
PERIOD_DAYS = 28
HEARTBEAT = 600
"""Seconds between heartbeats (with +-30 s jitter): well inside the 30-minute timeout."""
TIMEOUT = 30 * MINUTE


@dataclass(frozen=True)
class Profile:
    """One kind of user: how often (a chance per weekday) and how long they visit."""

    name: str
    people: int
    daily_chance: float
    minutes: tuple[int, int]
    """Visit length in whole minutes, inclusive range (plus 1-59 seconds)."""
    timeout_share: float = 0.3
    """Visits that end by walking away (no end event, R4) instead of logging out."""


@dataclass(frozen=True)
class Group:
    name: str
    tokens: int
    """Login access tokens allocated at the start; 0 for a group of UAP holders."""
    profiles: tuple[Profile, ...]
    seed_month: bool = False
    uap: bool = False


GROUPS: tuple[Group, ...] = (
    Group("knowledge-workers", 50, (Profile("knowledge-worker", 103, 0.0, (0, 0)),),
          seed_month=True),
    Group("managers", 29, (Profile("manager", 40, 0.25, (5, 25)),)),
    Group("analysts", 84, (Profile("analyst", 40, 0.15, (20, 100)),
                           Profile("power-analyst", 10, 0.5, (100, 230)))),
    Group("data-engineers", 30, (Profile("data-engineer", 15, 0.4, (180, 360)),)),
    Group("executives", 0, (Profile("executive", 9, 0.1, (10, 50), timeout_share=0.0),
                            Profile("busy-executive", 3, 0.8, (20, 50), timeout_share=0.0)),
          uap=True),
)

LICENCE_SPARE = 15
"""Licence tokens left unallocated at the start."""


@dataclass(frozen=True)
class Session:
    session_id: str
    start: int
    """Seconds after START."""
    end: int
    """Last activity (an end event there, or the last heartbeat before walking away)."""
    logout: bool
    device: str


@dataclass(frozen=True)
class Visit:
    """One sitting of one user: one or more sessions; `passes` is the ground truth."""

    user_id: str
    group: str
    profile: str
    start: int
    sessions: tuple[Session, ...]

    @property
    def close(self) -> int:
        """When the last session is no longer open (R4)."""
        return max(s.end + (0 if s.logout else TIMEOUT) for s in self.sessions)

    @property
    def passes(self) -> int:
        """Passes consumed: the login and one renewal per hour still open (R1, R3)."""
        return -(-(self.close - self.start) // HOUR)  # ceiling, in integers

    def pass_instants(self) -> list[int]:
        """Seconds after START at which each of the visit's passes is consumed."""
        return [self.start + k * HOUR for k in range(self.passes)]


@dataclass(frozen=True)
class History:
    visits: tuple[Visit, ...]
    users: dict[str, str]
    """user id -> profile name, for every person (also those who never visit)."""


def plan(seed: int = SEED, days: int = DAYS) -> History:
    """Every visit of the history, deterministic for a seed."""
    rng = random.Random(seed)
    visits: list[Visit] = []
    users: dict[str, str] = {}
    for group in GROUPS:
        for profile in group.profiles:
            for i in range(profile.people):
                user = f"{profile.name}-{i + 1:03d}"
                users[user] = profile.name
                if group.seed_month:
                    visits.extend(_seed_month(rng, user, group.name, profile.name, days))
                else:
                    visits.extend(_weekday_visits(rng, user, group.name, profile, days))
    visits.sort(key=lambda v: (v.start, v.user_id))
    return History(tuple(visits), users)


def _sid(user: str, start: int, device: int) -> str:
    return f"{user}-{start}-{device}"


def _session(rng: random.Random, user: str, start: int, minutes: int, logout: bool,
             device: int = 1) -> Session:
    end = start + minutes * MINUTE + rng.randint(1, 59)
    return Session(_sid(user, start, device), start, end, logout, f"{user}-d{device}")


def _seed_month(
    rng: random.Random, user: str, group: str, profile: str, days: int
) -> Iterator[Visit]:
    """The seed's user: day 1 active past the first hour (2 passes), day 15 on two
    devices under an hour (1), day 25 logs out after 30 minutes and in again minutes
    later (1). Repeated exactly every 28 days from a phase of the person's own."""
    phase = rng.randrange(PERIOD_DAYS)
    hour = rng.randint(8, 15)
    minute = rng.randint(0, 59)
    for cycle in range(-1, days // PERIOD_DAYS + 1):
        base = (cycle * PERIOD_DAYS + phase) * 86_400 + hour * HOUR + minute * MINUTE
        day1, day15, day25 = base, base + 14 * 86_400, base + 24 * 86_400
        if 0 <= day1 < days * 86_400:
            yield Visit(user, group, profile, day1, (
                Session(_sid(user, day1, 1), day1, day1 + 90 * MINUTE + 17, True, f"{user}-d1"),
            ))
        if 0 <= day15 < days * 86_400:
            laptop = Session(_sid(user, day15, 1), day15, day15 + 45 * MINUTE + 11, True,
                             f"{user}-d1")
            ipad = Session(_sid(user, day15, 2), day15 + 3 * MINUTE, day15 + 40 * MINUTE + 7,
                           True, f"{user}-d2")
            yield Visit(user, group, profile, day15, (laptop, ipad))
        if 0 <= day25 < days * 86_400:
            first = Session(_sid(user, day25, 1), day25, day25 + 30 * MINUTE + 5, True,
                            f"{user}-d1")
            again = day25 + 34 * MINUTE
            second = Session(_sid(user, again, 1), again, again + 5 * MINUTE + 3, True,
                             f"{user}-d1")
            yield Visit(user, group, profile, day25, (first, second))


def _weekday_visits(
    rng: random.Random, user: str, group: str, profile: Profile, days: int
) -> Iterator[Visit]:
    """At most one visit a weekday, starting 07:00-16:59 UTC: a visit closes before
    midnight, so a user's visits never share a window."""
    for day in range(days):
        if (START + timedelta(days=day)).weekday() >= 5:
            continue
        if rng.random() >= profile.daily_chance:
            continue
        start = day * 86_400 + rng.randint(7 * HOUR, 17 * HOUR - 1)
        minutes = rng.randint(*profile.minutes)
        logout = rng.random() >= profile.timeout_share
        session = _session(rng, user, start, minutes, logout)
        yield Visit(user, group, profile.name, start, (session,))


def events(history: History, seed: int = SEED) -> list[tuple[str, InputEvent]]:
    """The history as wire events in event-time order: allocations at START, then every
    session's start, heartbeats and end."""
    t0 = _at(0)
    group_tokens = sum(g.tokens for g in GROUPS)
    uap_users = [u for g in GROUPS if g.uap for p in g.profiles
                 for u in sorted(history.users) if history.users[u] == p.name]
    out: list[tuple[str, InputEvent]] = [
        (Topic.ALLOCATIONS, Licence(event_id="licence", ts=t0,
                                    total_tokens=group_tokens + len(uap_users) + LICENCE_SPARE)),
    ]
    out += [
        (Topic.ALLOCATIONS, LoginGroup(event_id=f"group-{g.name}", ts=t0, group=g.name,
                                       tokens=g.tokens))
        for g in GROUPS if g.tokens
    ]
    out += [
        (Topic.ALLOCATIONS, UserAccess(event_id=f"uap-{u}", ts=t0, user_id=u, action="assign"))
        for u in uap_users
    ]
    rng = random.Random(seed + 1)
    timed: list[tuple[int, int, str, InputEvent]] = []
    for visit in history.visits:
        for s in visit.sessions:
            timed.extend(_session_events(rng, visit, s, len(timed)))
    timed.sort(key=lambda e: (e[0], e[1]))
    return out + [(topic, ev) for _, _, topic, ev in timed]


def _at(seconds: int) -> datetime:
    return START + timedelta(seconds=seconds)


def _session_events(
    rng: random.Random, visit: Visit, s: Session, serial: int
) -> Iterator[tuple[int, int, str, InputEvent]]:
    common = {"group": visit.group, "session_id": s.session_id, "user_id": visit.user_id}
    eid = s.session_id
    yield s.start, serial, Topic.SESSION_START, SessionStart(
        event_id=f"{eid}-start", ts=_at(s.start), device_id=s.device, **common
    )
    t = s.start + HEARTBEAT + rng.randint(-30, 30)
    n = 0
    while t < s.end:
        n += 1
        yield t, serial + n, Topic.SESSION_HEARTBEAT, SessionHeartbeat(
            event_id=f"{eid}-hb{n}", ts=_at(t), **common
        )
        t += HEARTBEAT + rng.randint(-30, 30)
    if s.logout:
        yield s.end, serial + n + 1, Topic.SESSION_END, SessionEnd(
            event_id=f"{eid}-end", ts=_at(s.end), reason="logout", **common
        )
    else:  # walks away: a last heartbeat at `end`, then the timeout closes it (R4)
        yield s.end, serial + n + 1, Topic.SESSION_HEARTBEAT, SessionHeartbeat(
            event_id=f"{eid}-hb{n + 1}", ts=_at(s.end), **common
        )


def write(path: str, seed: int = SEED, days: int = DAYS) -> int:
    """Write the history as a replay file (gzip when the name ends in .gz); returns the
    number of records. Gzip with no name and time 0, so the bytes are reproducible."""
    lines = to_jsonl_lines(events(plan(seed, days), seed))
    if path.endswith(".gz"):
        with open(path, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
        ) as f:
            data = b"".join(lines)
            f.write(data)
            return data.count(b"\n")
    with open(path, "wb") as f:
        data = b"".join(lines)
        f.write(data)
        return data.count(b"\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m stream_app.site.history_gen",
        description="Write the bundled 90-day example history (deterministic for a seed).",
    )
    p.add_argument("--out", default="examples/history-90d.jsonl.gz",
                   help="replay file to write; .gz compresses (default: %(default)s)")
    p.add_argument("--seed", type=int, default=SEED, help="random seed (default: %(default)s)")
    p.add_argument("--days", type=int, default=DAYS, help="length in days (default: %(default)s)")
    args = p.parse_args(argv)
    n = write(args.out, args.seed, args.days)
    sys.stderr.write(f"wrote {n} records to {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

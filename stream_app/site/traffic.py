"""A simulated site's traffic, sized and sent at wall-clock pace.

Shared by `tokenpool demo` (compressed time, its own broker and worker) and
`tokenpool load` (any broker, e.g. the compose stack's load profile). Groups are sized
with the estimate formula (R12, 20 % buffer) from a dry run of the planned traffic
through the engine; the last group is sized from the seed's rule of thumb of 4 passes
per person, so it runs short and shows denials (R8) next to groups with headroom.
"""

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import msgspec

from rules import Config, Engine, Estimate, estimate_tokens
from schemas import (
    Licence,
    LoginGroup,
    PassConsumed,
    SessionEnd,
    SessionHeartbeat,
    SessionStart,
    Topic,
    encode,
    to_micros,
)
from stream_app.durations import format_duration, parse_duration
from stream_app.site.synthetic import generate, scaled_config

log = logging.getLogger("tokenpool.traffic")

LEAD = 1.0
"""Seconds an event is sent before its timestamp. Live ticks move a group's clock to
wall time, so an event still in flight when its instant passes would apply late; the
lead covers the worker's merge wait and the broker round trips."""
SEND_STEP = 0.05
"""Seconds between two batches of sends."""
EPOCH_DAYS = 29
"""Days of traffic planned at once. Each epoch starts one weekday later than the one
before, so the same users (same groups) visit on other days each time."""
BUFFER = 20
RULE_OF_THUMB = Decimal(4)
"""The seed's passes per person per 28 days; sizes the last group."""
DAY_US = 86_400_000_000

SessionEvent = SessionStart | SessionHeartbeat | SessionEnd


@dataclass(frozen=True)
class GroupPlan:
    group: str
    estimate: Estimate
    measured: Decimal
    """Passes per person per 28 days in the dry run (anonymous passes included)."""

    @property
    def tokens(self) -> int:
        return max(1, self.estimate.tokens)


@dataclass(frozen=True)
class Plan:
    users: int
    seed: int
    time_scale: float
    groups: list[GroupPlan]
    rules: Config

    @property
    def licence(self) -> int:
        return sum(g.tokens for g in self.groups)

    @property
    def seconds_per_28_days(self) -> float:
        return 28 * 86_400 / self.time_scale


def time_scale_of(days_per_minute: float) -> float:
    return days_per_minute * 1440


def plan(users: int, groups: int, seed: int, time_scale: float, start: datetime) -> Plan:
    """Size every group from its own demand: dry-run the first 28 days of the traffic
    through the engine with unlimited pools, then apply the estimate formula (R12)."""
    engine = Engine(Config())
    out: list[Any] = []
    engine.apply(Licence(event_id="plan-licence", ts=start, total_tokens=10**12), out)
    names: list[str] = []
    people: dict[str, set[str]] = {}
    end = to_micros(start) + 28 * DAY_US
    for _, event in generate(users, groups, EPOCH_DAYS, seed, start=start):
        if isinstance(event, Licence):
            continue
        if isinstance(event, LoginGroup):  # the generator's groups, with unlimited tokens
            names.append(event.group)
            people[event.group] = set()
            engine.apply(msgspec.structs.replace(event, tokens=10**9), out)
            continue
        if not isinstance(event, SessionEvent):
            continue
        if to_micros(event.ts) >= end:
            break
        if event.user_id is not None:
            people[event.group].add(event.user_id)
        engine.apply(event, out)
    passes = dict.fromkeys(names, 0)
    for o in out:
        if isinstance(o, PassConsumed) and to_micros(o.ts) < end:
            passes[o.group] += 1
    sized = []
    for i, name in enumerate(names):
        n = len(people[name])
        per_person = (Decimal(passes[name]) / n if n else Decimal(0)).quantize(
            Decimal("0.1"), ROUND_HALF_UP
        )
        basis = RULE_OF_THUMB if groups > 1 and i == groups - 1 else per_person
        sized.append(GroupPlan(name, estimate_tokens(n, basis, BUFFER), per_person))
    return Plan(users, seed, time_scale, sized, scaled_config(time_scale))


def allocations(p: Plan, ts: datetime) -> list[tuple[str, bytes, Licence | LoginGroup]]:
    """The licence and one login access group per group: `(topic, key, event)`."""
    out: list[tuple[str, bytes, Licence | LoginGroup]] = [
        (Topic.ALLOCATIONS, b"", Licence(event_id="demo-licence", ts=ts,
                                          total_tokens=p.licence))
    ]
    for g in p.groups:
        out.append((Topic.ALLOCATIONS, g.group.encode(),
                    LoginGroup(event_id=f"demo-{g.group}", ts=ts, group=g.group,
                               tokens=g.tokens)))
    return out


def traffic(
    users: int, groups: int, seed: int, start: datetime, time_scale: float
) -> Iterator[tuple[int, str, SessionEvent]]:
    """Session events `(ts µs, topic, event)` in event-time order, without end.

    Epoch k is `generate(...)` over `EPOCH_DAYS` from `start + k * EPOCH_DAYS`
    (compressed); its ids get an `e<k>-` prefix so no epoch repeats another's
    session or event ids (R13). The few events of an epoch's last sessions that
    spill past its end are merged with the next epoch.
    """
    span = timedelta(days=EPOCH_DAYS) / time_scale
    carry: list[tuple[int, str, SessionEvent]] = []
    for k in itertools.count():
        epoch_start = start + k * span
        boundary = to_micros(epoch_start + span)
        prefix = f"e{k}-"
        fresh = (
            (to_micros(e.ts), str(topic), _relabel(e, prefix))
            for topic, e in generate(users, groups, EPOCH_DAYS, seed, start=epoch_start,
                                     time_scale=time_scale)
            if isinstance(e, SessionEvent)
        )
        spill: list[tuple[int, str, SessionEvent]] = []
        for item in heapq.merge(carry, fresh, key=lambda item: item[0]):
            if item[0] < boundary:
                yield item
            else:
                spill.append(item)
        carry = spill


def _relabel(e: SessionEvent, prefix: str) -> SessionEvent:
    return msgspec.structs.replace(
        e, event_id=prefix + e.event_id, session_id=prefix + e.session_id
    )


def rule_flags(rules: Config) -> list[str]:
    """The compressed durations as worker flags, checked to parse back exactly."""
    flags = []
    for name in ("window", "pass_lifetime", "inactivity_timeout", "dedupe_horizon",
                 "uap_quarantine"):
        value: timedelta = getattr(rules, name)
        text = format_duration(value)
        if parse_duration(text) != value:  # format_duration may print a float
            raise ValueError(f"cannot pass {name}={value!r} exactly as a flag ({text})")
        flags += ["--" + name.replace("_", "-"), text]
    return flags


async def send_traffic(
    producer: Any,
    topic_name: Callable[[str], str],
    events: Iterator[tuple[int, str, SessionEvent]],
    on_sent: Callable[[int], None],
) -> None:
    """Send each event `LEAD` seconds before its timestamp, in small batches, keyed by
    group (the partition of its pool). Runs until cancelled or the events run out."""
    pending = next(events, None)
    while pending is not None:
        horizon = int((time.time() + LEAD) * 1_000_000)
        sent = []
        while pending is not None and pending[0] <= horizon:
            _, topic, event = pending
            sent.append(await producer.send(
                topic_name(topic), encode(event), key=event.group.encode()))
            pending = next(events, None)
        if sent:
            await asyncio.gather(*sent)
            on_sent(len(sent))
        await asyncio.sleep(SEND_STEP)


def day_zero() -> datetime:
    """Day 0 of the traffic: `LEAD` seconds from now, so the first events get the lead."""
    return datetime.now(UTC) + timedelta(seconds=LEAD)

"""Token planning from a replayed history (R12 beyond the one-line formula).

`Usage` collects what one run of the engine did; `build_plan` turns the run as it
happened and the demand run (every pool unlimited, no UAPs; see `rules.scenario`)
into figures per group and advice per user. Pure: outputs in, figures out. Token
counts are computed with `Fraction`, so a rounding edge is never decided by a float.

Definitions (the README repeats them for operators):
- passes in use at t: passes consumed in (t - lifetime, t] (R7); the peak is the most
  over the history, the busiest span of a user is the same count for one user.
- passes per person per 28 days: a person's passes in the complete pass-lifetime
  periods counted from the history's start, divided by the number of periods (the
  trailing part period is left out, so it does not dilute the rate; a history
  shorter than one period is scaled up to one).
- percentiles interpolate linearly between order statistics (the "inclusive"
  method of Python's statistics.quantiles, numpy's default).
"""

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from rules.estimate import Estimate, estimate_tokens
from schemas.outputs import AccessDenied, AllocationRejected, OutputEvent, PassConsumed
from schemas.timestamps import to_micros

DAY = 86_400_000_000
"""One day in microseconds."""


@dataclass(slots=True)
class GroupUsage:
    passes: list[tuple[int, str | None]] = field(default_factory=list)
    """(instant, user or None for anonymous) of every pass consumed, in time order."""
    timeline: list[tuple[int, int, int]] = field(default_factory=list)
    """(instant, passes in use, capacity) after every consumption and return."""
    in_use: int = 0
    denials: Counter[str] = field(default_factory=Counter)
    """Denials by reason; renewal denials (R8) as `pool_exhausted_renewal`."""
    ran_dry_at: int | None = None
    """First instant the pool had no pass left: a consumption took the last one, or a
    login or renewal found none (R8)."""


class Usage:
    """What one run did, per group, built from its outputs one by one."""

    __slots__ = ("groups", "rejected_allocations")

    def __init__(self) -> None:
        self.groups: dict[str, GroupUsage] = {}
        self.rejected_allocations = 0

    def group(self, name: str) -> GroupUsage:
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = GroupUsage()
        return g

    def observe(self, o: OutputEvent) -> None:
        if isinstance(o, AllocationRejected):
            self.rejected_allocations += 1
            return
        g = self.group(o.group)
        t = to_micros(o.ts)
        if isinstance(o, PassConsumed):
            g.passes.append((t, o.user_id))
            g.in_use += 1
            g.timeline.append((t, g.in_use, o.capacity))
            if o.available == 0 and g.ran_dry_at is None:
                g.ran_dry_at = t
        elif isinstance(o, AccessDenied):
            g.denials[o.reason + ("_renewal" if o.renewal else "")] += 1
            if o.reason == "pool_exhausted" and g.ran_dry_at is None:
                g.ran_dry_at = t
        else:
            g.in_use -= o.count
            g.timeline.append((t, g.in_use, o.capacity))


# -- arithmetic ------------------------------------------------------------------


def busiest_span(instants: Sequence[int], span: int) -> tuple[int, int | None]:
    """(most instants in any half-open span (t - span, t], the t where it is first
    reached); `instants` sorted. With span = pass lifetime: the peak passes in use."""
    best, at, lo = 0, None, 0
    for hi, t in enumerate(instants):
        while instants[lo] <= t - span:
            lo += 1
        if hi + 1 < len(instants) and instants[hi + 1] == t:
            continue  # count every pass of one instant before comparing
        if hi - lo + 1 > best:
            best, at = hi - lo + 1, t
    return best, at


def periods(start: int, end: int, span: int) -> tuple[int, int]:
    """(end of the counted window, number of periods it holds, at least one)."""
    whole = (end - start) // span
    return (start + whole * span, whole) if whole >= 1 else (end, 1)


def per_period(instants: Sequence[int], start: int, end: int, span: int) -> Fraction:
    """Instants per span: those in the complete spans from `start`, divided by their
    number; a history shorter than one span is scaled up to one (sorted input)."""
    if end - start < span:
        count = bisect_right(instants, end) - bisect_left(instants, start)
        return Fraction(count * span, end - start) if end > start else Fraction(count)
    window_end, n = periods(start, end, span)
    return Fraction(bisect_left(instants, window_end) - bisect_left(instants, start), n)


def percentile(values: Sequence[Fraction], q: Fraction) -> Fraction:
    """Linear interpolation between order statistics (`values` sorted, 0 <= q <= 1)."""
    if not values:
        return Fraction(0)
    if not 0 <= q <= 1:
        raise ValueError("q must be within [0, 1]")
    h = (len(values) - 1) * q
    lo = h.numerator // h.denominator
    if lo + 1 >= len(values):
        return values[-1]
    return values[lo] + (h - lo) * (values[lo + 1] - values[lo])


def ceil_tokens(passes: Fraction | int, buffer_percent: Fraction, passes_per_token: int) -> int:
    """ceil(passes x (1 + buffer) / passes per token), exactly."""
    exact = Fraction(passes) * (1 + buffer_percent / 100) / passes_per_token
    return -(-exact.numerator // exact.denominator)


def returns_by_day(
    calendar: Iterable[tuple[int, int]], as_of: int, horizon: int
) -> list[tuple[int, int]]:
    """(UTC day start, passes returning that day after `as_of`) for each day from
    `as_of`'s day until `as_of + horizon`: the pool's return calendar (R7)."""
    first = as_of - as_of % DAY
    days = -(-(as_of + horizon - first) // DAY)
    counts = [0] * days
    for instant, count in calendar:
        if as_of < instant <= as_of + horizon:
            counts[(instant - first) // DAY] += count
    return [(first + d * DAY, counts[d]) for d in range(days)]


# -- the plan --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunFigures:
    """How one group's pool fared in one run."""

    capacity: int
    tokens: int
    """Login access tokens the capacity stands for."""
    peak_in_use: int
    peak_at: int | None
    min_headroom: int
    """Fewest passes available at any moment (0 if the pool ran dry)."""
    denials: dict[str, int]
    ran_dry_at: int | None

    @property
    def exhausted(self) -> int:
        return self.denials.get("pool_exhausted", 0) + self.denials.get(
            "pool_exhausted_renewal", 0
        )


def run_figures(
    usage: GroupUsage | None, capacity: int, passes_per_token: int = 10
) -> RunFigures:
    tokens = capacity // passes_per_token
    if usage is None:
        return RunFigures(capacity, tokens, 0, None, capacity, {}, None)
    peak, at = 0, None
    headroom = capacity
    for t, in_use, cap in usage.timeline:
        if in_use > peak:
            peak, at = in_use, t
        headroom = min(headroom, max(0, cap - in_use))
    if usage.ran_dry_at is not None:
        headroom = 0
    return RunFigures(capacity, tokens, peak, at, headroom,
                      dict(sorted(usage.denials.items())), usage.ran_dry_at)


@dataclass(frozen=True, slots=True)
class UserUsage:
    """One identified user's login access use in the demand run."""

    user_id: str
    group: str
    passes: int
    per_period: Fraction
    busiest: int
    """Most passes in any one pass-lifetime span."""
    busiest_at: int | None
    uap: bool
    """Holds a user access pass (its passes are what a LAP would have cost)."""


@dataclass(frozen=True, slots=True)
class Switch:
    """A user whose access would cost fewer tokens the other way (R12)."""

    user_id: str
    group: str
    busiest: int
    to: str
    """"user_access" (a UAP instead of passes) or "login_access" (passes instead)."""
    saving: Fraction
    """Tokens saved: busiest / passes per token - 1 for a UAP, the reverse for a LAP."""


@dataclass(frozen=True, slots=True)
class GroupPlan:
    group: str
    people: int
    """Identified users without a UAP who used the group."""
    uap_holders: int
    anonymous_passes: int
    passes: int
    """Login access passes asked for over the history (demand run, UAP holders out)."""
    median: Fraction
    p90: Fraction
    mean: Fraction
    formula: Estimate
    """The seed's formula: people x mean passes per person x (1 + buffer) / 10."""
    peak_demand: int
    peak_demand_at: int | None
    tokens_by_peak: int
    """ceil(peak passes in use asked for x (1 + buffer) / 10)."""
    uap_candidates: tuple[str, ...]
    tokens_with_uaps: int
    """A UAP for each candidate plus the peak of everyone else's passes, with buffer."""
    actual: RunFigures


@dataclass(frozen=True, slots=True)
class Plan:
    start: int
    end: int
    span: int
    periods: int
    passes_per_token: int
    buffer_percent: Fraction
    groups: tuple[GroupPlan, ...]
    users: tuple[UserUsage, ...]
    to_uap: tuple[Switch, ...]
    to_lap: tuple[Switch, ...]
    demand_capped: tuple[str, ...]
    """Groups whose demand run was still denied passes: their figures are a floor."""


def build_plan(
    actual: Usage,
    demand: Usage,
    capacities: Mapping[str, int],
    uap_holders: Iterable[str],
    start: int,
    end: int,
    span: int,
    buffer_percent: Fraction | int = 20,
    uap_min_hours: int = 10,
    passes_per_token: int = 10,
) -> Plan:
    """Per group and per user figures from the actual and the demand run.

    `uap_holders` hold a user access pass at the end of the history; their demand
    passes say what login access would have cost them. `uap_min_hours`: a holder
    whose busiest span used fewer access hours (passes) than this is listed for LAP.
    """
    buffer = Fraction(buffer_percent)
    holders = set(uap_holders)
    users: list[UserUsage] = []
    groups: list[GroupPlan] = []
    to_uap: list[Switch] = []
    to_lap: list[Switch] = []
    seen_holders: set[str] = set()
    _, n_periods = periods(start, end, span)
    for name in sorted(set(actual.groups) | set(demand.groups) | set(capacities)):
        usage = demand.groups.get(name)
        by_user: dict[str, list[int]] = {}
        lap: list[int] = []
        anonymous = 0
        for t, user in usage.passes if usage is not None else ():
            if user is None:
                anonymous += 1
            else:
                by_user.setdefault(user, []).append(t)
            if user is None or user not in holders:
                lap.append(t)
        people: list[UserUsage] = []
        for user, instants in sorted(by_user.items()):
            busiest, at = busiest_span(instants, span)
            u = UserUsage(user, name, len(instants), per_period(instants, start, end, span),
                          busiest, at, user in holders)
            users.append(u)
            if u.uap:
                seen_holders.add(user)
                if busiest < uap_min_hours:
                    to_lap.append(Switch(user, name, busiest, "login_access",
                                         1 - Fraction(busiest, passes_per_token)))
            else:
                people.append(u)
        rates = sorted(u.per_period for u in people)
        mean = sum(rates, Fraction(0)) / len(rates) if rates else Fraction(0)
        candidates = [u for u in people if u.busiest > passes_per_token]
        to_uap.extend(
            Switch(u.user_id, name, u.busiest, "user_access",
                   Fraction(u.busiest, passes_per_token) - 1)
            for u in candidates
        )
        heavy = {u.user_id for u in candidates}
        rest = [t for t, user in (usage.passes if usage is not None else ())
                if user is None or (user not in holders and user not in heavy)]
        peak, peak_at = busiest_span(lap, span)
        groups.append(GroupPlan(
            group=name,
            people=len(people),
            uap_holders=sum(1 for user in by_user if user in holders),
            anonymous_passes=anonymous,
            passes=len(lap),
            median=percentile(rates, Fraction(1, 2)),
            p90=percentile(rates, Fraction(9, 10)),
            mean=mean,
            formula=estimate_tokens(len(people), mean, buffer, passes_per_token),
            peak_demand=peak,
            peak_demand_at=peak_at,
            tokens_by_peak=ceil_tokens(peak, buffer, passes_per_token),
            uap_candidates=tuple(u.user_id for u in candidates),
            tokens_with_uaps=len(candidates)
            + ceil_tokens(busiest_span(rest, span)[0], buffer, passes_per_token),
            actual=run_figures(actual.groups.get(name), capacities.get(name, 0),
                               passes_per_token),
        ))
    for user in sorted(holders - seen_holders):  # a UAP nobody used
        to_lap.append(Switch(user, "", 0, "login_access", Fraction(1)))
    capped = tuple(sorted(
        n for n, g in demand.groups.items()
        if g.denials["pool_exhausted"] or g.denials["pool_exhausted_renewal"]
    ))
    return Plan(
        start=start,
        end=end,
        span=span,
        periods=n_periods,
        passes_per_token=passes_per_token,
        buffer_percent=buffer,
        groups=tuple(groups),
        users=tuple(users),
        to_uap=tuple(sorted(to_uap, key=lambda s: (-s.saving, s.user_id))),
        to_lap=tuple(sorted(to_lap, key=lambda s: (-s.saving, s.user_id))),
        demand_capped=capped,
    )

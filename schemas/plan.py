"""The JSON document of `tokenpool plan --json`: the plan's figures, for programs.

Exact figures (fractions of passes or tokens) are strings as `tokenpool estimate
--json` writes them: a decimal when there is one (`49.44`), else `p/q`. Instants are
RFC 3339 in UTC.
"""

import msgspec

from schemas.timestamps import Timestamp


class RunFiguresDoc(msgspec.Struct, frozen=True, kw_only=True):
    """How a group's pool fared in one run (as it happened, or the what-if)."""

    capacity: int
    tokens: int
    peak_in_use: int
    peak_at: Timestamp | None
    min_headroom: int
    denials: dict[str, int]
    ran_dry_at: Timestamp | None


class FormulaDoc(msgspec.Struct, frozen=True, kw_only=True):
    """The seed's formula (R12): people x passes per person x (1 + buffer) / 10."""

    people: int
    passes_per_person: str
    buffer_percent: str
    exact: str
    tokens: int


class TopUserDoc(msgspec.Struct, frozen=True, kw_only=True):
    """`--top N`: one of a group's heaviest users of the last pass lifetime."""

    user_id: str
    passes: int
    passes_per_lifetime: str
    sessions: int
    sessions_per_day: str
    hours: str
    uap_cheaper: bool


class DayDoc(msgspec.Struct, frozen=True, kw_only=True):
    day: Timestamp
    """Start of the UTC day."""
    passes: int
    """Passes returning that day."""


class GroupDoc(msgspec.Struct, frozen=True, kw_only=True):
    group: str
    people: int
    uap_holders: int
    anonymous_passes: int
    passes: int
    passes_per_person_median: str
    passes_per_person_p90: str
    passes_per_person_mean: str
    formula: FormulaDoc
    peak_demand: int
    peak_demand_at: Timestamp | None
    tokens_by_peak: int
    uap_candidates: list[str]
    tokens_with_uaps: int
    actual: RunFiguresDoc
    what_if: RunFiguresDoc | None = None
    returns: list[DayDoc] = []
    top: list[TopUserDoc] | None = None


class SwitchDoc(msgspec.Struct, frozen=True, kw_only=True):
    """A user for whom the other kind of access costs fewer tokens."""

    user_id: str
    group: str
    busiest: int
    """Most passes in one pass lifetime."""
    to: str
    """`user_access` or `login_access`."""
    saving: str
    """Tokens saved."""


class PlanDoc(msgspec.Struct, frozen=True, kw_only=True):
    start: Timestamp
    end: Timestamp
    lifetime: str
    """The pass lifetime every per-person figure is counted over (`28d`)."""
    periods: int
    buffer_percent: str
    passes_per_token: int
    what_if_tokens: dict[str, int] | None = None
    returns_horizon: str
    groups: list[GroupDoc]
    to_uap: list[SwitchDoc]
    to_lap: list[SwitchDoc]
    demand_capped: list[str]
    """Groups whose demand run was still denied passes: their figures are a floor."""

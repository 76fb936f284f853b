"""Drift between Qlik's count of login access passes in use and tokenpool's. Pure.

tokenpool's side comes from the workers' `/metrics` (`tokenpool_pool_in_use_passes`)
or from a replay's `--state` file; Qlik's from `qrs.passes_in_use`. Drift is
`qrs - tokenpool` per group: positive when Qlik counts passes tokenpool never saw
consumed (missing events), negative when tokenpool counts passes Qlik does not.
"""

from collections.abc import Iterable, Mapping

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from adapters.qlik.qrs import GroupUsage

IN_USE_METRIC = "tokenpool_pool_in_use_passes"


class SourceError(ValueError):
    """tokenpool's own figures could not be read from a source; says which and why."""


class GroupDrift(msgspec.Struct, frozen=True):
    group: str
    qrs_in_use: int
    tokenpool_in_use: int
    drift: int
    users: tuple[tuple[str, int], ...]
    """Users Qlik counts passes for in the group, most passes first: who to look at."""


def in_use_from_metrics(texts: Iterable[str]) -> dict[str, int]:
    """Passes in use per group from the Prometheus text of one or more workers.

    Each worker exports only the groups of the partitions it owns; during a rebalance
    two may briefly export one group, so the larger figure is kept, never the sum.
    """
    out: dict[str, int] = {}
    for i, text in enumerate(texts):
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as exc:
            raise SourceError(f"metrics #{i + 1}: not Prometheus text: {exc}") from None
        for family in families:
            for sample in family.samples:
                if sample.name != IN_USE_METRIC:
                    continue
                group = sample.labels.get("group")
                if group is not None:
                    out[group] = max(out.get(group, 0), int(sample.value))
    return out


class _StateGroup(msgspec.Struct):
    in_use: int


class _State(msgspec.Struct):
    groups: dict[str, _StateGroup]


def in_use_from_state(body: bytes) -> dict[str, int]:
    """Passes in use per group from `tokenpool replay --state` output."""
    try:
        state = msgspec.json.decode(body, type=_State)
    except msgspec.DecodeError as exc:
        raise SourceError(f"state file: {exc}") from None
    return {g: s.in_use for g, s in state.groups.items()}


def compute_drift(qrs: Mapping[str, GroupUsage], tokenpool: Mapping[str, int]) -> list[GroupDrift]:
    """One row per group either side knows, sorted by group name."""
    rows = []
    for group in sorted(set(qrs) | set(tokenpool)):
        usage = qrs.get(group)
        q = usage.in_use if usage is not None else 0
        t = tokenpool.get(group, 0)
        users = tuple(sorted((usage.users if usage else {}).items(), key=lambda u: (-u[1], u[0])))
        rows.append(GroupDrift(group=group, qrs_in_use=q, tokenpool_in_use=t, drift=q - t,
                               users=users))
    return rows

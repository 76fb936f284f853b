"""`tokenpool plan --json`: a `Result` as the document `schemas.plan` describes."""

import argparse
from datetime import timedelta
from fractions import Fraction

import msgspec

from rules.estimate import exact_text
from rules.planning import RunFigures
from schemas import from_micros
from schemas.plan import (
    DayDoc,
    FormulaDoc,
    GroupDoc,
    PlanDoc,
    RunFiguresDoc,
    SwitchDoc,
    TopUserDoc,
)
from stream_app.durations import format_duration
from stream_app.planning.result import Result


def _at(us: int | None) -> object:
    return None if us is None else from_micros(us)


def _run(f: RunFigures) -> RunFiguresDoc:
    return RunFiguresDoc(capacity=f.capacity, tokens=f.tokens, peak_in_use=f.peak_in_use,
                         peak_at=_at(f.peak_at), min_headroom=f.min_headroom,
                         denials=f.denials, ran_dry_at=_at(f.ran_dry_at))


def _exact(x: Fraction | int) -> str:
    return exact_text(Fraction(x))


def document(result: Result, args: argparse.Namespace) -> PlanDoc:
    plan = result.plan
    groups = []
    for g in plan.groups:
        f = g.formula
        top = None if result.top is None else [
            TopUserDoc(user_id=u.user_id, passes=u.passes,
                       passes_per_lifetime=_exact(u.per_lifetime), sessions=u.sessions,
                       sessions_per_day=_exact(u.sessions_per_day), hours=_exact(u.hours),
                       uap_cheaper=u.uap_cheaper)
            for u in result.top.get(g.group, ())
        ]
        groups.append(GroupDoc(
            group=g.group, people=g.people, uap_holders=g.uap_holders,
            anonymous_passes=g.anonymous_passes, passes=g.passes,
            passes_per_person_median=_exact(g.median), passes_per_person_p90=_exact(g.p90),
            passes_per_person_mean=_exact(g.mean),
            formula=FormulaDoc(people=f.people, passes_per_person=f.passes_per_person,
                               buffer_percent=f.buffer_percent, exact=f.exact,
                               tokens=f.tokens),
            peak_demand=g.peak_demand, peak_demand_at=_at(g.peak_demand_at),
            tokens_by_peak=g.tokens_by_peak, uap_candidates=list(g.uap_candidates),
            tokens_with_uaps=g.tokens_with_uaps, actual=_run(g.actual),
            what_if=None if result.what_if is None else _run(result.what_if[g.group]),
            returns=[DayDoc(day=from_micros(t), passes=n)
                     for t, n in result.returns.get(g.group, ())],
            top=top,
        ))
    switches = [[SwitchDoc(user_id=s.user_id, group=s.group, busiest=s.busiest, to=s.to,
                           saving=_exact(s.saving)) for s in kind]
                for kind in (plan.to_uap, plan.to_lap)]
    return PlanDoc(
        start=from_micros(plan.start), end=from_micros(plan.end),
        lifetime=format_duration(timedelta(microseconds=plan.span)), periods=plan.periods,
        buffer_percent=_exact(plan.buffer_percent), passes_per_token=plan.passes_per_token,
        what_if_tokens=dict(args.tokens) if args.tokens else None,
        returns_horizon=format_duration(timedelta(microseconds=result.horizon)),
        groups=groups, to_uap=switches[0], to_lap=switches[1],
        demand_capped=list(plan.demand_capped),
    )


def encode(result: Result, args: argparse.Namespace) -> bytes:
    """The document, indented, with a final newline."""
    return msgspec.json.format(msgspec.json.encode(document(result, args))) + b"\n"

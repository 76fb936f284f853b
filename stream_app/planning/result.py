"""Every run and figure `tokenpool plan` reports, and how figures read to people.

`make_plan` replays a history (through `stream_app.planning.runs`) and asks
`rules.planning` for the figures; the text report (`text`), the HTML page and
plots (`report`) and the JSON document (`json_report`) only present a `Result`.
"""

import argparse
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction

from rules.planning import Plan, RunFigures, build_plan, returns_by_day, run_figures
from rules.scenario import Scenario
from rules.top_users import Activity, TopUser, top_users
from schemas import from_micros
from stream_app.planning.runs import Run, plain, run
from stream_app.settings import rule_config


@dataclass
class Result:
    plan: Plan
    actual: Run
    demand: Run
    what_if: dict[str, RunFigures] | None
    what_if_run: Run | None
    returns: dict[str, list[tuple[int, int]]]
    horizon: int
    top: dict[str, tuple[TopUser, ...]] | None
    """`--top N`: per group, who consumed the most passes in the last pass lifetime."""


def make_plan(path: str, args: argparse.Namespace) -> Result:
    """Every run and figure `tokenpool plan` reports (also what the tests call)."""
    config = rule_config(args)
    span = config.pass_lifetime // timedelta(microseconds=1)
    horizon = args.horizon // timedelta(microseconds=1)
    activity = None
    if args.top:
        us = timedelta(microseconds=1)
        activity = Activity(config.inactivity_timeout // us, config.dedupe_horizon // us, span)
    with plain(path) as history:
        actual = run(history, Scenario.actual(), config, activity)
        demand = run(history, Scenario.demand(), config)
        alt = run(history, Scenario.what_if(dict(args.tokens)), config) if args.tokens else None
    plan = build_plan(
        actual.usage, demand.usage, actual.capacities(), actual.engine.ledger.uap,
        actual.start, actual.end, span, args.buffer, args.uap_min_hours,
        config.passes_per_token,
    )
    what_if = None
    if alt is not None:
        caps = alt.capacities()
        what_if = {g.group: run_figures(alt.usage.groups.get(g.group), caps.get(g.group, 0),
                                        config.passes_per_token)
                   for g in plan.groups}
    returns = {name: returns_by_day(cal, actual.end, horizon)
               for name, cal in actual.returns_calendars().items()}
    top = None
    if activity is not None:
        top = top_users(actual.usage, activity, actual.start, actual.end, span, args.top,
                        config.passes_per_token)
    return Result(plan, actual, demand, what_if, alt, returns, horizon, top)


def passes(n: int) -> str:
    return f"{n} pass" if n == 1 else f"{n} passes"


def num(x: Fraction | int) -> str:
    """A figure for people to read: whole, or two decimals (computed exactly elsewhere)."""
    if isinstance(x, int) or x.denominator == 1:
        return str(int(x))
    return f"{float(x):.2f}".rstrip("0").rstrip(".")


def day(us: int | None) -> str:
    return "-" if us is None else from_micros(us).strftime("%Y-%m-%d")


def when(us: int | None) -> str:
    return "-" if us is None else from_micros(us).strftime("%Y-%m-%d %H:%M")

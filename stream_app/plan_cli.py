"""`tokenpool plan` and `tokenpool estimate --from-history`: token purchases from a
history, per group, with the figures that back them.

A thin shell: replays go through `stream_app.plan_runs`, every figure comes from
`rules.planning`, pictures and HTML from `stream_app.plan_report`.
"""

import argparse
import sys
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from typing import IO, Any

import msgspec

from rules.planning import Plan, RunFigures, build_plan, returns_by_day, run_figures
from rules.scenario import Scenario
from schemas import from_micros
from stream_app.durations import format_duration, parse_duration
from stream_app.plan_runs import EmptyHistory, Run, plain, run
from stream_app.settings import add_rule_options, rule_config


def _group_tokens(text: str) -> tuple[str, int]:
    group, sep, count = text.rpartition("=")
    if not sep or not group:
        raise argparse.ArgumentTypeError(f"expected GROUP=TOKENS, got {text!r}")
    try:
        tokens = int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tokens must be a whole number: {text!r}") from None
    if tokens < 0:
        raise argparse.ArgumentTypeError(f"tokens must not be negative: {text!r}")
    return group, tokens


def _buffer(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("buffer must not be negative")
    return value


def add_plan_command(sub: Any) -> None:
    """Register `tokenpool plan` on the command line's subparsers."""
    p = sub.add_parser(
        "plan",
        help="how many tokens to buy, per group, from a history (report with plots)",
        description="Replay a history (JSON Lines, or .jsonl.gz) as it happened and with "
        "every pool unlimited, and report per group: peak passes in use, passes per "
        "person per 28 days, tokens by the seed's formula and by the peak plus buffer, "
        "denials and when the pool ran dry; users for whom a user access pass or login "
        "access would be cheaper; and the passes returning next.",
    )
    p.add_argument("file", metavar="HISTORY.jsonl", help="replay file (.gz is read too)")
    p.add_argument("--buffer", type=_buffer, default=Fraction(20),
                   help="headroom in percent on top of usage (default: 20)")
    p.add_argument("--horizon", type=parse_duration, default=timedelta(days=28),
                   help="how far ahead the returns calendar looks (default: 28d)")
    p.add_argument("--tokens", type=_group_tokens, nargs="+", metavar="GROUP=N",
                   help="what-if: replay again with these groups holding N tokens")
    p.add_argument("--uap-min-hours", type=int, default=10, metavar="HOURS",
                   help="list UAP holders whose busiest 28 days used fewer access hours "
                   "than this (default: 10, one token of login passes)")
    p.add_argument("--out", metavar="REPORT.html", help="write a self-contained HTML report")
    p.add_argument("--png", metavar="DIR", help="write the plots as PNG files into DIR")
    add_rule_options(p)
    p.set_defaults(func=cmd_plan)


@dataclass
class Result:
    plan: Plan
    actual: Run
    demand: Run
    what_if: dict[str, RunFigures] | None
    what_if_run: Run | None
    returns: dict[str, list[tuple[int, int]]]
    horizon: int


def make_plan(
    path: str,
    args: argparse.Namespace,
) -> Result:
    """Every run and figure `tokenpool plan` reports (also what the tests call)."""
    config = rule_config(args)
    span = config.pass_lifetime // timedelta(microseconds=1)
    horizon = args.horizon // timedelta(microseconds=1)
    with plain(path) as history:
        actual = run(history, Scenario.actual(), config)
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
    return Result(plan, actual, demand, what_if, alt, returns, horizon)


LIST_MAX = 10
"""Users listed per advice in the text report; the HTML report lists every one."""


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


def write_text(result: Result, args: argparse.Namespace, w: IO[str]) -> None:
    plan = result.plan
    span = format_duration(timedelta(microseconds=plan.span))
    w.write(
        f"history {when(plan.start)} .. {when(plan.end)} UTC: {plan.periods} complete "
        f"{span} period(s), buffer {num(plan.buffer_percent)}%\n\n"
    )
    head = (f"{'group':<20} {'people':>6} {'UAP':>4} {'median':>7} {'p90':>6} {'mean':>6} "
            f"{'formula':>8} {'peak':>6} {'by peak':>8} {'held':>6} {'denied':>7}  ran dry\n")
    w.write(f"{'':<20} {'':>6} {'':>4} {'passes per person/' + span:>21} {'tokens':>8} "
            f"{'in use':>6} {'tokens':>8} {'tokens':>6}\n")
    w.write(head)
    for g in plan.groups:
        a = g.actual
        w.write(
            f"{g.group:<20} {g.people:>6} {g.uap_holders:>4} {num(g.median):>7} "
            f"{num(g.p90):>6} {num(g.mean):>6} "
            f"{g.formula.tokens:>8} {g.peak_demand:>6} {g.tokens_by_peak:>8} "
            f"{a.tokens:>6} {a.exhausted:>7}  {day(a.ran_dry_at)}\n"
        )
    w.write(
        "\npeak: most passes in use at once over any pass lifetime, as asked for (every "
        "pool unlimited); held: tokens allocated at the end; denied: logins and renewals "
        "refused for lack of passes.\n"
    )
    for g in plan.groups:
        if g.people:
            f = g.formula
            w.write(f"  {g.group}: {f.people} people x {num(Fraction(f.passes_per_person))}"
                    f" passes x (1 + {f.buffer_percent}%) / 10 = {num(Fraction(f.exact))}"
                    f" -> {f.tokens} tokens\n")
    if plan.to_uap:
        w.write(f"\nuser access passes would be cheaper for {len(plan.to_uap)} users "
                f"(more than 10 passes in some {span}), most saved first:\n")
        for s in plan.to_uap[:LIST_MAX]:
            w.write(f"  {s.user_id} ({s.group}): {passes(s.busiest)} in the busiest {span}, "
                    f"saves {num(s.saving)} token(s)\n")
        if len(plan.to_uap) > LIST_MAX:
            w.write(f"  ... and {len(plan.to_uap) - LIST_MAX} more (the HTML report lists "
                    "all)\n")
        for g in plan.groups:
            if g.uap_candidates:
                w.write(f"  {g.group}: {len(g.uap_candidates)} UAPs + "
                        f"{g.tokens_with_uaps - len(g.uap_candidates)} tokens of passes = "
                        f"{g.tokens_with_uaps} tokens instead of {g.tokens_by_peak}\n")
    if plan.to_lap:
        total = sum((s.saving for s in plan.to_lap), Fraction(0))
        w.write(f"\nlogin access would be cheaper for {len(plan.to_lap)} UAP holders (fewer "
                f"than {args.uap_min_hours} access hours in every {span}):\n")
        for s in plan.to_lap:
            w.write(f"  {s.user_id} ({s.group or 'no sessions'}): {passes(s.busiest)} in the "
                    f"busiest {span}, saves {num(s.saving)} token(s)\n")
        w.write(f"  together: {num(total)} tokens\n")
    if result.what_if is not None:
        w.write("\nwhat-if " + " ".join(f"{g}={n}" for g, n in args.tokens) + ":\n")
        w.write(f"{'group':<20} {'tokens':>12} {'denied':>12} {'min headroom':>14}  ran dry\n")
        for g in plan.groups:
            a, b = g.actual, result.what_if[g.group]
            w.write(f"{g.group:<20} {a.tokens:>5} -> {b.tokens:<4} "
                    f"{a.exhausted:>5} -> {b.exhausted:<4} {a.min_headroom:>6} -> "
                    f"{b.min_headroom:<6}  {day(a.ran_dry_at)} -> {day(b.ran_dry_at)}\n")
    horizon = format_duration(timedelta(microseconds=result.horizon))
    w.write(f"\npasses returning in the next {horizon} after {when(plan.end)}:\n")
    for name, days in result.returns.items():
        total = sum(c for _, c in days)
        first = next(((t, c) for t, c in days if c), None)
        w.write(f"  {name:<20} {total:>6}" + (
            f"  (first {first[1]} on {day(first[0])})" if first else "") + "\n")
    if plan.demand_capped:
        w.write("\nwarning: the demand run was still denied passes in "
                + ", ".join(plan.demand_capped) + "; their figures are a floor\n")


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        result = make_plan(args.file, args)
    except (OSError, EOFError, EmptyHistory) as exc:
        print(f"tokenpool plan: {exc}", file=sys.stderr)
        return 2
    for number, reason in result.actual.errors:
        print(f"{args.file}:{number}: skipped: {reason}", file=sys.stderr)
    known = {g.group for g in result.plan.groups}
    for group, _ in args.tokens or ():
        if group not in known:
            print(f"tokenpool plan: what-if group {group!r} has no events in the history",
                  file=sys.stderr)
    write_text(result, args, sys.stdout)
    if args.out or args.png:
        try:
            from stream_app import plan_report
        except ImportError as exc:
            print(f"tokenpool plan: plots need matplotlib ({exc}): "
                  "pip install 'tokenpool[plan]'", file=sys.stderr)
            return 2
        try:
            figures = plan_report.figures(result)
            if args.png:
                for path in plan_report.write_png(figures, args.png):
                    print(f"wrote {path}", file=sys.stderr)
            if args.out:
                plan_report.write_html(result, figures, args, args.out)
                print(f"wrote {args.out}", file=sys.stderr)
        except OSError as exc:
            print(f"tokenpool plan: {exc}", file=sys.stderr)
            return 2
    return 0


def estimate_from_history(args: argparse.Namespace) -> int:
    """`tokenpool estimate --from-history`: the seed's formula per group, with people and
    passes per person taken from the history's demand run."""
    try:
        buffer = _buffer(str(args.buffer))
        config = rule_config(args)
        with plain(args.from_history) as history:
            demand = run(history, Scenario.demand(), config)
    except (OSError, EOFError, EmptyHistory, argparse.ArgumentTypeError) as exc:
        print(f"tokenpool estimate: {exc}", file=sys.stderr)
        return 2
    span = config.pass_lifetime // timedelta(microseconds=1)
    plan = build_plan(demand.usage, demand.usage, {}, demand.scenario.uap_holders,
                      demand.start, demand.end, span, buffer, 10, config.passes_per_token)
    estimates = {g.group: g.formula for g in plan.groups if g.people}
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(estimates) + b"\n")
        return 0
    for name, f in estimates.items():
        print(f"{name}: {f.people} people x {num(Fraction(f.passes_per_person))} passes"
              f" x (1 + {f.buffer_percent}%) / 10 = {num(Fraction(f.exact))} -> {f.tokens} tokens")
    print(f"total: {sum(f.tokens for f in estimates.values())} tokens")
    heavy = sum(len(g.uap_candidates) for g in plan.groups)
    if heavy:
        print(f"{heavy} users used more than 10 passes in some 28 days: a user access pass "
              "each is cheaper (tokenpool plan lists them)")
    return 0

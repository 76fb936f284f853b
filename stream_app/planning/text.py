"""The text report of `tokenpool plan`: what it prints, from a `Result`."""

import argparse
from datetime import timedelta
from fractions import Fraction
from typing import IO

from stream_app.durations import format_duration
from stream_app.planning.result import Result, day, num, passes, when

LIST_MAX = 10
"""Users listed per advice in the text report; the HTML report lists every one."""


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
    if result.top is not None:
        write_top(result, span, w)
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



def write_top(result: Result, span: str, w: IO[str]) -> None:
    """`--top N`: who consumed the most passes in the history's last pass lifetime."""
    assert result.top is not None
    plan = result.plan
    start = max(plan.start, plan.end - plan.span)
    w.write(f"\nmost passes consumed in the last {span} ({when(start)} .. {when(plan.end)}), "
            "per group:\n")
    w.write(f"  {'group':<20} {'user':<24} {'passes':>6} {'sessions/day':>12} "
            f"{'hours':>7}  UAP cheaper (> {plan.passes_per_token} passes/{span})\n")
    for group, users in result.top.items():
        for u in users:
            w.write(f"  {group:<20} {u.user_id:<24} {u.passes:>6} "
                    f"{num(u.sessions_per_day):>12} {num(u.hours):>7}  "
                    f"{'yes' if u.uap_cheaper else 'no'}\n")
    if not result.top:
        w.write("  (no identified user consumed a pass)\n")

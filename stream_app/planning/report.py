"""Pictures and the HTML page of `tokenpool plan`.

matplotlib (Agg backend: no display needed) draws three figures; the HTML page embeds
them as base64 PNG data and carries its style inline, so it opens anywhere with no
network. Nothing here computes a figure: every number comes from `rules.planning`.
"""

import argparse
import base64
import html
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from schemas import from_micros
from stream_app.atomic import replaced
from stream_app.durations import format_duration
from stream_app.planning.result import Result, num

UAP_BREAK_EVEN = 10
"""Passes per 28 days at which a user access pass costs the same as login passes."""


@dataclass
class Figure:
    name: str
    """File stem: `<name>.png`."""
    title: str
    alt: str
    png: bytes


def _grid(n: int) -> tuple[Any, list[Any]]:
    cols = 2 if n > 1 else 1
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 2.8 * rows), squeeze=False,
                             layout="constrained")
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _steps(timeline: list[tuple[int, int, int]], start: int, end: int,
           column: int) -> tuple[list[Any], list[int]]:
    xs = [from_micros(start)]
    ys = [timeline[0][column] if column == 2 and timeline else 0]
    for t, in_use, cap in timeline:
        xs.append(from_micros(t))
        ys.append(in_use if column == 1 else cap)
    xs.append(from_micros(end))
    ys.append(ys[-1])
    return xs, ys


def in_use_figure(result: Result) -> Figure:
    plan = result.plan
    groups = [g for g in plan.groups if g.passes or g.actual.capacity]
    fig, axes = _grid(max(1, len(groups)))
    for ax, g in zip(axes, groups, strict=False):
        actual = result.actual.usage.groups.get(g.group)
        demand = result.demand.usage.groups.get(g.group)
        if demand is not None and demand.timeline:
            xs, ys = _steps(demand.timeline, plan.start, plan.end, 1)
            ax.step(xs, ys, where="post", color="#bbbbbb", lw=1, label="asked for")
        if actual is not None and actual.timeline:
            xs, ys = _steps(actual.timeline, plan.start, plan.end, 1)
            ax.step(xs, ys, where="post", color="#1f77b4", lw=1.4, label="in use")
        ax.hlines(g.actual.capacity, from_micros(plan.start), from_micros(plan.end),
                  color="#d62728", lw=1.2, label="capacity")
        if result.what_if is not None and g.group in result.what_if:
            cap = result.what_if[g.group].capacity
            if cap != g.actual.capacity:
                ax.hlines(cap, from_micros(plan.start), from_micros(plan.end),
                          color="#ff7f0e", lw=1.2, ls="--", label="what-if capacity")
        if g.actual.ran_dry_at is not None:
            ax.axvline(from_micros(g.actual.ran_dry_at), color="#d62728", lw=0.8, ls=":")
        ax.set_title(f"{g.group}: peak {g.peak_demand} asked, {g.actual.exhausted} denied",
                     fontsize=9)
        ax.set_ylabel("passes")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
    return Figure("passes-in-use", "Passes in use vs capacity",
                  "passes in use and capacity per group over the history", _png(fig))


def returns_figure(result: Result) -> Figure:
    named = [(n, days) for n, days in result.returns.items() if any(c for _, c in days)]
    fig, axes = _grid(max(1, len(named)))
    for ax, (name, days) in zip(axes, named, strict=False):
        ax.bar([from_micros(t) for t, _ in days], [c for _, c in days], width=0.8,
               color="#2ca02c")
        ax.set_title(f"{name}: {sum(c for _, c in days)} passes return", fontsize=9)
        ax.set_ylabel("passes")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
        ax.tick_params(labelsize=7)
    if not named:
        axes[0].text(0.5, 0.5, "no passes return in the horizon", ha="center")
    horizon = format_duration(timedelta(microseconds=result.horizon))
    return Figure("returns-calendar", f"Passes returning in the next {horizon}",
                  "passes returning per day and group after the history", _png(fig))


def per_user_figure(result: Result) -> Figure:
    plan = result.plan
    by_group: dict[str, list[float]] = {}
    for u in plan.users:
        if not u.uap:
            by_group.setdefault(u.group, []).append(float(u.per_period))
    fig, axes = _grid(max(1, len(by_group)))
    for ax, (name, rates) in zip(axes, sorted(by_group.items()), strict=False):
        ax.hist(rates, bins=range(0, int(max(rates)) + 2), color="#9467bd")
        ax.axvline(UAP_BREAK_EVEN, color="#d62728", lw=1, ls="--", label="UAP break-even")
        ax.set_title(f"{name}: {len(rates)} people", fontsize=9)
        ax.set_xlabel("passes per person per 28 days", fontsize=8)
        ax.set_ylabel("people")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    return Figure("passes-per-user", "Passes per person",
                  "histogram of passes per person per 28 days per group", _png(fig))


def figures(result: Result) -> list[Figure]:
    return [in_use_figure(result), returns_figure(result), per_user_figure(result)]


def write_png(figs: list[Figure], directory: str) -> Iterator[str]:
    os.makedirs(directory, exist_ok=True)
    for f in figs:
        path = os.path.join(directory, f.name + ".png")
        with open(path, "wb") as out:
            out.write(f.png)
        yield path


# -- HTML ------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1300px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee}
.note{color:#555;font-size:13px}
"""


def _n(x: Fraction | int) -> str:
    return num(x)


def _day(us: int | None) -> str:
    return "-" if us is None else from_micros(us).strftime("%Y-%m-%d")


def _table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def render_html(result: Result, figs: list[Figure], args: argparse.Namespace) -> str:
    plan = result.plan
    span = format_duration(timedelta(microseconds=plan.span))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>tokenpool plan</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Token plan</h1>",
        f"<p>History {html.escape(_day(plan.start))} to {html.escape(_day(plan.end))}: "
        f"{plan.periods} complete {span} period(s), buffer {_n(plan.buffer_percent)} %.</p>",
        "<h2>Per group</h2>",
        _table(
            ["group", "people", "UAP holders", f"median passes/{span}", "p90", "mean",
             "seed formula tokens", "peak passes asked", "tokens by peak + buffer",
             "tokens held", "peak in use", "denied", "ran dry"],
            [[g.group, str(g.people), str(g.uap_holders), _n(g.median), _n(g.p90), _n(g.mean),
              str(g.formula.tokens), str(g.peak_demand), str(g.tokens_by_peak),
              str(g.actual.tokens), str(g.actual.peak_in_use),
              str(g.actual.exhausted), _day(g.actual.ran_dry_at)] for g in plan.groups],
        ),
        "<p class='note'>Seed formula: people x mean passes per person per "
        f"{span} x (1 + buffer) / 10, rounded up. Peak: most passes in use at once when "
        "every pool is unlimited (what people asked for). Denied: logins and renewals "
        "refused for lack of passes in the history as it happened.</p>",
    ]
    if result.what_if is not None:
        parts += [
            "<h2>What-if: " + html.escape(" ".join(f"{g}={n}" for g, n in args.tokens))
            + "</h2>",
            _table(
                ["group", "tokens", "what-if tokens", "denied", "what-if denied",
                 "min headroom", "what-if min headroom", "ran dry", "what-if ran dry"],
                [[g.group, str(g.actual.tokens), str(w.tokens),
                  str(g.actual.exhausted), str(w.exhausted), str(g.actual.min_headroom),
                  str(w.min_headroom), _day(g.actual.ran_dry_at), _day(w.ran_dry_at)]
                 for g in plan.groups for w in [result.what_if[g.group]]],
            ),
        ]
    parts.append("<h2>User access or login access</h2>")
    parts.append(f"<p>{len(plan.to_uap)} users used more than 10 passes in some {span}: "
                 "a user access pass (1 token) is cheaper for them.</p>")
    if plan.to_uap:
        parts.append(_table(
            ["user", "group", f"passes in busiest {span}", "tokens saved"],
            [[s.user_id, s.group, str(s.busiest), _n(s.saving)] for s in plan.to_uap],
        ))
    parts.append(f"<p>{len(plan.to_lap)} UAP holders used fewer than "
                 f"{args.uap_min_hours} access hours in every {span}: login access is "
                 "cheaper for them.</p>")
    if plan.to_lap:
        parts.append(_table(
            ["user", "group", f"passes in busiest {span}", "tokens saved"],
            [[s.user_id, s.group or "-", str(s.busiest), _n(s.saving)] for s in plan.to_lap],
        ))
    if result.top is not None:
        parts += _top_section(result, span, args.top)
    for f in figs:
        data = base64.b64encode(f.png).decode("ascii")
        parts.append(f"<h2>{html.escape(f.title)}</h2>")
        parts.append(f"<img id='{f.name}' alt='{html.escape(f.alt)}' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _top_section(result: Result, span: str, n: int) -> list[str]:
    """`--top N`: who consumed the most passes in the history's last pass lifetime."""
    assert result.top is not None
    plan = result.plan
    start = max(plan.start, plan.end - plan.span)
    rows = [[g, u.user_id, str(u.passes), _n(u.sessions_per_day), _n(u.hours),
             "yes" if u.uap_cheaper else "no"]
            for g, users in result.top.items() for u in users]
    return [
        f"<h2 id='top-users'>Most passes consumed in the last {span}</h2>",
        f"<p>{html.escape(_day(start))} to {html.escape(_day(plan.end))}: per group, the "
        f"{n} people who consumed the most login access passes. Sessions per day: "
        "sessions started; hours of use: time with at least one session open. A user "
        f"access pass (1 token) is cheaper for anyone above {plan.passes_per_token} passes "
        f"per {span}.</p>",
        _table(["group", "user", f"passes in the last {span}", "sessions per day",
                "hours of use", "user access pass cheaper"], rows),
    ]


def write_html(result: Result, figs: list[Figure], args: argparse.Namespace,
               path: str) -> None:
    """The page at `path`, replaced whole (`stream_app.atomic`): a reader of the
    previous report never sees part of the next."""
    page = render_html(result, figs, args).encode("utf-8")
    with replaced(path) as f:
        f.write(page)

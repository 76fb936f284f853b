"""`tokenpool plan`: token purchases from a history, per group, with the figures that
back them.

A thin shell: the runs and figures come from `stream_app.planning.result` (replays through
`stream_app.planning.runs`, figures from `rules.planning`), the text from
`stream_app.planning.text`, pictures and HTML from `stream_app.planning.report`, none of
which imports the command line.
"""

import argparse
import sys
from datetime import timedelta
from fractions import Fraction
from typing import Any

from stream_app.config import add_broker_options
from stream_app.durations import format_duration, parse_duration
from stream_app.kafka.span import SPAN_HELP, add_span_options
from stream_app.planning.source import FAILURES, plan_from
from stream_app.planning.text import write_text
from stream_app.settings import add_option, add_rule_options


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


def parse_buffer(text: str) -> Fraction:
    """`--buffer`: headroom in percent, any non-negative number (exact)."""
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("buffer must not be negative")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_plan_command(sub: Any) -> None:
    """Register `tokenpool plan` on the command line's subparsers."""
    p = sub.add_parser(
        "plan",
        help="how many tokens to buy, per group, from a history (report with plots)",
        description="Replay a history as it happened and with every pool unlimited, and "
        "report per group: peak passes in use, passes per person per 28 days, tokens by "
        "the seed's formula and by the peak plus buffer, denials and when the pool ran "
        "dry; users for whom a user access pass or login access would be cheaper; and the "
        "passes returning next. The history is a replay file (JSON Lines, or .jsonl.gz), "
        "or without one the broker's input topics (see tokenpool export). " + SPAN_HELP,
    )
    p.add_argument("file", nargs="?", metavar="HISTORY.jsonl",
                   help="replay file (.gz is read too); without it, the input topics on "
                   "--broker")
    p.add_argument("--buffer", type=parse_buffer, default=Fraction(20),
                   help="headroom in percent on top of usage (default: 20)")
    p.add_argument("--horizon", type=parse_duration, default=timedelta(days=28),
                   help="how far ahead the returns calendar looks (default: 28d)")
    p.add_argument("--tokens", type=_group_tokens, nargs="+", metavar="GROUP=N",
                   help="what-if: replay again with these groups holding N tokens")
    p.add_argument("--uap-min-hours", type=int, default=10, metavar="HOURS",
                   help="list UAP holders whose busiest 28 days used fewer access hours "
                   "than this (default: 10, one token of login passes)")
    p.add_argument("--top", type=_positive, metavar="N",
                   help="list, per group, the N people who consumed the most passes in "
                   "the last 28 days, with sessions per day, hours of use and whether a "
                   "user access pass would be cheaper")
    p.add_argument("--json", action="store_true",
                   help="print the plan as JSON (schemas/plan.py) instead of the text")
    p.add_argument("--out", metavar="REPORT.html", help="write a self-contained HTML report")
    p.add_argument("--png", metavar="DIR", help="write the plots as PNG files into DIR")
    add_option(p, "--every", None, "read the broker again every PERIOD (e.g. 24h) and "
               "replace --out with a new report each time, until SIGTERM or SIGINT",
               parse_duration, format_duration, metavar="PERIOD")
    add_span_options(p)
    add_broker_options(p)
    add_rule_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.every is not None:
        from stream_app.planning.schedule import run_every

        return run_every(args)
    try:
        result = plan_from(args)
    except FAILURES as exc:
        print(f"tokenpool plan: {exc}", file=sys.stderr)
        return 2
    if args.json:
        from stream_app.planning import json_report as plan_json
        sys.stdout.buffer.write(plan_json.encode(result, args))
        sys.stdout.flush()
    else:
        write_text(result, args, sys.stdout)
    if args.out or args.png:
        try:
            from stream_app.planning import report as plan_report
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

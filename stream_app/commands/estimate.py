"""`tokenpool estimate`: tokens a group of similar users needs (R12), from a guess of
people and passes, or `--from-history` per group from what people did."""

import argparse
import sys
from fractions import Fraction
from typing import Any

import msgspec

from rules import estimate_tokens
from stream_app.commands.plan import parse_buffer
from stream_app.config import add_broker_options
from stream_app.kafka.span import add_span_options
from stream_app.planning.result import num
from stream_app.settings import add_rule_options


def add_estimate_command(subparsers: "argparse._SubParsersAction[Any]") -> None:
    p = subparsers.add_parser(
        "estimate",
        help="tokens a group of similar users needs (exact arithmetic)",
        description="tokens = ceil(people x passes per person x (1 + buffer) / 10)",
    )
    p.add_argument("--people", type=int, help="people in the group")
    p.add_argument("--passes", help="login access passes per person per 28 days")
    p.add_argument("--from-history", nargs="?", const="", metavar="HISTORY.jsonl",
                   help="people and passes per person of each group from a replay file, "
                   "or with no file from the input topics on --broker")
    p.add_argument("--buffer", default="20", help="headroom in percent (default: 20)")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    add_span_options(p)
    add_broker_options(p)
    add_rule_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.from_history is not None:
        return from_history(args)
    if args.people is None or args.passes is None:
        print("tokenpool estimate: give --people and --passes, or --from-history",
              file=sys.stderr)
        return 2
    try:
        result = estimate_tokens(args.people, args.passes, args.buffer)
    except (ValueError, ArithmeticError) as exc:
        print(f"tokenpool estimate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")
        return 0
    print(
        f"{result.people} people x {result.passes_per_person} passes"
        f" x (1 + {result.buffer_percent}%) / 10 = {result.exact}"
        f" -> {result.tokens} tokens"
    )
    if result.recommend_user_access:
        print(
            f"more than 10 passes per person per 28 days: {result.user_access_tokens}"
            " user access passes (1 token each) cost less than login access"
        )
    return 0


def from_history(args: argparse.Namespace) -> int:
    """`--from-history`: the formula per group, people and passes from the history."""
    from stream_app.planning.estimate import estimates_from_history
    from stream_app.planning.source import FAILURES

    try:
        estimates, heavy = estimates_from_history(args, parse_buffer(str(args.buffer)))
    except (*FAILURES, argparse.ArgumentTypeError) as exc:
        print(f"tokenpool estimate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(estimates) + b"\n")
        return 0
    for name, f in estimates.items():
        print(f"{name}: {f.people} people x {num(Fraction(f.passes_per_person))} passes"
              f" x (1 + {f.buffer_percent}%) / 10 = {num(Fraction(f.exact))} -> {f.tokens} tokens")
    print(f"total: {sum(f.tokens for f in estimates.values())} tokens")
    if heavy:
        print(f"{heavy} users used more than 10 passes in some 28 days: a user access pass "
              "each is cheaper (tokenpool plan lists them)")
    return 0

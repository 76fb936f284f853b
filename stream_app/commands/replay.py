"""`tokenpool replay`: a history file through the rules, without Kafka."""

import argparse
import sys
from typing import Any

from rules import Engine
from schemas import to_micros
from stream_app.settings import add_rule_options, parse_timestamp, rule_config


def add_replay_command(subparsers: "argparse._SubParsersAction[Any]") -> None:
    p = subparsers.add_parser(
        "replay",
        help="run a JSON Lines history through the rules, without Kafka",
        description="Apply a replay file ({topic, value} per line) in event-time order; "
        "write outputs as JSON Lines and print a summary per group.",
    )
    p.add_argument("file", metavar="IN.jsonl", help="replay file")
    p.add_argument("--until", type=parse_timestamp,
                   help="stop at this instant; timers due by it fire")
    p.add_argument("--out", metavar="OUT.jsonl", help="write outputs here (default: stdout)")
    p.add_argument("--state", metavar="STATE.json", help="write the final pool state here")
    p.add_argument("--checkpoint", metavar="FILE", help="save the whole engine state at the end")
    p.add_argument("--resume", metavar="FILE", help="start from a state saved by --checkpoint")
    p.add_argument("--strict", action="store_true", help="exit 1 if any line was malformed")
    add_rule_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from stream_app import replay

    engine = Engine(rule_config(args))
    if args.resume:
        with open(args.resume, "rb") as f:
            engine = Engine.restore(f.read(), rule_config(args))
    until = to_micros(args.until) if args.until else None
    out = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115
    try:
        report = replay.replay(args.file, engine, out.write, until, progress=sys.stderr)
    finally:
        if args.out:
            out.close()
        else:
            out.flush()
    for number, reason in report.errors:
        print(f"{args.file}:{number}: skipped: {reason}", file=sys.stderr)
    if args.state:
        replay.write_state(args.state, engine, until)
    if args.checkpoint:
        with open(args.checkpoint, "wb") as f:
            f.write(engine.snapshot())
    replay.print_summary(engine, report, sys.stderr)
    return 1 if args.strict and report.errors else 0

"""`tokenpool export`: the deployment's own history, from its input topics to a replay
file (`stream_app.kafka.export` writes it)."""

import argparse
import sys
from typing import Any

from stream_app.config import add_broker_options, from_args
from stream_app.kafka.span import SPAN_HELP, add_span_options, span_of


def add_export_command(subparsers: "argparse._SubParsersAction[Any]") -> None:
    p = subparsers.add_parser(
        "export",
        help="write the input topics' history to a replay file (for replay and plan)",
        description="Read the four input topics (read_committed, up to the end offsets "
        "when the read starts) and write their records as a replay file, merged in the "
        "order tokenpool replay applies them. " + SPAN_HELP + " Bad records are counted "
        "by topic and reason and left out.",
    )
    add_broker_options(p)
    add_span_options(p)
    p.add_argument("--out", required=True, metavar="HISTORY.jsonl[.gz]",
                   help="the replay file to write (gzip when the name ends in .gz); "
                   "written whole or not at all")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from stream_app.kafka.export import export
    from stream_app.kafka.topic_history import HistoryError, describe

    config = from_args(args)
    span = span_of(args)
    try:
        report = export(config, span, args.out, progress=sys.stderr)
    except (HistoryError, OSError, ValueError) as exc:
        print(f"tokenpool export: {exc}", file=sys.stderr)
        return 2
    for line in describe(report, config):
        print(line, file=sys.stderr)
    rate = report.events / report.seconds if report.seconds else 0.0
    print(f"wrote {args.out}: {report.events} events ({rate:,.0f} events/s)", file=sys.stderr)
    return 0

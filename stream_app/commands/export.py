"""`tokenpool export`: the deployment's own history, from its input topics to a replay
file (`stream_app.kafka.topic_history` reads it), and the span flags that `plan` shares."""

import argparse
import asyncio
import gzip
import logging
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import IO, Any

from schemas import to_micros
from stream_app.atomic import replaced
from stream_app.config import StreamConfig, add_broker_options, from_args
from stream_app.durations import parse_duration
from stream_app.kafka.topic_history import RECORD_TIME_MARGIN, ReadReport, Span, read_history
from stream_app.settings import parse_timestamp

log = logging.getLogger("tokenpool.export")

SPAN_HELP = (
    "Session events are kept by their own time (the `ts` field), from --since or --from "
    "to --until, both included; each partition is read from its first record whose Kafka "
    f"timestamp is at most {RECORD_TIME_MARGIN.days} day before that start (offsets by "
    "timestamp), up to the end offsets when the read starts. Allocations are kept from "
    "the beginning (the licence and tokens in force when the span starts), up to --until."
)


def add_span_options(parser: argparse.ArgumentParser) -> None:
    """--since / --from and --until: which event times to read from the topics."""
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--since", type=parse_duration, metavar="DURATION",
                       help="events of this last stretch of time, e.g. 90d (default: all "
                       "the topics hold)")
    start.add_argument("--from", dest="from_ts", type=parse_timestamp, metavar="TS",
                       help="events stamped at or after this instant (RFC 3339)")
    parser.add_argument("--until", type=parse_timestamp, metavar="TS",
                        help="leave out events stamped after this instant (RFC 3339)")


def span_of(args: argparse.Namespace, now: float | None = None) -> Span:
    """The span the flags ask for; `--since` counts back from `now` (the wall clock)."""
    since = None
    if args.since is not None:
        wall = time.time() if now is None else now
        since = int(wall * 1_000_000) - args.since // timedelta(microseconds=1)
    elif args.from_ts is not None:
        since = to_micros(args.from_ts)
    until = None if args.until is None else to_micros(args.until)
    return Span(since, until)


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
    p.set_defaults(func=_cmd_export)


def export(config: StreamConfig, span: Span, path: str, *, progress: IO[str] | None = None,
           stop: Callable[[], bool] | None = None) -> ReadReport:
    """The history written to `path` (gzip when the name ends in `.gz`), whole or not at
    all: a failed or interrupted read leaves `path` as it was."""
    with replaced(path) as raw:
        if not path.endswith(".gz"):
            return asyncio.run(read_history(config, span, raw.write, progress=progress,
                                            stop=stop))
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                           compresslevel=6) as gz:
            return asyncio.run(read_history(config, span, gz.write, progress=progress,
                                            stop=stop))


def _cmd_export(args: argparse.Namespace) -> int:
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

"""Which stretch of event time is read back from the input topics, and the flags that
name it: shared by `tokenpool export`, `plan` and `estimate --from-history`, and by the
scheduled report, which counts `--since` back from each run's own wall clock."""

import argparse
import time
from datetime import timedelta

from schemas import to_micros
from stream_app.durations import parse_duration
from stream_app.kafka.topic_history import RECORD_TIME_MARGIN, Span
from stream_app.settings import parse_timestamp

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

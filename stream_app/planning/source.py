"""Where `tokenpool plan` and `estimate --from-history` get their history: a replay
file, or the broker's input topics read into a temporary one (`topic_history`)."""

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO

from stream_app.config import StreamConfig, from_args
from stream_app.kafka.span import span_of
from stream_app.kafka.topic_history import (
    HistoryError,
    ReadReport,
    Span,
    describe,
    read_history,
)
from stream_app.planning.result import Result, make_plan
from stream_app.planning.runs import EmptyHistory


@contextlib.contextmanager
def history(file: str | None, args: argparse.Namespace, command: str,
            stop: Callable[[], bool] | None = None) -> Iterator[str]:
    """The replay file to plan from: `file`, or the broker's input topics read into a
    temporary one (what the read found goes to stderr)."""
    span = span_of(args)
    if file:
        if span != Span():
            raise PlanError("--since, --from and --until read the broker: give no file")
        yield file
        return
    config = from_args(args)
    with history_file(config, span, progress=sys.stderr, stop=stop) as (path, report):
        for line in describe(report, config):
            print(f"tokenpool {command}: {line}", file=sys.stderr)
        if not report.events:
            raise EmptyHistory(f"no input event to plan from in the topics on {config.broker}")
        yield path


@contextlib.contextmanager
def history_file(config: StreamConfig, span: Span, *, progress: IO[str] | None = None,
                 stop: Callable[[], bool] | None = None) -> Iterator[tuple[str, ReadReport]]:
    """The history in a temporary replay file (removed afterwards), for the commands
    that replay it: `plan` and `estimate --from-history` without a file."""
    fd, tmp = tempfile.mkstemp(suffix=".jsonl", prefix="tokenpool-history-")
    try:
        with os.fdopen(fd, "wb") as f:
            report = asyncio.run(read_history(config, span, f.write, progress=progress,
                                              stop=stop))
        yield tmp, report
    finally:
        os.unlink(tmp)


class PlanError(ValueError):
    """The flags ask for something the command cannot do."""


def plan_from(args: argparse.Namespace, stop: Callable[[], bool] | None = None) -> Result:
    """The plan of the history the flags name (a file, or the broker's topics)."""
    with history(args.file, args, "plan", stop) as path:
        result = make_plan(path, args)
    for number, reason in result.actual.errors:
        print(f"{args.file}:{number}: skipped: {reason}", file=sys.stderr)
    known = {g.group for g in result.plan.groups}
    for group, _ in args.tokens or ():
        if group not in known:
            print(f"tokenpool plan: what-if group {group!r} has no events in the history",
                  file=sys.stderr)
    return result


FAILURES = (OSError, EOFError, EmptyHistory, HistoryError, PlanError)
"""What stops one plan with a message (exit 2), or one period of --every."""

"""`tokenpool plan --every PERIOD --out REPORT.html`: the operators' report, made again
from the broker's input topics every period (the compose file's `report` service).

Each run reads the topics (`source.plan_from`), plans, and replaces the page whole
(`stream_app.atomic`): whoever reads the previous report never sees part of the next.
A run that fails (the broker does not answer, a topic is missing, no event yet) is
logged and leaves the previous report as it was; the next period tries again. Runs
start every PERIOD from the first; one that takes longer is followed at once by the
next. SIGTERM or SIGINT stops the loop: a read in progress stops within a fetch, the
rest of a run (plots, the page) is finished; the exit status is 0.
"""

import argparse
import logging
import signal
import sys
import threading
import time
from datetime import datetime
from types import FrameType

from schemas import from_micros
from stream_app.durations import format_duration
from stream_app.kafka.topic_history import Interrupted
from stream_app.planning.source import FAILURES, plan_from

log = logging.getLogger("tokenpool.report")


def run_every(args: argparse.Namespace) -> int:
    problem = None
    if args.file:
        problem = "--every reads the broker's topics: give no history file"
    elif not args.out:
        problem = "--every needs --out REPORT.html"
    elif args.every.total_seconds() <= 0:
        problem = "--every needs a period longer than zero"
    if problem is not None:
        print(f"tokenpool plan: {problem}", file=sys.stderr)
        return 2
    try:
        from stream_app.planning import report as plan_report
    except ImportError as exc:
        print(f"tokenpool plan: the report needs matplotlib ({exc}): "
              "pip install 'tokenpool[plan]'", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("report: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    period = args.every.total_seconds()
    log.info("report: every %s to %s from %s", format_duration(args.every), args.out,
             args.broker)
    try:
        due = time.monotonic()
        run = 0
        while not stop.is_set():
            run += 1
            began = time.monotonic()
            try:
                result = plan_from(args, stop.is_set)
                plan_report.write_html(result, plan_report.figures(result), args, args.out)
            except Interrupted:
                break
            except FAILURES as exc:
                log.error("report run=%d failed, the previous report stays: %s", run, exc)
            except Exception:  # one bad run must not end the service: the next may work
                log.exception("report run=%d failed, the previous report stays", run)
            else:
                plan = result.plan
                log.info("report run=%d written path=%s events=%d history=%s..%s groups=%d "
                         "took=%.1fs", run, args.out, result.actual.applied,
                         from_micros(plan.start).isoformat(), from_micros(plan.end).isoformat(),
                         len(plan.groups), time.monotonic() - began)
            due += period
            now = time.monotonic()
            due = max(due, now)
            if not stop.is_set():
                at = datetime.fromtimestamp(time.time() + due - now).astimezone()
                log.info("report: next run at %s", at.isoformat(timespec="seconds"))
            stop.wait(due - now)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    log.info("report: stopped after %d run(s)", run)
    return 0

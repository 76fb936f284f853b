"""`tokenpool load`: a simulated site's session traffic sent to any broker.

For a stack that is already running (the compose file's `load` profile, a staging
cluster): the same planned traffic as `tokenpool demo`, at wall-clock pace. At the
default `--time-scale 1` the rules need no change; a larger scale only makes sense
against a worker started with rule durations divided by the same factor.
"""

import argparse
import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime
from typing import Any

from schemas import Topic, encode
from stream_app.config import StreamConfig, add_broker_options, from_args
from stream_app.settings import add_option
from stream_app.site.synthetic import DEFAULT_SEED
from stream_app.site.traffic import allocations, day_zero, plan, send_traffic, traffic

log = logging.getLogger("tokenpool.load")


def add_load_command(subparsers: "argparse._SubParsersAction[Any]") -> None:
    p = subparsers.add_parser(
        "load",
        help="send a simulated site's session traffic to a broker",
        description="Allocate a licence and one login access group per simulated group "
        "(sized by the estimate formula), then send session starts, heartbeats and ends "
        "at wall-clock pace until --duration or Ctrl-C.",
    )
    add_broker_options(p)
    add_option(p, "--users", 1000, "simulated users", parse=int)
    add_option(p, "--groups", 3, "login access groups", parse=int)
    add_option(p, "--seed", DEFAULT_SEED, "seed of the simulated traffic", parse=int)
    add_option(p, "--time-scale", 1.0, "simulated seconds per wall-clock second", parse=float)
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds (default: run until stopped)")
    p.add_argument("--no-allocations", action="store_true",
                   help="send sessions only: the allocations are made elsewhere")
    p.set_defaults(func=_cmd_load)


def _cmd_load(args: argparse.Namespace) -> int:
    for name in ("users", "groups"):
        if getattr(args, name) < 1:
            log.error("--%s must be at least 1", name)
            return 2
    if args.time_scale <= 0:
        log.error("--time-scale must be positive")
        return 2
    return asyncio.run(_load(from_args(args), args))


async def _load(config: StreamConfig, args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaProducer

    from stream_app.kafka.broker import client_kwargs

    names = config.topics
    topic_of = {
        Topic.SESSION_START: names.session_start,
        Topic.SESSION_HEARTBEAT: names.session_heartbeat,
        Topic.SESSION_END: names.session_end,
        Topic.ALLOCATIONS: names.allocations,
    }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sent = 0

    def count(n: int) -> None:
        nonlocal sent
        sent += n

    now = datetime.now(UTC)
    site = plan(args.users, args.groups, args.seed, args.time_scale, now)
    producer = AIOKafkaProducer(**client_kwargs(config), linger_ms=5)
    await producer.start()
    try:
        if not args.no_allocations:
            for topic, key, event in allocations(site, now):
                await producer.send_and_wait(topic_of[Topic(topic)], encode(event), key=key)
            log.info("allocated licence=%d %s", site.licence,
                     " ".join(f"{g.group}={g.tokens}" for g in site.groups))
        start = day_zero()
        events = traffic(args.users, args.groups, args.seed, start, args.time_scale)
        task = asyncio.create_task(
            send_traffic(producer, lambda t: topic_of[Topic(t)], events, count)
        )
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=args.duration,
                                     return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task in done:
            failure = task.exception()
            if failure is not None:
                log.error("sending failed: %r", failure)
                return 1
            return 0  # the planned traffic ran out
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return 0
    finally:
        log.info("load stopped events_sent=%d", sent)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 10)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

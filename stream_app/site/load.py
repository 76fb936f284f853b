"""A simulated site's session traffic sent to a running broker at wall-clock pace
(`tokenpool load`): the demo's planned traffic against a stack already deployed."""

import argparse
import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime

from schemas import Topic, encode
from stream_app.config import StreamConfig
from stream_app.site.traffic import allocations, day_zero, plan, send_traffic, traffic

log = logging.getLogger("tokenpool.load")


async def load(config: StreamConfig, args: argparse.Namespace) -> int:
    """Allocate (unless `--no-allocations`), then send until `--duration`, SIGINT or
    SIGTERM; 1 if sending failed."""
    from aiokafka import AIOKafkaProducer

    from stream_app.kafka.client import client_kwargs

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

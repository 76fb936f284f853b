"""`tokenpool demo`: the whole service on one machine, live, in about a minute.

What runs:

1. an embedded Kafka-protocol broker (Tansu, in memory) on a free loopback port,
   with every topic created;
2. one `tokenpool worker` subprocess in live mode, its rule durations compressed by
   the same factor as the traffic (`synthetic.scaled_config`);
3. a synthetic site (`traffic` over `synthetic.generate`: the seed's profile,
   103 users who log in a few times per 28 days) whose events are stamped with
   wall-clock time and sent when they are due, so 28 days pass in about 35 seconds
   and both consumptions and returns (R7) show within a minute;
4. a per-group table read from the worker's `/metrics`, once a second.

Groups are sized as `traffic` explains: the last one runs short on purpose.

The run ends on Ctrl-C, SIGTERM or `--duration`; then the producer, the worker
(SIGTERM, then SIGKILL of its process group) and the broker are stopped, in that
order, and nothing is left running.
"""

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

from schemas import Topic, encode
from stream_app.config import StreamConfig
from stream_app.site.demo_screen import EraseBeforeLog, GroupRow, Screen, render, scrape
from stream_app.site.demo_worker import WorkerProcess, port_is_free
from stream_app.site.synthetic import DEFAULT_SEED
from stream_app.site.traffic import (
    allocations,
    day_zero,
    plan,
    rule_flags,
    send_traffic,
    time_scale_of,
    traffic,
)

log = logging.getLogger("tokenpool.demo")

APP_ID = "tokenpool-demo"
TICK_INTERVAL = "500ms"
"""Wall-clock tick of the worker: returns and renewals show even between events."""
IDLE_WAIT = "200ms"
"""The worker's merge wait for an empty input topic (the grants topic mostly is)."""
WORKER_READY_TIMEOUT = 90.0
# --------------------------------------------------------------------------- run


@dataclass
class Stats:
    sent: int = 0
    started_at: float = 0.0
    """Wall-clock time (s) of the traffic's day 0."""
    rows: dict[str, GroupRow] = field(default_factory=dict)


class Demo:
    def __init__(self, args: argparse.Namespace, bootstrap: str, workdir: Path,
                 screen: Screen) -> None:
        self.args = args
        self.workdir = workdir
        self.screen = screen
        self.config = StreamConfig(broker=bootstrap, app_id=APP_ID,
                                   partitions=args.partitions, web_port=args.web_port)
        self.time_scale = time_scale_of(args.days_per_minute)
        self.stop = asyncio.Event()
        self.stats = Stats()
        self.worker: WorkerProcess | None = None
        self.failure: str | None = None
        self.metrics_url = f"http://127.0.0.1:{args.web_port}/metrics"

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            log.info("%s received: already stopping", sig.name)
            return
        log.info("%s received: stopping", sig.name)
        self.stop.set()

    def _fail(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            log.error("%s", message)
        self.stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        producer = None
        try:
            from stream_app.kafka.topics import create_topics

            report = await create_topics(self.config)
            log.info("topics ready created=%d app_id=%s partitions=%d", len(report.created),
                     APP_ID, self.config.partitions)
            now = datetime.now(UTC)
            self.plan = plan(self.args.users, self.args.groups, self.args.seed,
                             self.time_scale, now)
            self._intro()
            await self._start_worker()
            if self.stop.is_set():
                return self._exit_code()
            producer = await self._producer()
            await self._allocate(producer)
            if self.stop.is_set():
                return self._exit_code()
            tasks = [asyncio.create_task(self._drive(producer), name="traffic"),
                     asyncio.create_task(self._display(), name="display")]
            duration = self.args.duration
            try:
                await asyncio.wait_for(self.stop.wait(), duration)
            except TimeoutError:
                log.info("duration reached: %ss of traffic", duration)
                self.stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._final_table()
            return self._exit_code()
        finally:
            if producer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 10)
            if self.worker is not None:
                await self.worker.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _exit_code(self) -> int:
        return 1 if self.failure else 0

    def _intro(self) -> None:
        p = self.plan
        say = self.screen.say
        say(f"tokenpool demo: {p.users} simulated users in {len(p.groups)} login access "
            f"group(s); 28 days pass every {p.seconds_per_28_days:.0f} s "
            f"(time x{p.time_scale:g}, seed {p.seed})")
        say("tokens per group from the estimate (R12), passes per person per 28 days "
            "measured on the planned traffic:")
        for g in p.groups:
            e = g.estimate
            basis = ("measured" if Decimal(e.passes_per_person) == g.measured
                     else f"the seed's rule of thumb; measured {g.measured}")
            say(f"  {g.group}: {e.people} people x {e.passes_per_person} passes ({basis})"
                f" x (1 + {e.buffer_percent}%) / 10 = {e.exact} -> {g.tokens} tokens, "
                f"{g.tokens * 10} passes")
        say(f"  licence: {p.licence} tokens")
        say(f"metrics: {self.metrics_url}   health: "
            f"{self.metrics_url.removesuffix('/metrics')}/health")
        stop = (f"stops after {self.args.duration:g} s of traffic"
                if self.args.duration else "Ctrl-C to stop")
        say(stop)

    async def _start_worker(self) -> None:
        c = self.config
        args = [
            sys.executable, "-m", "stream_app", "--log-level", "INFO", "worker",
            "--broker", c.broker, "--app-id", c.app_id, "--mode", "live",
            "--partitions", str(c.partitions),
            "--tick-interval", TICK_INTERVAL, "--idle-wait", IDLE_WAIT,
            "--session-timeout", "6s",
            "--web-host", "127.0.0.1", "--web-port", str(c.web_port),
            "--data-dir", str(self.workdir / "worker-data"),
            *rule_flags(self.plan.rules),
        ]
        self.worker = WorkerProcess(args, self.workdir / "worker.log", c.web_port)
        self.worker.start()
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while not self.stop.is_set():
            code = self.worker.exited()
            if code is not None:
                self._fail(f"worker exited with status {code} before it was ready; "
                           f"its log ends:\n{self.worker.log_tail()}")
                return
            health = await asyncio.to_thread(self.worker.health)
            if health is not None and len(health.get("partitions", ())) >= c.partitions:
                log.info("worker ready partitions=%s", health["partitions"])
                return
            if time.monotonic() > deadline:
                self._fail(f"worker did not own all {c.partitions} partitions within "
                           f"{WORKER_READY_TIMEOUT:.0f}s; its log ends:\n"
                           f"{self.worker.log_tail()}")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.2)

    async def _producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        from stream_app.kafka.client import client_kwargs

        producer = AIOKafkaProducer(**client_kwargs(self.config), linger_ms=5)
        await producer.start()
        return producer

    def _topic(self, topic: str) -> str:
        names = self.config.topics
        return {
            Topic.SESSION_START: names.session_start,
            Topic.SESSION_HEARTBEAT: names.session_heartbeat,
            Topic.SESSION_END: names.session_end,
            Topic.ALLOCATIONS: names.allocations,
        }[Topic(topic)]

    async def _allocate(self, producer: Any) -> None:
        """Send the allocations, then wait until the worker shows every group's
        capacity, so no session arrives before its group's tokens (R11)."""
        ts = datetime.now(UTC)
        for topic, key, event in allocations(self.plan, ts):
            await producer.send_and_wait(self._topic(topic), encode(event), key=key)
        want = {g.group: g.tokens * 10 for g in self.plan.groups}
        deadline = time.monotonic() + 30
        while not self.stop.is_set():
            rows = await self._scrape()
            if rows is not None and all(
                g in rows and rows[g].capacity == cap for g, cap in want.items()
            ):
                log.info("allocations applied licence=%d groups=%d", self.plan.licence,
                         len(want))
                return
            if time.monotonic() > deadline:
                self._fail(f"the worker did not apply the allocations within 30s; its "
                           f"log ends:\n{self.worker.log_tail() if self.worker else ''}")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.2)

    async def _drive(self, producer: Any) -> None:
        start = day_zero()
        self.stats.started_at = start.timestamp()
        events = traffic(self.args.users, self.args.groups, self.args.seed, start,
                         self.time_scale)
        log.info("traffic started day0=%s", start.isoformat(timespec="seconds"))
        try:
            await send_traffic(producer, self._topic, events, self._count_sent)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(f"sending traffic failed: {exc!r}")

    def _count_sent(self, n: int) -> None:
        self.stats.sent += n

    async def _scrape(self) -> dict[str, GroupRow] | None:
        try:
            return await asyncio.to_thread(scrape, self.metrics_url)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            log.debug("scrape failed: %r", exc)
            return None

    def _headline(self, final: bool = False) -> str:
        started = self.stats.started_at
        day = max(0.0, time.time() - started) * self.time_scale / 86_400 if started else 0.0
        label = "final" if final else time.strftime("%H:%M:%S")
        return f"[{label}] simulated day {day:.1f}  |  {self.stats.sent:,} events sent"

    async def _display(self) -> None:
        while True:
            code = self.worker.exited() if self.worker else None
            if code is not None:
                self._fail(f"worker exited with status {code}; its log ends:\n"
                           f"{self.worker.log_tail() if self.worker else ''}")
                return
            rows = await self._scrape()
            if rows is not None:
                self.stats.rows = rows
                self.screen.show(render(rows, self._headline()))
            await asyncio.sleep(1.0)

    async def _final_table(self) -> None:
        if self.worker is not None and self.worker.exited() is None:
            rows = await self._scrape()
            if rows is not None:
                self.stats.rows = rows
        self.screen.show(render(self.stats.rows, self._headline(final=True)), final=True)
        log.info("demo summary events_sent=%d %s", self.stats.sent, " ".join(
            f"{g}:consumed={r.consumed},returned={r.returned},denied={r.denied}"
            for g, r in sorted(self.stats.rows.items())))


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def validate(args: argparse.Namespace) -> str | None:
    if args.users < 1:
        return "--users must be at least 1"
    if args.groups < 1:
        return "--groups must be at least 1"
    if args.partitions < 1:
        return "--partitions must be at least 1"
    if args.days_per_minute <= 0:
        return "--days-per-minute must be positive"
    if args.duration is not None and args.duration <= 0:
        return "--duration must be positive"
    if not 0 < args.web_port < 65536:
        return "--web-port must be a TCP port"
    if not port_is_free("127.0.0.1", args.web_port):
        return f"port {args.web_port} is in use: pick another with --web-port"
    return None


def run(args: argparse.Namespace) -> int:
    """Entry point of `tokenpool demo`; returns the exit status."""
    if args.seed is None:
        args.seed = DEFAULT_SEED
    problem = validate(args)
    if problem is not None:
        print(f"tokenpool demo: {problem}", file=sys.stderr)
        return 2

    from stream_app.kafka.broker import BrokerStartError, EmbeddedBroker

    screen = Screen(sys.stdout)
    log_filter = EraseBeforeLog(screen) if screen.tty else None
    handlers = logging.getLogger().handlers
    if log_filter is not None:
        for handler in handlers:
            handler.addFilter(log_filter)
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="tokenpool-demo-"))
    broker = EmbeddedBroker(log_path=workdir / "tansu.log")
    code = 1
    try:
        broker.start()
        if not log.isEnabledFor(logging.DEBUG):  # one line per topic is noise here
            logging.getLogger("stream_app.kafka.broker").setLevel(logging.WARNING)
        demo = Demo(args, broker.bootstrap, workdir, screen)
        code = asyncio.run(demo.run())
    except KeyboardInterrupt as exc:
        log.info("%s: stopping", exc.args[0] if exc.args else "SIGINT")
        code = 0
    except (BrokerStartError, FileNotFoundError) as exc:
        log.error("cannot start the embedded broker: %s", exc)
    except ValueError as exc:  # a rule duration that no flag can carry exactly
        log.error("%s", exc)
    finally:
        # Stopping must finish: ignore further Ctrl-C / SIGTERM until it has.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            broker.stop()
            log.info("embedded broker stopped")
            if code == 0:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                log.info("logs kept in %s", workdir)
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)
            if log_filter is not None:
                for handler in handlers:
                    handler.removeFilter(log_filter)
    return code

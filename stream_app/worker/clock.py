"""The clock: the timer that wakes every owned partition with a tick, sends the idle
ledger's "nothing pending" marks, and starts the catch-up of inputs that do not arrive.

Ticks go through the ticks topic, so they reach a partition's task in order with its
grants and let it checkpoint, end an idle wait and (live) advance its clock. The clock
owns only its own periods; it never applies an input and never writes state.
"""

import time
from datetime import UTC, datetime
from typing import Any

from faust.types import TP

from schemas import encode
from schemas.internal import LedgerMark, Tick
from stream_app.config import StreamConfig
from stream_app.worker.ledger_agent import LedgerAgent
from stream_app.worker.pools import PoolsAgent
from stream_app.worker.timing import CATCH_UP_EVERY, CATCH_UP_IDLE, LEDGER_MARK_EVERY


class Clock:
    """When ticks advance, when the last catch-up and the last ledger mark were."""

    def __init__(self, config: StreamConfig, app: Any, ticks: Any, grants: Any,
                 pools: PoolsAgent, ledger: LedgerAgent) -> None:
        self.config = config
        self.app = app
        self.ticks = ticks
        self.grants = grants
        self.pools = pools
        self.ledger = ledger
        self.last_advance = 0.0
        self.last_catch_up = 0.0
        self.last_mark = 0.0
        self.stopped = False
        """The worker is stopping: no tick, catch-up or mark is sent any more."""

    async def send_ticks(self) -> None:
        """Wake every owned partition: checkpoints, idle waits and (live) clocks."""
        if self.stopped:
            return
        now = time.time()
        advance = self.config.mode == "live" and (
            now - self.last_advance >= self.config.tick_interval.total_seconds()
        )
        if advance:
            self.last_advance = now
        stamp = datetime.fromtimestamp(now, UTC)
        tick = encode(Tick(ts=stamp, advance=advance))
        actives = self.app.assignor.assigned_actives()
        ticks_name = self.pools.sources.ticks_name
        for tp in actives:
            if tp.topic == ticks_name:
                await self.ticks.send(key=b"tick", value=tick, partition=tp.partition)
        if now - self.last_catch_up >= CATCH_UP_EVERY:
            self.last_catch_up = now
            await self.catch_up(actives)
        allocations = self.ledger.allocations
        if (allocations in actives and now - self.last_mark >= LEDGER_MARK_EVERY
                and self.ledger.idle(allocations)):
            self.last_mark = now
            mark = encode(LedgerMark(ts=stamp))
            for partition in range(self.config.partitions):
                await self.grants.send(key=b"", value=mark, partition=partition)

    async def catch_up(self, actives: set[TP]) -> None:
        """Inputs past the applied offsets that do not arrive (see `InputRewinder`).
        Only while no input arrives at all: in a backfill, records fetched long ago
        may still wait their turn."""
        if self.app.rebalancing:
            return  # tables may still be recovering
        now = time.monotonic()
        ledger_idle = self.ledger.activity.idle_for(CATCH_UP_IDLE, now)
        pools_idle = self.pools.activity.idle_for(CATCH_UP_IDLE, now)
        for tp in actives:
            if tp.topic == self.config.topics.allocations:
                if ledger_idle:
                    await self.ledger.catch_up(tp)
            elif pools_idle:
                await self.pools.catch_up(tp)

"""The measuring side of `bench.faust_batching_probe`: one variant consuming (and
forwarding) the probe's records in a process of its own, so each variant starts from a
fresh interpreter and its CPU time is its own. Started by the probe as
`python -m bench.faust_probe_children SPEC` (SPEC: the variant's JSON); it prints one
JSON line of measurements."""

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.forward_app import faust_app
from bench.harness.cpu import cpu_seconds, machine_busy_seconds
from bench.harness.processes import SESSION_TIMEOUT
from schemas import Topic

SESSION_TOPICS = (Topic.SESSION_START, Topic.SESSION_HEARTBEAT, Topic.SESSION_END)


class Meter:
    """Counts records; notes wall time and CPU at the first one and at done, and writes
    the result file the parent waits for."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.n: int = spec["n"]
        self.result = Path(spec["result"])
        self.broker_pid: int = spec["broker_pid"]
        self.count = 0
        self.batches = 0
        self.first: float | None = None
        self.done = False
        self._c0: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _cpu(self) -> tuple[float, float, float]:
        t = os.times()
        return (t.user + t.system, cpu_seconds(self.broker_pid), machine_busy_seconds())

    def start(self) -> None:
        if self.first is None:
            self.first = time.time()
            self._c0 = self._cpu()
            Path(str(self.result) + ".first").write_text(str(self.first))

    def finish(self, **extra: Any) -> None:
        if self.done:
            return
        self.done = True
        t = time.time()
        c1 = self._cpu()
        assert self.first is not None
        wall = t - self.first
        me, broker, machine = (b - a for a, b in zip(self._c0, c1, strict=True))
        data = {"first": self.first, "done": t, "count": self.count,
                "batches": self.batches, "cpu": me / wall, "broker_cpu": broker / wall,
                "other_cpu": (machine - me - broker) / wall, **extra}
        tmp = self.result.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.rename(self.result)


def faust_child(spec: dict[str, Any]) -> int:
    import faust

    kind = spec["kind"]
    size, within = spec["batch"], spec["within"]
    app = faust_app(spec, **spec.get("settings", {}))
    raw = {"key_type": bytes, "value_type": bytes,
           "key_serializer": "raw", "value_serializer": "raw"}
    sink_name = spec["sink"]
    sink = app.topic(sink_name, **raw) if sink_name else None
    m = Meter(spec)
    n = m.n

    def first() -> None:
        if m.first is None:
            if kind.endswith("-ns"):
                app.sensors._sensors.clear()  # the Monitor and any other sensor
            m.start()

    async def consume_events(stream: Any) -> None:
        async for _event in stream.events():
            first()
            m.count += 1
            if m.count >= n:
                m.finish()

    async def consume_take_events(stream: Any) -> None:
        async for batch in stream.noack().take_events(size, within=within):
            first()
            m.count += len(batch)
            m.batches += 1
            if m.count >= n:
                m.finish()

    async def consume_noack_take(stream: Any) -> None:
        async for batch in stream.noack().noack_take(size, within=within):
            first()
            m.count += len(batch)
            m.batches += 1
            for event in batch:
                await stream.ack(event)
            if m.count >= n:
                m.finish()

    async def consume_take(stream: Any) -> None:
        async for values in stream.take(size, within=within):
            first()
            m.count += len(values)
            m.batches += 1
            if m.count >= n:
                m.finish()

    async def forward_events(stream: Any) -> None:
        assert sink is not None
        async for event in stream.events():
            first()
            await sink.send(key=event.key, value=event.value)
            m.count += 1
            if m.count >= n:
                await app.producer.flush()
                m.finish()

    async def forward_events_producer(stream: Any) -> None:
        producer = app.producer
        async for event in stream.events():
            first()
            await producer.send(sink_name, event.key, event.value, None, None, None)
            m.count += 1
            if m.count % size == 0 or m.count >= n:
                await producer.flush()
                m.batches += 1
                if m.count >= n:
                    m.finish()

    async def forward_take_events(stream: Any) -> None:
        assert sink is not None
        async for batch in stream.noack().take_events(size, within=within):
            first()
            for event in batch:
                await sink.send(key=event.key, value=event.value)
            await app.producer.flush()
            m.count += len(batch)
            m.batches += 1
            if m.count >= n:
                m.finish()

    async def forward_take_events_producer(stream: Any) -> None:
        producer = app.producer
        async for batch in stream.noack().take_events(size, within=within):
            first()
            for event in batch:
                await producer.send(sink_name, event.key, event.value, None, None, None)
            await producer.flush()
            m.count += len(batch)
            m.batches += 1
            if m.count >= n:
                m.finish()

    agents = {
        "f-ev-c": consume_events, "f-ev-c-ns": consume_events,
        "f-te-c": consume_take_events, "f-nt-c": consume_noack_take,
        "f-tk-c": consume_take, "f-ev-f": forward_events, "f-ev-fp": forward_events_producer,
        "f-te-f": forward_take_events, "f-te-fp": forward_take_events_producer,
    }
    if kind == "f-raw-f":
        async def pump() -> None:
            consumer = AIOKafkaConsumer(
                *spec["sources"], bootstrap_servers=spec["broker"],
                group_id=spec["app_id"] + "-raw", auto_offset_reset="earliest",
                enable_auto_commit=False, max_poll_records=2000,
                session_timeout_ms=int(SESSION_TIMEOUT * 1000),
            )
            producer = app.producer
            await consumer.start()
            try:
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    if not batch:
                        continue
                    first()
                    for messages in batch.values():
                        for msg in messages:
                            await producer.send(sink_name, msg.key, msg.value,
                                                None, None, None)
                        m.count += len(messages)
                    await producer.flush()
                    m.batches += 1
                    if m.count >= n:
                        m.finish()
            finally:
                await consumer.stop()

        app.task(pump)
    else:
        source = app.topic(*spec["sources"], **raw)
        app.agent(source, name="probe")(agents[kind])
    # "info" as the worker's default: at "warning" mode adds a spinner handler and
    # sets the root logger to DEBUG, so every aiokafka/Faust debug call builds a record.
    faust.Worker(app, loglevel="info").execute_from_commandline()
    return 0


def raw_child(spec: dict[str, Any]) -> int:
    """raw-f: bench/stream_bench.py's raw loop; raw-c: the same without the producer."""
    m = Meter(spec)
    forward = spec["kind"] == "raw-f"

    async def loop() -> None:
        consumer = AIOKafkaConsumer(
            *spec["sources"], bootstrap_servers=spec["broker"], group_id=spec["app_id"],
            auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=2000,
            session_timeout_ms=int(SESSION_TIMEOUT * 1000),
        )
        producer = AIOKafkaProducer(bootstrap_servers=spec["broker"], linger_ms=5)
        await producer.start()
        await consumer.start()
        futures = []
        try:
            while m.count < m.n:
                batch = await consumer.getmany(timeout_ms=500)
                if not batch:
                    continue
                m.start()
                m.batches += 1
                for messages in batch.values():
                    if forward:
                        for msg in messages:
                            futures.append(await producer.send(spec["sink"], msg.value,
                                                               key=msg.key))
                    m.count += len(messages)
            await asyncio.gather(*futures)
            m.finish()
            await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()

    asyncio.run(loop())
    time.sleep(3600)  # the parent kills us, as it does the Faust workers
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    return raw_child(spec) if spec["kind"].startswith("raw-") else faust_child(spec)


if __name__ == "__main__":
    sys.exit(main())

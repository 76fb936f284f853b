"""`tokenpool export` reads committed records only (issue point 2, read_committed): a
transaction's aborted records never reach the history, and an open transaction neither
reaches it nor holds the export back (the read ends at the last stable offset taken
when it starts). Apache Kafka only: Tansu 0.6 has no transactions."""

import asyncio
import json
import threading
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from history_broker import ROOT, flags, fresh, lines_of, produce_lines, topic_of

from stream_app.commands.main import main
from stream_app.config import StreamConfig
from stream_app.kafka.client import client_kwargs

SEED = ROOT / "examples" / "seed-scenario.jsonl"


def start_value(event_id: str) -> bytes:
    """A valid session start of the seed's group (so its partition) that no one commits."""
    return json.dumps({"event_id": event_id, "ts": "2026-11-02T09:00:00Z", "group": "analysts",
                       "session_id": event_id, "user_id": None}).encode()


class OpenTransaction:
    """A transactional producer, in a thread of its own, that sends one session start
    and keeps its transaction open until `close()` aborts it."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.sent = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by close()
            self.error = exc
            self.sent.set()

    async def _run(self) -> None:
        producer = AIOKafkaProducer(**client_kwargs(self.config),
                                    transactional_id=f"open-{uuid.uuid4().hex}")
        await producer.start()
        try:
            await producer.begin_transaction()
            await (await producer.send(topic_of(self.config, "session-start"),
                                       start_value("in-an-open-transaction"),
                                       key=b"analysts"))
            self.sent.set()
            while not self.done.is_set():
                await asyncio.sleep(0.05)
            await producer.abort_transaction()
        finally:
            await producer.stop()

    def __enter__(self) -> "OpenTransaction":
        self.thread.start()
        assert self.sent.wait(60), "the transactional producer did not send"
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(60)
        assert self.error is None, self.error


async def aborted(config: StreamConfig) -> None:
    producer = AIOKafkaProducer(**client_kwargs(config),
                                transactional_id=f"aborted-{uuid.uuid4().hex}")
    await producer.start()
    try:
        await producer.begin_transaction()
        await (await producer.send(topic_of(config, "session-start"),
                                   start_value("in-an-aborted-transaction"), key=b"analysts"))
        await producer.abort_transaction()
    finally:
        await producer.stop()


@pytest.mark.kafka_only
def test_export_holds_committed_records_only_and_ends_at_an_open_transaction(
        broker, tmp_path):
    config = fresh(broker)
    asyncio.run(aborted(config))
    produce_lines(config, lines_of(SEED))
    out = tmp_path / "history.jsonl"
    with OpenTransaction(config):
        assert main(["export", *flags(config), "--out", str(out)]) == 0
    assert sorted(out.read_bytes().splitlines()) == sorted(lines_of(SEED))

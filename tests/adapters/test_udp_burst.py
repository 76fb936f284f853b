"""The UDP listener under a burst: 50 000 datagrams from a second process on loopback,
sent while the broker is frozen. Every datagram the sender's kernel took is either
received or counted as dropped by the receiving socket's kernel counter, every one
received is produced, and receiving went on while producing could not. With a tiny
receive buffer the kernel drops some, and the count still adds up."""

import asyncio
import logging
import sys
from pathlib import Path

import pytest
from kafka_helpers import StreamConfigFactory, consume_all
from qlik_helpers import mapping

from adapters.qlik.ingest import run_udp
from adapters.qlik.udp_listener import DEFAULT_RCVBUF, UdpListener
from stream_app.kafka.broker import EmbeddedBroker
from stream_app.kafka.topics import create_topics

pytestmark = pytest.mark.tansu_only
"""Freezes a Tansu broker of its own: what is proved is the listener's buffering, the
same whatever the broker."""

SENDER = Path(__file__).with_name("udp_sender.py")
BURST = 50_000
log = logging.getLogger(__name__)


async def wait_until(condition: object, what: str, timeout: float = 120.0) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"not within {timeout:.0f}s: {what}") from None


@pytest.mark.parametrize("rcvbuf", [DEFAULT_RCVBUF, 16 * 1024],
                         ids=["default-buffer", "tiny-buffer-forces-kernel-drops"])
async def test_burst_of_50000_datagrams_loses_none_the_kernel_delivered(
        stream_config: StreamConfigFactory, tmp_path: Path, rcvbuf: int) -> None:
    embedded = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    try:
        config = stream_config(broker=embedded.bootstrap)
        await create_topics(config)
        listener = UdpListener("127.0.0.1", 0, rcvbuf=rcvbuf)
        stop = asyncio.Event()
        ingest = asyncio.create_task(run_udp(config, mapping(), listener, stop))
        await wait_until(lambda: listener.started, "listener started")
        host, port = listener.address

        embedded.pause()  # producing cannot progress from here on
        try:
            sender = await asyncio.create_subprocess_exec(
                sys.executable, str(SENDER), host, str(port), str(BURST),
                stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(sender.communicate(), 120)
            sent = int(out)
            drops: list[int] = []

            def accounted() -> bool:
                drops[:] = [listener.kernel_drops() or 0]
                return listener.received + drops[0] >= sent

            await wait_until(accounted, "every datagram received or dropped")
            received_while_frozen = listener.received
        finally:
            embedded.resume()
        stop.set()
        report = await asyncio.wait_for(ingest, 180)

        log.info("burst sent=%d received=%d kernel_drops=%d produced=%d", sent,
                 listener.received, drops[0], sum(report.produced.values()))
        assert sent == BURST
        assert listener.received + drops[0] == sent
        assert received_while_frozen == listener.received  # the frozen broker held up nothing
        assert listener.overflowed == 0
        assert report.produced[config.topics.session_start] == listener.received
        assert not report.malformed
        records = await consume_all(config.broker, config.topics.session_start,
                                    expect_count=listener.received, timeout=120)
        assert len({r.value for r in records}) == listener.received
    finally:
        embedded.stop()

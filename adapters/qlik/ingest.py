"""The ingest runs: UDP user events, audit log files and UAP holders into Kafka."""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from adapters.qlik.activity import Activity, Rejected
from adapters.qlik.group_mapping import (
    GroupMapping,
    MappingError,
    build_mapping,
    parse_spec,
    uap_changes,
)
from adapters.qlik.keepalive import KEEPALIVE_DEFAULTS, KeepAlive, KeepAliveSettings
from adapters.qlik.log_follower import LogCursor, PositionStore
from adapters.qlik.qrs import decode_user_access, holders_from_qrs
from adapters.qlik.qrs_client import QrsClient
from adapters.qlik.sink import EventSink, IngestReport
from adapters.qlik.udp_format import UdpCorrelator
from adapters.qlik.udp_listener import Batch, UdpListener
from schemas.timestamps import from_micros
from stream_app.config import StreamConfig

log = logging.getLogger("tokenpool.qlik")


def load_mapping(path: Path | None) -> GroupMapping:
    """`groups.yaml` (its `attributes_csv` relative to it); no file: everyone unmapped."""
    if path is None:
        return build_mapping(parse_spec({}))
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"{path}: {exc}") from None
    spec = parse_spec(document)
    csv_text = None
    if spec.attributes_csv is not None:
        csv_path = path.parent / spec.attributes_csv
        try:
            csv_text = csv_path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise MappingError(f"{path}: attributes_csv: {exc}") from None
    try:
        return build_mapping(spec, csv_text)
    except MappingError as exc:
        raise MappingError(f"{path}: {exc}") from None


async def run_udp(config: StreamConfig, mapping: GroupMapping, listener: UdpListener,
                  stop: asyncio.Event, report: IngestReport | None = None,
                  keepalive: KeepAliveSettings = KEEPALIVE_DEFAULTS) -> IngestReport:
    """Receive and produce until `stop` is set; then everything received is produced
    and flushed before returning. Sessions with an open connection are kept alive
    (`keepalive`) by their datagrams' times and, between datagrams, the receive clock."""
    sink = EventSink(config, mapping, report)
    correlator = UdpCorrelator()
    keeper = KeepAlive(keepalive.interval, keepalive.max_silence, keepalive.lag)
    batches: asyncio.Queue[Batch] = asyncio.Queue()
    await sink.start()
    await listener.start(batches.put_nowait)

    async def produce(batch: Batch) -> None:
        for at_ns, data in batch:
            received = from_micros(at_ns // 1000)
            item = correlator.accept(data, received)
            if isinstance(item, Rejected):
                await sink.submit(item, "datagram")
                continue
            for out in keeper.accept(item, received):
                await sink.submit(out, "keepalive" if out.synthetic else "datagram")

    async def keep_alive() -> None:
        for out in keeper.advance(datetime.now(UTC)):
            await sink.submit(out, "keepalive")

    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await produce(await asyncio.wait_for(batches.get(), 0.2))
            await keep_alive()
    finally:
        await listener.stop()  # delivers what the receiver still held
        while not batches.empty():
            await produce(batches.get_nowait())
        await sink.stop()
    drops = listener.kernel_drops()
    log.info("udp stopped received=%d kernel_drops=%s backlog_overflow=%d %s",
             listener.received, "unknown" if drops is None else drops, listener.overflowed,
             sink.report.summary())
    return sink.report


async def run_audit_logs(config: StreamConfig, mapping: GroupMapping, paths: Sequence[Path],
                         *, follow: bool, positions: Path | None, stop: asyncio.Event,
                         archive_dirs: Sequence[Path] = (), poll_interval: float = 0.5,
                         report: IngestReport | None = None,
                         keepalive: KeepAliveSettings = KEEPALIVE_DEFAULTS) -> IngestReport:
    """Read every path to its end (then keep following with `follow`); positions, and
    the keep-alive's state with them, are saved after each acknowledged batch.

    Heartbeats come from the lines' event times, so a backfill makes the same ones as
    following did. Only when following and caught up does the wall clock move a
    node's clock on (by the time since its last line was read), so a quiet log's open
    sessions stay alive; a backfill makes nothing past its files' last lines.
    """
    store = PositionStore(positions)
    cursors = [LogCursor(p, store.positions.get(str(p)), archive_dirs) for p in paths]
    keeper = KeepAlive(keepalive.interval, keepalive.max_silence, keepalive.lag,
                       state=store.keepalive)
    sink = EventSink(config, mapping, report)
    await sink.start()

    async def submit(item: Activity | Rejected, where: str, read_at: datetime) -> None:
        if isinstance(item, Rejected):
            await sink.submit(item, where)
            return
        for out in keeper.accept(item, read_at):
            await sink.submit(out, "keepalive" if out.synthetic else where)

    async def acknowledged() -> None:
        await sink.flush()
        store.keepalive = keeper.state
        store.save()

    try:
        while not stop.is_set():
            took = 0
            for cursor in cursors:
                lines = cursor.read()
                read_at = datetime.now(UTC)
                for line in lines:
                    await submit(line.item, line.where, read_at)
                took += len(lines)
                if lines:
                    position = cursor.position()
                    if position is not None:
                        store.positions[str(cursor.path)] = position
                    await acknowledged()
            if took:
                continue
            if not follow:
                break
            made = keeper.advance(datetime.now(UTC))
            for out in made:
                await sink.submit(out, "keepalive")
            if made:
                await acknowledged()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_interval)
    finally:
        for cursor in cursors:
            cursor.close()
        await sink.stop()
    log.info("audit logs done %s", sink.report.summary())
    return sink.report


USER_ACCESS_PATH = "/qrs/license/useraccesstype/full"


def uap_holders_from_qrs(client: QrsClient) -> set[str]:
    """Who holds a user access pass now, by QRS; every record that makes no holder is
    logged with its reason (quarantine and deleted users are Qlik's states, the others
    are records that cannot be used)."""
    uap = holders_from_qrs(decode_user_access(client.get_sync(USER_ACCESS_PATH)))
    for s in uap.not_held:
        if s.reason in ("quarantined", "deleted_user"):
            log.info("user access pass not held index=%d reason=%s: %s", s.index, s.reason,
                     s.detail)
        else:
            log.warning("skipped QRS record endpoint=useraccesstype index=%d reason=%s: %s",
                        s.index, s.reason, s.detail)
    log.info("user access holders=%d not_held=%d", len(uap.holders), len(uap.not_held))
    return uap.holders


class _UapState(msgspec.Struct):
    holders: list[str]


async def run_uap(config: StreamConfig, holders: set[str], state: Path | None,
                  now: datetime | None = None) -> IngestReport:
    """Send `user_access` assign/remove allocations that bring tokenpool's UAP holders
    to `holders`; `state` remembers what was sent last time (else: assign only)."""
    previous: set[str] = set()
    if state is not None and state.exists():
        previous = set(msgspec.json.decode(state.read_bytes(), type=_UapState).holders)
    changes = uap_changes(previous, holders, now or datetime.now(UTC))
    sink = EventSink(config, build_mapping(parse_spec({})))
    await sink.start()
    try:
        for change in changes:
            await sink.send_allocation(change)
        await sink.flush()
    finally:
        await sink.stop()
    if state is not None:
        state.write_bytes(msgspec.json.encode(_UapState(sorted(holders))))
    log.info("user access: %d assigned, %d removed",
             sum(c.action == "assign" for c in changes), sum(c.action == "remove" for c in changes))
    return sink.report

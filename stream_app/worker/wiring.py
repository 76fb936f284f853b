"""The Faust app of a worker and what it reads and writes: topics, tables, decoders.

Built once per process from the config; everything here is fixed for the worker's life,
so the objects that run it (`pools`, `ledger_agent`, `clock`) share it without owning
it. Nothing here decides anything or keeps state that changes.
"""

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import faust
import msgspec

from schemas import Topic, input_decoder, to_micros
from schemas.internal import Feedback, GrantsRecord, LedgerMark, Tick
from stream_app.config import StreamConfig
from stream_app.kafka.topics import (
    MAX_RECORD_BYTES,
    changelog_topic,
    feedback_topic,
    grants_topic,
    ticks_topic,
)
from stream_app.worker import restore, timing
from stream_app.worker.faust_app import TokenpoolApp
from stream_app.worker.partition_task import ENDS, GRANTS, HEARTBEATS, STARTS, record_key
from stream_app.worker.tables import PartitionedTable

GRANT_DECODER = msgspec.json.Decoder(GrantsRecord)
TICK_DECODER = msgspec.json.Decoder(Tick)
FEEDBACK_DECODER = msgspec.json.Decoder(Feedback)

LEDGER_KEY = record_key(0, "W", "", "")
"""The single writer's whole state, one record: a batch of decisions lands at once."""
BAD_RECORD = (msgspec.DecodeError, RecursionError, TypeError, ValueError)
"""What decoding a hostile record can raise: invalid JSON or shape, nesting deeper than
the stack, a null value (tombstone). Each is dead-lettered, never raised."""

_RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes,
                        "key_serializer": "raw", "value_serializer": "raw"}


def not_a_mark(value: bytes | None) -> bool:
    """A grants record the pools must apply (or dead-letter): not a ledger mark."""
    try:
        return not isinstance(GRANT_DECODER.decode(value or b""), LedgerMark)
    except BAD_RECORD:
        return True


def too_far_ahead(config: StreamConfig, ts: datetime, now: float) -> bool:
    """Live mode: an input stamped beyond the clock skew would fast-forward a pool
    (or the ledger's quarantines) by however far its producer's clock is off."""
    if config.mode != "live":
        return False
    skew = int(config.rules.max_clock_skew.total_seconds() * 1_000_000)
    return to_micros(ts) > int(now * 1_000_000) + skew


def static_member_id(config: StreamConfig) -> str | None:
    """The group.instance.id of a worker with `--instance-id`: the name, and the web
    address Faust puts in every member's assignment. A static member gets its last
    assignment back, and Faust's assignor refuses one that names another address (its
    consumer would stop): a worker restarted on another address joins as a new member."""
    if not config.instance_id:
        return None
    address = f"{config.web_host}-{config.web_port}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{config.instance_id}-{address}")


def _credentials(config: StreamConfig) -> Any:
    sec = config.security
    if sec.protocol == "PLAINTEXT":
        return None
    from aiokafka.helpers import create_ssl_context

    ssl_context = None
    if sec.protocol in ("SSL", "SASL_SSL"):
        ssl_context = create_ssl_context(
            cafile=sec.ssl_cafile, certfile=sec.ssl_certfile, keyfile=sec.ssl_keyfile
        )
    if sec.protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    return faust.SASLCredentials(
        username=sec.sasl_username,
        password=sec.sasl_password,
        ssl_context=ssl_context,
        mechanism=sec.sasl_mechanism,
    )


def build_app(cfg: StreamConfig) -> TokenpoolApp:
    """The Faust app with the settings the worker relies on (see each comment)."""
    session_timeout = cfg.session_timeout.total_seconds()
    return TokenpoolApp(
        cfg.app_id,
        env={},  # our flags and TOKENPOOL_* decide; Faust's own env names must not
        broker=[f"kafka://{hp}" for hp in cfg.broker.split(",")],
        broker_credentials=_credentials(cfg),
        store=cfg.store,
        datadir=cfg.data_dir or os.path.join(tempfile.gettempdir(), f"tokenpool-{cfg.app_id}"),
        topic_partitions=cfg.partitions,
        topic_replication_factor=max(1, cfg.replication_factor),
        topic_allow_declare=False,  # `topics create` makes every topic, changelogs too
        topic_disable_leader=True,  # no leader topic: nothing here needs a leader
        web_host=cfg.web_host,
        web_bind=cfg.web_host,  # Faust binds web_bind (all interfaces by default)
        web_port=cfg.web_port,
        web_enabled=True,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(timing.MIN_HEARTBEAT_INTERVAL,
                                      session_timeout / timing.HEARTBEATS_PER_SESSION),
        # exactly_once is the worker's own (`transactions.py`), not Faust's.
        processing_guarantee="at_least_once",
        consumer_group_instance_id=static_member_id(cfg),
        producer_linger=timing.PRODUCER_LINGER,
        producer_max_request_size=MAX_RECORD_BYTES,
        stream_buffer_maxsize=16384,
        stream_wait_empty=False,  # the merge holds unacked inputs across rebalances
        broker_max_poll_records=2000,
        table_cleanup_interval=timing.TABLE_CLEANUP_INTERVAL,
        TableManager=restore.BulkTableManager,  # restores tables reading the changelog in bulk
    )


@dataclass(frozen=True)
class Sources:
    """The pools' inputs by merge source: which topic each is and how it decodes."""

    rank: dict[str, int]
    """Topic → merge source (grants, starts, heartbeats, ends)."""
    source_topic: dict[int, str]
    decoders: dict[str, Callable[[bytes], Any]]
    session_topics: tuple[str, str, str]
    ticks_name: str


@dataclass(frozen=True)
class Channels:
    """The Faust topics the agents read and write."""

    pools_inputs: Any
    """Grants and ticks, one co-partitioned channel."""
    ledger_inputs: Any
    """Allocations and the pools' feedback, one partition."""
    grants: Any
    ticks: Any
    feedback: Any
    feedback_name: str
    outputs: dict[str, Any]
    dead_letters: Any


@dataclass(frozen=True)
class Tables:
    """The changelog-backed tables: the pools' records and the single-writer ledger."""

    state: Any
    ledger: Any
    state_changelog: str
    ledger_changelog: str


def sources(cfg: StreamConfig) -> Sources:
    names = cfg.topics
    rank = {
        grants_topic(cfg): GRANTS,
        names.session_start: STARTS,
        names.session_heartbeat: HEARTBEATS,
        names.session_end: ENDS,
    }
    return Sources(
        rank=rank,
        source_topic={r: topic for topic, r in rank.items()},
        decoders={
            grants_topic(cfg): GRANT_DECODER.decode,
            names.session_start: input_decoder(Topic.SESSION_START).decode,
            names.session_heartbeat: input_decoder(Topic.SESSION_HEARTBEAT).decode,
            names.session_end: input_decoder(Topic.SESSION_END).decode,
        },
        session_topics=(names.session_start, names.session_heartbeat, names.session_end),
        ticks_name=ticks_topic(cfg),
    )


def channels(app: faust.App, cfg: StreamConfig) -> Channels:
    names = cfg.topics
    feedback_name = feedback_topic(cfg)
    return Channels(
        pools_inputs=app.topic(grants_topic(cfg), ticks_topic(cfg), **_RAW),
        ledger_inputs=app.topic(names.allocations, feedback_name, partitions=1, **_RAW),
        grants=app.topic(grants_topic(cfg), **_RAW),
        ticks=app.topic(ticks_topic(cfg), **_RAW),
        feedback=app.topic(feedback_name, partitions=1, **_RAW),
        feedback_name=feedback_name,
        outputs={
            str(Topic.PASS_CONSUMED): app.topic(names.pass_consumed, **_RAW),
            str(Topic.PASS_RETURNED): app.topic(names.pass_returned, **_RAW),
            str(Topic.ACCESS_DENIED): app.topic(names.access_denied, **_RAW),
            str(Topic.ALLOCATION_REJECTED): app.topic(names.allocation_rejected, **_RAW),
        },
        dead_letters=app.topic(names.dead_letters, **_RAW),
    )


def tables(app: faust.App, cfg: StreamConfig) -> Tables:
    """The two tables, their changelogs checked against what `topics create` made."""
    state = app.tables.add(PartitionedTable(
        app, name="state", default=None, partitions=cfg.partitions,
        key_type=bytes, value_type=bytes,
        help="Pool, session, holder and return records, keyed by partition.",
    ))
    ledger = app.tables.add(PartitionedTable(
        app, name="ledger", default=None, partitions=1,
        key_type=bytes, value_type=bytes,
        help="The single-writer token ledger.",
    ))
    made = Tables(state, ledger, changelog_topic(cfg, "state"), changelog_topic(cfg, "ledger"))
    for table, name in ((state, made.state_changelog), (ledger, made.ledger_changelog)):
        if table.changelog_topic.get_topic_name() != name:  # `topics create` makes it
            raise RuntimeError(f"changelog {table.changelog_topic.get_topic_name()} "
                               f"is not {name}")
    return made

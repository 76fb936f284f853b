"""The worker's typed configuration: one frozen object, from flags and `TOKENPOOL_*`.

Secrets are kept out of `repr` so a logged configuration never leaks them.
"""

import argparse
from datetime import timedelta
from typing import Literal

import msgspec

from rules.config import Config
from schemas.topics import Topic
from stream_app.durations import format_duration, parse_duration
from stream_app.settings import add_option, add_rule_options, rule_config

Mode = Literal["live", "replay"]
Guarantee = Literal["at_least_once", "exactly_once"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


INPUT_RETENTION = timedelta(days=400)
"""How long the input topics keep records (`topics create`): a licence year plus a pass
lifetime, what a purchase plan reads back."""
OUTPUT_RETENTION = timedelta(days=400)


class Secret(str):
    """A string that prints as `***`."""

    def __repr__(self) -> str:
        return "'***'"


class TopicNames(msgspec.Struct, frozen=True, kw_only=True):
    session_start: str = Topic.SESSION_START
    session_heartbeat: str = Topic.SESSION_HEARTBEAT
    session_end: str = Topic.SESSION_END
    allocations: str = Topic.ALLOCATIONS
    pass_consumed: str = Topic.PASS_CONSUMED
    pass_returned: str = Topic.PASS_RETURNED
    access_denied: str = Topic.ACCESS_DENIED
    allocation_rejected: str = Topic.ALLOCATION_REJECTED
    dead_letters: str = Topic.DEAD_LETTERS


class Security(msgspec.Struct, frozen=True, kw_only=True):
    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


class StreamConfig(msgspec.Struct, frozen=True, kw_only=True):
    broker: str = "localhost:9092"
    app_id: str = "tokenpool"
    mode: Mode = "live"
    partitions: int = 4
    replication_factor: int = 0
    """Replicas of the topics `topics create` makes; 0: the cluster's broker count, up to 3."""
    topics: TopicNames = TopicNames()
    tick_interval: timedelta = timedelta(seconds=10)
    idle_wait: timedelta = timedelta(seconds=2)
    """How long the merge waits for an empty input before going on (max.task.idle.ms)."""
    store: str = "memory://"
    data_dir: str = ""
    """Where Faust keeps local table files; empty: a folder per app id in the temp dir."""
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    guarantee: Guarantee = "at_least_once"
    session_timeout: timedelta = timedelta(seconds=30)
    instance_id: str = ""
    """The worker's static member id in the consumer group (KIP-345); empty: dynamic."""
    security: Security = Security()
    rules: Config = Config()


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    d = StreamConfig()
    add_option(parser, "--broker", d.broker, "Kafka bootstrap server(s), HOST:PORT[,HOST:PORT]")
    add_option(parser, "--partitions", d.partitions, "partitions of every keyed topic", int)
    add_option(parser, "--replication-factor", d.replication_factor, "replicas per "
               "topic created; 0: as many as the cluster has brokers, up to 3", int)
    names = parser.add_argument_group("topic names")
    for field in TopicNames.__struct_fields__:
        flag = "--topic-" + field.replace("_", "-")
        add_option(names, flag, getattr(d.topics, field), f"the {field.replace('_', '-')} topic")
    sec = parser.add_argument_group("broker security")
    s = d.security
    add_option(sec, "--security-protocol", s.protocol, "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
               choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
    add_option(sec, "--sasl-mechanism", s.sasl_mechanism, "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")
    add_option(sec, "--sasl-username", s.sasl_username, "SASL user")
    add_option(sec, "--sasl-password", s.sasl_password, "SASL password", Secret, lambda _: "***")
    add_option(sec, "--ssl-cafile", s.ssl_cafile, "CA bundle to verify the broker")
    add_option(sec, "--ssl-certfile", s.ssl_certfile, "client certificate (mutual TLS)")
    add_option(sec, "--ssl-keyfile", s.ssl_keyfile, "client key (mutual TLS)")


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    d = StreamConfig()
    add_broker_options(parser)
    add_option(parser, "--app-id", d.app_id, "consumer group and prefix of internal topics")
    add_option(parser, "--mode", d.mode, "live: wall-clock ticks and skew check; replay: "
               "event time only", choices=["live", "replay"])
    add_option(parser, "--tick-interval", d.tick_interval, "wall-clock tick period",
               parse_duration, format_duration)
    add_option(parser, "--idle-wait", d.idle_wait, "how long the merge waits for an empty "
               "input topic", parse_duration, format_duration)
    add_option(parser, "--store", d.store, "table store: memory:// or rocksdb://")
    add_option(parser, "--data-dir", d.data_dir, "local table files (rocksdb); empty: "
               "<tmp>/tokenpool-<app id>")
    add_option(parser, "--web-host", d.web_host, "address /metrics and /health bind to")
    add_option(parser, "--web-port", d.web_port, "port of /metrics and /health", int)
    add_option(parser, "--guarantee", d.guarantee, "at_least_once, or exactly_once "
               "(Kafka transactions; the broker must support them)",
               choices=["at_least_once", "exactly_once"])
    add_option(parser, "--session-timeout", d.session_timeout, "consumer group session "
               "timeout (Apache Kafka accepts 6s to 30m by default)", parse_duration,
               format_duration)
    add_option(parser, "--instance-id", d.instance_id, "a name of this worker that stays "
               "the same across its restarts (static group membership): restarted within "
               "the session timeout, it gets its partitions back with no rebalance; empty: "
               "dynamic membership")
    add_rule_options(parser)


def from_args(args: argparse.Namespace) -> StreamConfig:
    """Build the one config object from parsed flags (which carry env defaults)."""
    get = vars(args).get
    d = StreamConfig()
    topics = TopicNames(**{f: getattr(args, "topic_" + f) for f in TopicNames.__struct_fields__})
    security = Security(
        protocol=args.security_protocol,
        sasl_mechanism=args.sasl_mechanism,
        sasl_username=args.sasl_username,
        sasl_password=args.sasl_password,
        ssl_cafile=args.ssl_cafile,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    return StreamConfig(
        broker=args.broker,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        topics=topics,
        security=security,
        app_id=get("app_id", d.app_id),
        mode=get("mode", d.mode),
        tick_interval=get("tick_interval", d.tick_interval),
        idle_wait=get("idle_wait", d.idle_wait),
        store=get("store", d.store),
        data_dir=get("data_dir", d.data_dir),
        web_host=get("web_host", d.web_host),
        web_port=get("web_port", d.web_port),
        guarantee=get("guarantee", d.guarantee),
        session_timeout=get("session_timeout", d.session_timeout),
        instance_id=get("instance_id", d.instance_id),
        rules=rule_config(args) if "window" in vars(args) else d.rules,
    )

"""`tokenpool topics create`: create the service's topics before the first worker starts.

Faust creates only its own internal topics, so an operator (or CI, or the demo) runs
this once per cluster; running it again changes nothing and says so.
"""

import argparse
import asyncio
import sys
from typing import Any

from stream_app.config import (
    INPUT_RETENTION,
    OUTPUT_RETENTION,
    StreamConfig,
    add_broker_options,
    from_args,
)
from stream_app.durations import format_duration, parse_duration
from stream_app.settings import add_option


def add_topics_command(subparsers: "argparse._SubParsersAction[Any]") -> None:
    """Register `topics create` on the top-level `tokenpool` subparsers."""
    topics = subparsers.add_parser(
        "topics",
        help="manage the Kafka topics the service reads and writes",
        description="Manage the Kafka topics the service reads and writes.",
    )
    actions = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "create",
        help="create every input, internal and output topic (idempotent)",
        description="Create the session, allocations, internal (APP_ID-grants, "
        "APP_ID-ticks, APP_ID-feedback), table changelog and output topics, with "
        "--replication-factor replicas (0: as many as the cluster has brokers, up to 3). "
        "Existing topics are kept and checked: allocations needs exactly 1 partition, "
        "session, internal and state topics --partitions; the service's own topics get "
        "their settings back, and an input or output topic that keeps records for less "
        "than asked is reported, never changed.",
    )
    add_broker_options(p)
    add_option(p, "--app-id", StreamConfig().app_id,
               "consumer group and prefix of internal topics")
    add_option(p, "--input-retention", INPUT_RETENTION, "how long the input topics keep "
               "records: a plan reads them back (never shortened on an existing topic)",
               parse_duration, format_duration)
    add_option(p, "--output-retention", OUTPUT_RETENTION, "how long the output topics keep "
               "records (never shortened on an existing topic)", parse_duration,
               format_duration)
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the broker (default: 30)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    # Imported here so that registering the command does not load aiokafka.
    from aiokafka.errors import KafkaError

    from stream_app.kafka.topics import Retention, TopicCreationError, create_topics, topic_specs

    config = from_args(args)
    retention = Retention(args.input_retention, args.output_retention)
    try:
        report = asyncio.run(create_topics(config, retention=retention, timeout=args.timeout))
    except (TopicCreationError, KafkaError, ValueError) as exc:
        print(f"tokenpool topics create: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"tokenpool topics create: no answer from {config.broker} within "
              f"{args.timeout:g}s", file=sys.stderr)
        return 1
    rows = [("TOPIC", "PARTITIONS", "STATUS")]
    for spec in topic_specs(config, retention):
        have = report.partitions.get(spec.name)
        if spec.name in report.created:
            status = f"created ({report.replication} replicas)"
        elif spec.name in report.changed:
            status = "existed, settings put back: " + ", ".join(
                f"{k}={spec.configs[k]}" for k in report.changed[spec.name])
        else:
            status = "existed"
        rows.append((spec.name, "?" if have is None else str(have), status))
    width = max(len(row[0]) for row in rows)
    for name, count, status in rows:
        print(f"{name:<{width}}  {count:>10}  {status}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0

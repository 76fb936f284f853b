"""`tokenpool topics create`: create the service's topics before the first worker starts.

Faust creates only its own internal topics, so an operator (or CI, or the demo) runs
this once per cluster; running it again changes nothing and says so.
"""

import argparse
import asyncio
import sys
from typing import Any

from stream_app.config import StreamConfig, add_broker_options, from_args
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
        "APP_ID-ticks) and output topics. Existing topics are kept and their partition "
        "counts checked: allocations needs exactly 1, session and internal topics "
        "--partitions.",
    )
    add_broker_options(p)
    add_option(p, "--app-id", StreamConfig().app_id,
               "consumer group and prefix of internal topics")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the broker (default: 30)")
    p.set_defaults(func=_cmd_topics_create)


def _cmd_topics_create(args: argparse.Namespace) -> int:
    # Imported here so that registering the command does not load aiokafka.
    from aiokafka.errors import KafkaError

    from stream_app.broker import TopicCreationError, topic_specs

    config = from_args(args)
    try:
        created, partitions = asyncio.run(_create(config, args.timeout))
    except (TopicCreationError, KafkaError, ValueError) as exc:
        print(f"tokenpool topics create: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"tokenpool topics create: no answer from {config.broker} within "
              f"{args.timeout:g}s", file=sys.stderr)
        return 1
    rows = [("TOPIC", "PARTITIONS", "STATUS")]
    for spec in topic_specs(config):
        have = partitions.get(spec.name)
        rows.append((
            spec.name,
            "?" if have is None else str(have),
            "created" if spec.name in created else "existed",
        ))
    width = max(len(row[0]) for row in rows)
    for name, count, status in rows:
        print(f"{name:<{width}}  {count:>10}  {status}")
    return 0


async def _create(config: StreamConfig, timeout: float) -> tuple[list[str], dict[str, int]]:
    from stream_app.broker import create_topics, describe_partitions, topic_specs

    created = await create_topics(config, timeout=timeout)
    names = [spec.name for spec in topic_specs(config)]
    return created, await describe_partitions(config, names, timeout=timeout)

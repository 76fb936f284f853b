"""`tokenpool worker`: the streaming service, once the setup is checked (preflight)."""

import argparse
import logging
import sys
from typing import Any

from stream_app.config import add_worker_options


def add_worker_command(subparsers: "argparse._SubParsersAction[Any]") -> None:
    p = subparsers.add_parser(
        "worker",
        help="run the streaming service (Faust worker)",
        description="Consume session and allocation topics, keep pool state in "
        "changelog-backed tables, emit pass and denial events, serve /metrics and /health.",
    )
    add_worker_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import faust

    from stream_app.config import from_args
    from stream_app.worker.app import Worker
    from stream_app.worker.preflight import PreflightError, preflight

    config = from_args(args)
    log = logging.getLogger("tokenpool")
    log.info(
        "starting worker app_id=%s broker=%s mode=%s guarantee=%s partitions=%d web=%s:%d",
        config.app_id, config.broker, config.mode, config.guarantee, config.partitions,
        config.web_host, config.web_port,
    )
    try:
        broker = preflight(config)
    except PreflightError as exc:
        print(f"tokenpool worker: {exc}", file=sys.stderr)
        return 2
    worker = Worker(config, broker)
    faust.Worker(worker.app, loglevel=args.log_level.lower()).execute_from_commandline()
    return 0

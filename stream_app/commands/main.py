"""`tokenpool` command line: one subcommand per job, each a thin shell over `rules`;
each command's flags and `main` live in its own module here."""

import argparse
import logging
import sys
from collections.abc import Sequence

from adapters.qlik.cli import add_ingest_commands, add_reconcile_command
from stream_app.commands.demo import add_demo_command
from stream_app.commands.estimate import add_estimate_command
from stream_app.commands.export import add_export_command
from stream_app.commands.load import add_load_command
from stream_app.commands.plan import add_plan_command
from stream_app.commands.replay import add_replay_command
from stream_app.commands.topics import add_topics_command
from stream_app.commands.worker import add_worker_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenpool",
        description="Mirror token-based access licensing from session events.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_replay_command(sub)
    add_worker_command(sub)
    add_demo_command(sub)
    add_estimate_command(sub)
    add_topics_command(sub)
    add_load_command(sub)
    add_plan_command(sub)
    add_export_command(sub)
    add_ingest_commands(sub)
    add_reconcile_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

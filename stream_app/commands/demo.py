"""`tokenpool demo`: broker, worker and a simulated site on this machine, live."""

import argparse
from typing import Any


def add_demo_command(subparsers: "argparse._SubParsersAction[Any]") -> None:
    p = subparsers.add_parser(
        "demo",
        help="the service live on this machine: broker, worker and a simulated site",
        description="Start an embedded Kafka broker and a worker, drive 103 simulated "
        "users through two login access groups with 28 days compressed into about 35 "
        "seconds, and show each pool's passes from the worker's /metrics. Ctrl-C stops.",
    )
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds of traffic (default: run until Ctrl-C)")
    p.add_argument("--web-port", type=int, default=6066,
                   help="port of the worker's /metrics and /health (default: 6066)")
    p.add_argument("--users", type=int, default=103, help="simulated users (default: 103)")
    p.add_argument("--groups", type=int, default=2, help="login access groups (default: 2)")
    p.add_argument("--seed", type=int, help="seed of the simulated traffic")
    p.add_argument("--days-per-minute", type=float, default=48.0,
                   help="simulated days per wall-clock minute (default: 48, so 28 days "
                   "take 35 s)")
    p.add_argument("--partitions", type=int, default=4,
                   help="partitions of every keyed topic (default: 4)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from stream_app.site import demo

    return demo.run(args)

"""`tokenpool load`: a simulated site's session traffic sent to any broker.

For a stack that is already running (the compose file's `load` profile, a staging
cluster): the same planned traffic as `tokenpool demo`, at wall-clock pace. At the
default `--time-scale 1` the rules need no change; a larger scale only makes sense
against a worker started with rule durations divided by the same factor.
"""

import argparse
import asyncio
import logging
from typing import Any

from stream_app.config import add_broker_options, from_args
from stream_app.settings import add_option
from stream_app.site.synthetic import DEFAULT_SEED

log = logging.getLogger("tokenpool.load")


def add_load_command(subparsers: "argparse._SubParsersAction[Any]") -> None:
    p = subparsers.add_parser(
        "load",
        help="send a simulated site's session traffic to a broker",
        description="Allocate a licence and one login access group per simulated group "
        "(sized by the estimate formula), then send session starts, heartbeats and ends "
        "at wall-clock pace until --duration or Ctrl-C.",
    )
    add_broker_options(p)
    add_option(p, "--users", 1000, "simulated users", parse=int)
    add_option(p, "--groups", 3, "login access groups", parse=int)
    add_option(p, "--seed", DEFAULT_SEED, "seed of the simulated traffic", parse=int)
    add_option(p, "--time-scale", 1.0, "simulated seconds per wall-clock second", parse=float)
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds (default: run until stopped)")
    p.add_argument("--no-allocations", action="store_true",
                   help="send sessions only: the allocations are made elsewhere")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    for name in ("users", "groups"):
        if getattr(args, name) < 1:
            log.error("--%s must be at least 1", name)
            return 2
    if args.time_scale <= 0:
        log.error("--time-scale must be positive")
        return 2
    from stream_app.site.load import load

    return asyncio.run(load(from_args(args), args))

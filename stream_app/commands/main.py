"""`tokenpool` command line: one subcommand per job, each a thin shell over `rules`."""

import argparse
import logging
import sys
from collections.abc import Sequence

import msgspec

from adapters.qlik.cli import add_ingest_commands, add_reconcile_command
from rules import Engine, estimate_tokens
from schemas import to_micros
from stream_app.commands.export import add_export_command, add_span_options
from stream_app.commands.load import add_load_command
from stream_app.commands.plan import add_plan_command, estimate_from_history
from stream_app.commands.topics import add_topics_command
from stream_app.config import add_broker_options
from stream_app.settings import add_rule_options, parse_timestamp, rule_config


def _cmd_replay(args: argparse.Namespace) -> int:
    from stream_app import replay

    engine = Engine(rule_config(args))
    if args.resume:
        with open(args.resume, "rb") as f:
            engine = Engine.restore(f.read(), rule_config(args))
    until = to_micros(args.until) if args.until else None
    out = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115
    try:
        report = replay.replay(args.file, engine, out.write, until, progress=sys.stderr)
    finally:
        if args.out:
            out.close()
        else:
            out.flush()
    for number, reason in report.errors:
        print(f"{args.file}:{number}: skipped: {reason}", file=sys.stderr)
    if args.state:
        replay.write_state(args.state, engine, until)
    if args.checkpoint:
        with open(args.checkpoint, "wb") as f:
            f.write(engine.snapshot())
    replay.print_summary(engine, report, sys.stderr)
    return 1 if args.strict and report.errors else 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    if args.from_history is not None:
        return estimate_from_history(args)
    if args.people is None or args.passes is None:
        print("tokenpool estimate: give --people and --passes, or --from-history",
              file=sys.stderr)
        return 2
    try:
        result = estimate_tokens(args.people, args.passes, args.buffer)
    except (ValueError, ArithmeticError) as exc:
        print(f"tokenpool estimate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")
        return 0
    print(
        f"{result.people} people x {result.passes_per_person} passes"
        f" x (1 + {result.buffer_percent}%) / 10 = {result.exact}"
        f" -> {result.tokens} tokens"
    )
    if result.recommend_user_access:
        print(
            f"more than 10 passes per person per 28 days: {result.user_access_tokens}"
            " user access passes (1 token each) cost less than login access"
        )
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from stream_app.site import demo
    return demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenpool",
        description="Mirror token-based access licensing from session events.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "replay",
        help="run a JSON Lines history through the rules, without Kafka",
        description="Apply a replay file ({topic, value} per line) in event-time order; "
        "write outputs as JSON Lines and print a summary per group.",
    )
    p.add_argument("file", metavar="IN.jsonl", help="replay file")
    p.add_argument("--until", type=parse_timestamp,
                   help="stop at this instant; timers due by it fire")
    p.add_argument("--out", metavar="OUT.jsonl", help="write outputs here (default: stdout)")
    p.add_argument("--state", metavar="STATE.json", help="write the final pool state here")
    p.add_argument("--checkpoint", metavar="FILE", help="save the whole engine state at the end")
    p.add_argument("--resume", metavar="FILE", help="start from a state saved by --checkpoint")
    p.add_argument("--strict", action="store_true", help="exit 1 if any line was malformed")
    add_rule_options(p)
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser(
        "worker",
        help="run the streaming service (Faust worker)",
        description="Consume session and allocation topics, keep pool state in "
        "changelog-backed tables, emit pass and denial events, serve /metrics and /health.",
    )
    from stream_app.config import add_worker_options

    add_worker_options(p)
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser(
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
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "estimate",
        help="tokens a group of similar users needs (exact arithmetic)",
        description="tokens = ceil(people x passes per person x (1 + buffer) / 10)",
    )
    p.add_argument("--people", type=int, help="people in the group")
    p.add_argument("--passes", help="login access passes per person per 28 days")
    p.add_argument("--from-history", nargs="?", const="", metavar="HISTORY.jsonl",
                   help="people and passes per person of each group from a replay file, "
                   "or with no file from the input topics on --broker")
    p.add_argument("--buffer", default="20", help="headroom in percent (default: 20)")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    add_span_options(p)
    add_broker_options(p)
    add_rule_options(p)
    p.set_defaults(func=_cmd_estimate)
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

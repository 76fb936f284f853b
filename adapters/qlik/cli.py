"""`tokenpool ingest qlik-*` and `tokenpool reconcile`: registered on the main parser
by `add_ingest_commands` and `add_reconcile_command`; heavy imports stay inside the
command functions."""

import argparse
import asyncio
import contextlib
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from stream_app.config import add_broker_options, from_args
from stream_app.durations import format_duration, parse_duration
from stream_app.settings import add_option


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _add_groups_option(p: argparse.ArgumentParser) -> None:
    add_option(p, "--groups", None, "groups.yaml: login access group rules and default group "
               "(without it every user is unmapped and nothing is sent)", Path)


def _add_keepalive_options(p: argparse.ArgumentParser) -> None:
    from adapters.qlik.keepalive import DEFAULT_INTERVAL, DEFAULT_MAX_SILENCE

    add_option(p, "--keepalive-interval", DEFAULT_INTERVAL, "heartbeat interval of a session "
               "with an open connection; keep it well under the site's session inactivity "
               "timeout", parse_duration, format_duration)
    add_option(p, "--connection-max-silence", DEFAULT_MAX_SILENCE, "a session whose open "
               "connection sent nothing for this long is ended (the proxy may restart "
               "without stops)", parse_duration, format_duration)


def _keepalive_settings(args: argparse.Namespace) -> Any:
    from adapters.qlik.keepalive import KeepAliveSettings

    if not timedelta(0) < args.keepalive_interval < args.connection_max_silence:
        raise ValueError("--keepalive-interval must be positive and shorter than "
                         "--connection-max-silence")
    return KeepAliveSettings(args.keepalive_interval, args.connection_max_silence)


def add_ingest_commands(subparsers: Any) -> None:
    """Register `ingest qlik-udp`, `ingest qlik-audit-log` and `ingest qlik-uap`."""
    ingest = subparsers.add_parser(
        "ingest", help="turn a licensed site's logs and APIs into session events",
        description="Read a Qlik Sense site's proxy events and produce tokenpool's "
        "session and allocation events to Kafka, keyed by group.")
    kinds = ingest.add_subparsers(dest="ingest_command", required=True, metavar="SOURCE")

    p = kinds.add_parser(
        "qlik-udp", help="receive the proxy's log4net UDP user events",
        description="Listen for /qseow-proxy-session/ and /qseow-proxy-connection/ "
        "datagrams (stock or extended layout, see deploy/qlik/LocalLogConfig.xml) and "
        "produce session events until SIGINT/SIGTERM.")
    p.add_argument("--listen", type=_host_port, default=("0.0.0.0", 9997),
                   metavar="HOST:PORT", help="where to receive (default: 0.0.0.0:9997)")
    p.add_argument("--receive-buffer", type=int, default=16 * 1024 * 1024,
                   help="socket receive buffer in bytes (default: 16 MiB)")
    _add_keepalive_options(p)
    _add_groups_option(p)
    add_broker_options(p)
    p.set_defaults(func=_cmd_udp)

    p = kinds.add_parser(
        "qlik-audit-log", help="read proxy audit activity log files",
        description="Read <host>_AuditActivity_Proxy.txt files (tab-separated, header "
        "first) and produce session events. With --follow, keep reading new lines "
        "across log rotation; --positions makes a restart resume where it stopped.")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--follow", action="store_true", help="keep reading as the files grow")
    p.add_argument("--positions", type=Path, metavar="FILE",
                   help="where read positions are saved (resume after restart)")
    p.add_argument("--archive-dir", type=Path, action="append", default=[],
                   help="folder rotated logs are moved to (searched on resume)")
    p.add_argument("--poll-interval", type=parse_duration, default=parse_duration("500ms"),
                   help="how often --follow looks for new lines (default: 500ms)")
    _add_keepalive_options(p)
    _add_groups_option(p)
    add_broker_options(p)
    p.set_defaults(func=_cmd_audit)

    p = kinds.add_parser(
        "qlik-uap", help="user access pass holders → user_access allocations",
        description="Read UAP holders from a CSV export (userDirectory, userId columns) "
        "or QRS (/qrs/license/useraccesstype/full) and produce user_access allocations: "
        "assigns for new holders, removes for holders gone since the last run (--state).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", type=Path, help="CSV export of user access allocations")
    src.add_argument("--qrs", metavar="URL", help="QRS base address, https://HOST:4242")
    _add_qrs_auth(p)
    p.add_argument("--state", type=Path, help="holders sent last time (for removals)")
    add_broker_options(p)
    p.set_defaults(func=_cmd_uap)


def _add_qrs_auth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cert", help="client certificate (client.pem of the QMC export)")
    p.add_argument("--key", help="client key (client_key.pem)")
    p.add_argument("--ca", help="the site's root certificate (root.pem) to verify QRS")
    p.add_argument("--qrs-user", default="INTERNAL\\sa_api",
                   help="X-Qlik-User the calls act as (default: INTERNAL\\sa_api)")


def add_reconcile_command(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "reconcile", help="compare Qlik's passes in use (QRS) with tokenpool's",
        description="Poll QRS license usage every --interval, compare passes in use per "
        "group with tokenpool's (workers' /metrics or a replay --state file), export "
        "tokenpool_reconcile_drift_passes{group} on --web-port and log the users behind "
        "any drift.")
    p.add_argument("--qrs", required=True, metavar="URL", help="https://HOST:4242")
    _add_qrs_auth(p)
    p.add_argument("--metrics", action="append", default=[], metavar="URL",
                   help="a worker's /metrics URL; repeat for every worker")
    p.add_argument("--state", type=Path, help="a `tokenpool replay --state` file instead")
    _add_groups_option(p)
    p.add_argument("--interval", type=parse_duration, default=parse_duration("5m"),
                   help="time between polls (default: 5m)")
    p.add_argument("--pass-lifetime", type=parse_duration, default=parse_duration("28d"),
                   help="how long a pass stays in use (default: 28d)")
    p.add_argument("--web-host", default="127.0.0.1", help="address of /metrics")
    p.add_argument("--web-port", type=int, default=6067, help="port of /metrics (6067)")
    p.add_argument("--once", action="store_true",
                   help="poll once, print the table and exit (1 on error or drift)")
    p.set_defaults(func=_cmd_reconcile)


def _fail(command: str, exc: Exception) -> int:
    print(f"tokenpool {command}: {exc}", file=sys.stderr)
    return 1


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def _cmd_udp(args: argparse.Namespace) -> int:
    from adapters.qlik.group_mapping import MappingError
    from adapters.qlik.ingest import load_mapping, run_udp
    from adapters.qlik.udp_listener import UdpListener

    try:
        keepalive = _keepalive_settings(args)
        mapping = load_mapping(args.groups)
        listener = UdpListener(*args.listen, rcvbuf=args.receive_buffer)
    except (MappingError, OSError, ValueError) as exc:
        return _fail("ingest qlik-udp", exc)

    async def main() -> int:
        report = await run_udp(from_args(args), mapping, listener, _stop_event(),
                               keepalive=keepalive)
        print(report.summary(), file=sys.stderr)
        return 0

    return asyncio.run(main())


def _cmd_audit(args: argparse.Namespace) -> int:
    from adapters.qlik.group_mapping import MappingError
    from adapters.qlik.ingest import load_mapping, run_audit_logs

    try:
        keepalive = _keepalive_settings(args)
        mapping = load_mapping(args.groups)
    except (MappingError, ValueError) as exc:
        return _fail("ingest qlik-audit-log", exc)

    async def main() -> int:
        report = await run_audit_logs(
            from_args(args), mapping, args.paths, follow=args.follow,
            positions=args.positions, stop=_stop_event(), archive_dirs=args.archive_dir,
            poll_interval=args.poll_interval.total_seconds(), keepalive=keepalive)
        print(report.summary(), file=sys.stderr)
        return 0

    try:
        return asyncio.run(main())
    except ValueError as exc:
        return _fail("ingest qlik-audit-log", exc)


def _cmd_uap(args: argparse.Namespace) -> int:
    from adapters.qlik.group_mapping import MappingError, parse_uap_csv
    from adapters.qlik.ingest import run_uap, uap_holders_from_qrs
    from adapters.qlik.qrs import QrsFormatError
    from adapters.qlik.qrs_client import QrsClient, QrsError

    try:
        if args.csv is not None:
            holders = parse_uap_csv(args.csv.read_text(encoding="utf-8-sig"))
        else:
            client = QrsClient(args.qrs, cert=args.cert, key=args.key, ca=args.ca,
                               user=args.qrs_user)
            holders = uap_holders_from_qrs(client)
    except (MappingError, OSError, QrsError, QrsFormatError) as exc:
        return _fail("ingest qlik-uap", exc)
    report = asyncio.run(run_uap(from_args(args), holders, args.state))
    print(report.summary(), file=sys.stderr)
    return 0


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from adapters.qlik.group_mapping import MappingError
    from adapters.qlik.ingest import load_mapping
    from adapters.qlik.qrs import QrsFormatError
    from adapters.qlik.qrs_client import QrsClient, QrsError
    from adapters.qlik.reconcile import SourceError
    from adapters.qlik.reconcile_service import Reconciler, format_table

    try:
        mapping = load_mapping(args.groups)
        client = QrsClient(args.qrs, cert=args.cert, key=args.key, ca=args.ca,
                           user=args.qrs_user)
        reconciler = Reconciler(client, mapping, metrics_urls=args.metrics,
                                state_file=args.state, pass_lifetime=args.pass_lifetime)
    except (MappingError, QrsError, ValueError) as exc:
        return _fail("reconcile", exc)
    if args.once:
        try:
            rows = asyncio.run(reconciler.poll())
        except (QrsError, QrsFormatError, SourceError) as exc:
            return _fail("reconcile", exc)
        print(format_table(rows))
        return 1 if any(r.drift for r in rows) else 0
    start_http_server(args.web_port, args.web_host, registry=reconciler.registry())

    async def main() -> int:
        await reconciler.run(args.interval.total_seconds(), _stop_event())
        return 0

    return asyncio.run(main())

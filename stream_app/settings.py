"""Command-line flags with `TOKENPOOL_*` environment defaults, built once per command.

Every flag's default comes from its environment variable when set, so `--help`
shows the value in force.
"""

import argparse
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from rules.config import Config
from schemas import Timestamp
from stream_app.durations import format_duration, parse_duration


def env_name(flag: str) -> str:
    return "TOKENPOOL_" + flag.lstrip("-").replace("-", "_").upper()


def add_option(
    parser: argparse.ArgumentParser | Any,
    flag: str,
    default: Any,
    help: str,
    parse: Callable[[str], Any] = str,
    show: Callable[[Any], str] = str,
    **kwargs: Any,
) -> None:
    """A flag whose default is `TOKENPOOL_<FLAG>` if set, else `default`."""
    env = env_name(flag)
    raw = os.environ.get(env)
    value = parse(raw) if raw is not None else default
    shown = "unset" if value is None else show(value)
    parser.add_argument(
        flag, default=value, type=parse, help=f"{help} (env {env}; default: {shown})", **kwargs
    )


def add_rule_options(parser: argparse.ArgumentParser) -> None:
    """The licensing constants of `rules.Config`, one flag each."""
    group = parser.add_argument_group("licensing rules")
    defaults = Config()
    for flag, field, text in (
        ("--window", "window", "access a consumed pass buys"),
        ("--pass-lifetime", "pass_lifetime", "time until a consumed pass returns"),
        ("--inactivity-timeout", "inactivity_timeout", "session inactivity timeout"),
        ("--dedupe-horizon", "dedupe_horizon", "how long closed session ids are remembered"),
        ("--uap-quarantine", "uap_quarantine", "quarantine of a removed, recently used UAP"),
        ("--max-clock-skew", "max_clock_skew", "how far ahead of wall clock events may be"),
    ):
        add_option(group, flag, getattr(defaults, field), text, parse_duration, format_duration)
    add_option(group, "--max-devices", defaults.max_devices, "open sessions per user", int)


def rule_config(args: argparse.Namespace) -> Config:
    return Config(
        window=args.window,
        pass_lifetime=args.pass_lifetime,
        inactivity_timeout=args.inactivity_timeout,
        dedupe_horizon=args.dedupe_horizon,
        uap_quarantine=args.uap_quarantine,
        max_clock_skew=args.max_clock_skew,
        max_devices=args.max_devices,
    )


_timestamp = msgspec.json.Decoder(Timestamp)


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp with its offset, as on the wire."""
    try:
        return _timestamp.decode(msgspec.json.encode(text))
    except msgspec.DecodeError:
        raise argparse.ArgumentTypeError(
            f"not an RFC 3339 timestamp with offset: {text!r} (e.g. 2026-11-01T09:00:00Z)"
        ) from None

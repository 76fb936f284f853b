"""The demo's live table: per-group figures scraped from the worker's `/metrics`,
drawn in place on a terminal (appended otherwise), and kept clear of log lines."""

import contextlib
import logging
import shutil
import time
import urllib.request
from dataclasses import dataclass
from typing import IO

from prometheus_client.parser import text_string_to_metric_families

PLAIN_REPORT_EVERY = 5.0
"""Seconds between two tables when stdout is not a terminal."""


# --------------------------------------------------------------------------- metrics


@dataclass
class GroupRow:
    capacity: int = 0
    available: int = 0
    in_use: int = 0
    open_sessions: int = 0
    consumed: int = 0
    returned: int = 0
    denied: int = 0


_GAUGES = {
    "tokenpool_pool_capacity_passes": "capacity",
    "tokenpool_pool_available_passes": "available",
    "tokenpool_pool_in_use_passes": "in_use",
    "tokenpool_open_sessions": "open_sessions",
}
_COUNTERS = {
    "tokenpool_passes_consumed_total": "consumed",
    "tokenpool_passes_returned_total": "returned",
    "tokenpool_access_denied_total": "denied",
}


def parse_metrics(text: str) -> dict[str, GroupRow]:
    """Per-group figures from the worker's Prometheus text; counters summed over
    their `reason` label."""
    rows: dict[str, GroupRow] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = _GAUGES.get(sample.name) or _COUNTERS.get(sample.name)
            group = sample.labels.get("group")
            if name is None or group is None:
                continue
            row = rows.setdefault(group, GroupRow())
            value = int(sample.value)
            setattr(row, name, getattr(row, name) + value if name in _COUNTERS.values()
                    else value)
    return rows


def scrape(url: str, timeout: float = 2.0) -> dict[str, GroupRow]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return parse_metrics(response.read().decode())


_COLUMNS = ("group", "capacity", "available", "in use", "open sessions", "consumed",
            "returned", "denied")


def render(rows: dict[str, GroupRow], headline: str) -> list[str]:
    widths = [max(6, len(c)) for c in _COLUMNS]
    widths[0] = max([5, *(len(g) for g in rows)])

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    out = [headline, line(list(_COLUMNS))]
    total = GroupRow()
    for group in sorted(rows):
        r = rows[group]
        out.append(line([group, *(str(v) for v in _row_values(r))]))
        for name in GroupRow.__dataclass_fields__:
            setattr(total, name, getattr(total, name) + getattr(r, name))
    if len(rows) > 1:
        out.append(line(["all", *(str(v) for v in _row_values(total))]))
    if not rows:
        out.append("(no group reported yet)")
    return out


def _row_values(r: GroupRow) -> tuple[int, ...]:
    return (r.capacity, r.available, r.in_use, r.open_sessions, r.consumed, r.returned,
            r.denied)


class Screen:
    """The table on stdout: redrawn in place on a terminal, appended otherwise."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._drawn = 0
        self._last_plain = 0.0

    def show(self, lines: list[str], *, final: bool = False) -> None:
        if self.tty:
            self.erase()
            # A wrapped line would break the redraw: cut lines to the terminal width.
            width = shutil.get_terminal_size().columns - 1
            self._write("\n".join(line[:width] for line in lines) + "\n")
            self._drawn = 0 if final else len(lines)
            return
        now = time.monotonic()
        if final or now - self._last_plain >= PLAIN_REPORT_EVERY:
            self._last_plain = now
            self._write("\n".join(lines) + "\n\n")

    def erase(self) -> None:
        """Remove the table from a terminal (before a log line is written)."""
        if self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def say(self, text: str) -> None:
        self.erase()
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.stream.write(text)
            self.stream.flush()


class EraseBeforeLog(logging.Filter):
    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.screen = screen

    def filter(self, record: logging.LogRecord) -> bool:
        self.screen.erase()
        return True

"""Proxy audit activity log (`<host>_AuditActivity_Proxy.txt`) lines → `Activity`.

Tab-separated with a header row; columns are read by header name, never by position,
so a Qlik version that adds or reorders columns still parses. Names are matched
without regard to case: Qlik's own pages spell the host column `Hostname` (audit
activity log) and `HostName` (audit security and service logs), and Qlik Support's
log reader lower-cases every column name. log4net writes `(null)` for a property
that is not set; such a value is empty. Timestamps look like
`20261101T090000.000+0100` (`YYYYMMDDThhmmss.fffK`). A ProxySessionId of 0 marks an
internal call and is skipped; a Start session / Stop session command starts or ends
the session, Open / Close connection is activity that also tells the keep-alive
(`keepalive`) of the session's open connections, and any other line of a session
counts as its activity.
"""

import re
from datetime import UTC, datetime, timedelta, timezone

import msgspec

from adapters.qlik.activity import COMMANDS, Activity, Rejected, end_reason

REQUIRED_COLUMNS = ("Timestamp", "Hostname", "ProxySessionId", "UserDirectory", "UserId")
_TS = re.compile(
    r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{1,6}))?"
    r"(Z|[+-]\d{2}:?\d{2})$"
)
_DESCRIPTION_FIELD = re.compile(r"(?:^|;)\s*(\w+)=([^;]*)")


LOG4NET_NULL = "(null)"


class Header(msgspec.Struct, frozen=True):
    """Column name (lower-cased) → index, from a file's first line."""

    columns: tuple[str, ...]
    index: dict[str, int]


def parse_header(line: str) -> Header | Rejected:
    columns = tuple(c.strip() for c in line.rstrip("\r\n").split("\t"))
    index = {name.lower(): i for i, name in reversed(list(enumerate(columns)))}
    missing = [c for c in REQUIRED_COLUMNS if c.lower() not in index]
    if missing:
        return Rejected(reason=f"header lacks column(s) {', '.join(missing)}: not a proxy "
                        "audit activity log")
    return Header(columns, index)


def parse_timestamp(text: str) -> datetime | None:
    """`YYYYMMDDThhmmss.fffK` (K: `Z`, `+hhmm` or `+hh:mm`); None if not that, or naive."""
    m = _TS.match(text.strip())
    if m is None:
        return None
    year, month, day, hh, mm, ss, frac, offset = m.groups()
    if offset == "Z":
        tz: timezone = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    micros = int((frac or "0").ljust(6, "0"))
    try:
        return datetime(int(year), int(month), int(day), int(hh), int(mm), int(ss), micros,
                        tzinfo=tz)
    except ValueError:
        return None


def description_fields(description: str) -> dict[str, str]:
    """`Command=Start session;Result=0;ResultText=Success` → a dict."""
    return {k: v.strip() for k, v in _DESCRIPTION_FIELD.findall(description)}


def parse_line(header: Header, line: str) -> Activity | Rejected:
    """One data line. Its text (which carries Hostname and Sequence#) is the event id's
    source, so a line read again from a rotated file gives the same id (R13)."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return Rejected(reason="blank line", skipped=True)
    fields = text.split("\t")
    if len(fields) != len(header.columns):
        return Rejected(reason=f"{len(fields)} columns, the header has {len(header.columns)}")

    def col(name: str) -> str:
        i = header.index.get(name.lower())
        value = fields[i].strip() if i is not None else ""
        return "" if value == LOG4NET_NULL else value

    if fields[header.index["proxysessionid"]].strip() == LOG4NET_NULL:
        return Rejected(reason=f"no proxy session id ({LOG4NET_NULL})")
    session_id = col("ProxySessionId")
    if session_id in ("", "0"):
        return Rejected(reason="proxy session id 0: an internal call", skipped=True)
    ts = parse_timestamp(col("Timestamp"))
    if ts is None:
        return Rejected(reason=f"Timestamp {col('Timestamp')[:40]!r} is not "
                        "YYYYMMDDThhmmss.fffK with an offset")
    directory, user = col("UserDirectory"), col("UserId")
    if not directory or not user:
        return Rejected(reason="no user directory or user id")
    described = description_fields(col("Description"))
    command = (col("Command") or described.get("Command", "")).lower()
    kind, connection = COMMANDS.get(command, ("activity", None))
    result = col("Result") or described.get("Result", "0")
    if kind == "start" and result not in ("", "0"):
        text_result = described.get("ResultText", "") or col("Message")
        return Rejected(reason=f"session start failed (Result={result}: {text_result})",
                        skipped=True)
    reason = None
    if kind == "stop":
        # Timeout or logout: guessed from the wording (no published example; see end_reason).
        reason = end_reason(f"{col('Message')} {described.get('ResultText', '')}")
    return Activity(kind=kind, ts=ts, host=col("Hostname"), user_directory=directory,
                    user_id=user, session_id=session_id, end_reason=reason,
                    connection=connection, ref=text)

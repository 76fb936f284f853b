"""Proxy audit activity log lines → exact session events; columns read by name.

Point 5: Qlik's help pages spell the host column `Hostname` (audit activity log) and
`HostName` (audit security log, service log); column names are matched without
regard to case, as Qlik Support's own log reader does.
"""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from qlik_helpers import FIXTURES, kept_alive, mapping, read_expected, row

from adapters.qlik.activity import Activity, Rejected
from adapters.qlik.audit_log import Header, parse_header, parse_line, parse_timestamp

OLD = FIXTURES / "audit" / "qs-node1_AuditActivity_Proxy.txt.20261101-1050"
NEW = FIXTURES / "audit" / "qs-node1_AuditActivity_Proxy.txt"
HOST_NAME = FIXTURES / "audit" / "qs-node2_AuditActivity_Proxy.HostName.txt"
READ_AT = datetime(2030, 1, 1, tzinfo=UTC)
"""When the lines are read: it must not matter, event time drives the keep-alive."""


def rows_of(*paths: Path) -> list[dict[str, object]]:
    """What the ingest sends for the files read in turn (through the keep-alive)."""
    items: list[Activity | Rejected] = []
    for path in paths:
        lines = path.read_text().splitlines()
        header = parse_header(lines[0])
        assert isinstance(header, Header)
        items += [parse_line(header, line) for line in lines[1:]]
    groups = mapping()
    return [row(i, groups) for i in kept_alive((i, READ_AT) for i in items)]


def test_rotated_then_current_file_give_exactly_the_expected_events() -> None:
    """Alice's connection is open from 10:25 to her stop at 11:30 (+01:00): the
    keep-alive's heartbeats fill the gaps every 5 minutes after her last record."""
    assert rows_of(OLD, NEW) == read_expected("audit/expected.jsonl")


def test_columns_are_found_by_header_name_not_position() -> None:
    lines = NEW.read_text().splitlines()
    columns = lines[0].split("\t")
    order = list(reversed(range(len(columns))))
    shuffled = ["\t".join(line.split("\t")[i] for i in order) for line in lines]
    header = parse_header(shuffled[0])
    original = parse_header(lines[0])
    assert isinstance(header, Header) and isinstance(original, Header)
    def meaning(item: Activity | Rejected) -> Activity | Rejected:
        # The raw line (the event id's source) differs by construction; all else must not.
        return msgspec.structs.replace(item, ref="") if isinstance(item, Activity) else item

    assert [meaning(parse_line(header, s)) for s in shuffled[1:]] == [
        meaning(parse_line(original, s)) for s in lines[1:]]


def test_a_file_without_the_needed_columns_is_reported() -> None:
    header = parse_header("Sequence#\tTimestamp\tMessage")
    assert isinstance(header, Rejected)
    assert "ProxySessionId" in header.reason and "UserId" in header.reason


@pytest.mark.parametrize(("text", "expected"), [
    ("20261101T090000.000+0100", datetime(2026, 11, 1, 8, tzinfo=UTC)),
    ("20261101T090000.123+01:00", datetime(2026, 11, 1, 8, 0, 0, 123_000, tzinfo=UTC)),
    ("20261101T090000Z", datetime(2026, 11, 1, 9, tzinfo=UTC)),
    ("20261101T090000.5-0530", datetime(2026, 11, 1, 9, 0, 0, 500_000,
                                        tzinfo=timezone(-timedelta(hours=5, minutes=30)))),
])
def test_timestamps_keep_their_offset(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["20261101T090000.000", "2026-11-01T09:00:00Z",
                                  "20261341T090000Z", ""])
def test_timestamps_without_offset_or_malformed_are_refused(text: str) -> None:
    assert parse_timestamp(text) is None


def test_description_gives_the_command_when_the_command_column_is_empty() -> None:
    header = parse_header("Timestamp\tHostname\tProxySessionId\tUserDirectory\tUserId\t"
                          "Description\tCommand\tMessage")
    assert isinstance(header, Header)
    line = ("20261101T090000Z\tn1\ts1\tCORP\tann\tCommand=Stop session;Result=0;"
            "ResultText=Success\t\tsession timed out")
    result = parse_line(header, line)
    assert isinstance(result, Activity)
    assert (result.kind, result.end_reason) == ("stop", "timeout")


def parsed(lines: list[str]) -> list[Activity | Rejected]:
    header = parse_header(lines[0])
    assert isinstance(header, Header), header
    return [parse_line(header, line) for line in lines[1:]]


@pytest.mark.parametrize("spelling", ["HostName", "Hostname", "hostname", "HOSTNAME"])
def test_point5_host_column_is_found_however_it_is_spelled(spelling: str) -> None:
    lines = HOST_NAME.read_text().splitlines()
    assert "\tHostName\t" in lines[0]  # the fixture's own spelling: the security log's
    respelled = [lines[0].replace("\tHostName\t", f"\t{spelling}\t"), *lines[1:]]
    items = parsed(respelled)
    activities = [i for i in items if isinstance(i, Activity)]
    assert [(a.kind, a.host, a.user_id) for a in activities] == [
        ("start", "qs-node2", "fin_dan"), ("activity", "qs-node2", "fin_dan"),
        ("stop", "qs-node2", "fin_dan")]
    assert items == parsed(lines)


def test_a_log4net_null_proxy_session_id_is_reported_not_taken_as_a_session() -> None:
    items = parsed(HOST_NAME.read_text().splitlines())
    assert items[2] == Rejected(reason="no proxy session id ((null))")


def test_point6_stop_wording_decides_only_the_reason_which_is_a_guess() -> None:
    """Timeout vs logout is guessed from the message (no published example). The
    guess may only change the wire reason, never when the session ends."""
    header = parse_header("Timestamp\tHostname\tProxySessionId\tUserDirectory\tUserId\t"
                          "Command\tMessage")
    assert isinstance(header, Header)
    stop = "20261101T100000Z\tn1\ts1\tCORP\tann\tStop session\t"
    logout = parse_line(header, stop + "Stop session for user 'CORP\\ann'")
    timeout = parse_line(header, stop + "Stop session for user 'CORP\\ann': session timed out")
    assert isinstance(logout, Activity) and isinstance(timeout, Activity)
    assert (logout.end_reason, timeout.end_reason) == ("logout", "timeout")
    assert (logout.kind, logout.ts, logout.session_id) == (timeout.kind, timeout.ts,
                                                            timeout.session_id)


def test_point6_the_readme_lists_the_stop_wording_as_an_assumption() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Connecting a Qlik Sense site", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| \"Stop session\"")]
    assert len(rows) == 1 and "**assumption**" in rows[0] and "end_reason" in rows[0]

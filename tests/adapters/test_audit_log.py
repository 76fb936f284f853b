"""Proxy audit activity log lines → exact session events; columns read by name."""

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from qlik_helpers import FIXTURES, mapping, read_expected, row

from adapters.qlik.activity import Activity, Rejected
from adapters.qlik.audit_log import Header, parse_header, parse_line, parse_timestamp

OLD = FIXTURES / "audit" / "qs-node1_AuditActivity_Proxy.txt.20261101-1050"
NEW = FIXTURES / "audit" / "qs-node1_AuditActivity_Proxy.txt"


def rows_of(*paths: object) -> list[dict[str, object]]:
    groups, out = mapping(), []
    for path in paths:
        lines = path.read_text().splitlines()  # type: ignore[attr-defined]
        header = parse_header(lines[0])
        assert isinstance(header, Header)
        out += [row(parse_line(header, line), groups) for line in lines[1:]]
    return out


def test_rotated_then_current_file_give_exactly_the_expected_events() -> None:
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

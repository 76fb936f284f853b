"""Proxy UDP user events (log4net, both layouts) → exact session events.

Fixtures follow the documented datagram format; no real captures exist here.
"""

from datetime import UTC, datetime, timedelta

from qlik_helpers import (
    STOCK_RECEIVED,
    datagrams,
    mapping,
    minutes_after,
    read_expected,
    row,
)

from adapters.qlik.activity import Activity, Rejected
from adapters.qlik.udp_format import UdpCorrelator, parse_datagram

RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)
"""Receive time for the extended layout: it must not matter, the datagram has a time."""


def test_extended_layout_fixture_gives_exactly_the_expected_events() -> None:
    groups, correlator = mapping(), UdpCorrelator()
    got = [row(correlator.accept(d, RECEIVED), groups) for d in datagrams("udp_extended.txt")]
    assert got == read_expected("udp_extended.expected.jsonl")


def test_stock_layout_fixture_gives_exactly_the_expected_events() -> None:
    groups, correlator = mapping(), UdpCorrelator()
    got = [row(correlator.accept(d, at), groups)
           for d, at in zip(datagrams("udp_stock.txt"), minutes_after(STOCK_RECEIVED, 60),
                            strict=False)]
    assert got == read_expected("udp_stock.expected.jsonl")


def test_a_message_containing_semicolons_keeps_them_and_the_trailing_fields() -> None:
    data = (b"/qseow-proxy-connection/;n1;Open connection;CORP;ann;o;hub;"
            b"opened; UserAgent: x; y;ProxySessionId=s-1;Timestamp=2026-11-01T09:00:00Z")
    parsed = parse_datagram(data)
    assert not isinstance(parsed, Rejected)
    assert parsed.message == "opened; UserAgent: x; y"
    assert parsed.proxy_session_id == "s-1"
    assert parsed.ts == datetime(2026, 11, 1, 9, tzinfo=UTC)


def test_stock_message_ending_in_semicolon_fields_is_not_mistaken_for_extended() -> None:
    parsed = parse_datagram(b"/qseow-proxy-session/;n1;Start session;CORP;ann;o;hub;a;b;c")
    assert not isinstance(parsed, Rejected)
    assert (parsed.message, parsed.proxy_session_id, parsed.ts) == ("a;b;c", None, None)


def test_stock_session_id_comes_from_user_host_and_start_time() -> None:
    start = b"/qseow-proxy-session/;n1;Start session;CORP;ann;o;hub;Start session"
    t0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    first = UdpCorrelator().accept(start, t0)
    again = UdpCorrelator().accept(start, t0)
    later = UdpCorrelator().accept(start, t0 + timedelta(seconds=1))
    assert isinstance(first, Activity) and isinstance(again, Activity)
    assert isinstance(later, Activity)
    assert first.session_id == again.session_id != later.session_id
    assert first.ts == t0


def test_stock_sessions_not_seen_for_a_day_are_forgotten() -> None:
    correlator = UdpCorrelator(forget_after=timedelta(hours=24))
    t0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    correlator.accept(b"/qseow-proxy-session/;n1;Start session;CORP;ann;o;hub;m", t0)
    assert correlator.open_sessions() == 1
    stop = correlator.accept(b"/qseow-proxy-session/;n1;Stop session;CORP;ann;o;hub;m",
                             t0 + timedelta(hours=25))
    assert isinstance(stop, Rejected) and not stop.skipped
    assert correlator.open_sessions() == 0


def test_bad_input_is_rejected_with_a_reason_never_raised() -> None:
    correlator = UdpCorrelator()
    for data in (b"", b"\xff\xfe;;;", b";" * 7, b"x" * 70_000,
                 b"/qseow-proxy-session/;n1;Start session;;;o;c;m"):
        result = correlator.accept(data, RECEIVED)
        assert isinstance(result, Rejected) and result.reason

"""Proxy UDP user events (log4net, both layouts) → exact session events.

Fixtures follow the datagram format Butler SOS publishes (its log4net appender, its
documentation's example payloads and its test payloads; see fixtures/README.md).
Point 4: log4net writes `(null)` for a property that is not set; that is no session
id, and no user.
"""

from datetime import UTC, datetime, timedelta

from qlik_helpers import (
    STOCK_RECEIVED,
    datagrams,
    kept_alive,
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
    """Including the keep-alive's heartbeats while alice's connection is open."""
    groups, correlator = mapping(), UdpCorrelator()
    items = kept_alive((correlator.accept(d, RECEIVED), RECEIVED)
                       for d in datagrams("udp_extended.txt"))
    assert [row(i, groups) for i in items] == read_expected("udp_extended.expected.jsonl")


def test_stock_layout_fixture_gives_exactly_the_expected_events() -> None:
    groups, correlator = mapping(), UdpCorrelator()
    items = kept_alive((correlator.accept(d, at), at)
                       for d, at in zip(datagrams("udp_stock.txt"),
                                        minutes_after(STOCK_RECEIVED, 60), strict=False))
    assert [row(i, groups) for i in items] == read_expected("udp_stock.expected.jsonl")


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


def test_butler_sos_published_payloads_parse_into_their_eight_fields() -> None:
    got = [parse_datagram(d) for d in datagrams("udp/butler_sos_published.txt")]
    assert [(p.msg_type, p.host, p.command, p.user_directory, p.user_id, p.proxy_session_id)
            for p in got if not isinstance(p, Rejected)] == [
        ("/qseow-proxy-session/", "server1.domain.com", "Start session", "LAB", "goran", None),
        ("/qseow-proxy-connection/", "server2.domain.com", "Open connection", "LAB", "jdoe",
         None),
        ("/qseow-proxy-connection/", "host1", "Start session", "INTERNAL", "testuser", None),
        ("/qseow-proxy-session/", "host2", "Stop session", "INTERNAL", "testuser2", None),
        ("/qseow-proxy-connection/", "pro2-win1", "Close connection", "userdir", "user1", None),
    ]
    first = got[0]
    assert not isinstance(first, Rejected)
    assert first.context == "app/e7af59a0-c243-480d-9571-08727551a66f"
    assert first.message == ("UserAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
                             "AppleWebKit/537.36'")


def test_point4_log4net_null_proxy_session_id_is_not_a_session_id() -> None:
    correlator = UdpCorrelator()
    items = [correlator.accept(d, RECEIVED) for d in datagrams("udp/null_session_id.txt")]
    goran_start, jdoe_start, jdoe_open, goran_stop, null_user, kim = items
    started = [goran_start, jdoe_start, jdoe_open, goran_stop, kim]
    assert all(isinstance(a, Activity) for a in started)
    activities = [a for a in started if isinstance(a, Activity)]
    assert [a.session_id for a in activities].count("(null)") == 0
    assert all(a.session_id for a in activities)
    assert [a.ts for a in activities] == [  # the datagram's own time, not the receive time
        datetime(2026, 11, 1, 9, m, s, tzinfo=UTC) for m, s in ((0, 0), (1, 0), (1, 2), (40, 0),
                                                                (42, 0))]
    sessions = [a.session_id for a in activities]
    assert sessions[0] == sessions[3] != sessions[1] == sessions[2]  # goran's, jdoe's
    assert len(set(sessions)) == 3  # kim's empty id is no id either
    assert isinstance(null_user, Rejected) and not null_user.skipped
    assert null_user.reason == "no user directory or user id"

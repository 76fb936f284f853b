"""A session started and stopped in a Qlik log gives the same passes as the same
session written by hand as tokenpool events (R1, R3, R4).

Point 7: a session that sits in one app for two hours, with one connection open and
nothing from the proxy in between, consumes the passes Qlik counts (3: at 0, 60 and
120 minutes) through UDP and through the audit log, as the visit written by hand.
"""

from datetime import UTC, datetime, timedelta

import pytest
from qlik_helpers import FIXTURES, datagrams, kept_alive, mapping, row

from adapters.qlik.activity import Activity
from adapters.qlik.audit_log import Header, parse_header, parse_line
from adapters.qlik.log_follower import LogCursor
from adapters.qlik.udp_format import UdpCorrelator
from rules import Engine
from schemas.codec import decode_input, encode
from schemas.inputs import Licence, LoginGroup, SessionEnd, SessionHeartbeat, SessionStart
from schemas.outputs import OutputEvent, PassConsumed

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def passes(inputs: list[object]) -> list[tuple[str, str | None, str, datetime]]:
    """(group, user, reason, ts) of every pass the engine consumes for `inputs`."""
    engine, out = Engine(), []  # type: ignore[var-annotated]
    allocations: list[object] = [Licence(event_id="l", ts=T0, total_tokens=10)] + [
        LoginGroup(event_id=f"g-{g}", ts=T0, group=g, tokens=1)
        for g in ("finance", "sales", "everyone")]
    for event in allocations + sorted(inputs, key=lambda e: e.ts):  # type: ignore[attr-defined]
        engine.apply(event, out)  # type: ignore[arg-type]
    engine.advance(int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1e6), out)
    out_events: list[OutputEvent] = out
    return [(p.group, p.user_id, p.reason, p.ts) for p in out_events
            if isinstance(p, PassConsumed)]


def from_rows(rows: list[dict[str, object]]) -> list[object]:
    return [decode_input(str(r["topic"]), encode(r["value"])) for r in rows if "topic" in r]


def test_audit_log_session_gives_the_passes_of_hand_written_events() -> None:
    groups, rows = mapping(), []
    for name in ("qs-node1_AuditActivity_Proxy.txt.20261101-1050",
                 "qs-node1_AuditActivity_Proxy.txt"):
        lines = (FIXTURES / "audit" / name).read_text().splitlines()
        header = parse_header(lines[0])
        assert isinstance(header, Header)
        rows += [row(parse_line(header, line), groups) for line in lines[1:]]
    alice, bob = "CORP\\fin_alice", "CORP\\bob"
    s1 = "ab12cd34ef56ab12cd34ef56ab12cd34ef560001"
    s2 = "ab12cd34ef56ab12cd34ef56ab12cd34ef560002"
    by_hand = [
        SessionStart(event_id="h1", ts=at(9), group="finance", session_id=s1, user_id=alice),
        SessionHeartbeat(event_id="h2", ts=at(9, 25), group="finance", session_id=s1,
                         user_id=alice),
        SessionHeartbeat(event_id="h3", ts=at(9, 50), group="finance", session_id=s1,
                         user_id=alice),
        SessionEnd(event_id="h4", ts=at(10, 30), group="finance", session_id=s1,
                   user_id=alice, reason="logout"),
        SessionStart(event_id="h5", ts=at(10, 5), group="sales", session_id=s2, user_id=bob),
        SessionEnd(event_id="h6", ts=at(10, 55), group="sales", session_id=s2, user_id=bob,
                   reason="browser_closed"),
    ]
    expected = passes(by_hand)  # type: ignore[arg-type]
    assert expected == [("finance", alice, "login", at(9)), ("sales", bob, "login", at(10, 5)),
                        ("finance", alice, "renewal", at(10))]
    assert passes(from_rows(rows)) == expected


def test_udp_session_gives_the_passes_of_hand_written_events() -> None:
    groups, correlator = mapping(), UdpCorrelator()
    items = [correlator.accept(d, T0) for d in datagrams("udp_extended.txt")]
    rows = [row(i, groups) for i in items if isinstance(i, Activity)]
    got = passes(from_rows(rows))
    assert ("finance", "CORP\\fin_alice", "login", at(9)) in got
    assert ("finance", "CORP\\fin_alice", "renewal", at(10)) in got  # active past 10:00 (R3)
    assert ("everyone", None, "login", at(10)) in got  # anonymous: own pass (R6)
    assert len(got) == 5


def at(hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 11, 1, hh, mm, tzinfo=UTC)


EVE = "CORP\\fin_eve"
EVE_SESSION = "6e1f0c2a-7d3b-4c5e-8f90-a1b2c3d4e501"


def two_hour_visit_by_hand() -> list[object]:
    """Eve works in one app from 09:00 to 11:05, as tokenpool events written by hand:
    she is active throughout (a heartbeat every 20 minutes), then logs out."""
    def beat(mm: int) -> SessionHeartbeat:
        return SessionHeartbeat(event_id=f"eve-{mm}", ts=T0 + timedelta(hours=9, minutes=mm),
                                group="finance", session_id=EVE_SESSION, user_id=EVE)

    return [SessionStart(event_id="eve-start", ts=at(9), group="finance",
                         session_id=EVE_SESSION, user_id=EVE),
            *(beat(mm) for mm in range(20, 125, 20)),
            SessionEnd(event_id="eve-end", ts=at(11, 5), group="finance",
                       session_id=EVE_SESSION, user_id=EVE, reason="logout")]


def two_hour_visit_rows(source: str, keep_alive: bool = True) -> list[dict[str, object]]:
    """The adapters' events for the visit, read from the fixture of `source`."""
    groups = mapping()
    if source == "audit-log":
        path = FIXTURES / "audit" / "two_hour_visit_AuditActivity_Proxy.txt"
        lines = [line.item for line in LogCursor(path, None).read()]
        records = [(i, i.ts) for i in lines if isinstance(i, Activity)]
    else:
        data = datagrams("udp/two_hour_visit.txt")
        if source == "udp-stock":  # the same datagrams without tokenpool's tail
            data = [d.rsplit(b";ProxySessionId=", 1)[0] for d in data]
        times = [datetime.fromisoformat(d.decode().rsplit("Timestamp=", 1)[1])
                 for d in datagrams("udp/two_hour_visit.txt")]
        correlator = UdpCorrelator()
        records = [(correlator.accept(d, t), t) for d, t in zip(data, times, strict=True)]
    assert len(records) == 4 and all(isinstance(i, Activity) for i, _ in records)
    items = kept_alive(records) if keep_alive else [i for i, _ in records]
    return [row(i, groups) for i in items]


@pytest.mark.parametrize("source", ["udp-extended", "udp-stock", "audit-log"])
def test_point7_two_hour_single_connection_session_consumes_the_passes_of_the_visit(
        source: str) -> None:
    expected = passes(two_hour_visit_by_hand())
    assert expected == [("finance", EVE, "login", at(9)), ("finance", EVE, "renewal", at(10)),
                        ("finance", EVE, "renewal", at(11))]  # R1, then R3 every hour
    rows = two_hour_visit_rows(source)
    assert passes(from_rows(rows)) == expected
    heartbeats = [r for r in rows if r.get("topic") == "session-heartbeat"]
    # Open and Close connection, and between them one every 5 min, 09:05:03 to 11:00:03.
    assert len(heartbeats) == 2 + 24


def test_point7_without_keep_alive_the_session_times_out_and_renewals_are_missed() -> None:
    """Why point 7 exists: the proxy says nothing between open and close."""
    rows = two_hour_visit_rows("udp-extended", keep_alive=False)
    assert passes(from_rows(rows)) == [("finance", EVE, "login", at(9))]
